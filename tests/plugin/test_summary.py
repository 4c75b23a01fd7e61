"""The ``hemorrhage checks`` terminal summary section."""

from __future__ import annotations

import fnmatch
import json

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
            # compare() records the failing check without raising and the test passes: it expected it.
            "FAIL (expected by the test, which passed) test_inner.py::test_param[[]20.0[]]  KL *",
            "PASS         test_inner.py::TestGroup::test_method  KL *",
            "INCONCLUSIVE test_inner.py::TestGroup::test_method[[]1[]]  KL *",
            "2 checks failed: 1 as expected, 1 unexpectedly",
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


EXPECTED_FAILURES = """
    from pytest_hemorrhage import HemorrhageDetected

    @pytest.mark.xfail(strict=True, raises=HemorrhageDetected)
    def test_strict_xfail(hemorrhage):
        hemorrhage.check(MODEL, harmful(), PROBES)

    @pytest.mark.xfail(reason="known damage")
    def test_xfail(hemorrhage):
        hemorrhage.check(MODEL, harmful(), PROBES)

    def test_raises(hemorrhage):
        with pytest.raises(HemorrhageDetected):
            hemorrhage.check(MODEL, harmful(), PROBES)

    def test_asserts_failure(hemorrhage):
        assert not hemorrhage.compare(MODEL, harmful(), PROBES).passed

    def test_unexpected(hemorrhage):
        hemorrhage.check(MODEL, harmful(), PROBES)

    def test_pass(hemorrhage):
        hemorrhage.check(MODEL, harmless(), PROBES)
"""

EXPECTED_LINES = [
    "*= hemorrhage checks =*",
    "FAIL (xfail, expected) test_inner.py::test_strict_xfail  KL *",
    "FAIL (xfail, expected) test_inner.py::test_xfail  KL *",
    "FAIL (expected by the test, which passed) test_inner.py::test_raises  KL *",
    "FAIL (expected by the test, which passed) test_inner.py::test_asserts_failure  KL *",
    "FAIL         test_inner.py::test_unexpected  KL *",
    "PASS         test_inner.py::test_pass  KL 0*",
    "5 checks failed: 4 as expected, 1 unexpectedly",
]


def test_summary_marks_expected_failures(pytester: pytest.Pytester, inner) -> None:
    inner(EXPECTED_FAILURES)
    report = pytester.path / "checks.json"
    result = pytester.runpytest("--hemorrhage-no-suggest", f"--hemorrhage-report={report}")
    result.assert_outcomes(passed=3, failed=1, xfailed=2)
    result.stdout.fnmatch_lines(EXPECTED_LINES)
    outcomes = {check["nodeid"].split("::")[1]: check["test_outcome"]
                for check in json.loads(report.read_text())["checks"]}
    assert outcomes == {"test_strict_xfail": "xfailed", "test_xfail": "xfailed", "test_raises": "passed",
                        "test_asserts_failure": "passed", "test_unexpected": "failed", "test_pass": "passed"}


def test_expected_failure_marked_in_markdown_report(pytester: pytest.Pytester, inner) -> None:
    inner(EXPECTED_FAILURES)
    report = pytester.path / "checks.md"
    pytester.runpytest("--hemorrhage-no-suggest", f"--hemorrhage-report={report}").assert_outcomes(
        passed=3, failed=1, xfailed=2)
    headings = [line for line in report.read_text().splitlines() if line.startswith("### ")]
    assert headings[0] == "### test_inner.py::test_strict_xfail (xfail, expected): ❌ fail"
    assert headings[2] == "### test_inner.py::test_raises (expected by the test, which passed): ❌ fail"
    assert headings[4] == "### test_inner.py::test_unexpected: ❌ fail"


def test_summary_without_expected_failures_has_no_count_line(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_unexpected(hemorrhage):
            hemorrhage.check(MODEL, harmful(), PROBES)
        """
    )
    result = pytester.runpytest("--hemorrhage-no-suggest")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["FAIL         test_inner.py::test_unexpected  KL *"])
    result.stdout.no_fnmatch_line("*checks failed*")


@pytest.mark.slow
def test_summary_marks_expected_failures_under_xdist(pytester: pytest.Pytester, inner) -> None:
    inner(EXPECTED_FAILURES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--hemorrhage-no-suggest",
                                           "--hemorrhage-report=checks.json")
    result.assert_outcomes(passed=3, failed=1, xfailed=2)
    checks = json.loads((pytester.path / "checks.json").read_text())["checks"]
    assert sorted(check["test_outcome"] for check in checks) == ["failed", "passed", "passed", "passed",
                                                                "xfailed", "xfailed"]
    section = result.stdout.str().split("hemorrhage checks")[1]
    for line in EXPECTED_LINES[1:]:  # workers finish in any order: each line, not their sequence
        assert any(fnmatch.fnmatch(got, line) for got in section.splitlines()), line
