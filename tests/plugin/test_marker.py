"""The ``@pytest.mark.hemorrhage(**thresholds)`` marker: registration, effect, validation."""

from __future__ import annotations

import pytest


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["@pytest.mark.hemorrhage(**thresholds):*max_kl*min_top1_agreement*"])


def test_marker_passes_strict_markers(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        @pytest.mark.hemorrhage(max_kl=0.1)
        def test_marked():
            pass
        """
    )
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(passed=1)


def test_tight_marker_fails_a_check_that_passes_with_defaults(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_defaults(hemorrhage):
            hemorrhage.check(MODEL, mild(), PROBES)

        @pytest.mark.hemorrhage(max_kl=1e-9)
        def test_tight(hemorrhage):
            assert hemorrhage.thresholds.max_kl == 1e-9
            hemorrhage.check(MODEL, mild(), PROBES)
        """
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["PASSED test_inner.py::test_defaults", "FAILED test_inner.py::test_tight*"])
    result.stdout.fnmatch_lines(["*Model hemorrhage: mean KL * > 1e-09 allowed*"])


def test_loose_marker_passes_a_check_that_fails_with_defaults(pytester: pytest.Pytester, inner) -> None:
    # harmful() fails the default top-1 gate; its PPL interval straddles the default
    # max_ppl_ratio (see conftest), so the loosened tests pin max_ppl_ratio as well.
    inner(
        """
        def test_defaults(hemorrhage):
            hemorrhage.check(MODEL, harmful(), PROBES)

        @pytest.mark.hemorrhage(min_top1_agreement=0.01, max_ppl_ratio=1.05)
        def test_loose(hemorrhage):
            report = hemorrhage.check(MODEL, harmful(), PROBES)
            assert report.metrics["top1"].threshold == 0.01
            assert report.metrics["top1"].verdict == "pass"

        @pytest.mark.hemorrhage(min_top1_agreement=None, max_ppl_ratio=1.05)
        def test_ungated(hemorrhage):
            report = hemorrhage.check(MODEL, harmful(), PROBES)
            assert report.metrics["top1"].verdict == "info"
        """
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["PASSED test_inner.py::test_loose", "PASSED test_inner.py::test_ungated", "FAILED test_inner.py::test_defaults*"],
        consecutive=False,
    )
    # With the defaults it is the top-1 gate (the one the markers loosen) that fails it.
    result.stdout.fnmatch_lines(["*Model hemorrhage: same top-1 * < * required*"])


def test_closest_marker_wins_per_key(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        pytestmark = pytest.mark.hemorrhage(max_kl=0.3, max_ppl_ratio=2.0, min_top1_agreement=0.5)

        @pytest.mark.hemorrhage(max_kl=0.2, min_top1_agreement=0.6)
        class TestLevels:
            @pytest.mark.hemorrhage(max_kl=0.1)
            def test_function_level(self, hemorrhage):
                t = hemorrhage.thresholds
                assert (t.max_kl, t.min_top1_agreement, t.max_ppl_ratio) == (0.1, 0.6, 2.0)

            def test_class_level(self, hemorrhage):
                t = hemorrhage.thresholds
                assert (t.max_kl, t.min_top1_agreement, t.max_ppl_ratio) == (0.2, 0.6, 2.0)

        def test_module_level(hemorrhage):
            t = hemorrhage.thresholds
            assert (t.max_kl, t.min_top1_agreement, t.max_ppl_ratio) == (0.3, 0.5, 2.0)
        """
    )
    pytester.runpytest().assert_outcomes(passed=3)


def test_check_keyword_arguments_override_the_marker(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        @pytest.mark.hemorrhage(max_kl=1e-9)
        def test_override(hemorrhage):
            report = hemorrhage.check(MODEL, mild(), PROBES, max_kl=0.5)
            assert report.metrics["kl"].threshold == 0.5
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    "marker_args, expected",
    [
        ("max_kll=0.1", "*@pytest.mark.hemorrhage*unknown threshold key*max_kll*"),
        ("max_kl=-1", "*@pytest.mark.hemorrhage*max_kl=-1* outside the allowed range*"),
        ("max_kl='abc'", "*@pytest.mark.hemorrhage*max_kl must be a number*'abc'*"),
        ("max_kl=True", "*@pytest.mark.hemorrhage*max_kl must be a number*True*"),
        ("confidence=2", "*@pytest.mark.hemorrhage*confidence=2* outside the allowed range*"),
        ("0.1", "*@pytest.mark.hemorrhage takes keyword arguments only*positional (0.1,)*"),
    ],
    ids=["unknown-key", "negative", "string", "bool", "confidence-range", "positional"],
)
def test_bad_marker_fails_at_setup(pytester: pytest.Pytester, inner, marker_args: str, expected: str) -> None:
    inner(
        f"""
        @pytest.mark.hemorrhage({marker_args})
        def test_bad(hemorrhage):
            raise RuntimeError("the test body must not run")

        @pytest.mark.hemorrhage({marker_args})
        def test_bad_without_fixture():
            raise RuntimeError("the test body must not run")

        def test_unmarked_neighbour(hemorrhage):
            from pytest_hemorrhage.thresholds import Thresholds

            assert hemorrhage.thresholds == Thresholds()  # the defaults, untouched by the bad marker
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_bad *", expected])
    result.stdout.fnmatch_lines(["*ERROR at setup of test_bad_without_fixture*", expected])
    result.stdout.no_fnmatch_line("*the test body must not run*")
