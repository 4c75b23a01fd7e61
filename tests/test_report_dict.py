"""Report.to_dict / Report.from_dict: a lossless round trip, and clear errors for other versions."""

from __future__ import annotations

import copy
import json
import math

import pytest
from model_folders import break_block
from tiny_models import random_token_ids, tiny_llama

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.report import SCHEMA_VERSION, LayerResult, MetricResult, Report

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def measured():
    """Real reports: identical layers (SQNR +inf), a failing candidate, attention and tags measured."""
    model = tiny_llama()
    ids = random_token_ids(n=6, length=16)
    tagged = ph.Probes.from_token_ids(ids.tolist(), tags=["code", "prose"] * 3)
    return [
        ph.compare(model, copy.deepcopy(model), ids, name="same"),
        ph.compare(model, break_block(model, 1), tagged, attention=True, name="broken"),
    ]


def _nonfinite_report() -> Report:
    """Every kind of value JSON cannot hold, in every part of the report that holds numbers."""
    kl = MetricResult("kl", math.nan, -math.inf, math.inf, threshold=0.02, threshold_key="max_kl", direction="max",
                      verdict="fail", n_units=3, n_tokens=30, more_probes_needed=None,
                      extra={"confidence": 0.9, "tail": [1.0, math.inf]})
    top1 = MetricResult("top1", 0.5, 0.4, 0.6, threshold=0.93, threshold_key="min_top1_agreement", direction="min",
                        verdict="inconclusive", n_units=3, n_tokens=30, more_probes_needed=12)
    layers = [LayerResult("model.layers.0", 0, math.inf, 0.0, 1.0, 30),
              LayerResult("model.layers.1", 1, -math.inf, math.nan, 0.2, 30, attention_js=[0.1, math.nan],
                          entropy_shift=[math.inf, 0.0])]
    return Report(
        metrics={"kl": kl, "top1": top1}, layers=layers,
        thresholds={"max_kl": 0.02, "min_top1_agreement": 0.93, "min_layer_sqnr_db": -math.inf,
                    "inconclusive_fails": False},
        kl_quantiles={"p50": 0.0, "p90": math.inf, "p99": math.nan, "p99_9": math.nan, "max": math.inf},
        by_tag={"code": {"n_units": 2, "n_tokens": 20, "kl": math.inf}},
        unmatched_layers={"baseline": ["extra"]}, nonfinite={"layer": "model.layers.1", "where": "activations"},
        identity={"baseline": "LlamaForCausalLM", "n_probes": 3}, notes=["inf"], suggestion="restore it",
        name="nan", generation={"new_tokens": 4, "first_divergence_mean": math.nan},
        sequential={"decision": "continue", "probes_used": 3},
        patterns=[{"name": "p", "description": "d", "score": math.inf}],
        suggestions=[{"name": "fallback", "before": math.inf, "after": 0.01, "passed": True, "text": "nan"}],
    )


def test_round_trip_of_measured_reports(measured):
    for report in measured:
        data = report.to_dict()
        back = Report.from_dict(data)
        assert back.to_dict() == data
        assert back.to_text() == report.to_text()
        assert back.to_markdown() == report.to_markdown()
    assert {layer["sqnr_db"] for layer in measured[0].to_dict()["layers"]} == {"inf"}  # written as strings
    assert all(layer.sqnr_db == math.inf for layer in Report.from_dict(measured[0].to_dict()).layers)


def test_round_trip_through_json_with_nan_and_inf_everywhere():
    report = _nonfinite_report()
    text = report.to_json()
    assert "NaN" not in text and "Infinity" not in text  # valid JSON
    data = json.loads(text)
    back = Report.from_dict(data)
    assert back.to_dict() == report.to_dict() == data
    # Numbers come back as numbers, text as text.
    assert math.isnan(back.metrics["kl"].estimate) and back.metrics["kl"].ci_high == math.inf
    assert back.metrics["kl"].extra == {"confidence": 0.9, "tail": [1.0, math.inf]}
    assert back.layers[1].sqnr_db == -math.inf and math.isnan(back.layers[1].attention_js[1])
    assert back.thresholds["min_layer_sqnr_db"] == -math.inf and back.thresholds["inconclusive_fails"] is False
    assert math.isnan(back.kl_quantiles["p99"]) and back.by_tag["code"]["kl"] == math.inf
    assert back.suggestions[0]["before"] == math.inf and back.patterns[0]["score"] == math.inf
    assert back.name == "nan" and back.notes == ["inf"] and back.suggestions[0]["text"] == "nan"
    # The derived entries are computed again, and agree.
    assert (back.verdict, back.passed, back.first_bad_layer) == (report.verdict, report.passed, None)
    assert back.verdict == "fail" and not back.passed


def test_a_newer_schema_version_names_both_versions_and_the_fix(measured):
    data = measured[0].to_dict()
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(InvalidArgument) as info:
        Report.from_dict(data)
    message = str(info.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message and f"({SCHEMA_VERSION})" in message
    assert "pip install -U pytest-hemorrhage" in message


@pytest.mark.parametrize("change, words", [
    (lambda d: d.pop("schema_version"), "schema_version must be a positive whole number, got None"),
    (lambda d: d.update(schema_version="1"), "schema_version must be a positive whole number, got '1'"),
    (lambda d: d.update(schema_version=0), "schema_version must be a positive whole number, got 0"),
    (lambda d: d.pop("metrics"), "expected the dict of Report.to_dict()"),
    (lambda d: d["metrics"][0].pop("estimate"), "the report is damaged"),
    (lambda d: d["layers"][0].update(colour="red"), "the report is damaged"),
])
def test_damaged_or_foreign_dicts_are_named(measured, change, words):
    data = measured[1].to_dict()
    change(data)
    with pytest.raises(InvalidArgument, match="^Report.from_dict: ") as info:
        Report.from_dict(data)
    assert words in str(info.value)


def test_not_a_dict_at_all():
    with pytest.raises(InvalidArgument, match="expected the dict of Report.to_dict.*got list"):
        Report.from_dict([])  # type: ignore[arg-type]


def test_the_advice_line_comes_from_the_caller_and_only_on_failure(measured):
    same, broken = measured
    assert not broken.passed and same.passed
    assert "to accept" not in broken.to_text()  # the report itself never guesses where it runs
    assert broken.to_text(["a", "b"]).splitlines()[-1] == "to accept this on purpose: a, or b"
    assert broken.to_text(["a"]).splitlines()[:-1] == broken.to_text().splitlines()
    assert same.to_text(["a"]) == same.to_text()  # nothing to accept on a pass
    assert str(broken) == broken.to_text()


def test_nothing_inconclusive_is_left_out_of_the_message():
    # The verdict line names the first failing metric; every other metric, an inconclusive one
    # listed before it included, follows it once.
    report = _nonfinite_report()
    report.nonfinite = report.generation = report.sequential = None
    report.metrics = {"top1": report.metrics["top1"], "kl": report.metrics["kl"]}
    lines = report.to_text().splitlines()
    assert lines[0].startswith("Model hemorrhage: mean KL nan")
    assert sum("mean KL" in line for line in lines) == 1
    assert sum("same top-1" in line for line in lines) == 1

