"""RTN weight and activation fake quantization."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.modify import QuantizationConfig, quantize
from pytest_hemorrhage.modify._common import linear_modules, weight_out_in
from pytest_hemorrhage.modify.quantize import ACTIVATION_QUANT_ATTR, ActivationFakeQuant, fake_quantize_weight
from tiny_models import random_token_ids, tiny_gpt2, tiny_llama


pytestmark = pytest.mark.usefixtures("one_thread")


def _reference_quant(values: list[float], bits: int, symmetric: bool) -> list[float]:
    """Scalar re-implementation of the documented RTN convention for one group."""
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = max(abs(v) for v in values) / qmax or 1.0
        return [min(max(round(v / scale), -qmax), qmax) * scale for v in values]
    levels = 2**bits - 1
    lo, hi = min(min(values), 0.0), max(max(values), 0.0)
    scale = (hi - lo) / levels or 1.0
    zp = min(max(round(-lo / scale), 0), levels)
    return [(min(max(round(v / scale) + zp, 0), levels) - zp) * scale for v in values]


def _groups(w: torch.Tensor, granularity: str, group_size: int) -> list[torch.Tensor]:
    if granularity == "per_tensor":
        return [w.flatten()]
    if granularity == "per_channel":
        return list(w)
    return [chunk for row in w for chunk in row.split(group_size)]


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize(
    "granularity,group_size", [("per_tensor", 0), ("per_channel", 0), ("per_group", 8), ("per_group", 6)]
)
def test_matches_scalar_reference(symmetric: bool, granularity: str, group_size: int) -> None:
    torch.manual_seed(1)
    w = torch.randn(5, 20, dtype=torch.float64)  # 20 % 6 != 0: a short last group
    bits = 3
    got = fake_quantize_weight(w, bits, symmetric, granularity, group_size or 128)
    want = [
        torch.tensor(_reference_quant(g.tolist(), bits, symmetric), dtype=torch.float64)
        for g in _groups(w, granularity, group_size)
    ]
    for g_got, g_want in zip(_groups(got, granularity, group_size), want):
        torch.testing.assert_close(g_got, g_want, rtol=0, atol=1e-12)


def _distinct_per_row(groups: torch.Tensor) -> torch.Tensor:
    ordered = groups.sort(dim=-1).values
    return 1 + (ordered[..., 1:] != ordered[..., :-1]).sum(-1)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("granularity", ["per_tensor", "per_channel", "per_group"])
def test_at_most_2_pow_bits_values_per_group(llama: nn.Module, symmetric: bool, granularity: str) -> None:
    group_size = 32
    for bits in range(2, 9):
        cfg = QuantizationConfig(bits=bits, symmetric=symmetric, granularity=granularity, group_size=group_size)
        out = cfg.apply(llama)
        limit = 2**bits - 1 if symmetric else 2**bits
        for name, module in linear_modules(out):
            if "lm_head" in name:
                continue
            w = weight_out_in(module).detach()
            if granularity == "per_tensor":
                groups = w.reshape(1, -1)
            elif granularity == "per_channel":
                groups = w
            else:
                groups = w.reshape(w.shape[0], -1, group_size)
            distinct = _distinct_per_row(groups)
            assert distinct.max().item() <= limit, (bits, name)
            # A few levels really coarsen the matrix: far fewer values than the original.
            if bits <= 3:
                original = weight_out_in(llama.get_submodule(name)).detach().reshape(groups.shape)
                assert (distinct < _distinct_per_row(original)).all()


def test_conv1d_groups_run_along_input_dimension(gpt2: nn.Module) -> None:
    out = quantize(gpt2, bits=2, granularity="per_group", group_size=16, symmetric=True)
    conv = out.transformer.h[0].mlp.c_fc  # weight stored [in=64, out=256]
    assert conv.weight.shape == (64, 256)
    for col in conv.weight.detach().t():  # one output unit, along its inputs
        for group in col.split(16):
            assert torch.unique(group).numel() <= 3
    x = random_token_ids(2, 8)
    with torch.no_grad():
        assert torch.isfinite(out(x).logits).all()


def test_error_shrinks_as_bits_grow(llama: nn.Module) -> None:
    w = weight_out_in(llama.model.layers[0].mlp.down_proj).detach()
    for symmetric in (True, False):
        errors = [
            (fake_quantize_weight(w, b, symmetric, "per_group", 32) - w).pow(2).mean().item() for b in range(2, 9)
        ]
        assert all(a > b for a, b in zip(errors, errors[1:])), errors
    # Finer granularity is not worse than coarser at equal bits.
    err = {
        g: (fake_quantize_weight(w, 4, True, g, 32) - w).pow(2).mean().item()
        for g in ("per_tensor", "per_channel", "per_group")
    }
    assert err["per_group"] <= err["per_channel"] <= err["per_tensor"]


def test_same_dtype_and_shapes() -> None:
    w = torch.randn(8, 16, dtype=torch.bfloat16)
    q = fake_quantize_weight(w, 4, True, "per_group", 8)
    assert q.dtype == torch.bfloat16 and q.shape == w.shape


def test_skip_list_honoured(llama: nn.Module, gpt2: nn.Module) -> None:
    out = quantize(llama, bits=2)
    assert torch.equal(out.lm_head.weight, llama.lm_head.weight)
    assert torch.equal(out.model.embed_tokens.weight, llama.model.embed_tokens.weight)
    assert not torch.equal(out.model.layers[0].self_attn.q_proj.weight, llama.model.layers[0].self_attn.q_proj.weight)

    out = quantize(llama, bits=2, skip=("mlp", "lm_head"))
    for i, layer in enumerate(out.model.layers):
        assert torch.equal(layer.mlp.up_proj.weight, llama.model.layers[i].mlp.up_proj.weight)
        assert not torch.equal(layer.self_attn.o_proj.weight, llama.model.layers[i].self_attn.o_proj.weight)

    # GPT-2 ties lm_head to wte: the default skip keeps both intact.
    out = quantize(gpt2, bits=2)
    assert torch.equal(out.transformer.wte.weight, gpt2.transformer.wte.weight)
    assert torch.equal(out.transformer.wpe.weight, gpt2.transformer.wpe.weight)


def test_targets_select_only_matching_modules(llama: nn.Module) -> None:
    out = quantize(llama, bits=2, targets=("layers.1.*proj",))
    for name, module in linear_modules(out):
        changed = not torch.equal(module.weight, llama.get_submodule(name).weight)
        assert changed == name.startswith("model.layers.1."), name


def test_activation_dynamic_per_token_error_bound() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 5, 64) * torch.linspace(0.1, 10, 5).view(1, 5, 1)
    quant = ActivationFakeQuant("dynamic_per_token", 8)
    y = quant(x)
    step = x.abs().amax(-1, keepdim=True) / 127
    assert ((y - x).abs() <= step / 2 + 1e-6).all()
    assert not torch.equal(x, y)
    # Each token row is on its own grid of at most 255 values.
    assert all(torch.unique(row).numel() <= 255 for row in y.reshape(-1, 64))


def test_activation_quant_changes_outputs_a_little(llama: nn.Module) -> None:
    x = random_token_ids(4, 16)
    weights_only = quantize(llama, bits=8)
    with_acts = quantize(llama, bits=8, activation="dynamic_per_token", activation_bits=8)
    with torch.no_grad():
        a, b = weights_only(x).logits, with_acts(x).logits
    diff = (a - b).abs().max().item()
    assert 0 < diff < 0.1 * a.abs().max().item()
    # Coarser activations hurt more.
    harsher = quantize(llama, bits=8, activation="dynamic_per_token", activation_bits=4)
    with torch.no_grad():
        assert (a - harsher(x).logits).abs().mean() > (a - b).abs().mean()


def test_static_activation_scale_from_calibration(llama: nn.Module) -> None:
    calib = random_token_ids(4, 16, seed=3)
    out = quantize(llama, bits=8, activation="static_per_tensor", calibration=calib)
    # Independent: record max|input| on the weight-only quantized model.
    reference = quantize(llama, bits=8)
    seen: dict[str, float] = {}
    for name, module in linear_modules(reference):
        if "lm_head" in name:
            continue
        module.register_forward_pre_hook(
            lambda m, args, name=name: seen.__setitem__(name, max(seen.get(name, 0.0), args[0].abs().max().item()))
        )
    with torch.no_grad():
        reference(calib)
    for name, absmax in seen.items():
        quant = out.get_submodule(name).get_submodule(ACTIVATION_QUANT_ATTR)
        assert quant.scale.item() == pytest.approx(absmax / 127, rel=1e-5)
    assert not hasattr(out.lm_head, ACTIVATION_QUANT_ATTR)


def test_static_activation_default_range(llama: nn.Module) -> None:
    out = quantize(llama, bits=8, activation="static_per_tensor", activation_bits=6, activation_range=4.0)
    quant = out.model.layers[0].self_attn.q_proj.get_submodule(ACTIVATION_QUANT_ATTR)
    assert quant.scale.item() == pytest.approx(4.0 / 31)
    x = torch.linspace(-10, 10, 101)
    assert quant(x).abs().max().item() == pytest.approx(4.0)  # clipped to the assumed range


def test_activation_quant_survives_deepcopy_and_state_dict(llama: nn.Module) -> None:
    x = random_token_ids(2, 8)
    out = quantize(llama, bits=4, activation="dynamic_per_token", activation_bits=4)
    clone = copy.deepcopy(out)
    with torch.no_grad():
        torch.testing.assert_close(out(x).logits, clone(x).logits, rtol=0, atol=0)
        plain = quantize(llama, bits=4)(x).logits
        assert not torch.allclose(out(x).logits, plain)
    # The quantizer state is not persisted: state dict keys are unchanged.
    assert set(out.state_dict()) == set(llama.state_dict())


def test_hemorrhage_modification_and_describe(llama: nn.Module) -> None:
    cfg = QuantizationConfig(bits=4, granularity="per_group", group_size=128, skip=("embed_tokens", "lm_head"))
    out = cfg.apply(llama)
    assert out.hemorrhage_modification is cfg
    assert cfg.describe() == "RTN int4 symmetric per-group(128) weights, skip embed_tokens,lm_head"
    assert cfg.to_dict()["bits"] == 4 and cfg.to_dict()["kind"] == "quantize"


def test_strength_orders_by_harshness() -> None:
    s = [QuantizationConfig(bits=b).strength for b in range(8, 1, -1)]
    assert s == sorted(s) and len(set(s)) == len(s)
    assert QuantizationConfig(bits=4, granularity="per_tensor").strength > QuantizationConfig(bits=4).strength
    assert QuantizationConfig(bits=4, activation="static_per_tensor").strength > QuantizationConfig(bits=4).strength


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"bits": 0}, "bits"),
        ({"bits": 9}, "bits"),
        ({"bits": 4.0}, "bits"),
        ({"granularity": "per_row"}, "granularity"),
        ({"group_size": 0}, "group_size"),
        ({"activation": "dynamic"}, "activation"),
        ({"activation_bits": 1}, "activation_bits"),
        ({"skip": ("",)}, "skip"),
        ({"targets": ()}, "targets"),
    ],
)
def test_bad_arguments(kwargs: dict, argument: str) -> None:
    with pytest.raises(InvalidArgument, match=argument) as info:
        QuantizationConfig(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


def test_unknown_module_names_raise(llama: nn.Module) -> None:
    with pytest.raises(InvalidArgument, match=r"targets.*'no_such_layer'"):
        quantize(llama, targets=("no_such_layer",))
    with pytest.raises(InvalidArgument, match=r"skip.*'wte'"):
        quantize(llama, skip=("lm_head", "wte"))  # a user-given skip must exist in this model
    with pytest.raises(InvalidArgument, match="calibration"):
        quantize(llama, activation="static_per_tensor", calibration=torch.zeros(2, 3, 4, dtype=torch.long))
    assert math.isfinite(QuantizationConfig().strength)
