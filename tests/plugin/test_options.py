"""Command-line options: ``--hemorrhage-<threshold>``, ``--hemorrhage-device``, ``--hemorrhage-batch-size``."""

from __future__ import annotations

import pytest

from pytest_hemorrhage.thresholds import Thresholds


def test_every_threshold_has_an_option_and_an_ini_key(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    lines = ["*--hemorrhage-report=PATH*", "*--hemorrhage-device=DEVICE*", "*--hemorrhage-batch-size=N*",
             "*--hemorrhage-update*"]
    lines += [f"*--hemorrhage-{key.replace('_', '-')}=VALUE*" for key in Thresholds.keys()]
    result.stdout.fnmatch_lines(lines, consecutive=False)
    result.stdout.fnmatch_lines([f"*hemorrhage_{key} *" for key in Thresholds.keys()])
    result.stdout.fnmatch_lines(["*hemorrhage_snapshot_dir*"])


def test_threshold_options_set_thresholds(pytester: pytest.Pytester, inner) -> None:
    inner(
        f"""
        def test_thresholds(hemorrhage):
            t = hemorrhage.thresholds
            assert t.max_kl == 0.5
            assert t.min_top1_agreement is None
            assert t.min_layer_sqnr_db == -3.0
            assert t.inconclusive_fails is False
            assert t.max_ppl_ratio == {Thresholds().max_ppl_ratio!r}  # not given: default
        """
    )
    result = pytester.runpytest(
        "--hemorrhage-max-kl", "0.5", "--hemorrhage-min-top1-agreement=none",
        "--hemorrhage-min-layer-sqnr-db=-3", "--hemorrhage-inconclusive-fails=no",
    )
    result.assert_outcomes(passed=1)


def test_threshold_option_gates_real_checks(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_mild(hemorrhage):
            hemorrhage.check(MODEL, mild(), PROBES)
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    result = pytester.runpytest("--hemorrhage-max-kl=1e-9")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Model hemorrhage: mean KL * > 1e-09 allowed*"])


@pytest.mark.parametrize(
    "option, expected",
    [
        ("--hemorrhage-max-kl=abc", "*command line*--hemorrhage-max-kl*max_kl must be a number*'abc'*"),
        ("--hemorrhage-max-kl=-1", "*command line*--hemorrhage-max-kl*outside the allowed range*"),
        ("--hemorrhage-min-top1-agreement=2", "*command line*--hemorrhage-min-top1-agreement*outside*"),
        ("--hemorrhage-confidence=0.1", "*command line*--hemorrhage-confidence*outside the allowed range*"),
        ("--hemorrhage-inconclusive-fails=maybe", "*command line*--hemorrhage-inconclusive-fails*true or false*"),
    ],
    ids=["not-a-number", "negative", "fraction-above-one", "confidence", "not-a-bool"],
)
def test_bad_option_value_is_a_usage_error(pytester: pytest.Pytester, inner, option: str, expected: str) -> None:
    inner("def test_never_runs():\n    raise RuntimeError('ran despite a bad option')\n")
    result = pytester.runpytest(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {expected}"])
    result.stdout.no_fnmatch_line("*ran despite*")


def test_bad_batch_size_type_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--hemorrhage-batch-size=many")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hemorrhage-batch-size*invalid int value*'many'*"])


def test_device_and_batch_size_reach_compare(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_spy(hemorrhage, monkeypatch):
            seen = spy_on_compare(monkeypatch)
            report = hemorrhage.check(MODEL, harmless(), PROBES)
            assert report.passed
            assert seen["device"] == "cpu"
            assert seen["batch_size"] == 3
            # Explicit arguments win over the options.
            hemorrhage.check(MODEL, harmless(), PROBES, batch_size=5, device=None)
            assert seen["batch_size"] == 5
            assert seen["device"] is None
        """
    )
    pytester.runpytest("--hemorrhage-device=cpu", "--hemorrhage-batch-size=3").assert_outcomes(passed=1)


def test_without_options_device_is_none_and_batch_size_is_left_to_compare(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_spy(hemorrhage, monkeypatch):
            seen = spy_on_compare(monkeypatch)
            hemorrhage.check(MODEL, harmless(), PROBES)
            assert seen["device"] is None
            assert "batch_size" not in seen
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
