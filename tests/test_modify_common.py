"""Behaviour shared by every modification: copies, records, composition, name matching."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.modify import (
    Composed,
    DecodedModel,
    DecodingConfig,
    ExpansionConfig,
    LowRankConfig,
    Modification,
    PruningConfig,
    QuantizationConfig,
    find_decoder_blocks,
    modification_from_dict,
    prune,
    quantize,
)
from pytest_hemorrhage.modify._common import name_matches
from tiny_models import random_token_ids, tiny_gpt2, tiny_llama, tiny_qwen2


pytestmark = pytest.mark.usefixtures("one_thread")


BUILDERS = {"llama": tiny_llama, "gpt2": tiny_gpt2, "qwen2": tiny_qwen2}

CONFIGS: list[Modification] = [
    QuantizationConfig(bits=3),
    QuantizationConfig(
        bits=4, symmetric=False, granularity="per_group", group_size=32, activation="dynamic_per_token"
    ),
    QuantizationConfig(bits=8, activation="static_per_tensor"),
    PruningConfig(0.5),
    PruningConfig(method="nm", n=2, m=4),
    PruningConfig(0.5, method="heads"),
    PruningConfig(0.5, method="channels"),
    PruningConfig(0.5, method="blocks"),
    LowRankConfig(0.5, targets=(".0.mlp.",)),
    ExpansionConfig(mode="identity", count=1),
    ExpansionConfig(mode="duplicate", positions=(0,)),
    Composed(
        (PruningConfig(0.3, method="channels"), QuantizationConfig(bits=4), DecodingConfig(do_sample=True, top_k=5))
    ),
]


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}


@pytest.fixture(scope="module", params=list(BUILDERS))
def model(request: pytest.FixtureRequest) -> nn.Module:
    return BUILDERS[request.param]()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe()[:40])
def test_original_untouched_and_result_recorded(model: nn.Module, config: Modification) -> None:
    before = _snapshot(model)
    structure = [(n, type(m)) for n, m in model.named_modules()]
    layers = model.config.num_hidden_layers
    x = random_token_ids(2, 8)
    with torch.no_grad():
        logits = model(x).logits

    out = config.apply(model, calibration=x)

    after = model.state_dict(keep_vars=True)
    assert set(after) == set(before)
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name
    assert [(n, type(m)) for n, m in model.named_modules()] == structure
    assert model.config.num_hidden_layers == layers
    assert not hasattr(model, "hemorrhage_modification")
    with torch.no_grad():
        assert torch.equal(model(x).logits, logits)  # no hooks left behind on the original
    assert out.hemorrhage_modification is config
    inner = out.model if isinstance(out, DecodedModel) else out
    assert inner is not model
    with torch.no_grad():
        assert torch.isfinite(out(x).logits).all()


def test_inplace_modifies_and_returns_the_same_model() -> None:
    model = tiny_llama()
    original = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    out = prune(model, 0.5, inplace=True)
    assert out is model
    assert (model.model.layers[0].mlp.up_proj.weight == 0).sum() == original.numel() // 2
    with pytest.raises(InvalidArgument, match="inplace"):
        quantize(model, inplace="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="model"):
        QuantizationConfig().apply("not a model")  # type: ignore[arg-type]


def test_returned_model_survives_deepcopy() -> None:
    model = tiny_llama()
    x = random_token_ids(2, 8)
    config = Composed(
        (QuantizationConfig(bits=4, activation="dynamic_per_token", activation_bits=4), PruningConfig(0.3))
    )
    out = config.apply(model)
    clone = copy.deepcopy(out)
    with torch.no_grad():
        assert torch.equal(clone(x).logits, out(x).logits)
    assert clone.hemorrhage_modification == out.hemorrhage_modification


def test_composed_applies_in_order() -> None:
    model = tiny_llama()
    steps = (PruningConfig(0.5), QuantizationConfig(bits=8))
    out = Composed(steps).apply(model)
    by_hand = steps[1].apply(steps[0].apply(model))
    for name, p in by_hand.named_parameters():
        assert torch.equal(out.get_parameter(name), p), name
    composed = Composed(steps)
    assert composed.describe() == f"{steps[0].describe()} + {steps[1].describe()}"
    assert composed.strength == pytest.approx(steps[0].strength + steps[1].strength)


def test_composed_with_decoding_returns_decoded_model() -> None:
    model = tiny_llama()
    cfg = Composed((QuantizationConfig(bits=4), DecodingConfig(do_sample=True, temperature=0.5)))
    out = cfg.apply(model)
    assert isinstance(out, DecodedModel)
    assert out.hemorrhage_modification is cfg
    assert out.config == DecodingConfig(do_sample=True, temperature=0.5)
    assert out.model.hemorrhage_modification == QuantizationConfig(bits=4)


@pytest.mark.parametrize(
    "steps",
    [(), (DecodingConfig(), QuantizationConfig()), (DecodingConfig(), DecodingConfig()), ("quantize",)],
)
def test_composed_bad_steps(steps: tuple) -> None:
    with pytest.raises(InvalidArgument, match="steps"):
        Composed(steps)


EXTRA = [PruningConfig(0.4, per_layer={"layers.0": 0.9}), PruningConfig(method="blocks", blocks=(1, 2))]


@pytest.mark.parametrize("config", CONFIGS + EXTRA, ids=str)
def test_to_dict_round_trips_through_json(config: Modification) -> None:
    data = json.loads(json.dumps(config.to_dict()))
    assert data["kind"] == config.kind
    rebuilt = modification_from_dict(data)
    assert rebuilt == config
    assert rebuilt.describe() == config.describe()
    assert hash(rebuilt) == hash(config)


def test_from_dict_rejects_unknown_kind() -> None:
    with pytest.raises(InvalidArgument, match="kind"):
        modification_from_dict({"kind": "distill"})
    with pytest.raises(InvalidArgument, match="prune"):
        modification_from_dict({"kind": "prune", "fraction": 0.5})


def test_find_decoder_blocks() -> None:
    assert find_decoder_blocks(tiny_llama())[0] == "model.layers"
    assert find_decoder_blocks(tiny_gpt2())[0] == "transformer.h"
    assert find_decoder_blocks(tiny_qwen2())[0] == "model.layers"

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
            self.mixed = nn.ModuleList([nn.Linear(50, 50), nn.ReLU()])
            self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(8, 8)) for _ in range(3)])

    assert find_decoder_blocks(Net())[0] == "blocks"
    with pytest.raises(InvalidArgument, match="ModuleList"):
        find_decoder_blocks(nn.Linear(2, 2))


@pytest.mark.parametrize(
    "name,pattern,expected",
    [
        ("model.layers.0.self_attn.q_proj", "q_proj", True),
        ("model.layers.0.self_attn.q_proj", "layers.0.", True),
        ("model.layers.0.self_attn.q_proj", "*.q_proj", True),
        ("model.layers.0.self_attn.q_proj", "layers.[01].*proj", True),
        ("model.layers.10.self_attn.q_proj", "layers.1.*", False),
        ("model.layers.0.self_attn.q_proj", "k_proj", False),
        ("lm_head", "lm_*", True),
    ],
)
def test_name_matching(name: str, pattern: str, expected: bool) -> None:
    assert name_matches(name, pattern) is expected
