"""``hemorrhage_*`` ini keys: session-wide thresholds, and bad values as usage errors."""

from __future__ import annotations

import pytest

from pytest_hemorrhage.thresholds import Thresholds

DEFAULTS = Thresholds()

THRESHOLDS_PROBE = """
def test_thresholds(hemorrhage):
    t = hemorrhage.thresholds
    print("THRESHOLDS", t.max_kl, t.min_top1_agreement, t.max_ppl_ratio, t.confidence, t.inconclusive_fails)
"""


def test_ini_keys_set_thresholds(pytester: pytest.Pytester, inner) -> None:
    pytester.makeini(
        """
        [pytest]
        hemorrhage_max_kl = 0.25
        hemorrhage_min_top1_agreement = none
        hemorrhage_max_ppl_ratio = 1.5
        hemorrhage_confidence = 0.9
        hemorrhage_inconclusive_fails = false
        """
    )
    inner(THRESHOLDS_PROBE)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*THRESHOLDS 0.25 None 1.5 0.9 False"])


def test_ini_in_pyproject_toml(pytester: pytest.Pytester, inner) -> None:
    pytester.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        hemorrhage_max_kl = "0.125"
        """
    )
    inner(THRESHOLDS_PROBE)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    d = DEFAULTS  # keys the file does not set keep their defaults
    result.stdout.fnmatch_lines(
        [f"*THRESHOLDS 0.125 {d.min_top1_agreement} {d.max_ppl_ratio} {d.confidence} {d.inconclusive_fails}"]
    )


def test_ini_threshold_gates_real_checks(pytester: pytest.Pytester, inner) -> None:
    # max_ppl_ratio pinned: harmful()'s PPL interval straddles the default (see conftest).
    pytester.makeini("[pytest]\nhemorrhage_min_top1_agreement = none\nhemorrhage_max_ppl_ratio = 1.05\n")
    inner(
        """
        def test_harmful_passes_without_top1_gate(hemorrhage):
            report = hemorrhage.check(MODEL, harmful(), PROBES)
            assert report.passed
            assert report.metrics["top1"].verdict == "info"
            assert report.metrics["ppl_ratio"].threshold == 1.05
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_unset_or_empty_ini_keys_keep_defaults(pytester: pytest.Pytester, inner) -> None:
    pytester.makeini("[pytest]\nhemorrhage_max_kl =\n")
    inner(THRESHOLDS_PROBE)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    d = DEFAULTS
    result.stdout.fnmatch_lines(
        [f"*THRESHOLDS {d.max_kl} {d.min_top1_agreement} {d.max_ppl_ratio} {d.confidence} {d.inconclusive_fails}"]
    )


@pytest.mark.parametrize(
    "line, expected",
    [
        ("hemorrhage_max_kl = abc", "*hemorrhage_max_kl*tox.ini*max_kl must be a number*'abc'*"),
        ("hemorrhage_max_kl = -1", "*hemorrhage_max_kl*tox.ini*max_kl=-1.0 is outside the allowed range*"),
        ("hemorrhage_min_top1_agreement = 1.5", "*hemorrhage_min_top1_agreement*outside the allowed range*"),
        ("hemorrhage_confidence = 2", "*hemorrhage_confidence*confidence=2.0 is outside the allowed range*"),
        ("hemorrhage_inconclusive_fails = maybe", "*hemorrhage_inconclusive_fails*must be true or false*'maybe'*"),
    ],
    ids=["not-a-number", "negative", "fraction-above-one", "confidence", "not-a-bool"],
)
def test_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester, inner, line: str, expected: str) -> None:
    pytester.makeini(f"[pytest]\n{line}\n")
    inner("def test_never_runs():\n    raise RuntimeError('collected despite a bad ini value')\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {expected}"])
    result.stdout.no_fnmatch_line("*collected despite*")
    result.stdout.no_fnmatch_line("*passed*")


def test_a_misspelt_ini_key_is_a_usage_error_naming_the_key_it_meant(pytester: pytest.Pytester, inner) -> None:
    """A typo would leave the threshold at its default (a looser gate than written); pytest only warns."""
    pytester.makeini(
        """
        [pytest]
        hemorrhage_max_kll = 0.01
        hemorrhage_min_top1_agreement = 0.9
        """
    )
    inner(THRESHOLDS_PROBE)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*tox.ini: unknown key hemorrhage_max_kll (did you mean hemorrhage_max_kl?);*"])


def test_every_ini_key_the_plugin_declares_is_known(pytester: pytest.Pytester, inner) -> None:
    from pytest_hemorrhage.plugin import INI_KEYS

    declared = {line.split()[0] for line in pytester.runpytest("--help").stdout.lines
                if line.strip().startswith("hemorrhage_") and "(" in line}
    assert declared == set(INI_KEYS)
