"""A live torch / Hugging Face model as one side of a comparison: pair checks, placement, eval mode, observing."""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import warnings
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from ..capture import ModelAdapter, adapt, capture_layers, eager_attention, module_tensors, parameter_count
from ..errors import HemorrhageError, InvalidArgument
from ..packed import storage_pointers
from ..probes import ProbeBatch, Probes, as_probes
from ..validate import check_context_length, check_token_ids, vocabulary_mismatch
from .observation import TensorObservation

__all__ = ["ModuleSource", "check_pair", "evaluating", "on_device", "pad_id", "dispatched"]


class ModuleSource:
    """A live model (and the decoding settings it samples with) as one side of a comparison.

    ``layers`` and ``output`` are those of :func:`~pytest_hemorrhage.capture.adapt`; ``described``
    is what the user passed (a :class:`~pytest_hemorrhage.modify.DecodedModel` describes its sampler).
    """

    attentions = True
    topk_limit = None

    def __init__(self, model: nn.Module, role: str, layers: Any = "auto", output: str = "auto",
                 decoding: Any = None, described: Any = None) -> None:
        self.model = self.origin = model
        self.role = role
        self.decoding = decoding
        self.described = model if described is None else described
        self._layers, self._output = layers, output
        self._adapter: ModelAdapter | None = None
        self._primary: ModuleSource | None = None  # set on a twin: the source whose forward pass it shares
        self._has_twin = False
        self._last: TensorObservation | None = None  # with a twin: the latest observation, until the twin takes it

    @property
    def adapter(self) -> ModelAdapter:
        """How the model is run and which blocks are read; built on first use (it validates ``layers``)."""
        if self._primary is not None:
            return self._primary.adapter
        if self._adapter is None:
            self._adapter = adapt(self.model, self._layers, self._output)
        return self._adapter

    def twin(self, decoding: Any, described: Any) -> "ModuleSource":
        """This model under other decoding settings: one forward pass serves both, outputs only."""
        self._layers, self._adapter, self._has_twin = None, None, True
        twin = copy.copy(self)
        twin.role, twin.decoding, twin.described, twin._primary, twin._has_twin = \
            "candidate", decoding, described, self, False
        return twin

    # ------------------------------------------------------------------ what the report says of it
    @property
    def label(self) -> str:
        return type(self.model).__name__

    @property
    def parameters(self) -> int:
        return parameter_count(self.model)

    @property
    def modification(self) -> str | None:
        # A DecodedModel describes its sampler; the model inside may carry a weight modification too.
        texts: list[str] = []
        for side in ([self.described] if self.described is not self.model else []) + [self.model]:
            modification = getattr(side, "hemorrhage_modification", None)
            if modification is not None and hasattr(modification, "describe") and \
                    modification.describe() not in texts:
                texts.append(modification.describe())
        return " + ".join(reversed(texts)) or None

    @property
    def device(self) -> torch.device:
        return self.adapter.device

    @property
    def kind(self) -> str | None:
        return None if self.adapter.kind == "auto" else self.adapter.kind

    @property
    def pad_id(self) -> int:
        return pad_id(self.model)

    @property
    def layer_names(self) -> list[str]:
        return [name for name, _ in self.adapter.layers]

    # ------------------------------------------------------------------ checks
    def paired_with(self, candidate: Any, generation: int) -> Any:
        """The candidate to compare against this baseline: a twin when both wrap one model with two samplers."""
        if isinstance(candidate, ModuleSource) and candidate.model is self.model and \
                (self.decoding is not None or candidate.decoding is not None):
            if self.decoding == candidate.decoding:
                raise HemorrhageError(
                    "candidate is baseline: the same model with the same decoding settings was passed twice, so "
                    "the comparison would be empty. Change the candidate's DecodingConfig or compare a modified "
                    "copy."
                )
            return self.twin(candidate.decoding, candidate.described)
        if candidate.model is not None:
            check_pair(self.model, candidate.model)
        return candidate

    def probes_for(self, probes: Any) -> Probes:
        return as_probes(probes, self.model)

    def check(self, probes: Probes) -> None:
        if self._primary is None:  # a twin's model is checked by its primary
            check_context_length(self.model, probes)
            check_token_ids(self.model, probes)

    # ------------------------------------------------------------------ running
    @contextlib.contextmanager
    def opened(self, device: str | torch.device | None, attention: bool) -> Iterator[None]:
        if self._primary is not None:  # the primary places and switches the shared model
            yield
            return
        with on_device([self.model], device), evaluating(roles={self.role: self.model}), \
                eager_attention(self.model, attention):
            yield

    def observe(self, batch: ProbeBatch, blocks: Sequence[str] = (), attentions: bool = False) -> TensorObservation:
        shared = self._primary._last if self._primary is not None else None
        if shared is not None and shared.batch is batch:
            self._primary._last = None
            return TensorObservation(batch, shared.kind, shared.outputs, {}, shared.attentions, self.decoding)
        wanted = set(blocks)
        kept: dict[str, torch.Tensor] = {}

        def keep(name: str, h: torch.Tensor) -> None:
            if name in wanted:
                kept[name] = h

        with capture_layers(self.adapter.layers, keep):
            outputs, attn = self.adapter.forward(batch, attentions)
        observation = TensorObservation(batch, self.adapter.kind, outputs, kept, attn, self.decoding)
        if self._has_twin:
            self._last = observation
        return observation


def check_pair(baseline: nn.Module, candidate: nn.Module) -> None:
    """Reject pairs that cannot give a meaningful comparison (same object, shared storage, meta, other vocabularies)."""
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
        storages.append(set().union(*map(storage_pointers, tensors)))
    shared = storages[0] & storages[1]
    if shared:
        names = [n for n, p in candidate.named_parameters() if storage_pointers(p) & shared]
        raise HemorrhageError(
            f"baseline and candidate share parameter storage ({len(shared)} tensors, e.g. "
            f"{names[0] if names else 'a buffer'}): the modification was probably applied in place, "
            "so the baseline changed too. Apply it to copy.deepcopy(baseline) instead."
        )
    different = vocabulary_mismatch(baseline, candidate)
    if different:
        raise HemorrhageError(different + ".")


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


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _outside_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning name the first caller outside this package (and contextlib)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and (frame.f_code.co_filename.startswith(_PACKAGE_DIR)
                                        or frame.f_code.co_filename == contextlib.__file__):
        frame, level = frame.f_back, level + 1
    return level


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
                stacklevel=_outside_stacklevel(),
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
