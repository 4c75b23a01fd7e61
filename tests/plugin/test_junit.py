"""JUnit XML: each check's verdict and metrics become ``<property>`` elements of its test case.

The names are one schema, shared with ``hemorrhage compare --junit``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from model_folders import break_block, save_model_folder
from tiny_models import tiny_llama

from pytest_hemorrhage.cli import main
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


def test_plugin_and_command_line_share_one_property_schema(pytester: pytest.Pytester, inner, tmp_path) -> None:
    base = tiny_llama()
    folders = {name: save_model_folder(model, tmp_path / name)
               for name, model in (("base", base), ("broken", break_block(base, 1)))}
    cli_xml = tmp_path / "cli.xml"
    assert main(["compare", folders["base"], folders["broken"], "--probes", "8", "--max-length", "24",
                 "--no-suggest", "--no-progress", "--junit", str(cli_xml)]) == 1
    # The same comparison as a test: the same folders, built-in probes and default thresholds.
    inner(
        f"""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from pytest_hemorrhage.probes import Probes

        def test_gate(hemorrhage):
            base = AutoModelForCausalLM.from_pretrained({folders["base"]!r}).eval()
            candidate = AutoModelForCausalLM.from_pretrained({folders["broken"]!r}).eval()
            probes = Probes.builtin(AutoTokenizer.from_pretrained({folders["base"]!r}), n=8, max_length=24)
            hemorrhage.check(base, candidate, probes)
        """
    )
    pytester.runpytest("--junitxml=plugin.xml", "--hemorrhage-no-suggest").assert_outcomes(failed=1)
    from_plugin = _properties(pytester.path / "plugin.xml")["test_gate"]
    (from_cli,) = _properties(cli_xml).values()
    assert list(from_plugin) == list(from_cli)
    assert {"hemorrhage_verdict", "hemorrhage_kl", "hemorrhage_kl_ci_high", "hemorrhage_top1_ci_low",
            "hemorrhage_first_bad_layer"} <= set(from_cli)
    for name, value in from_cli.items():
        if name in ("hemorrhage_verdict", "hemorrhage_first_bad_layer"):
            assert from_plugin[name] == value, name
        else:  # the two runs may use different thread counts: equal up to summation order
            assert math.isclose(float(from_plugin[name]), float(value), rel_tol=1e-4, abs_tol=1e-9), name
    assert from_cli["hemorrhage_verdict"] == "fail" and from_cli["hemorrhage_first_bad_layer"] == "model.layers.1"
