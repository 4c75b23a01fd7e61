"""Which block of a GGUF file costs the most, found without hooks into the runtime.

A runtime gives no hidden states, so the first-bad-layer search of a torch candidate cannot reach
it. The weights can: each tensor of the GGUF file is dequantised (by transformers' GGUF reader,
which also undoes llama.cpp's rotary row order) and swapped into a copy of the PyTorch baseline,
one block at a time. Each block's cost is a full paired comparison of the baseline with the
copy that carries only that block's quantised weights. The block that costs most is the one to
keep at higher precision; :meth:`Localisation.verify` re-makes the file with it (and then more
blocks, in order of cost) taken from a higher-precision file and runs the gate on the result in
llama.cpp itself.

Localisation needs a live baseline (a model, not a snapshot) of the architecture the file was
converted from, and costs one comparison per block.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

from .capture import find_decoder_blocks
from .engine import compare
from .errors import InvalidArgument
from .gguf_files import gguf_tensor_types, replace_tensors_gguf
from .gguf_model import dequantised_tensors, gguf_names
from .render.tables import markdown_table, metric_cell, text_table
from .report import Report
from .probes import as_probes
from .sources.module import ModuleSource
from .sources.pairing import live_model

__all__ = ["Localisation", "BlockCost", "Verification", "localise"]

_COLUMNS = ("rank", "group", "GGUF tensors", "types", "mean KL (95% CI)", "same top-1 (95% CI)", "verdict")
#: The row for every quantised tensor swapped in at once.
WHOLE_FILE = "whole file"
#: The most bytes of the baseline's outputs kept to replay to every comparison of a localisation
#: (the default model on the 64 built-in probes needs about 1.1 GB).
REPLAY_BUDGET_BYTES = 4 << 30


@dataclass
class BlockCost:
    """One group of tensors (a decoder block, the embedding, the output head) swapped in alone."""

    group: str  # the baseline's module name: "model.layers.7", "model.embed_tokens"
    gguf_tensors: list[str]  # the file's tensor names of the group: "blk.7.attn_q.weight", ...
    types: list[str]  # their GGUF types, sorted and unique: ["Q5_0", "Q6_K"]
    #: None when every tensor of the group equals the baseline's (nothing to measure)
    report: Report | None = field(repr=False)

    @property
    def kl(self) -> float:
        return 0.0 if self.report is None else self.report.metrics["kl"].estimate


@dataclass
class Verification:
    """One re-made file: the groups kept at higher precision, the file, its size and the gate's report."""

    kept: list[str]
    path: Path
    size_bytes: int
    report: Report = field(repr=False)
    seconds: float

    @property
    def passed(self) -> bool:
        return self.report.passed


