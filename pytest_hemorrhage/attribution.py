"""Why a runtime candidate diverges: the runtime (or the conversion into it) or the compression.

A quantised file run by llama.cpp or ONNX Runtime differs from the Hugging Face baseline for two
reasons at once: the runtime computes differently (its kernels, its conversion of the weights),
and the weights were compressed. Given the same weights *unquantised* in the same runtime (the
reference), three comparisons split the two::

    total        candidate  vs  baseline    (what the gate sees)
    runtime      reference  vs  baseline    (the runtime's noise floor for this model, plus any conversion error)
    compression  candidate  vs  reference   (both in the runtime: the quantisation alone)

Each is a full paired comparison with its own intervals. KL divergences do not add exactly, so
the table also gives each part's share of the total mean KL rather than pretending they sum.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import compare
from .errors import InvalidArgument
from .render.tables import markdown_table, metric_cell, text_table
from .report import Report
from .sources.pairing import live_model, resolve_probes
from .sources.runtime import RuntimeSource

__all__ = ["Attribution", "attribute", "PARTS"]

#: The comparisons of an attribution, in table order: (name, what is compared).
PARTS = (
    ("total", "candidate vs baseline"),
    ("runtime", "reference vs baseline"),
    ("compression", "candidate vs reference"),
)
_COLUMNS = ("part", "compared", "mean KL (95% CI)", "share of total KL", "same top-1 (95% CI)",
            "PPL ratio (95% CI)", "verdict", "seconds")


@dataclass
class Attribution:
    """The three comparisons of :func:`attribute` and what they say.

    ``cause`` is ``"none"`` (the candidate passes), ``"runtime"`` (the unquantised reference already
    fails against the baseline and the quantisation alone does not), ``"compression"`` (the other way
    round), ``"both"`` (each part fails, or neither fails alone but the total does) or
    ``"undecided"`` (the total is inconclusive and neither part fails: more probes would decide).
    """

    reports: dict[str, Report]
    runtime: str
    candidate: str
    reference: str
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def cause(self) -> str:
        if self.reports["total"].verdict == "pass":
            return "none"
        runtime_fails = self.reports["runtime"].verdict == "fail"
        compression_fails = self.reports["compression"].verdict == "fail"
        if runtime_fails and not compression_fails:
            return "runtime"
        if compression_fails and not runtime_fails:
            return "compression"
        if not (runtime_fails or compression_fails) and self.reports["total"].verdict == "inconclusive":
            return "undecided"
        return "both"

    def share(self, part: str) -> float | None:
        """``part``'s mean KL over the total's (None when the total is zero)."""
        total = self.reports["total"].metrics["kl"].estimate
        return self.reports[part].metrics["kl"].estimate / total if total > 0 else None

    @property
    def noise_floor(self) -> Report:
        """The runtime part: the reference in the runtime against the baseline. With a full-precision
        reference (an F32 GGUF, an fp32 ONNX export) it is the runtime's own noise floor."""
        return self.reports["runtime"]

    def explanation(self) -> str:
        """One paragraph: which part is to blame, with its figures, and what to do about it."""
        kl = {part: self.reports[part].metrics["kl"].describe() for part, _ in PARTS}
        if self.cause == "none":
            return f"the candidate passes: {kl['total']}; nothing to attribute"
        if self.cause == "runtime":
            return (f"the runtime or the conversion: the unquantised reference in {self.runtime} already fails "
                    f"against the baseline ({kl['runtime']}). A finer quantisation will not fix this: check the "
                    f"conversion (tokenizer, rotary layout, norms, tied weights) and the {self.runtime} version")
        if self.cause == "compression":
            return (f"the compression: {self.runtime} reproduces the unquantised weights ({kl['runtime']}, its "
                    f"noise floor here) and the quantised file alone fails against them ({kl['compression']}). "
                    "Find the blocks to keep at higher precision with pytest_hemorrhage.localise")
        if self.cause == "undecided":
            return (f"undecided: the total is inconclusive ({kl['total']}) and neither part fails on its own; "
                    "more probes would decide")
        larger = max(("runtime", "compression"), key=lambda part: self.share(part) or 0.0)
        return (f"both: the runtime part ({kl['runtime']}) and the compression part ({kl['compression']}) "
                f"take the candidate past the gate, the {larger} part the most ({self.share(larger):.0%} of the "
                "total mean KL)")

    def rows(self) -> list[list[str]]:
        """The table's cells, one row per part (columns of :meth:`to_text`)."""
        out = []
        for part, compared in PARTS:
            report = self.reports[part]
            share = self.share(part)
            out.append([part, compared, metric_cell(report.metrics.get("kl")),
                        "-" if share is None else f"{share:.1%}", metric_cell(report.metrics.get("top1")),
                        metric_cell(report.metrics.get("ppl_ratio")), report.verdict,
                        f"{self.seconds.get(part, float('nan')):.1f}"])
        return out

    def _heading(self) -> str:
        return (f"candidate: {self.candidate}\nreference (unquantised, same runtime): {self.reference}\n"
                f"cause: {self.explanation()}")

    def to_text(self) -> str:
        return f"{self._heading()}\n\n{text_table(_COLUMNS, self.rows())}"

    def to_markdown(self) -> str:
        return f"{markdown_table(_COLUMNS, self.rows())}\n\n**cause**: {self.explanation()}"

    def to_dict(self) -> dict[str, Any]:
        return {"cause": self.cause, "runtime": self.runtime, "candidate": self.candidate,
                "reference": self.reference, "seconds": dict(self.seconds),
                "share_of_total_kl": {part: self.share(part) for part, _ in PARTS},
                "reports": {part: report.to_dict() for part, report in self.reports.items()}}

    def __str__(self) -> str:
        return self.to_text()


