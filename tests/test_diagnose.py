"""diagnose(): planted vulnerability patterns are named; healthy reports give none."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pytest_hemorrhage.engine import compare
from pytest_hemorrhage.diagnose import (
    ATTENTION_NOISE_JS,
    CASCADE_MIN_DROP_DB,
    Pattern,
    activation_outlier_clipping,
    diagnose,
)
from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.modify import expand, quantize
from pytest_hemorrhage.probes import Probes
from pytest_hemorrhage.report import LayerResult, MetricResult, Report
from tiny_models import random_token_ids, same_state, snapshot_state, tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")

PLANTED_CHANNELS = [5, 17, 40]


@pytest.fixture(scope="module")
def probes() -> Probes:
    return Probes.from_token_ids(random_token_ids(8, 32).tolist())


def _names(patterns: list[Pattern]) -> list[str]:
    return [p.name for p in patterns]


# ----------------------------------------------------------------------------- hand-built reports


def _metric(name: str, value: float, threshold: float | None, direction: str, verdict: str) -> MetricResult:
    return MetricResult(name, value, value, value, threshold=threshold, direction=direction, verdict=verdict)


def _report(sqnr: list[float], *, kl: float = 0.01, top1: float = 0.97, passed: bool = True,
            attention: list[list[float]] | None = None, generation: dict | None = None) -> Report:
    verdict = "pass" if passed else "fail"
    layers = [
        LayerResult(f"model.layers.{i}", i, s, 10 ** (-s / 20) if math.isfinite(s) else 0.0, 1.0, 100,
                    attention_js=attention[i] if attention else None)
        for i, s in enumerate(sqnr)
    ]
    report = Report(
        metrics={"kl": _metric("kl", kl, 0.02, "max", verdict), "top1": _metric("top1", top1, 0.93, "min", "pass")},
        layers=layers,
        thresholds={"max_kl": 0.02, "min_top1_agreement": 0.93, "min_layer_sqnr_db": 15.0},
    )
    report.generation = generation  # set after construction: works whether or not Report declares the field
    return report


def test_cascade_numbers_match_an_independent_fit():
    sqnr = [math.inf, math.inf, 30.0, 27.0, 25.0, 20.0, 14.0]
    patterns = diagnose(_report(sqnr, passed=False))
    assert _names(patterns) == ["information_loss_cascade"]
    n = patterns[0].numbers
    assert n["first_modified_layer"] == "model.layers.2" and n["first_modified_index"] == 2
    assert n["worst_layer"] == "model.layers.6"
    assert n["sqnr_drop_db"] == pytest.approx(16.0)
    assert n["slope_db_per_layer"] == pytest.approx(np.polyfit(range(5), sqnr[2:], 1)[0], abs=1e-4)
    assert n["later_worse_fraction"] == 1.0
    assert patterns[0].score == pytest.approx(16.0 / CASCADE_MIN_DROP_DB)
    line = patterns[0].describe()
    assert line.startswith("information-loss cascade: error grows 16.0 dB from model.layers.2 to model.layers.6")
    assert "SQNR 30.0 -> 14.0 dB" in line


@pytest.mark.parametrize("sqnr, passed", [
    ([40.0, 38.0, 37.0, 36.0], True),  # int8-like: falls, but passes and stays far above 15 dB
    ([30.0, 31.0, 32.0, 33.0], False),  # error carried, not amplified: SQNR rises
    ([30.0, 22.0, 31.0, 32.0], False),  # one dip is not a trend through depth
    ([math.inf, math.inf, math.inf], False),  # nothing departs from the untouched level
])
def test_no_cascade_without_amplified_harmful_error(sqnr, passed):
    assert "information_loss_cascade" not in _names(diagnose(_report(sqnr, passed=passed)))


def test_attention_disruption_names_the_standout_layers_and_heads():
    quiet = [1e-4, 2e-4, 1e-4, 1e-4]
    attention = [quiet, quiet, quiet, [0.2, 0.004, 0.3, 0.006], [0.02, 0.03, 0.001, 0.002]]
    patterns = diagnose(_report([math.inf] * 5, attention=attention))
    assert _names(patterns) == ["attention_disruption"]
    n = patterns[0].numbers
    assert n["layers"] == ["model.layers.3", "model.layers.4"]
    assert n["max_js"] == pytest.approx(0.3) and n["max_js_layer"] == "model.layers.3"
    assert n["heads"] == {"model.layers.3": [0, 2], "model.layers.4": [0, 1]}
    assert patterns[0].score == pytest.approx(0.3 / ATTENTION_NOISE_JS)  # detected by contrast, not the floor
    assert "attention JS up to 0.3 nats at model.layers.3, model.layers.4" in patterns[0].describe()


def test_uniform_small_attention_change_is_not_disruption():
    attention = [[0.005 * (i + 1)] * 4 for i in range(5)]  # grows gently, stays under the floor
    assert diagnose(_report([40.0] * 5, attention=attention)) == []


def _expected_first_flip(a: float, n: int) -> float:
    # E[min(T, n)] = sum_{t=1..n} P(T >= t), summed term by term
    return sum(a**t for t in range(1, n + 1))


def test_generation_amplification_from_a_hand_built_report():
    gen = {"new_tokens": 32, "first_divergence_mean": 3.0, "first_divergence_min": 0,
           "token_agreement": 0.4, "diverged_fraction": 0.9}
    patterns = diagnose(_report([45.0, 44.0, 44.5], kl=0.01, top1=0.97, generation=gen))
    assert _names(patterns) == ["prediction_divergence_amplification"]
    n = patterns[0].numbers
    expected = _expected_first_flip(0.97, 32)
    assert n["expected_first_divergence"] == pytest.approx(expected, abs=1e-3)
    assert n["amplification"] == pytest.approx(expected / 3.0, abs=1e-3)
    assert n["diverged_fraction"] == 0.9 and n["first_divergence_min"] == 0
    assert "90% of greedy continuations diverge within 32 tokens, after 3.0 tokens on average" in \
        patterns[0].describe()


@pytest.mark.parametrize("kl, top1, mean, diverged", [
    (0.2, 0.97, 3.0, 0.9),  # KL far past the threshold: per-token damage explains the divergence
    (0.01, 0.97, 28.0, 0.2),  # continuations mostly agree
    (0.01, 0.6, 3.0, 0.9),  # per-token flips alone predict such early divergence: no amplification
])
def test_no_generation_pattern_when_divergence_is_explained_or_absent(kl, top1, mean, diverged):
    gen = {"new_tokens": 32, "first_divergence_mean": mean, "first_divergence_min": 1,
           "token_agreement": 0.5, "diverged_fraction": diverged}
    assert "prediction_divergence_amplification" not in _names(
        diagnose(_report([45.0] * 3, kl=kl, top1=top1, generation=gen)))


def test_patterns_are_ordered_strongest_first_and_serialise():
    gen = {"new_tokens": 32, "first_divergence_mean": 1.0, "first_divergence_min": 0,
           "token_agreement": 0.3, "diverged_fraction": 1.0}
    report = _report([30.0, 28.0, 26.0, 25.0], kl=0.03, passed=False, generation=gen)
    patterns = diagnose(report)
    assert _names(patterns) == ["prediction_divergence_amplification", "information_loss_cascade"]
    assert patterns[0].score > patterns[1].score
    data = json.loads(json.dumps([p.to_dict() for p in patterns], allow_nan=False))
    assert data[1]["description"] == patterns[1].describe()
    assert data[1]["numbers"]["sqnr_drop_db"] == pytest.approx(5.0)


# ----------------------------------------------------------------------------- planted in real models


def test_early_layer_quantization_cascades_from_layer_0(probes):
    model = tiny_llama(layers=8)
    candidate = quantize(model, bits=3, granularity="per_tensor", targets=("model.layers.0.",))
    report = compare(model, candidate, probes)
    patterns = diagnose(report)
    assert patterns and patterns[0].name == "information_loss_cascade"
    n = patterns[0].numbers
    assert n["first_modified_layer"] == "model.layers.0"
    sqnr = [layer.sqnr_db for layer in report.layers]
    assert n["sqnr_drop_db"] == pytest.approx(sqnr[0] - min(sqnr[1:]), abs=1e-3)
    assert n["sqnr_drop_db"] >= CASCADE_MIN_DROP_DB


def test_healthy_int8_report_has_no_pattern(probes, llama):
    candidate = quantize(llama, bits=8)
    state = snapshot_state(candidate)
    report = compare(llama, candidate, probes, attention=True)
    assert report.passed
    assert diagnose(report, llama, candidate, probes) == []
    assert same_state(candidate, state)


@pytest.fixture(scope="module")
def sharp_llama() -> torch.nn.Module:
    """A tiny llama with sharp attention (random init attends almost uniformly, hiding any change)."""
    model = tiny_llama(layers=6)
    with torch.no_grad():
        for block in model.model.layers:
            block.self_attn.q_proj.weight.mul_(8)
            block.self_attn.k_proj.weight.mul_(8)
    return model


def test_expansion_disrupts_attention_at_the_inserted_layer(probes, sharp_llama):
    candidate = expand(sharp_llama, mode="duplicate", positions=(2,))
    report = compare(sharp_llama, candidate, probes, attention=True)
    patterns = diagnose(report)
    assert "attention_disruption" in _names(patterns)
    n = next(p for p in patterns if p.name == "attention_disruption").numbers
    assert n["first_layer"] == "model.layers.3"  # the copy inserted after block 2
    assert {"model.layers.0", "model.layers.1", "model.layers.2"}.isdisjoint(n["layers"])
    js = {layer.name: max(layer.attention_js) for layer in report.layers}
    assert n["max_js"] == pytest.approx(max(js.values()), abs=1e-6)


def test_quantization_attention_change_is_not_disruption(probes, sharp_llama):
    report = compare(sharp_llama, quantize(sharp_llama, bits=4), probes, attention=True)
    assert "attention_disruption" not in _names(diagnose(report))


@pytest.fixture(scope="module")
def outlier_llama() -> torch.nn.Module:
    """Channels 5, 17, 40 of block 1's MLP input are 50x larger (the function is unchanged)."""
    model = tiny_llama(layers=4)
    with torch.no_grad():
        block = model.model.layers[1]
        block.post_attention_layernorm.weight[PLANTED_CHANNELS] *= 50
        for linear in (block.mlp.gate_proj, block.mlp.up_proj):
            linear.weight[:, PLANTED_CHANNELS] /= 50
    return model


