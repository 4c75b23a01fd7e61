"""The orchestrator: a check is a comparison, then, on failure, the diagnosis and verified mitigations.

Every front end (the library, the pytest fixture, the ``hemorrhage`` command) calls these the
same way, so a failure explains itself identically wherever it is seen.
"""

from __future__ import annotations

import time
from typing import Any

from .diagnose import diagnose
from .engine import compare
from .errors import HemorrhageDetected
from .mitigate.registry import MITIGATIONS
from .mitigate.suggest import not_applicable
from .mitigate.suggest import suggest as run_suggest
from .packed import packed_by
from .probes import as_probes
from .progress import MITIGATION, OnProgress, ProgressEvent
from .render.text import thresholds_to_loosen
from .report import Report
from .sources.pairing import live_model, opened

__all__ = ["assert_no_hemorrhage", "explain", "run_check"]


def explain(report: Report, baseline: Any, candidate: Any, probes: Any = None, *, suggest: bool = True,
            on_progress: OnProgress | None = None, **compare_kwargs: Any) -> Report:
    """Add the diagnosis and, with a live baseline, verified mitigations to a failing ``report``.

    Fills ``report.patterns`` (:func:`pytest_hemorrhage.diagnose.diagnose`) and, when ``suggest``
    is true, ``report.suggestions`` and the one-line ``report.suggestion`` with the best
    mitigation tried (:func:`pytest_hemorrhage.mitigate.suggest.suggest`), or, when none was
    found, why each one does not apply, and ``report.mitigation_time`` with the seconds the
    search took in all and for each mitigation tried. ``compare_kwargs``
    (``batch_size``, ``device``, ``layers`` ...) are used when re-measuring; ``on_progress``
    hears when the search starts and what each mitigation cost. Returns ``report``.
    """
    base_model, cand_model = live_model(baseline), live_model(candidate)
    live = base_model is not None
    shared = base_model is cand_model
    if live and probes is None:
        # Resolved once, from the baseline's tokenizer: the copies that mitigations make have none.
        probes = as_probes(None, base_model)
    patterns = diagnose(report, base_model if live and not shared else None,
                        cand_model if live and not shared else None, probes if live and not shared else None)
    report.patterns = [{**p.to_dict(), "description": p.describe()} for p in patterns]
    packer = packed_by(cand_model) if live and not shared else None
    if packer is not None:
        report.notes.append(f"diagnosis: activation outlier clipping was not measured: the candidate's weights are "
                            f"packed by {packer}, whose linears quantize their inputs, if at all, inside their "
                            "own kernels where no hook sees them")
    if suggest and live and cand_model is None:
        label = getattr(candidate, "label", type(candidate).__name__)
        report.suggestion = (f"no mitigation applies: the candidate runs in {label} and holds no torch weights "
                             "that a mitigation could change; ph.attribute tells a runtime or conversion problem "
                             "from compression loss, and ph.localise names the GGUF blocks to keep at higher "
                             "precision (docs/attribution.md)")
    elif suggest and live:
        each: dict[str, float] = {}

        def timed(event: ProgressEvent) -> None:
            if event.stage == MITIGATION and event.mitigation is not None:
                each[event.mitigation] = round(event.seconds, 3)
            if on_progress is not None:
                on_progress(event)

        start = time.perf_counter()
        # Only the figures are kept: each repaired copy is freed before the next mitigation makes its own.
        found = run_suggest(report, baseline, candidate, probes, on_progress=timed, keep_models=False,
                            **compare_kwargs)
        report.mitigation_time = {"total_seconds": round(time.perf_counter() - start, 3), "seconds": each}
        report.suggestions = [s.to_dict() for s in found]
        if found:
            best = found[0]
            report.suggestion = ("verified fix: " if best.passed else "best mitigation tried (still fails): ") + \
                best.describe()
            if packer is not None:  # what packed weights ruled out, said even when another mitigation helped
                report.notes += [f"mitigation {name} not tried: {why}"
                                 for name, why in not_applicable(baseline, candidate).items()]
        else:
            report.suggestion = _why_none(baseline, candidate)
    return report


def _why_none(baseline: Any, candidate: Any) -> str:
    """The line that replaces a suggestion when none was found: why each mitigation gave none."""
    reasons = not_applicable(baseline, candidate)
    # A mitigation that applies but found no result failed while it was tried; its warning says how.
    failed = {name: "failed while it was tried (see its warning)" for name in MITIGATIONS if name not in reasons}
    opening = "no mitigation could be verified: " if failed else "no mitigation applies: "
    return opening + "; ".join(f"{name}: {why}" for name, why in {**reasons, **failed}.items())


def run_check(baseline: Any, candidate: Any, probes: Any = None, *, suggest: bool = True, **kwargs: Any) -> Report:
    """Compare and, when the check does not pass, explain why (diagnosis, verified mitigations).

    Never raises on a failing verdict: front ends decide how to fail (an AssertionError in the
    library and pytest, an exit code in the command line). Keyword arguments are those of
    :func:`~pytest_hemorrhage.engine.compare` (``thresholds``, ``layers``, ``batch_size``,
    ``device``, ``allow_tokenizer_mismatch`` ...), threshold overrides included; ``layers``, ``batch_size``,
    ``device`` and ``allow_tokenizer_mismatch`` are used again when mitigations are re-measured.
    ``suggest=False`` skips the mitigations (faster).
    ``on_progress`` (a callable taking a :class:`~pytest_hemorrhage.progress.ProgressEvent`) hears
    the probes measured, the verdict, and the start and cost of the mitigations.
    """
    baseline, candidate = opened(baseline, "baseline"), opened(candidate, "candidate")  # once, for the explanation too
    report = compare(baseline, candidate, probes, **kwargs)
    if not report.passed:
        rerun = {k: kwargs[k] for k in ("layers", "batch_size", "device", "allow_tokenizer_mismatch", "on_progress")
                 if k in kwargs}
        rerun.setdefault("layers", "auto")
        explain(report, baseline, candidate, probes, suggest=suggest, **rerun)
    return report


def assert_no_hemorrhage(baseline: Any, candidate: Any, probes: Any = None, **kwargs: Any) -> Report:
    """Compare and raise :class:`HemorrhageDetected` (an AssertionError) unless the check passes.

    Keyword arguments are those of :func:`run_check`: :func:`~pytest_hemorrhage.engine.compare`'s,
    threshold overrides included (``max_kl=0.01``), and ``suggest``. On failure the message names
    the vulnerability pattern found and, unless ``suggest=False`` (faster), the best mitigation
    that was tried on copies and re-measured. Returns the report when it passes.
    """
    report = run_check(baseline, candidate, probes, **kwargs)
    if not report.passed:
        # The traceback keeps this frame (pytest keeps the last failure's for post-mortem debugging):
        # it must not keep the models too, often a candidate copy made just for this call.
        del baseline, candidate, probes, kwargs
        raise HemorrhageDetected(report.to_text(library_accept_advice(report)), report)
    return report


def library_accept_advice(report: Report) -> list[str]:
    """How a library caller accepts a failing check on purpose: a looser threshold argument."""
    keywords = ", ".join(f"{key}=..." for key in thresholds_to_loosen(report))
    return [f"pass a looser threshold, assert_no_hemorrhage(..., {keywords})"] if keywords else []