@dataclass
class Localisation:
    """The cost of each group of the GGUF candidate's tensors, swapped alone into the baseline."""

    candidate: Path
    costs: list[BlockCost]  # in the model's order
    whole_file: Report = field(repr=False)
    seconds: float
    baseline: Any = field(repr=False, default=None)
    probes: Any = field(repr=False, default=None)
    compare_options: dict[str, Any] = field(repr=False, default_factory=dict)
    verifications: list[Verification] = field(default_factory=list)

    @property
    def ranking(self) -> list[BlockCost]:
        """The groups with any quantised tensor, costliest first."""
        return sorted((c for c in self.costs if c.report is not None), key=lambda c: -c.kl)

    @property
    def blamed(self) -> str | None:
        """The group whose quantised tensors cost the most on their own (None when no tensor changed)."""
        ranking = self.ranking
        return ranking[0].group if ranking else None

    def tensor_type_options(self, count: int = 1, kind: str = "q8_0") -> list[str]:
        """llama-quantize options that keep the ``count`` costliest groups at ``kind`` when quantising
        again with your own toolchain (imatrix and all): ``['--tensor-type', 'blk\\.11\\.=q8_0', ...]``."""
        options = []
        for cost in self.ranking[:count]:
            prefix = os.path.commonprefix(cost.gguf_tensors) if len(cost.gguf_tensors) > 1 else cost.gguf_tensors[0]
            options += ["--tensor-type", f"{re.escape(prefix)}={kind}"]
        return options

    def rows(self) -> list[list[str]]:
        ranks = {c.group: i for i, c in enumerate(self.ranking, 1)}
        rows = []
        for cost in [*self.costs, None]:
            if cost is None:
                report, group, tensors, types, rank = self.whole_file, WHOLE_FILE, "all", "", ""
            else:
                report, group, rank = cost.report, cost.group, str(ranks.get(cost.group, "-"))
                tensors, types = _tensor_span(cost.gguf_tensors), ", ".join(cost.types)
            if report is None:
                rows.append([rank, group, tensors, types, "unchanged", "unchanged", "-"])
            else:
                rows.append([rank, group, tensors, types, metric_cell(report.metrics.get("kl")),
                             metric_cell(report.metrics.get("top1")), report.verdict])
        return rows

    def to_text(self) -> str:
        lines = [f"candidate: {self.candidate}", f"blamed: {self.blamed} ({self.seconds:.0f} s)", "",
                 text_table(_COLUMNS, self.rows())]
        if self.ranking:
            lines += ["", f"to keep it at Q8_0 with llama-quantize: {shlex.join(self.tensor_type_options())}"]
        lines.extend(["", *map(_describe_verification, self.verifications)] if self.verifications else [])
        return "\n".join(lines)

    def to_markdown(self) -> str:
        text = markdown_table(_COLUMNS, self.rows())
        if self.verifications:
            text += "\n\n" + "\n".join(f"- {_describe_verification(v)}" for v in self.verifications)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": str(self.candidate), "blamed": self.blamed, "seconds": self.seconds,
            "costs": [{"group": c.group, "gguf_tensors": c.gguf_tensors, "types": c.types,
                       "report": None if c.report is None else c.report.to_dict()} for c in self.costs],
            "whole_file": self.whole_file.to_dict(),
            "verifications": [{"kept": v.kept, "path": str(v.path), "size_bytes": v.size_bytes,
                               "seconds": v.seconds, "report": v.report.to_dict()} for v in self.verifications],
        }

    def __str__(self) -> str:
        return self.to_text()

    def verify(self, finer: str | os.PathLike[str], *, steps: Sequence[int] = (1, 2, 4), bisect: bool = False,
               folder: str | os.PathLike[str] | None = None, n_threads: int | None = None) -> Verification | None:
        """Re-make the candidate with its costliest groups taken from ``finer`` (the same model at a
        finer type: a Q8_0, F16 or F32 GGUF) and run the gate on each file in llama.cpp.

        For each count in ``steps``, that many of the costliest groups are kept; it stops at the first
        file that passes. With ``bisect``, it then halves the gap between the last failing count and
        the passing one until the two are adjacent, so the count returned passes and one fewer fails.
        Files go to ``folder`` (a temporary folder by default) and every attempt is kept in
        :attr:`verifications`. Returns the passing attempt with the fewest groups, or None.
        """
        if not steps or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in steps):
            raise InvalidArgument(f"steps: counts of groups to keep, each >= 1; got {steps!r}")
        if not self.ranking:
            raise InvalidArgument(f"nothing to keep: every tensor of {self.candidate} equals the baseline's")
        target = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="hemorrhage-keep-"))
        target.mkdir(parents=True, exist_ok=True)
        failing = 0
        for count in sorted(set(min(k, len(self.ranking)) for k in steps)):
            attempt = self._remade(count, finer, target, n_threads)
            if not attempt.passed:
                failing = count
                continue
            while bisect and count - failing > 1:
                middle = self._remade((failing + count) // 2, finer, target, n_threads)
                if middle.passed:
                    attempt, count = middle, len(middle.kept)
                else:
                    failing = len(middle.kept)
            return attempt
        return None

    def _remade(self, count: int, finer: str | os.PathLike[str], folder: Path, n_threads: int | None) -> Verification:
        """The candidate with its ``count`` costliest groups from ``finer``, gated in llama.cpp."""
        from .runtimes import llama_cpp

        kept = self.ranking[:count]
        started = time.perf_counter()
        path = folder / f"{self.candidate.stem}.keep-{count}.gguf"
        replace_tensors_gguf(self.candidate, finer, path, [n for c in kept for n in c.gguf_tensors])
        report = compare(self.baseline, llama_cpp(path, n_threads=n_threads), self.probes, layers=None,
                         **self.compare_options)
        attempt = Verification([c.group for c in kept], path, path.stat().st_size, report,
                               time.perf_counter() - started)
        self.verifications.append(attempt)
        return attempt


def localise(baseline: Any, candidate: str | os.PathLike[str] | Any, probes: Any = None, thresholds: Any = None, *,
             batch_size: int = 8, progress: bool = False, **threshold_overrides: Any) -> Localisation:
    """Measure what each block of the GGUF file ``candidate`` costs when it alone is swapped into ``baseline``.

    ``baseline`` is the live Hugging Face model the file was converted from; ``candidate`` is the
    file's path (or a ``ph.llama_cpp`` source of it). Groups: each decoder block, and each tensor
    outside the blocks (embedding, final norm, output head). A group whose dequantised tensors
    equal the baseline's is reported unchanged without a run. ``thresholds`` and overrides judge
    each row as the gate would; ``progress=True`` prints one line per group to standard error.
    """
    model = live_model(baseline)
    if model is None:
        raise InvalidArgument("baseline: localisation swaps the file's tensors into the baseline's weights, so it "
                              "needs the live model (a snapshot holds no weights); pass the Hugging Face model")
    path = Path(getattr(candidate, "target", candidate))
    if not path.is_file():
        raise InvalidArgument(f"candidate: {path} is not a file; pass the path of the .gguf file to localise")
    started = time.perf_counter()
    probe_set = as_probes(probes, model)
    dequantised = dequantised_tensors(model, path)
    types = gguf_tensor_types(path)
    names = gguf_names(model, path)
    extra = sorted(set(types) - set(names.values()))
    if extra:
        raise InvalidArgument(f"candidate: {path} holds tensor {extra[0]!r}"
                              f"{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''}, which the baseline "
                              f"{type(model).__name__} has no parameter for; pass the model the file was "
                              "converted from")
    options = {"thresholds": thresholds, "batch_size": batch_size, **threshold_overrides}
    work = copy.deepcopy(model)
    base = _ReplayedBaseline(ModuleSource(model, "baseline", layers=None), REPLAY_BUDGET_BYTES)
    costs = []
    groups = _groups(model, dequantised)
    for index, (group, tensors) in enumerate(groups.items(), 1):
        gguf = sorted(names[t] for t in tensors)
        changed = [t for t in tensors if not torch.equal(dequantised[t], model.get_parameter(t).detach().cpu())]
        report = None
        if changed:
            with _swapped(work, {t: dequantised[t] for t in changed}):
                report = compare(base, work, probe_set, layers=None, name=group, **options)
        costs.append(BlockCost(group, gguf, sorted({types[n] for n in gguf}), report))
        if progress:
            kl = "unchanged" if report is None else report.metrics["kl"].describe(with_ci=True)
            print(f"localise [{index}/{len(groups)}] {group}: {kl}", file=sys.stderr, flush=True)
    with _swapped(work, dequantised):
        whole = compare(base, work, probe_set, layers=None, name=WHOLE_FILE, **options)
    if progress:
        print(f"localise: {WHOLE_FILE}: {whole.metrics['kl'].describe()}", file=sys.stderr, flush=True)
    return Localisation(path, costs, whole, time.perf_counter() - started, model, probe_set, options)


class _ReplayedBaseline:
    """The baseline's side of every comparison of one localisation: its outputs on each batch are
    measured once and replayed, since only the copy changes from one group to the next.

    Everything but :meth:`observe` is the wrapped source's. A batch is replayed only when its token
    ids equal the recorded ones; past ``budget_bytes`` of kept outputs, batches are measured afresh.
    """

    def __init__(self, source: Any, budget_bytes: int) -> None:
        self._source = source
        self._budget = budget_bytes
        self._kept: dict[tuple, Any] = {}
        self.replayed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def observe(self, batch: Any, blocks: Sequence[str] = (), attentions: bool = False) -> Any:
        key = (tuple(batch.units), tuple(batch.input_ids.shape), tuple(blocks), attentions)
        kept = self._kept.get(key)
        if kept is not None and torch.equal(kept.batch.input_ids, batch.input_ids):
            self.replayed += 1
            return kept
        observation = self._source.observe(batch, blocks, attentions)
        size = observation.outputs.numel() * observation.outputs.element_size()
        if not blocks and not attentions and size <= self._budget:
            self._budget -= size
            self._kept[key] = observation
        return observation


def _groups(model: nn.Module, tensors: Iterable[str]) -> dict[str, list[str]]:
    """The baseline's parameter names grouped in model order: one group per decoder block, one per other module."""
    blocks = find_decoder_blocks(model)
    prefix = f"{blocks[0]}." if blocks else None
    groups: dict[str, list[str]] = {}
    wanted = set(tensors)
    for name, _ in model.named_parameters():
        if name not in wanted:
            continue
        if prefix is not None and name.startswith(prefix):
            group = prefix + name[len(prefix):].split(".", 1)[0]
        else:
            group = name.rsplit(".", 1)[0]
        groups.setdefault(group, []).append(name)
    return groups


@contextmanager
def _swapped(model: nn.Module, tensors: dict[str, torch.Tensor]) -> Iterator[None]:
    """``model`` with ``tensors`` copied into its parameters, and its own values back afterwards."""
    saved = {name: model.get_parameter(name).detach().clone() for name in tensors}
    try:
        with torch.no_grad():
            for name, tensor in tensors.items():
                model.get_parameter(name).copy_(tensor)
        yield
    finally:
        with torch.no_grad():
            for name, tensor in saved.items():
                model.get_parameter(name).copy_(tensor)


def _tensor_span(names: Sequence[str]) -> str:
    """``blk.7.*`` for a block's tensors, the name itself for one tensor."""
    if len(names) == 1:
        return names[0]
    head = os.path.commonprefix(list(names))
    return f"{head}*" if head else ", ".join(names)


def _describe_verification(attempt: Verification) -> str:
    kl = attempt.report.metrics["kl"].describe()
    return (f"kept at higher precision: {', '.join(attempt.kept)} -> {attempt.report.verdict} ({kl}); "
            f"{attempt.size_bytes / 2**20:.1f} MiB, {attempt.seconds:.0f} s")
