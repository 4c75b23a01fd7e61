"""Depth expansion: duplicate decoder blocks, or insert identity-initialised copies.

An identity block is a copy of a block whose residual-branch output
projections (attention ``o_proj``/``c_proj``, MLP ``down_proj``/``c_proj``,
weights and biases) are zeroed, so the block adds nothing to the residual
stream and the model's outputs are unchanged. New blocks go right after the
original they copy; ``positions`` index the original blocks (a repeated index
inserts several copies). With ``count`` the copied blocks are spread evenly:
``floor(i * L / count)`` for ``i < count``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..arguments import integer, must_be, one_of, positive_int
from ._common import (
    WeightModification,
    find_decoder_blocks,
    output_projections,
    set_decoder_blocks,
)

__all__ = ["ExpansionConfig", "expand", "identity_block"]

MODES = ("duplicate", "identity")


def identity_block(block: nn.Module) -> nn.Module:
    """A deep copy of ``block`` with its residual output projections zeroed."""
    new = copy.deepcopy(block)
    projections = output_projections(new)
    if not projections:
        raise must_be("mode", f"'duplicate' for {type(block).__name__} blocks, which have no recognised output "
                      "projection (o_proj, out_proj, down_proj, c_proj, fc2, dense_4h_to_h, w2, wo)", "identity")
    with torch.no_grad():
        for _name, module in projections:
            module.weight.zero_()
            if isinstance(getattr(module, "bias", None), torch.Tensor):
                module.bias.zero_()
    return new


def _share_config(model: nn.Module, blocks: list[nn.Module]) -> None:
    """Point the copied blocks' ``config`` back at the model's own.

    A deep copy of a block copies its config too, and then model-wide switches such as
    ``set_attn_implementation("eager")`` no longer reach the inserted blocks.
    """
    config = getattr(model, "config", None)
    if config is None:
        return
    for block in blocks:
        for module in block.modules():
            own = module.__dict__.get("config")
            if own is not None and own is not config and type(own) is type(config):
                module.config = config


@dataclass(frozen=True, repr=False)
class ExpansionConfig(WeightModification):
    """Insert copies of decoder blocks (``positions`` of originals, or ``count`` spread evenly)."""

    mode: Literal["duplicate", "identity"] = "duplicate"
    positions: tuple[int, ...] | None = None
    count: int | None = None

    kind = "expand"

    def __post_init__(self) -> None:
        one_of("mode", self.mode, MODES)
        if self.positions is not None and self.count is not None:
            raise must_be("positions", "None when count is given", self.positions,
                          f"pass positions (where to insert) or count={self.count!r} (how many), not both")
        if self.positions is not None:
            what = "a non-empty sequence of block indices (integers >= 0)"
            try:
                positions = (self.positions,) if isinstance(self.positions, int) else tuple(self.positions)
            except TypeError:
                raise must_be("positions", what, self.positions) from None
            if not positions:
                raise must_be("positions", what, self.positions, "() inserts nothing")
            for p in positions:
                integer("positions", p, 0)
            object.__setattr__(self, "positions", tuple(sorted(positions)))
        elif self.count is None:
            object.__setattr__(self, "count", 1)
        if self.count is not None:
            positive_int("count", self.count)

    def _sources(self, total: int) -> list[int]:
        """Original index of every block of the expanded stack."""
        if self.positions is not None:
            if max(self.positions) >= total:
                raise must_be("positions", f"block indices in [0, {total - 1}] (the model has {total} blocks)",
                              self.positions)
            chosen = list(self.positions)
        else:
            assert self.count is not None
            chosen = [i * total // self.count for i in range(self.count)]
        sources: list[int] = []
        for i in range(total):
            sources.append(i)
            sources.extend([i] * chosen.count(i))
        return sources

    def _modify(self, model: nn.Module, calibration: torch.Tensor | None) -> None:
        _name, blocks = find_decoder_blocks(model)
        sources = self._sources(len(blocks))
        originals = list(blocks)
        new_blocks: list[nn.Module] = []
        for j, src in enumerate(sources):
            is_copy = j > 0 and sources[j - 1] == src
            if not is_copy:
                new_blocks.append(originals[src])
            elif self.mode == "identity":
                new_blocks.append(identity_block(originals[src]))
            else:
                new_blocks.append(copy.deepcopy(originals[src]))
        set_decoder_blocks(model, blocks, new_blocks, sources)
        _share_config(model, new_blocks)

    @property
    def _inserted(self) -> int:
        return len(self.positions) if self.positions is not None else int(self.count or 0)

    def describe(self) -> str:
        what = "identity-initialised" if self.mode == "identity" else "duplicated"
        if self.positions is not None:
            where = f"after blocks {','.join(map(str, self.positions))}"
        else:
            where = "spread evenly"
        return f"insert {self._inserted} {what} block(s) {where}"

    @property
    def strength(self) -> float:
        """0.5 per duplicated block; identity blocks leave outputs unchanged, so 0."""
        return 0.0 if self.mode == "identity" else 0.5 * self._inserted


def expand(
    model: nn.Module,
    mode: str = "duplicate",
    positions: tuple[int, ...] | None = None,
    count: int | None = None,
    *,
    inplace: bool = False,
) -> nn.Module:
    """Return a copy of ``model`` with extra decoder blocks (see :class:`ExpansionConfig`)."""
    config = ExpansionConfig(mode=mode, positions=positions, count=count)  # type: ignore[arg-type]
    return config.apply(model, inplace=inplace)
