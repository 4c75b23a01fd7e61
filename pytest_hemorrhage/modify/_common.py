"""Shared machinery for model modifications: copying, name matching, block discovery.

Every modification is a frozen dataclass deriving from :class:`Modification`.
Weight modifications deep-copy the model (unless ``inplace=True``), edit the
copy and record themselves on it as ``model.hemorrhage_modification``.
"""

from __future__ import annotations

import copy
import dataclasses
from types import MappingProxyType
import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from ..arguments import flag, must_be
from ..errors import InvalidArgument

__all__ = [
    "DEFAULT_SKIP",
    "MODIFICATION_ATTR",
    "Modification",
    "WeightModification",
    "copy_model",
    "name_matches",
    "matches_any",
    "check_patterns_exist",
    "is_linear_like",
    "is_conv1d",
    "linear_modules",
    "select_linears",
    "weight_out_in",
    "find_decoder_blocks",
    "set_decoder_blocks",
    "output_projections",
]

#: Module-name patterns left alone by default: embeddings and the output head.
DEFAULT_SKIP: tuple[str, ...] = ("embed", "lm_head", "wte", "wpe")

#: Attribute set on every modified model, holding the modification config.
MODIFICATION_ATTR = "hemorrhage_modification"

# Last name component of the projection that writes a residual branch back
# into the stream (attention output and MLP output) in common architectures.
_OUTPUT_PROJECTION_NAMES = frozenset(
    {"o_proj", "out_proj", "down_proj", "c_proj", "fc2", "dense_4h_to_h", "w2", "wo"}
)

# Config attributes that hold one entry per decoder block and must follow the
# blocks when blocks are dropped, duplicated or inserted.
_PER_LAYER_CONFIG_LISTS = ("layer_types",)


# --------------------------------------------------------------------------- validation
# (number, choice and flag checks: pytest_hemorrhage.arguments)


def check_patterns(value: Any, argument: str, *, allow_none: bool = False) -> tuple[str, ...] | None:
    """Normalise a module-name pattern list to a tuple of non-empty strings."""
    what = "a sequence of module-name patterns (non-empty substrings or fnmatch patterns)"
    if value is None:
        if allow_none:
            return None
        raise must_be(argument, what, value)
    if isinstance(value, str):
        value = (value,)
    try:
        patterns = tuple(value)
    except TypeError:
        raise must_be(argument, what, value) from None
    if any(not isinstance(p, str) or not p for p in patterns):
        raise must_be(argument, what, value)
    if allow_none and not patterns:
        raise must_be(argument, "None (every module) or " + what, value, "() selects nothing")
    return patterns


# --------------------------------------------------------------------------- base classes


def _jsonable(value: Any) -> Any:
    if isinstance(value, Modification):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


class Modification:
    """Base class of every modification config (frozen dataclasses).

    Subclasses set ``kind`` and implement ``apply``, ``describe`` and ``strength``.
    """

    kind: ClassVar[str] = "modification"

    def apply(self, model: nn.Module, inplace: bool = False, calibration: torch.Tensor | None = None) -> Any:
        """Return the modified model (a copy unless ``inplace``)."""
        raise NotImplementedError

    def __deepcopy__(self, memo: dict) -> "Modification":
        # Configs are frozen: a model's deep copy can share its record (and per-layer mapping proxies
        # cannot be pickled or copied anyway).
        return self

    def describe(self) -> str:
        """Short human-readable description."""
        raise NotImplementedError

    @property
    def strength(self) -> float:
        """Heuristic harshness, >= 0; larger is harsher. Only meaningful for ordering."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict: ``{"kind": ..., <field>: <value>, ...}``."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = _jsonable(getattr(self, f.name))
        return out

    def __str__(self) -> str:
        return self.describe()

    def _unused_fields(self) -> frozenset[str]:
        """Fields this config ignores (e.g. ``n``/``m`` unless N:M); left out of ``repr``."""
        return frozenset()

    def __repr__(self) -> str:
        # Only the fields that apply and differ from their defaults, so that a Hypothesis
        # falsifying example reads like the call that builds it (and evals back to it).
        unused = self._unused_fields()
        shown = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in unused or not f.repr or value == f.default:
                continue
            if isinstance(value, MappingProxyType):
                value = dict(value)
            shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis's printer lists every dataclass field (or the strategy's build call)
        # unless an object prints itself: use the short repr above.
        printer.text(repr(self))


class WeightModification(Modification):
    """A modification that edits an ``nn.Module`` and returns it."""

    def apply(self, model: nn.Module, inplace: bool = False, calibration: torch.Tensor | None = None) -> nn.Module:
        """Return a modified deep copy of ``model`` (or ``model`` itself if ``inplace``).

        ``calibration`` (token ids) is used only by modifications that calibrate.
        """
        target = copy_model(model, inplace)
        with torch.no_grad():
            self._modify(target, calibration)
        setattr(target, MODIFICATION_ATTR, self)
        return target

    def _modify(self, model: nn.Module, calibration: torch.Tensor | None) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- model helpers


def copy_model(model: Any, inplace: bool = False) -> nn.Module:
    """Deep copy of ``model`` (or ``model`` itself when ``inplace``); checks the type."""
    if not isinstance(model, nn.Module):
        raise must_be("model", "a torch.nn.Module", model)
    return model if flag("inplace", inplace) else copy.deepcopy(model)


def name_matches(name: str, pattern: str) -> bool:
    """True if ``pattern`` is a substring of ``name`` or an fnmatch glob matching ``name``
    or one of its dotted tails (``"layers.1.*proj"`` matches ``"model.layers.1.mlp.up_proj"``)."""
    if pattern in name:
        return True
    parts = name.split(".")
    return any(fnmatch.fnmatchcase(".".join(parts[i:]), pattern) for i in range(len(parts)))


def matches_any(name: str, patterns: Iterable[str] | None) -> bool:
    """True if ``name`` matches at least one pattern (False for ``None``)."""
    return patterns is not None and any(name_matches(name, p) for p in patterns)


def check_patterns_exist(model: nn.Module, patterns: Iterable[str] | None, argument: str) -> None:
    """Raise if some pattern matches no module name of ``model``."""
    if patterns is None:
        return
    names = [n for n, _ in model.named_modules() if n]
    for p in patterns:
        if not any(name_matches(n, p) for n in names):
            sample = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            raise must_be(argument, f"patterns matching module names of {type(model).__name__} "
                          f"(substrings or fnmatch patterns, e.g. {sample})", p)


def is_conv1d(module: nn.Module) -> bool:
    """True for Hugging Face's GPT-2 style ``Conv1D`` (a Linear with weight stored in x out)."""
    return (
        type(module).__name__ == "Conv1D"
        and hasattr(module, "nf")
        and isinstance(getattr(module, "weight", None), torch.Tensor)
        and module.weight.dim() == 2
    )


