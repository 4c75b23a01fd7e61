"""Pruning: unstructured magnitude, N:M semi-structured, attention heads, MLP channels, whole blocks.

Methods:

* ``magnitude``: in each selected matrix zero exactly ``round(sparsity * numel)``
  weights of smallest |w| (ties: lower flat index pruned first).
* ``nm``: in every group of ``m`` consecutive input weights of each output
  row keep the ``n`` largest |w| (ties: lower index kept). ``sparsity`` is
  ignored; the sparsity is ``1 - n/m``. When ``m`` does not divide the input
  size (e.g. after channel pruning) the trailing partial group stays dense.
* ``heads``: per attention module, zero ``round(sparsity * heads)`` query heads
  (at most all but one), chosen by the smallest norm of their output-projection
  columns. The head's query rows and output-projection input columns are
  zeroed, and the key/value rows of a key/value head once all its query heads
  are gone. Shapes stay as they are, so the HF config stays valid.
* ``channels``: per MLP, remove ``round(sparsity * intermediate)`` channels
  (at most all but one) with smallest ``||down col|| * prod ||gate/up row||``;
  the Linear/Conv1D layers are truly shrunk. The config keeps the original
  ``intermediate_size`` (the model runs, but cannot be rebuilt from its config).
* ``blocks``: drop ``blocks=(i, ...)`` or else ``round(sparsity * L)`` blocks
  (at most ``L - 1``): the ones just before the last block, since late
  non-final blocks are the most redundant in published layer-pruning studies.
  ``layer_idx`` attributes and ``config.num_hidden_layers`` are updated.

A pruning *unit* is a Linear/Conv1D for ``magnitude``/``nm``, the attention
module for ``heads`` and the MLP for ``channels``. ``targets``/``skip`` select
units by name (``blocks`` ignores them); ``per_layer`` maps module-name patterns
to sparsities overriding ``sparsity`` for matching units (first match wins).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import torch
from torch import nn

from ..arguments import fraction, integer, must_be, one_of, positive_int
from ..errors import InvalidArgument
from ._common import (
    DEFAULT_SKIP,
    WeightModification,
    check_patterns,
    check_patterns_exist,
    find_decoder_blocks,
    is_conv1d,
    is_linear_like,
    matches_any,
    name_matches,
    select_linears,
    set_decoder_blocks,
    weight_out_in,
)

__all__ = ["PruningConfig", "prune"]

METHODS = ("magnitude", "nm", "heads", "channels", "blocks")


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def importance_mask(scores: torch.Tensor, sparsity: float, group: str = "row") -> torch.Tensor:
    """Bool mask (True = keep) dropping the lowest scores: ``round(sparsity * in_features)`` in
    every row (``group="row"``) or ``round(sparsity * numel)`` in the matrix (``"layer"``).
    Ties: the lower index is pruned first. With ``|W|`` and ``"layer"`` this is the magnitude mask."""
    rows = scores if group == "row" else scores.reshape(1, -1)
    k = _round(sparsity * rows.shape[1])
    if k == 0:
        return torch.ones_like(scores, dtype=torch.bool)
    # The k-th smallest score per row is the threshold: everything below goes, and of the
    # scores equal to it the lowest-index ones, as many as are still needed. No full sort.
    threshold = rows.kthvalue(k, dim=1, keepdim=True).values
    below = rows < threshold
    needed = k - below.sum(dim=1, keepdim=True)
    equal = rows == threshold
    if bool((equal.sum(dim=1, keepdim=True) == needed).all()):  # the usual case: no tie to break
        pruned = below | equal
    else:
        pruned = below | (equal & (equal.cumsum(dim=1) <= needed))
    return (~pruned).reshape(scores.shape)


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Bool mask (True = keep) pruning exactly ``round(sparsity * numel)`` smallest |w| (lower index first on ties)."""
    return importance_mask(weight.detach().abs(), sparsity, group="layer")


