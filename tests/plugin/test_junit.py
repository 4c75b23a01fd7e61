"""JUnit XML: each check's verdict and metrics become ``<property>`` elements of its test case."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pytest_hemorrhage.thresholds import Thresholds


def _properties(xml_path) -> dict[str, dict[str, str]]:
    root = ET.parse(xml_path).getroot()
    cases = {}
    for case in root.iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        cases[case.get("name")] = props
    return cases


def test_junit_properties(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_pass(hemorrhage):
            hemorrhage.check(MODEL, harmless(), PROBES)

        def test_fail(hemorrhage):
            hemorrhage.check(MODEL, harmful(), PROBES)

        def test_two(hemorrhage):
            hemorrhage.compare(MODEL, harmless(), PROBES)
            hemorrhage.compare(MODEL, mild(), PROBES)

        def test_none(hemorrhage):
            pass
        """
    )
    result = pytester.runpytest("--junitxml=out/junit.xml")
    result.assert_outcomes(passed=3, failed=1)
    cases = _properties(pytester.path / "out" / "junit.xml")

    passed = cases["test_pass"]
    assert passed["hemorrhage_verdict"] == "pass"
    assert float(passed["hemorrhage_kl"]) == 0.0
    assert float(passed["hemorrhage_kl_ci_high"]) == 0.0
    assert float(passed["hemorrhage_top1"]) == 1.0
    assert float(passed["hemorrhage_top1_ci_low"]) == 1.0
    assert "hemorrhage_ppl_ratio" in passed and "hemorrhage_topk" in passed
    assert "hemorrhage_topk_ci_low" not in passed  # not gated: no bound reported
    assert "hemorrhage_first_bad_layer" not in passed

    failed = cases["test_fail"]
    assert failed["hemorrhage_verdict"] == "fail"
    defaults = Thresholds()  # test_fail runs with the defaults: top-1 fails them, KL stays inside
    assert 0.0 < float(failed["hemorrhage_kl"]) < defaults.max_kl
    assert float(failed["hemorrhage_top1"]) < defaults.min_top1_agreement
    assert failed["hemorrhage_first_bad_layer"] == "model.layers.1"

    two = cases["test_two"]
    assert two["hemorrhage_verdict"] == "pass"
    assert two["hemorrhage[1]_verdict"] == "pass"
    assert float(two["hemorrhage_kl"]) == 0.0
    assert float(two["hemorrhage[1]_kl"]) > 0.0

    assert not any(name.startswith("hemorrhage") for name in cases["test_none"])


def test_junit_without_checks_has_no_hemorrhage_properties(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_plain(record_property):
            record_property("other", "1")
        """
    )
    pytester.runpytest("--junitxml=junit.xml").assert_outcomes(passed=1)
    assert _properties(pytester.path / "junit.xml") == {"test_plain": {"other": "1"}}