def attribute(baseline: Any, candidate: RuntimeSource, reference: RuntimeSource | None = None, probes: Any = None,
              thresholds: Any = None, *, batch_size: int = 8, progress: bool = False,
              **threshold_overrides: Any) -> Attribution:
    """Split ``candidate``'s divergence from ``baseline`` into a runtime part and a compression part.

    ``candidate`` and ``reference`` run in the same runtime (``ph.llama_cpp(...)``,
    ``ph.onnx_runtime(...)``); ``reference`` holds the candidate's weights unquantised (an F32 or
    F16 GGUF, an fp32 ONNX export). ``baseline`` is the Hugging Face model or a snapshot of it.
    Without a ``reference``, a GGUF candidate against a live baseline gets one written from the
    baseline's own weights in the candidate's layout (:func:`~pytest_hemorrhage.gguf_model.write_reference_gguf`,
    a temporary F32 file): right by construction, so a conversion bug in the candidate then counts
    as compression; pass your own unquantised conversion to test the converter.
    ``thresholds`` and keyword overrides (``max_kl=0.01``) judge each part as a gate would.
    Each comparison's progress shows on standard error with ``progress=True``.
    """
    if reference is None:
        with tempfile.TemporaryDirectory(prefix="hemorrhage-reference-") as folder:
            written = _reference_from_baseline(baseline, candidate, Path(folder))
            found = attribute(baseline, candidate, written, probes, thresholds, batch_size=batch_size,
                              progress=progress, **threshold_overrides)
        found.reference = f"F32 GGUF written from the baseline's weights in the candidate's layout ({written.runtime})"
        return found
    for role, side in (("candidate", candidate), ("reference", reference)):
        if not isinstance(side, RuntimeSource):
            raise InvalidArgument(f"{role}: expected a runtime source (ph.llama_cpp(path), ph.onnx_runtime(path)), "
                                  f"got {type(side).__name__}; a torch candidate needs no attribution: its "
                                  "weights are compared with hooks by ph.compare")
    for role, side in (("candidate", candidate), ("reference", reference)):
        if side.topk_limit is not None:
            raise InvalidArgument(f"{role}: {side.label} returns only its top {side.topk_limit} log-probabilities; the "
                                  "compression part compares two runtime outputs, which needs every logit of both. "
                                  "Attribute the files in a runtime that gives them (ph.llama_cpp, ph.onnx_runtime)")
    if type(candidate) is not type(reference):
        raise InvalidArgument(f"reference: runs in {reference.runtime}, the candidate in {candidate.runtime}; the "
                              "runtime part is only measured with both files in the same runtime")
    if candidate.target == reference.target:
        raise InvalidArgument(f"reference: {reference.target} is the candidate itself; pass the unquantised file")
    pairs = {"total": (baseline, candidate), "runtime": (baseline, reference), "compression": (reference, candidate)}
    reports, seconds = {}, {}
    probe_set = resolve_probes(baseline, probes)
    with candidate.loaded(), reference.loaded():  # each file loaded once for the three comparisons
        for part, _ in PARTS:
            started = time.perf_counter()
            reports[part] = compare(*pairs[part], probe_set, thresholds, layers=None, batch_size=batch_size,
                                    progress=progress, name=f"{part} part", **threshold_overrides)
            seconds[part] = time.perf_counter() - started
    return Attribution(reports, candidate.runtime, candidate.label, reference.label, seconds)


def _reference_from_baseline(baseline: Any, candidate: Any, folder: Path) -> RuntimeSource:
    """The baseline's own weights as an F32 GGUF in ``candidate``'s layout, run as the candidate is."""
    from .gguf_model import write_reference_gguf
    from .sources.llamacpp import LlamaCppSource

    model = live_model(baseline)
    if not isinstance(candidate, LlamaCppSource) or model is None:
        why = ("the baseline is a snapshot, which holds no weights to write one from" if model is None else
               f"one is written from the baseline's weights for a GGUF candidate only, not {type(candidate).__name__}")
        raise InvalidArgument(f"reference: none given, and {why}; pass the candidate's weights unquantised in the "
                              "same runtime (an F32 or F16 GGUF; for ONNX, "
                              "pytest_hemorrhage.onnx_export.export_causal_lm(model, 'fp32.onnx'))")
    path = write_reference_gguf(model, candidate.target, folder / "reference.F32.gguf")
    return LlamaCppSource(path, n_threads=candidate.n_threads, role="reference")