def test_static_activation_quantization_clips_planted_outliers(probes, outlier_llama):
    candidate = quantize(outlier_llama, bits=8, activation="static_per_tensor")
    before_b, before_c = snapshot_state(outlier_llama), snapshot_state(candidate)
    report = compare(outlier_llama, candidate, probes)
    assert "activation_outlier_clipping" not in _names(diagnose(report))  # without the models: skipped
    patterns = diagnose(report, outlier_llama, candidate, probes)
    clip = next(p for p in patterns if p.name == "activation_outlier_clipping")
    n = clip.numbers
    assert n["module"] in ("model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj")
    assert set(PLANTED_CHANNELS) <= set(n["top_channels"])
    assert set(n["affected_modules"]) == {"model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj"}
    # Independent measurement of the error share: the linear's input in both models over the same probes.
    seen: dict[str, torch.Tensor] = {}

    def grab(role: str):
        def hook(_m, args, _out):
            seen[role] = args[0].detach().reshape(-1, args[0].shape[-1])
        return hook

    ids = torch.tensor(probes.token_ids[: n["probes"]])
    handles = [outlier_llama.get_submodule(n["module"]).register_forward_hook(grab("b")),
               candidate.get_submodule(n["module"]).register_forward_hook(grab("c"))]
    with torch.no_grad():
        outlier_llama(ids)
        candidate(ids)
    for h in handles:
        h.remove()
    energy = (seen["b"] - seen["c"]).square().sum(0)
    share = float(energy[n["top_channels"]].sum() / energy.sum())
    assert n["top_error_share"] == pytest.approx(share, abs=1e-3)
    assert share > 0.9
    assert same_state(outlier_llama, before_b) and same_state(candidate, before_c)


def test_dynamic_per_token_scales_do_not_clip(probes, outlier_llama):
    candidate = quantize(outlier_llama, bits=8, activation="dynamic_per_token")
    report = compare(outlier_llama, candidate, probes)
    assert activation_outlier_clipping(report, outlier_llama, candidate, probes) is None


def test_weight_only_quantization_has_no_quantized_inputs_to_measure(probes, outlier_llama):
    candidate = quantize(outlier_llama, bits=3)
    report = compare(outlier_llama, candidate, probes)
    assert activation_outlier_clipping(report, outlier_llama, candidate, probes) is None


def test_outlier_check_needs_live_models(probes, llama):
    report = _report([40.0] * 3)
    with pytest.raises(InvalidArgument, match="nn.Modules"):
        activation_outlier_clipping(report, "snapshot.safetensors", llama, probes)
