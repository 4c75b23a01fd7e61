"""A live torch / Hugging Face model as one side of a comparison: pair checks, placement, eval mode."""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Mapping

import torch
from torch import nn

from ..capture import module_tensors
from ..errors import HemorrhageError, InvalidArgument

__all__ = ["check_pair", "evaluating", "on_device", "pad_id", "dispatched"]


def check_pair(baseline: nn.Module, candidate: nn.Module) -> None:
    """Reject pairs that cannot give a meaningful comparison (same object, shared storage, meta)."""
    if candidate is baseline:
        raise HemorrhageError(
            "candidate is baseline: the same model object was passed twice, so the comparison "
            "would be empty. Modify a copy (copy.deepcopy(baseline)) and pass that as the candidate."
        )
    storages = []
    for role, model in (("baseline", baseline), ("candidate", candidate)):
        params, buffers = module_tensors(model)
        tensors = params + buffers
        if any(t.device.type == "meta" for t in tensors):
            meta = [n for n, p in model.named_parameters() if p.device.type == "meta" and not _offloaded(model, n)]
            if meta:
                raise HemorrhageError(
                    f"{role}: parameter {meta[0]} is on the meta device (no data); load real weights "
                    "(e.g. from_pretrained without device_map='meta', or model.to_empty() then load a state dict)"
                )
        storages.append({t.untyped_storage().data_ptr() for t in tensors if t.device.type != "meta" and t.numel() > 0})
    shared = storages[0] & storages[1]
    if shared:
        names = [n for n, p in candidate.named_parameters() if p.untyped_storage().data_ptr() in shared]
        raise HemorrhageError(
            f"baseline and candidate share parameter storage ({len(shared)} tensors, e.g. "
            f"{names[0] if names else 'a buffer'}): the modification was probably applied in place, "
            "so the baseline changed too. Apply it to copy.deepcopy(baseline) instead."
        )


def _offloaded(model: nn.Module, parameter: str) -> bool:
    """Whether an accelerate hook loads ``parameter`` on demand (CPU or disk offload via ``dispatch_model``)."""
    parts = parameter.split(".")[:-1]
    module = model
    for part in [None] + parts:
        if part is not None:
            module = getattr(module, part, None)
            if module is None:
                return False
        if getattr(module, "_hf_hook", None) is not None:
            return True
    return False


def dispatched(model: nn.Module) -> bool:
    """A model placed by accelerate (``device_map=...``): its hooks, not ``.to()``, decide where weights live."""
    return getattr(model, "hf_device_map", None) is not None or any(
        getattr(m, "_hf_hook", None) is not None for m in model.modules())


@contextlib.contextmanager
def evaluating(*models: nn.Module, roles: Mapping[str, nn.Module] | None = None) -> Iterator[None]:
    """Every module of ``models`` (and of ``roles``' values) in eval mode; each submodule's own flag restored.

    A submodule may train while its parent does not: restoring only the root's flag would flatten
    such mixed states, so the flag of every module that was training is saved and put back.
    ``roles`` names the models (``{"baseline": m}``) for a warning when a root was in train mode.
    """
    named = dict(roles or {})
    for i, model in enumerate(models):
        named.setdefault(f"model {i}", model)
    for role, model in (roles or {}).items():
        if model.training:
            warnings.warn(
                f"{role} was in train mode (dropout active); it is compared in eval mode and its "
                "mode is restored afterwards. Call .eval() to silence this.",
                UserWarning,
                stacklevel=4,
            )
    seen: set[int] = set()
    training: list[nn.Module] = []
    roots = []
    for model in named.values():
        if id(model) in seen:
            continue
        seen.add(id(model))
        # Walking a large model costs host time: eval() runs only where some module trains.
        was = [m for m in model.modules() if m.training]
        if was:
            training += was
            roots.append(model)
    try:
        for model in roots:
            model.eval()
        yield
    finally:
        for module in training:
            module.training = True


@contextlib.contextmanager
def on_device(models: list[nn.Module], device: str | torch.device | None) -> Iterator[None]:
    """Move ``models`` to ``device`` for the block and back afterwards (nothing when ``device`` is None)."""
    if device is None:
        yield
        return
    device = torch.device(device)
    placed = [type(m).__name__ for m in models if dispatched(m)]
    if placed:
        raise InvalidArgument(
            f"device={str(device)!r}: {placed[0]} was placed by accelerate (device_map / dispatch_model), "
            "so moving it would undo that placement; leave device unset (and --hemorrhage-device off) "
            "and compare it where accelerate put it"
        )
    before = [next(iter(m.parameters()), torch.empty(0)).device for m in models]
    try:
        for m in models:
            m.to(device)
        yield
    finally:
        for m, dev in zip(models, before):
            m.to(dev)


def pad_id(model: nn.Module) -> int:
    """The model's padding token id (its config's ``pad_token_id``), or 0."""
    config = getattr(model, "config", None)
    pad = getattr(config, "pad_token_id", None) if config is not None else None
    return int(pad) if isinstance(pad, int) and pad >= 0 else 0