def is_linear_like(module: nn.Module) -> bool:
    """True for ``nn.Linear`` (and subclasses) and HF ``Conv1D``."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def weight_out_in(module: nn.Module) -> torch.Tensor:
    """The weight as an ``[out_features, in_features]`` tensor (a view: writes go to the module)."""
    return module.weight.t() if is_conv1d(module) else module.weight


def linear_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """All linear-like modules with their qualified names."""
    return [(n, m) for n, m in model.named_modules() if n and is_linear_like(m)]


def select_linears(
    model: nn.Module,
    targets: tuple[str, ...] | None,
    skip: tuple[str, ...],
    *,
    check_skip: bool,
) -> list[tuple[str, nn.Module]]:
    """Linear-like modules matching ``targets`` (all if None) and not ``skip``.

    Every target pattern must match some module name; so must every skip
    pattern when ``check_skip`` (a user-given skip list). A weight shared by
    several modules (tied embeddings) is returned once.
    """
    check_patterns_exist(model, targets, "targets")
    if check_skip:
        check_patterns_exist(model, skip, "skip")
    chosen: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    for name, module in linear_modules(model):
        if targets is not None and not matches_any(name, targets):
            continue
        if matches_any(name, skip):
            continue
        if id(module.weight) in seen:
            continue
        seen.add(id(module.weight))
        chosen.append((name, module))
    if not chosen:
        raise InvalidArgument(
            f"targets={targets!r}, skip={skip!r} leave no nn.Linear/Conv1D module of "
            f"{type(model).__name__} to modify; allowed: patterns that keep at least one"
        )
    return chosen


def find_decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Find the decoder-block stack: the ``nn.ModuleList`` of same-class children with most parameters."""
    from ..capture import find_decoder_blocks as _find

    found = _find(model)
    if found is None:
        raise InvalidArgument(
            f"model={type(model).__name__} has no nn.ModuleList of same-class blocks; "
            "allowed: a model whose decoder blocks live in one nn.ModuleList"
        )
    return found


def set_decoder_blocks(
    model: nn.Module, blocks: nn.ModuleList, new_blocks: list[nn.Module], sources: list[int]
) -> None:
    """Replace the contents of ``blocks`` in place and fix per-layer bookkeeping.

    ``sources[i]`` is the original index block ``i`` came from. Renumbers every
    int ``layer_idx`` attribute to the new position (HF caches are indexed by
    it), updates ``config.num_hidden_layers`` (``n_layer`` on GPT-2, via
    HF's attribute map) and reorders per-layer config lists such as ``layer_types``.
    Values a module derived from ``layer_idx`` when built (GPT-2's optional
    inverse-layer attention scaling) are kept, so each block computes what it did.
    """
    old_count = len(blocks)
    for i in reversed(range(old_count)):
        del blocks[i]
    blocks.extend(new_blocks)
    for i, block in enumerate(blocks):
        for sub in block.modules():
            idx = getattr(sub, "layer_idx", None)
            if isinstance(idx, int) and not isinstance(idx, bool):
                sub.layer_idx = i
    config = getattr(model, "config", None)
    if config is None:
        return
    for attr in ("num_hidden_layers", "n_layer"):
        if hasattr(config, attr):
            try:
                setattr(config, attr, len(blocks))
            except (AttributeError, TypeError):  # read-only alias
                pass
    for attr in _PER_LAYER_CONFIG_LISTS:
        values = getattr(config, attr, None)
        if isinstance(values, (list, tuple)) and len(values) == old_count:
            setattr(config, attr, type(values)(values[s] for s in sources))


def output_projections(block: nn.Module) -> list[tuple[str, nn.Module]]:
    """Linear-like submodules of ``block`` that write residual branches (o_proj, down_proj, c_proj...)."""
    return [
        (n, m)
        for n, m in block.named_modules()
        if n and n.rsplit(".", 1)[-1] in _OUTPUT_PROJECTION_NAMES and is_linear_like(m)
    ]


def model_device(model: nn.Module) -> torch.device:
    """Device of the first parameter (CPU for a parameterless model)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def logits_of(output: Any) -> torch.Tensor:
    """Extract logits from a model output (HF output object, tuple, or tensor)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise InvalidArgument(
        f"model output {type(output).__name__} has no logits; allowed: a tensor, a tuple starting with "
        "logits, or an object with a .logits tensor"
    )
