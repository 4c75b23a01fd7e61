"""The ``hemorrhage checks`` terminal summary section."""

from __future__ import annotations

import pytest


def test_summary_lists_every_check_with_test_id_and_verdict(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_pass(hemorrhage):
            hemorrhage.check(MODEL, harmless(), PROBES)

        def test_fail(hemorrhage):
            hemorrhage.check(MODEL, harmful(), PROBES)

        @pytest.mark.parametrize("factor", [1.01, 20.0])
        def test_param(hemorrhage, factor):
            hemorrhage.compare(MODEL, scaled(factor), PROBES)

        class TestGroup:
            def test_method(self, hemorrhage):
                kl = hemorrhage.compare(MODEL, mild(), PROBES).metrics["kl"]
                hemorrhage.compare(MODEL, mild(), PROBES, max_kl=(kl.estimate + kl.ci_high) / 2)

        def test_without_checks(hemorrhage):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*= hemorrhage checks =*",
            "PASS         test_inner.py::test_pass  KL 0, top-1 100.00%, PPL ratio 1.0000",
            "FAIL         test_inner.py::test_fail  KL *, top-1 10.05%, PPL ratio *, first bad layer model.layers.1",
            "PASS         test_inner.py::test_param[[]1.01[]]  KL *",
            "FAIL         test_inner.py::test_param[[]20.0[]]  KL *",
            "PASS         test_inner.py::TestGroup::test_method  KL *",
            "INCONCLUSIVE test_inner.py::TestGroup::test_method[[]1[]]  KL *",
            "*= short test summary info =*",
        ]
    )
    section = result.stdout.str().split("hemorrhage checks")[1].split("short test summary info")[0]
    assert "test_without_checks" not in section
    assert len([line for line in section.splitlines() if "test_inner.py::" in line]) == 6


def test_summary_absent_without_checks(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_plain():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*hemorrhage checks*")


def test_summary_after_quiet_run(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_pass(hemorrhage):
            hemorrhage.check(MODEL, harmless(), PROBES)
        """
    )
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*hemorrhage checks*", "PASS * test_inner.py::test_pass  KL 0*"])
