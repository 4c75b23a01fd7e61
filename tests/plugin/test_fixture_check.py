"""The ``hemorrhage`` fixture: ``check()`` raises on harm, ``compare()`` never does, all are recorded."""

from __future__ import annotations

import pytest


def test_check_passes_a_harmless_candidate(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_harmless(hemorrhage):
            report = hemorrhage.check(MODEL, harmless(), PROBES)
            assert report.passed and report.verdict == "pass"
            assert report.metrics["kl"].estimate == 0.0
            assert report.name == "test_inner.py::test_harmless"
            assert hemorrhage.reports == [report]
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_check_fails_a_harmful_candidate_as_a_test_failure(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_harmful(hemorrhage):
            hemorrhage.check(MODEL, harmful(), PROBES)
            raise RuntimeError("check() must raise before this line")
        """
    )
    result = pytester.runpytest()
    # HemorrhageDetected is an AssertionError: a failure, not an error.
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["FAILED test_inner.py::test_harmful - pytest_hemorrhage.errors.Hemorrhage*"])
    result.stdout.no_fnmatch_line("*must raise before this line*")


def test_compare_returns_a_failing_report_without_raising(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_compare(hemorrhage):
            report = hemorrhage.compare(MODEL, harmful(), PROBES)
            assert not report.passed
            assert report.verdict == "fail"
            assert report.metrics["top1"].verdict == "fail"
            assert report.to_text().startswith("Model hemorrhage:")
            assert hemorrhage.reports == [report]
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    # A failing compare() still shows in the summary, with its verdict.
    result.stdout.fnmatch_lines(["*= hemorrhage checks =*", "FAIL * test_inner.py::test_compare  *"])


def test_multiple_checks_in_one_test_are_all_recorded(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_many(hemorrhage, record_property):
            first = hemorrhage.compare(MODEL, harmless(), PROBES)
            second = hemorrhage.compare(MODEL, harmful(), PROBES)
            third = hemorrhage.check(MODEL, mild(), PROBES, name="mild scaling")
            assert hemorrhage.reports == [first, second, third]
            assert [r.verdict for r in hemorrhage.reports] == ["pass", "fail", "pass"]
            assert first.name == "test_inner.py::test_many"
            assert second.name == "test_inner.py::test_many[1]"
            assert third.name == "mild scaling"
        """
    )
    result = pytester.runpytest("--hemorrhage-report=checks.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*= hemorrhage checks =*",
            "PASS * test_inner.py::test_many  KL 0, *",
            "FAIL * test_inner.py::test_many[[]1[]]  KL *",
            "PASS * test_inner.py::test_many (mild scaling)  KL *",
        ]
    )
    import json

    checks = json.loads((pytester.path / "checks.json").read_text())["checks"]
    assert [c["nodeid"] for c in checks] == ["test_inner.py::test_many"] * 3
    assert [c["report"]["verdict"] for c in checks] == ["pass", "fail", "pass"]


def test_check_keyword_thresholds(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        from pytest_hemorrhage.errors import HemorrhageDetected, InvalidArgument

        def test_tight_keyword_fails(hemorrhage):
            with pytest.raises(HemorrhageDetected):
                hemorrhage.check(MODEL, mild(), PROBES, max_kl=1e-9)

        def test_loose_keyword_passes(hemorrhage):
            # PPL ratio pinned: harmful()'s PPL interval straddles the default (see conftest).
            report = hemorrhage.check(MODEL, harmful(), PROBES, min_top1_agreement=None, max_ppl_ratio=1.05)
            assert report.passed
            assert report.metrics["top1"].verdict == "info"

        def test_unknown_keyword_is_named(hemorrhage):
            with pytest.raises(InvalidArgument, match=r"unknown threshold key.*max_kll"):
                hemorrhage.check(MODEL, harmless(), PROBES, max_kll=0.1)
            assert hemorrhage.reports == []
        """
    )
    pytester.runpytest().assert_outcomes(passed=3)


def test_same_object_twice_is_an_error_not_a_pass(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_same(hemorrhage):
            hemorrhage.check(MODEL, MODEL, PROBES)
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*candidate is baseline*copy.deepcopy*"])
    result.stdout.no_fnmatch_line("*= hemorrhage checks =*")


def test_no_summary_without_checks(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_unused(hemorrhage):
            assert hemorrhage.reports == []
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*hemorrhage checks*")
