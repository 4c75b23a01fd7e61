"""Depth expansion: identity-initialised and duplicated blocks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.modify import ExpansionConfig, expand, find_decoder_blocks, generate_greedy
from tiny_models import random_token_ids, tiny_gpt2, tiny_llama, tiny_qwen2


pytestmark = pytest.mark.usefixtures("one_thread")


BUILDERS = {"llama": tiny_llama, "gpt2": tiny_gpt2, "qwen2": tiny_qwen2}


@pytest.fixture(scope="module", params=list(BUILDERS))
def model(request: pytest.FixtureRequest) -> nn.Module:
    return BUILDERS[request.param]()


def _kl(base: torch.Tensor, cand: torch.Tensor) -> float:
    """Mean per-token KL(base || cand) by torch's reference implementation."""
    logp = base.log_softmax(-1).reshape(-1, base.shape[-1])
    logq = cand.log_softmax(-1).reshape(-1, cand.shape[-1])
    return F.kl_div(logq, logp, log_target=True, reduction="batchmean").item()


def _check_bookkeeping(model: nn.Module, expected_blocks: int) -> None:
    blocks = find_decoder_blocks(model)[1]
    assert len(blocks) == expected_blocks
    assert model.config.num_hidden_layers == expected_blocks
    for i, block in enumerate(blocks):
        idx = [m.layer_idx for m in block.modules() if isinstance(getattr(m, "layer_idx", None), int)]
        assert idx and set(idx) == {i}
    if getattr(model.config, "layer_types", None) is not None:
        assert len(model.config.layer_types) == expected_blocks


@pytest.mark.parametrize("kwargs", [{"count": 2}, {"positions": (0, 0, 2)}])
def test_identity_expansion_keeps_logits(model: nn.Module, kwargs: dict) -> None:
    total = len(find_decoder_blocks(model)[1])
    out = expand(model, mode="identity", **kwargs)
    inserted = kwargs.get("count") or len(kwargs["positions"])
    _check_bookkeeping(out, total + inserted)
    x = random_token_ids(4, 16)
    with torch.no_grad():
        base = model(x, use_cache=False).logits
        no_cache = out(x, use_cache=False).logits
        default = out(x).logits
    assert _kl(base, no_cache) < 1e-6
    assert _kl(base, default) < 1e-6
    # Incremental decoding through the renumbered KV cache agrees too.
    prompt = x[:, :5]
    assert torch.equal(generate_greedy(out, prompt, 6), generate_greedy(model, prompt, 6))


def test_duplicate_expansion_changes_logits(model: nn.Module) -> None:
    total = len(find_decoder_blocks(model)[1])
    out = expand(model, mode="duplicate", positions=(1,))
    _check_bookkeeping(out, total + 1)
    blocks = find_decoder_blocks(out)[1]
    for (n1, p1), (n2, p2) in zip(blocks[1].named_parameters(), blocks[2].named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)
        assert p1.data_ptr() != p2.data_ptr()  # a real copy, not shared storage
    x = random_token_ids(4, 16)
    with torch.no_grad():
        base = model(x).logits
        cand = out(x).logits
        assert torch.allclose(cand, out(x, use_cache=False).logits, atol=1e-5)
    assert _kl(base, cand) > 1e-4
    out.generate(x[:, :4], max_new_tokens=3, do_sample=False, min_new_tokens=3, pad_token_id=0)


def test_count_spreads_evenly() -> None:
    cfg = ExpansionConfig(mode="duplicate", count=2)
    assert cfg._sources(4) == [0, 0, 1, 2, 2, 3]
    assert ExpansionConfig(count=5)._sources(2) == [0, 0, 0, 0, 1, 1, 1]
    assert ExpansionConfig(positions=(3, 0))._sources(4) == [0, 0, 1, 2, 3, 3]


def test_config_reporting() -> None:
    assert ExpansionConfig(mode="identity", count=2).strength == 0.0
    assert ExpansionConfig(mode="duplicate", positions=(0, 1)).strength == 1.0
    assert ExpansionConfig().count == 1
    assert "identity" in ExpansionConfig(mode="identity").describe()
    expected = {"kind": "expand", "mode": "duplicate", "positions": [1, 2], "count": None}
    assert ExpansionConfig(positions=(2, 1)).to_dict() == expected


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"mode": "zero"}, "mode"),
        ({"positions": (0,), "count": 1}, "positions"),
        ({"positions": (-1,)}, "positions"),
        ({"positions": ()}, "positions"),
        ({"count": 0}, "count"),
    ],
)
def test_bad_arguments(kwargs: dict, argument: str) -> None:
    with pytest.raises(InvalidArgument, match=argument):
        ExpansionConfig(**kwargs)


def test_position_out_of_range() -> None:
    # Bad arguments read "{name}: must be {what}, got {value}" (pytest_hemorrhage.arguments).
    with pytest.raises(InvalidArgument, match=r"positions: must be block indices in \[0, 3\].*got \(7,\)"):
        expand(tiny_llama(), positions=(7,))


def test_identity_needs_output_projection() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.fc(x)

    net = nn.Sequential(nn.ModuleList([Block(), Block()]))
    with pytest.raises(InvalidArgument, match="identity"):
        expand(net, mode="identity")
    assert len(expand(net, mode="duplicate")[0]) == 3


def test_inserted_blocks_share_the_model_config_so_attention_switches_reach_them():
    from tiny_models import tiny_llama

    import pytest_hemorrhage as ph

    base = tiny_llama()
    model = expand(base, count=2)
    configs = {id(m.config) for m in model.modules() if "config" in m.__dict__}
    assert configs == {id(model.config)}
    probes = [[1, 2, 3, 4, 5, 6, 7, 8]] * 2
    report = ph.compare(base, model, probes, attention=True)
    # Every block of the baseline is paired with attention measured on the candidate's block of that name.
    assert all(layer.attention_js is not None for layer in report.layers)
