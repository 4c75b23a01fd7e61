"""Truncated-SVD low-rank approximation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.modify import LowRankConfig, low_rank
from pytest_hemorrhage.modify._common import linear_modules, weight_out_in
from pytest_hemorrhage.modify.lowrank import kept_rank
from tiny_models import random_token_ids, tiny_gpt2, tiny_llama


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5, 0.9])
def test_reconstruction_has_the_right_rank(llama: nn.Module, ratio: float) -> None:
    out = low_rank(llama, rank_ratio=ratio, targets=("layers.1.",))
    for name, module in linear_modules(out):
        w = weight_out_in(module).detach()
        if name.startswith("model.layers.1."):
            expected = math.ceil(ratio * min(w.shape))
            assert torch.linalg.matrix_rank(w).item() == expected, name
            assert w.shape == weight_out_in(llama.get_submodule(name)).shape
        else:
            assert torch.equal(w, weight_out_in(llama.get_submodule(name)))


def test_is_the_best_approximation(llama: nn.Module) -> None:
    # Eckart-Young: the Frobenius error equals the norm of the dropped singular values.
    out = low_rank(llama, rank_ratio=0.5, targets=("layers.0.mlp.down_proj",))
    w0 = llama.model.layers[0].mlp.down_proj.weight.detach()
    w1 = out.model.layers[0].mlp.down_proj.weight.detach()
    s = torch.linalg.svdvals(w0)
    r = math.ceil(0.5 * min(w0.shape))
    torch.testing.assert_close(torch.linalg.norm(w0 - w1), s[r:].norm(), rtol=1e-4, atol=1e-5)


def test_gpt2_conv1d() -> None:
    gpt2 = tiny_gpt2()
    out = low_rank(gpt2, rank_ratio=0.25, targets=("h.0.mlp.c_fc",))
    w = out.transformer.h[0].mlp.c_fc.weight.detach()  # [in=64, out=256]
    assert torch.linalg.matrix_rank(w).item() == 16
    with torch.no_grad():
        assert torch.isfinite(out(random_token_ids(2, 8)).logits).all()


def test_ratio_one_is_identity(llama: nn.Module) -> None:
    out = low_rank(llama, rank_ratio=1.0)
    for name, p in llama.named_parameters():
        assert torch.equal(out.get_parameter(name), p), name
    x = random_token_ids(2, 8)
    with torch.no_grad():
        assert torch.equal(out(x).logits, llama(x).logits)


def test_kept_rank_and_strength() -> None:
    assert kept_rank(0.3, 10, 20) == 3
    assert kept_rank(0.31, 10, 20) == 4
    assert kept_rank(0.001, 64, 64) == 1
    assert LowRankConfig(0.25).strength == 0.75
    assert LowRankConfig(1.0).strength == 0.0
    assert "25%" in LowRankConfig(0.25).describe()


@pytest.mark.parametrize("ratio", [0, 0.0, -0.5, 1.5, float("nan"), "half"])
def test_bad_ratio(ratio: object) -> None:
    with pytest.raises(InvalidArgument, match="rank_ratio"):
        LowRankConfig(rank_ratio=ratio)  # type: ignore[arg-type]


def test_unknown_skip_name(llama: nn.Module) -> None:
    with pytest.raises(InvalidArgument, match=r"skip.*'decoder'"):
        low_rank(llama, 0.5, skip=("lm_head", "decoder"))
