"""dynamic_scaling / smooth_quant: exact migration, true activation maxima, variants, errors, claim 2."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_models import random_token_ids, tiny_gpt2, tiny_llama

from pytest_hemorrhage.engine import compare
from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.mitigate import Mitigation
from pytest_hemorrhage.mitigate.decoding_calibration import sampling_kl_on_probes
from pytest_hemorrhage.mitigate.dynamic_scaling import (
    SmoothedActivationQuant,
    activation_maxima,
    applies,
    dynamic_scaling,
    smooth_quant,
)
from pytest_hemorrhage.modify import prune, quantize
from pytest_hemorrhage.modify._common import weight_out_in
from pytest_hemorrhage.modify.quantize import ACTIVATION_QUANT_ATTR, ActivationFakeQuant, fake_quantize_weight
from pytest_hemorrhage.probes import Probes

pytestmark = pytest.mark.usefixtures("one_thread")


def _mixed_probes(n: int = 6, seed: int = 0) -> Probes:
    """Probes of different lengths, so batches carry padding."""
    ids = random_token_ids(n, 20, seed=seed).tolist()
    return Probes.from_token_ids([row[: 8 + 2 * i] for i, row in enumerate(ids)])


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same_state(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def _linear_inputs_alone(model: torch.nn.Module, probes: Probes, names: list[str]) -> dict[str, torch.Tensor]:
    """Independent maxima: each probe run alone (no padding exists), inputs recorded raw."""
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}

    def make(name: str):
        def hook(_m, args):
            value = args[0].detach().reshape(-1, args[0].shape[-1]).abs().amax(0)
            seen[name] = value if name not in seen else torch.maximum(seen[name], value)

        return hook

    handles = [modules[n].register_forward_pre_hook(make(n)) for n in names]
    try:
        with torch.no_grad():
            for ids in probes.token_ids:
                model(torch.tensor([ids]))
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2])
def test_smoothing_without_quantization_is_exact(make):
    model = make().double()
    before = _state(model)
    probes = _mixed_probes()
    smoothed = smooth_quant(model, None, probes, alpha=0.5)
    ids = random_token_ids(4, 16, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(smoothed(ids).logits, model(ids).logits, rtol=0, atol=1e-10)
    quantizers = [m for m in smoothed.modules() if isinstance(m, SmoothedActivationQuant)]
    assert quantizers and all(q.mode == "none" for q in quantizers)
    # The migration really happened: the weights moved and the factors are not all 1.
    assert any(not torch.allclose(q.smoothing, torch.ones_like(q.smoothing)) for q in quantizers)
    changed = [n for n, p in smoothed.named_parameters() if not torch.equal(p, dict(model.named_parameters())[n])]
    assert changed
    _assert_same_state(model, before)


def test_activation_maxima_are_the_true_ones_padding_excluded(llama):
    probes = _mixed_probes()
    names = ["model.layers.0.self_attn.q_proj", "model.layers.2.mlp.down_proj", "model.layers.3.mlp.up_proj"]
    got = activation_maxima(llama, probes, names, batch_size=4)
    want = _linear_inputs_alone(llama, probes, names)
    assert got.keys() == want.keys()
    for name in names:
        torch.testing.assert_close(got[name], want[name].float(), rtol=1e-5, atol=1e-6)
    # Counting the padded positions would change the answer, so the test above can fail.
    padded = _linear_inputs_alone(llama, Probes.from_token_ids(
        [ids + [0] * (20 - len(ids)) for ids in probes.token_ids]), names)
    assert any(not torch.allclose(padded[n].float(), want[n].float()) for n in names)


def test_smoothed_layer_computes_quantized_migration(llama):
    probes = _mixed_probes()
    config = quantize(llama, bits=8, granularity="per_tensor", activation="static_per_tensor").hemorrhage_modification
    alpha = 0.4
    smoothed = smooth_quant(llama, config, probes, alpha=alpha)
    name = "model.layers.1.mlp.gate_proj"
    act = _linear_inputs_alone(llama, probes, [name])[name].double()
    w = weight_out_in(dict(llama.named_modules())[name]).detach().double()
    s = act.clamp(min=1e-5) ** alpha / w.abs().amax(0).clamp(min=1e-5) ** (1 - alpha)
    layer = dict(smoothed.named_modules())[name]
    quantizer = getattr(layer, ACTIVATION_QUANT_ATTR)
    assert isinstance(quantizer, SmoothedActivationQuant) and quantizer.mode == "static_per_tensor"
    torch.testing.assert_close(quantizer.smoothing.double(), s, rtol=1e-5, atol=0)
    expected_w = fake_quantize_weight((w * s).float(), 8, True, "per_tensor")
    torch.testing.assert_close(layer.weight, expected_w, rtol=1e-5, atol=1e-6)
    scale = float((act / s).max()) / 127
    assert float(quantizer.scale) == pytest.approx(scale, rel=1e-5)
    # Forward of the layer: Q_a(x / s) @ Q_w(W * s)^T.
    x = torch.randn(3, 5, w.shape[1])
    xs = x / s.float()
    qx = torch.clamp(torch.round(xs / scale), -127, 127) * scale
    with torch.no_grad():
        torch.testing.assert_close(layer(x), qx @ layer.weight.t(), rtol=1e-4, atol=1e-5)
    assert smoothed.hemorrhage_modification == config


def test_dynamic_scaling_variants_and_untouched_inputs(llama):
    probes = _mixed_probes(8)
    calibration = random_token_ids(8, 20, seed=5)
    candidate = quantize(llama, bits=8, granularity="per_tensor", activation="static_per_tensor",
                         activation_bits=4, calibration=calibration)
    base_state, cand_state = _state(llama), _state(candidate)
    modes = [q.mode for q in candidate.modules() if isinstance(q, ActivationFakeQuant)]
    result = dynamic_scaling(llama, candidate, probes, alphas=(0.25, 0.5))
    assert isinstance(result, Mitigation) and result.name == "dynamic_scaling"
    kl = result.details["kl"]
    assert set(kl) == {"candidate", "dynamic_per_token", "smoothquant(alpha=0.25)", "smoothquant(alpha=0.5)",
                       "dynamic_per_token+smoothquant(alpha=0.25)", "dynamic_per_token+smoothquant(alpha=0.5)"}
    # Independent check of two entries: the candidate itself, and the same RTN weights with
    # per-token dynamic activation quantizers (what quantize builds for that mode).
    assert kl["candidate"] == pytest.approx(sampling_kl_on_probes(llama, candidate, probes), rel=1e-6)
    dynamic = quantize(llama, bits=8, granularity="per_tensor", activation="dynamic_per_token", activation_bits=4)
    assert kl["dynamic_per_token"] == pytest.approx(sampling_kl_on_probes(llama, dynamic, probes), rel=1e-6)
    assert min(kl.values()) < kl["candidate"]
    chosen = result.details["chosen"]
    assert kl[chosen] == min(v for k, v in kl.items() if k != "candidate")
    # The returned model holds what the details say.
    quantizers = [q for q in result.model.modules() if isinstance(q, ActivationFakeQuant)]
    assert len(quantizers) == result.details["n_linears"] == 28
    assert all(q.bits == 4 for q in quantizers)
    want_mode = "dynamic_per_token" if result.details["dynamic_per_token"] else "static_per_tensor"
    assert all(q.mode == want_mode for q in quantizers)
    assert all(isinstance(q, SmoothedActivationQuant) == (result.details["alpha"] is not None) for q in quantizers)
    assert sampling_kl_on_probes(llama, result.model, probes) == pytest.approx(kl[chosen], rel=1e-6)
    assert "on 28 linears" in result.description and result.details["n_probes"] == 8
    _assert_same_state(llama, base_state)
    _assert_same_state(candidate, cand_state)
    assert [q.mode for q in candidate.modules() if isinstance(q, ActivationFakeQuant)] == modes


def test_dynamic_scaling_weights_only_per_tensor(gpt2):
    probes = _mixed_probes()
    candidate = quantize(gpt2, bits=4, granularity="per_tensor")
    assert applies(candidate)
    result = dynamic_scaling(gpt2, candidate, probes, alphas=(0.0, 0.5))
    assert set(result.details["kl"]) == {"candidate", "smoothquant(alpha=0)", "smoothquant(alpha=0.5)"}
    assert result.details["dynamic_per_token"] is False
    quantizers = [q for q in result.model.modules() if isinstance(q, ActivationFakeQuant)]
    assert quantizers and all(isinstance(q, SmoothedActivationQuant) and q.mode == "none" for q in quantizers)
    assert result.description.startswith(f"SmoothQuant alpha={result.details['alpha']:g} on ")


def test_dynamic_scaling_rejects_what_it_cannot_rescale(llama):
    probes = _mixed_probes()
    per_channel = quantize(llama, bits=4)
    for candidate in (copy.deepcopy(llama), per_channel, prune(llama, sparsity=0.3)):
        assert not applies(candidate)
        with pytest.raises(InvalidArgument, match="dynamic scaling has nothing to rescale"):
            dynamic_scaling(llama, candidate, probes)
    static = quantize(llama, bits=8, granularity="per_tensor", activation="static_per_tensor")
    with pytest.raises(InvalidArgument, match="alpha"):
        dynamic_scaling(llama, static, probes, alphas=(1.5,))
    with pytest.raises(InvalidArgument, match="alphas"):
        dynamic_scaling(llama, static, probes, alphas=())
    with pytest.raises(InvalidArgument, match="token probes"):
        smooth_quant(llama, None, Probes.from_tensors(torch.randn(2, 4)))
    with pytest.raises(InvalidArgument, match="QuantizationConfig"):
        smooth_quant(llama, "int8", probes)
    with pytest.raises(InvalidArgument, match="thresholds"):
        dynamic_scaling(llama, static, probes, alphas=(0.5,), thresholds=0.02)


# ------------------------------------------------------------------ claim 2 on the default model


def test_claim2_static_w8a8_is_repaired_on_default_model(hemorrhage_default_model):
    model, tokenizer = hemorrhage_default_model
    evaluation = Probes.builtin(tokenizer, n=16, max_length=64)
    (calibration,) = Probes.builtin_split(tokenizer, (8,), max_length=64, seed=1, exclude=evaluation)
    # The calibration probes as one right-padded tensor, rows in probe order.
    (padded,) = calibration.batches(len(calibration), pad_id=tokenizer.eos_token_id, order=range(len(calibration)))
    candidate = quantize(model, bits=8, granularity="per_tensor", activation="static_per_tensor",
                         calibration=padded.input_ids)
    result = dynamic_scaling(model, candidate, calibration, alphas=(0.5,))
    before = compare(model, candidate, evaluation, layers=None)
    after = compare(model, result.model, evaluation, layers=None)
    assert not before.passed
    assert after.passed or after.metrics["kl"].estimate <= before.metrics["kl"].estimate / 2, (
        before.headline(), after.headline(), result.description)
    assert result.details["n_linears"] == 210
