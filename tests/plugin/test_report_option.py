"""``--hemorrhage-report=PATH``: every check of the session as JSON, or Markdown for ``.md``."""

from __future__ import annotations

import json

import pytest

from pytest_hemorrhage.thresholds import Thresholds

TWO_TESTS = """
def test_pass(hemorrhage):
    hemorrhage.check(MODEL, harmless(), PROBES)

def test_fail(hemorrhage):
    hemorrhage.check(MODEL, harmful(), PROBES)

def test_two(hemorrhage):
    hemorrhage.compare(MODEL, harmless(), PROBES)
    hemorrhage.compare(MODEL, mild(), PROBES)

def test_named(hemorrhage):
    hemorrhage.compare(MODEL, mild(), PROBES, name="mild scaling")

def test_none():
    pass
"""


def test_json_report(pytester: pytest.Pytester, inner) -> None:
    inner(TWO_TESTS)
    result = pytester.runpytest("--hemorrhage-report=reports/nested/checks.json")
    result.assert_outcomes(passed=4, failed=1)
    data = json.loads((pytester.path / "reports" / "nested" / "checks.json").read_text())
    assert data["schema_version"] == 1
    checks = data["checks"]
    assert [(c["nodeid"], c["report"]["name"], c["report"]["verdict"]) for c in checks] == [
        ("test_inner.py::test_pass", "test_inner.py::test_pass", "pass"),
        ("test_inner.py::test_fail", "test_inner.py::test_fail", "fail"),
        ("test_inner.py::test_two", "test_inner.py::test_two", "pass"),
        ("test_inner.py::test_two", "test_inner.py::test_two[1]", "pass"),
        ("test_inner.py::test_named", "mild scaling", "pass"),
    ]
    failing = checks[1]["report"]
    assert failing["passed"] is False
    assert failing["schema_version"] == 1
    assert failing["first_bad_layer"] == "model.layers.1"
    metrics = {m["name"]: m for m in failing["metrics"]}
    defaults = Thresholds()  # test_fail runs with the defaults
    assert metrics["top1"]["verdict"] == "fail" and metrics["top1"]["threshold"] == defaults.min_top1_agreement
    assert metrics["kl"]["verdict"] == "pass"
    assert failing["thresholds"]["max_kl"] == defaults.max_kl
    assert [layer["name"] for layer in failing["layers"]] == [f"model.layers.{i}" for i in range(4)]


def test_json_report_records_resolved_thresholds(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        @pytest.mark.hemorrhage(max_kl=0.5)
        def test_marked(hemorrhage):
            hemorrhage.check(MODEL, harmless(), PROBES)
        """
    )
    pytester.runpytest("--hemorrhage-report=r.json", "--hemorrhage-max-ppl-ratio=2").assert_outcomes(passed=1)
    (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert check["report"]["thresholds"]["max_kl"] == 0.5
    assert check["report"]["thresholds"]["max_ppl_ratio"] == 2.0


def test_json_report_without_checks(pytester: pytest.Pytester, inner) -> None:
    inner("def test_plain():\n    pass\n")
    pytester.runpytest("--hemorrhage-report=empty.json").assert_outcomes(passed=1)
    assert json.loads((pytester.path / "empty.json").read_text()) == {"schema_version": 1, "checks": []}


def test_markdown_report(pytester: pytest.Pytester, inner) -> None:
    inner(TWO_TESTS)
    pytester.runpytest("--hemorrhage-report=checks.md").assert_outcomes(passed=4, failed=1)
    text = (pytester.path / "checks.md").read_text(encoding="utf-8")
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    # One Markdown renderer for the plugin, the command line and Report.to_markdown(): formatted
    # numbers and metric labels, as in the assertion message (the session file used raw values).
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    assert headings == [
        "### test_inner.py::test_pass: ✅ pass",
        "### test_inner.py::test_fail: ❌ fail",
        "### test_inner.py::test_two: ✅ pass",
        "### test_inner.py::test_two[1]: ✅ pass",
        "### test_inner.py::test_named (mild scaling): ✅ pass",
    ]
    assert text.count("| metric | estimate | 95% CI | threshold | verdict |") == 5
    top1 = [line for line in text.splitlines() if line.startswith("| same top-1 |")]
    assert len(top1) == 5 and top1[1].endswith("| ≥ 93.00% | ❌ fail |")
    assert "First layer past threshold: `model.layers.1`" in text


def test_markdown_report_without_checks(pytester: pytest.Pytester, inner) -> None:
    inner("def test_plain():\n    pass\n")
    pytester.runpytest("--hemorrhage-report=empty.md").assert_outcomes(passed=1)
    assert (pytester.path / "empty.md").read_text() == "No hemorrhage checks ran.\n"


def test_no_report_without_the_option(pytester: pytest.Pytester, inner) -> None:
    inner(TWO_TESTS)
    pytester.runpytest().assert_outcomes(passed=4, failed=1)
    assert sorted(p.name for p in pytester.path.iterdir() if p.suffix in (".json", ".md")) == []
