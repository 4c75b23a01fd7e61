"""Low-rank approximation: each weight replaced by its truncated-SVD reconstruction."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..arguments import fraction
from ._common import (
    DEFAULT_SKIP,
    WeightModification,
    check_patterns,
    select_linears,
    weight_out_in,
)

__all__ = ["LowRankConfig", "low_rank", "kept_rank", "truncated_svd"]


def kept_rank(rank_ratio: float, out_features: int, in_features: int) -> int:
    """Number of singular values kept: ``ceil(rank_ratio * min(out, in))`` (at least 1)."""
    full = min(out_features, in_features)
    # The tiny epsilon keeps e.g. 0.3 * 10 from rounding up to 4 through float error.
    return max(1, min(full, math.ceil(rank_ratio * full - 1e-9)))


def truncated_svd(weight: torch.Tensor, rank: int) -> torch.Tensor:
    """Best rank-``rank`` approximation of a 2-D weight (same dtype)."""
    u, s, vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
    return ((u[:, :rank] * s[:rank]) @ vh[:rank]).to(weight.dtype)


@dataclass(frozen=True, repr=False)
class LowRankConfig(WeightModification):
    """Fake low-rank compression: shapes unchanged, weights of rank ``ceil(rank_ratio * min(out, in))``."""

    rank_ratio: float = 0.5
    skip: tuple[str, ...] = DEFAULT_SKIP
    targets: tuple[str, ...] | None = None

    kind = "lowrank"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rank_ratio", fraction("rank_ratio", self.rank_ratio, low_open=True))
        object.__setattr__(self, "skip", check_patterns(self.skip, "skip"))
        object.__setattr__(self, "targets", check_patterns(self.targets, "targets", allow_none=True))

    def _modify(self, model: nn.Module, calibration: torch.Tensor | None) -> None:
        for _name, module in select_linears(model, self.targets, self.skip, check_skip=self.skip != DEFAULT_SKIP):
            w = weight_out_in(module)
            rank = kept_rank(self.rank_ratio, *w.shape)
            if rank < min(w.shape):  # full rank reconstructs the weight exactly: leave it bit-identical
                w.copy_(truncated_svd(w, rank))

    def describe(self) -> str:
        text = f"low-rank SVD keeping {self.rank_ratio:.0%} of singular values"
        if self.targets is not None:
            text += f", targets {','.join(self.targets)}"
        if self.skip:
            text += f", skip {','.join(self.skip)}"
        return text

    @property
    def strength(self) -> float:
        """``1 - rank_ratio``."""
        return 1.0 - self.rank_ratio


def low_rank(
    model: nn.Module,
    rank_ratio: float = 0.5,
    skip: tuple[str, ...] = DEFAULT_SKIP,
    targets: tuple[str, ...] | None = None,
    *,
    inplace: bool = False,
) -> nn.Module:
    """Return a copy of ``model`` with truncated-SVD weights (see :class:`LowRankConfig`)."""
    return LowRankConfig(rank_ratio=rank_ratio, skip=skip, targets=targets).apply(model, inplace=inplace)