def nm_mask(weight_oi: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Bool mask keeping the ``n`` largest |w| in each group of ``m`` input weights per row.

    Trailing inputs that do not fill a whole group (``in % m``) are kept.
    """
    rows, cols = weight_oi.shape
    full = cols - cols % m
    keep = torch.ones(rows, cols, dtype=torch.bool, device=weight_oi.device)
    if full:
        groups = weight_oi[:, :full].detach().abs().reshape(rows, full // m, m)
        order = torch.argsort(groups, dim=-1, descending=True, stable=True)
        group_keep = torch.zeros_like(groups, dtype=torch.bool)
        group_keep.scatter_(-1, order[..., :n], True)
        keep[:, :full] = group_keep.reshape(rows, full)
    return keep


def _zero_out_rows(module: nn.Module, rows: torch.Tensor) -> None:
    weight_out_in(module)[rows] = 0
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor):
        bias[rows] = 0


def _keep_out_features(module: nn.Module, index: torch.Tensor) -> None:
    grad = module.weight.requires_grad
    if is_conv1d(module):
        module.weight = nn.Parameter(module.weight[:, index].clone(), requires_grad=grad)
        module.nf = len(index)
    else:
        module.weight = nn.Parameter(module.weight[index].clone(), requires_grad=grad)
        module.out_features = len(index)
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor):
        module.bias = nn.Parameter(bias[index].clone(), requires_grad=bias.requires_grad)


def _keep_in_features(module: nn.Module, index: torch.Tensor) -> None:
    grad = module.weight.requires_grad
    if is_conv1d(module):
        module.weight = nn.Parameter(module.weight[index].clone(), requires_grad=grad)
        module.nx = len(index)
    else:
        module.weight = nn.Parameter(module.weight[:, index].clone(), requires_grad=grad)
        module.in_features = len(index)


def _linear_child(module: nn.Module, name: str) -> nn.Module | None:
    child = getattr(module, name, None)
    return child if isinstance(child, nn.Module) and is_linear_like(child) else None


def _attention_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    units = []
    for name, module in model.named_modules():
        if all(_linear_child(module, a) is not None for a in ("q_proj", "k_proj", "v_proj", "o_proj")):
            units.append((name, module))
        elif (
            _linear_child(module, "c_attn") is not None
            and _linear_child(module, "c_proj") is not None
            and isinstance(getattr(module, "num_heads", None), int)
            and not getattr(module, "is_cross_attention", False)
        ):
            units.append((name, module))
    return units


def _mlp_units(model: nn.Module) -> list[tuple[str, list[nn.Module], nn.Module]]:
    """(name, expanding layers, contracting layer) for each recognised MLP."""
    units = []
    for name, module in model.named_modules():
        down, up = _linear_child(module, "down_proj"), _linear_child(module, "up_proj")
        if down is not None and up is not None:
            gate = _linear_child(module, "gate_proj")
            units.append((name, [up] + ([gate] if gate is not None else []), down))
            continue
        fc, proj = _linear_child(module, "c_fc"), _linear_child(module, "c_proj")
        if fc is not None and proj is not None:
            units.append((name, [fc], proj))
    return units


@dataclass(frozen=True, repr=False)
class PruningConfig(WeightModification):
    """Pruning of the model's weights or structure (see module docs for each ``method``)."""

    sparsity: float = 0.5
    method: Literal["magnitude", "nm", "heads", "channels", "blocks"] = "magnitude"
    n: int = 2
    m: int = 4
    blocks: tuple[int, ...] | None = None
    per_layer: Mapping[str, float] | None = None
    skip: tuple[str, ...] = DEFAULT_SKIP
    targets: tuple[str, ...] | None = None

    kind = "prune"

    def _unused_fields(self) -> frozenset[str]:
        unused = set() if self.method == "nm" else {"n", "m"}
        if self.method == "nm":
            unused.add("sparsity")
        return frozenset(unused)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparsity", fraction("sparsity", self.sparsity, high_open=True))
        one_of("method", self.method, METHODS)
        positive_int("m", self.m)
        integer("n", self.n, 1, self.m, fix="N:M keeps n of every m weights")
        if self.blocks is not None:
            self._check_blocks()
        if self.per_layer is not None:
            if not isinstance(self.per_layer, Mapping) or not self.per_layer:
                raise must_be("per_layer", "a non-empty mapping pattern -> sparsity", self.per_layer)
            if self.method in ("nm", "blocks"):
                raise must_be("per_layer", "None with method='nm' or 'blocks'", dict(self.per_layer),
                              "per-layer sparsities go with method 'magnitude', 'heads' or 'channels'")
            overrides = {}
            for pattern, value in self.per_layer.items():
                check_patterns((pattern,), "per_layer")
                overrides[pattern] = fraction(f"per_layer[{pattern!r}]", value, high_open=True)
            object.__setattr__(self, "per_layer", MappingProxyType(overrides))
        object.__setattr__(self, "skip", check_patterns(self.skip, "skip"))
        object.__setattr__(self, "targets", check_patterns(self.targets, "targets", allow_none=True))

    def _check_blocks(self) -> None:
        if self.method != "blocks":
            raise must_be("blocks", "None unless method='blocks'", self.blocks,
                          f"method={self.method!r} drops no whole block")
        what = "a non-empty sequence of distinct block indices (integers >= 0)"
        try:
            blocks = (self.blocks,) if isinstance(self.blocks, int) else tuple(self.blocks)
        except TypeError:
            raise must_be("blocks", what, self.blocks) from None
        if (not blocks or len(set(blocks)) != len(blocks)
                or any(isinstance(b, bool) or not isinstance(b, int) or b < 0 for b in blocks)):
            raise must_be("blocks", what, self.blocks)
        object.__setattr__(self, "blocks", tuple(sorted(blocks)))

    def __hash__(self) -> int:
        per_layer = tuple(self.per_layer.items()) if self.per_layer is not None else None
        return hash((self.sparsity, self.method, self.n, self.m, self.blocks, per_layer, self.skip, self.targets))

    # ------------------------------------------------------------------ helpers

    def _sparsity_for(self, name: str) -> float:
        if self.per_layer is not None:
            for pattern, value in self.per_layer.items():
                if name_matches(name, pattern):
                    return value
        return self.sparsity

    def _wanted(self, name: str) -> bool:
        return (self.targets is None or matches_any(name, self.targets)) and not matches_any(name, self.skip)

    def _check_names(self, model: nn.Module) -> None:
        check_patterns_exist(model, self.targets, "targets")
        if self.skip != DEFAULT_SKIP:
            check_patterns_exist(model, self.skip, "skip")
        if self.per_layer is not None:
            check_patterns_exist(model, tuple(self.per_layer), "per_layer")

    # ------------------------------------------------------------------ methods

    def _modify(self, model: nn.Module, calibration: torch.Tensor | None) -> None:
        self._check_names(model)
        if self.method in ("magnitude", "nm"):
            self._prune_weights(model)
        elif self.method == "heads":
            self._prune_heads(model)
        elif self.method == "channels":
            self._prune_channels(model)
        else:
            self._drop_blocks(model)

    def _prune_weights(self, model: nn.Module) -> None:
        modules = select_linears(model, self.targets, self.skip, check_skip=False)
        for name, module in modules:
            w = weight_out_in(module)
            if self.method == "magnitude":
                keep = magnitude_mask(w, self._sparsity_for(name))
            else:
                keep = nm_mask(w, self.n, self.m)
            w.mul_(keep.to(w.dtype))

    def _prune_heads(self, model: nn.Module) -> None:
        units = [(n, u) for n, u in _attention_units(model) if self._wanted(n)]
        if not units:
            raise InvalidArgument(
                f"method='heads' found no attention module (q/k/v/o_proj or GPT-2 c_attn/c_proj) in "
                f"{type(model).__name__} after targets/skip; allowed: a model with such modules"
            )
        for name, attn in units:
            sparsity = self._sparsity_for(name)
            if hasattr(attn, "q_proj"):
                q, k, v, o = attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj
                head_dim = getattr(attn, "head_dim", None) or (
                    weight_out_in(o).shape[1] // getattr(attn.config, "num_attention_heads")
                )
                heads = weight_out_in(q).shape[0] // head_dim
                kv_heads = weight_out_in(k).shape[0] // head_dim
            else:  # GPT-2: fused c_attn, output rows [q | k | v]
                o = attn.c_proj
                head_dim, heads = attn.head_dim, attn.num_heads
                kv_heads = heads
            count = min(_round(sparsity * heads), heads - 1)
            if count <= 0:
                continue
            o_w = weight_out_in(o)
            scores = o_w.float().reshape(o_w.shape[0], heads, head_dim).norm(dim=(0, 2))
            pruned = torch.argsort(scores, stable=True)[:count].tolist()
            for h in pruned:
                cols = torch.arange(h * head_dim, (h + 1) * head_dim)
                o_w[:, cols] = 0
                if hasattr(attn, "q_proj"):
                    _zero_out_rows(q, cols)
                else:
                    _zero_out_rows(attn.c_attn, cols)
                    embed = heads * head_dim
                    _zero_out_rows(attn.c_attn, cols + embed)
                    _zero_out_rows(attn.c_attn, cols + 2 * embed)
            if hasattr(attn, "q_proj"):
                group = heads // kv_heads
                for g in range(kv_heads):
                    if all(h in pruned for h in range(g * group, (g + 1) * group)):
                        rows = torch.arange(g * head_dim, (g + 1) * head_dim)
                        _zero_out_rows(k, rows)
                        _zero_out_rows(v, rows)

    def _prune_channels(self, model: nn.Module) -> None:
        units = [u for u in _mlp_units(model) if self._wanted(u[0])]
        if not units:
            raise InvalidArgument(
                f"method='channels' found no MLP (gate/up/down_proj or GPT-2 c_fc/c_proj) in "
                f"{type(model).__name__} after targets/skip; allowed: a model with such modules"
            )
        for name, ups, down in units:
            width = weight_out_in(down).shape[1]
            count = min(_round(self._sparsity_for(name) * width), width - 1)
            if count <= 0:
                continue
            score = weight_out_in(down).float().norm(dim=0)
            for up in ups:
                score = score * weight_out_in(up).float().norm(dim=1)
            order = torch.argsort(score, stable=True)
            keep = torch.sort(order[count:]).values
            for up in ups:
                _keep_out_features(up, keep)
            _keep_in_features(down, keep)
            mlp = model.get_submodule(name) if name else model
            if isinstance(getattr(mlp, "intermediate_size", None), int):
                mlp.intermediate_size = len(keep)

    def _drop_blocks(self, model: nn.Module) -> None:
        _name, blocks = find_decoder_blocks(model)
        total = len(blocks)
        if self.blocks is not None:
            drop = set(self.blocks)
            if max(drop) >= total or len(drop) >= total:
                raise must_be("blocks", f"distinct indices in [0, {total - 1}] leaving at least one block "
                              f"(the model has {total})", self.blocks)
        else:
            count = min(_round(self.sparsity * total), total - 1)
            drop = set(range(total - 1 - count, total - 1))
        if not drop:
            return
        sources = [i for i in range(total) if i not in drop]
        set_decoder_blocks(model, blocks, [blocks[i] for i in sources], sources)

    # ------------------------------------------------------------------ reporting

    def describe(self) -> str:
        if self.method == "magnitude":
            text = f"unstructured magnitude pruning {self.sparsity:.0%}"
        elif self.method == "nm":
            text = f"{self.n}:{self.m} semi-structured pruning"
        elif self.method == "heads":
            text = f"attention-head pruning {self.sparsity:.0%}"
        elif self.method == "channels":
            text = f"MLP-channel pruning {self.sparsity:.0%}"
        elif self.blocks is not None:
            text = f"drop blocks {','.join(map(str, self.blocks))}"
        else:
            text = f"drop {self.sparsity:.0%} of blocks"
        if self.per_layer:
            text += " (per-layer " + ", ".join(f"{k}: {v:.0%}" for k, v in self.per_layer.items()) + ")"
        if self.targets is not None:
            text += f", targets {','.join(self.targets)}"
        if self.method in ("magnitude", "nm") and self.skip:
            text += f", skip {','.join(self.skip)}"
        return text

    @property
    def strength(self) -> float:
        """Fraction removed, weighted up for structured methods (heads/channels x1.5, blocks x2)."""
        if self.method == "nm":
            return 1.0 - self.n / self.m
        if self.method == "blocks" and self.blocks is not None:
            return 0.5 * len(self.blocks)
        fraction = max([self.sparsity, *(self.per_layer.values() if self.per_layer else ())])
        return fraction * {"magnitude": 1.0, "heads": 1.5, "channels": 1.5, "blocks": 2.0}[self.method]


def prune(
    model: nn.Module,
    sparsity: float = 0.5,
    method: str = "magnitude",
    n: int = 2,
    m: int = 4,
    blocks: tuple[int, ...] | None = None,
    per_layer: Mapping[str, float] | None = None,
    skip: tuple[str, ...] = DEFAULT_SKIP,
    targets: tuple[str, ...] | None = None,
    *,
    inplace: bool = False,
) -> nn.Module:
    """Return a pruned copy of ``model`` (see :class:`PruningConfig`)."""
    # The arguments are the config's fields, in the same order.
    config = PruningConfig(sparsity, method, n, m, blocks, per_layer, skip, targets)  # type: ignore[arg-type]
    return config.apply(model, inplace=inplace)
