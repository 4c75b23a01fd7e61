"""From what a user passed to the two sources of a comparison, checked as a pair.

A baseline may be a model, the path of a Hugging Face model folder or of a snapshot file, a :class:`~pytest_hemorrhage.modify.DecodedModel` or a
:class:`~pytest_hemorrhage.snapshot.Snapshot`; a candidate a model, a model folder's path or a DecodedModel; either
may be an object that is already a :class:`~pytest_hemorrhage.sources.Source`. This is the one
place that tells the kinds apart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import InvalidArgument
from ..model_folder import load_model
from ..modify.decoding import unwrap_decoding
from ..probes import Probes
from ..snapshot import Snapshot, load_snapshot
from ..validate import check_tokenizers, vocab_size
from . import Source
from .module import ModuleSource
from .runtime import NO_HIDDEN_STATES, RuntimeSource
from .snapshot import SnapshotSource

__all__ = ["pair_sources", "resolve_probes", "live_model", "opened"]


def pair_sources(baseline: Any, candidate: Any, probes: Any, *, layers: Any = "auto", output: str = "auto",
                 generation: int = 0,
                 allow_tokenizer_mismatch: bool = False) -> tuple[Source, Source, Probes, list[str]]:
    """``(baseline source, candidate source, probe set, notes)``, after every check of the inputs.

    Checks, in order: the kinds of both sides, the pair (not one object twice, no shared storage,
    one vocabulary; a snapshot takes neither decoding settings nor ``generation``), the tokenizers,
    the probes (resolved by the baseline side), and whether each side can run them. A tokenizer
    mismatch raises unless ``allow_tokenizer_mismatch``; then it is warned about and returned in
    ``notes`` for the report.
    """
    base = _source(baseline, "baseline", layers, output)
    cand = base.paired_with(_source(candidate, "candidate", layers, output), generation)
    if isinstance(cand, RuntimeSource):
        _check_runtime_vocabulary(base, cand)
    allowed = check_tokenizers(base.origin, cand.origin, probes, allow=allow_tokenizer_mismatch)
    notes = [allowed] if allowed is not None else []
    if layers is not None and base.layer_names and not cand.layer_names and cand.model is None:
        notes.append(NO_HIDDEN_STATES.format(side=cand.label))
    probe_set = base.probes_for(probes)
    for source in (base, cand):
        source.check(probe_set)
    return base, cand, probe_set, notes


def resolve_probes(baseline: Any, probes: Any) -> Probes:
    """The probe set ``probes`` stands for against ``baseline`` (the built-in set, a snapshot's recorded
    probes...), without the checks of :func:`pair_sources`, which every comparison runs itself."""
    return _source(baseline, "baseline", None, "auto").probes_for(probes)


def _check_runtime_vocabulary(base: Source, cand: RuntimeSource) -> None:
    """A runtime's output must have the baseline's number of token ids; checked before any probe runs."""
    if isinstance(base, SnapshotSource):
        recorded = base.snapshot.meta.get("vocab_size")
        known = (int(recorded), f"the {base.label}") if recorded is not None else None
    elif isinstance(base, RuntimeSource):
        known = (base.vocab_size, f"the baseline ({base.label})")
    else:
        found = vocab_size(base.model) if base.model is not None else None
        known = (found[0], f"the baseline {type(base.model).__name__} ({found[1]})") if found else None
    if known is not None:
        cand.check_vocabulary(*known)


def opened(side: Any, role: str) -> Any:
    """``side`` itself, or, for a path, what it names: a Hugging Face model folder (loaded with its
    tokenizer registered, see :func:`~pytest_hemorrhage.model_folder.load_model`) or, as a baseline,
    a snapshot file (``load_snapshot``)."""
    if not isinstance(side, (str, os.PathLike)):
        return side
    path = Path(side)
    if path.is_file():
        if role == "baseline" and path.suffix == ".safetensors":
            return load_snapshot(path)
        what = "a Hugging Face model folder or a snapshot file (.safetensors)" if role == "baseline" \
            else "a Hugging Face model folder (a snapshot can only be the baseline)"
        raise InvalidArgument(f"{role}: {side} is a file; expected {what}")
    return load_model(path, role)[0]


def _source(side: Any, role: str, layers: Any, output: str) -> Source:
    side = opened(side, role)
    model, decoding = unwrap_decoding(side)
    if isinstance(model, nn.Module):
        return ModuleSource(model, role, layers, output, decoding, described=side)
    if role == "baseline" and isinstance(model, Snapshot):
        source = SnapshotSource(model)
        source.decoding = decoding
        return source
    if all(callable(getattr(side, method, None)) for method in ("observe", "opened")):
        return side  # already a source (a runtime of its own)
    expected = ("a torch.nn.Module, a Snapshot (load_snapshot) or a path to either" if role == "baseline"
                else "a torch.nn.Module or the path of a Hugging Face model folder")
    raise InvalidArgument(f"{role}: expected {expected}, got {type(model).__name__}")


def live_model(side: Any) -> nn.Module | None:
    """The torch model behind ``side`` (a model or a DecodedModel), or None for a recording."""
    model, _ = unwrap_decoding(side)
    return model if isinstance(model, nn.Module) else None
