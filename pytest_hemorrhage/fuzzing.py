"""Verdicts for property-based fuzzing: a decided hemorrhage versus not enough evidence.

A check has three verdicts (:class:`~pytest_hemorrhage.report.Report`): ``pass`` (the confidence
bound on the harmful side is inside every threshold), ``fail`` (an estimate is past its threshold)
and ``inconclusive`` (the estimate is inside, its confidence bound is not: more probes would
decide). A gate counts an inconclusive check as a failure. A fuzzer must not: Hypothesis shrinks
toward the mildest failing example, and the mildest modifications that do not pass are nearly
always the ones the probes cannot decide, so shrinking would converge on "not enough evidence"
rather than on a real break. Here an inconclusive example is *rejected* (``hypothesis.reject()``,
as ``assume(False)``): it neither passes nor fails, and the shrinker keeps only decided failures.

Hypothesis is imported only when a check runs inside a Hypothesis test.
"""

from __future__ import annotations

from typing import Any, Sequence

from .check import explain, library_accept_advice
from .engine import compare
from .errors import HemorrhageDetected
from .report import Report

__all__ = ["hemorrhages", "undecided", "decided", "in_final_example", "check", "representative"]


def hemorrhages(report: Report) -> bool:
    """Whether ``report`` is a *decided* hemorrhage: some metric's estimate is past its threshold
    (or an output is not finite). An inconclusive report is not one: it lacks evidence either way.
    Use it as the condition of ``hypothesis.find``."""
    return report.verdict == "fail"


def undecided(report: Report) -> bool:
    """Whether ``report`` is inconclusive and its thresholds count that as a failure (the default):
    the example neither passes the gate nor shows a hemorrhage."""
    return report.verdict == "inconclusive" and report.inconclusive_fails


def _hypothesis_running() -> bool:
    try:
        from hypothesis import currently_in_test_context
    except ImportError:  # pragma: no cover - hypothesis is a dependency
        return False
    return currently_in_test_context()


def in_final_example() -> bool:
    """Whether Hypothesis is replaying the shrunk falsifying example (its last run of a failing test)."""
    if not _hypothesis_running():
        return False
    from hypothesis.control import current_build_context

    return bool(getattr(current_build_context(), "is_final", False))


def decided(report: Report) -> Report:
    """``report``, unless it is :func:`undecided` inside a Hypothesis test: then the example is
    rejected (``hypothesis.reject()``) and counted in the statistics as ``hemorrhage: inconclusive``.
    Outside a Hypothesis test the report comes back as it is, for the caller to branch on."""
    if undecided(report) and _hypothesis_running():
        from hypothesis import event, reject

        event("hemorrhage: inconclusive (rejected)")
        reject()
    return report


def check(baseline: Any, candidate: Any, probes: Any = None, *, suggest: bool = False, **kwargs: Any) -> Report:
    """The check for a ``@given`` test without the pytest fixture: ``compare``, then

    * a decided hemorrhage raises :class:`HemorrhageDetected` (the example fails and shrinks);
    * an inconclusive result is rejected inside a Hypothesis test (it raises, as any failing
      check does, outside one);
    * a pass returns the report.

    Keyword arguments are :func:`~pytest_hemorrhage.engine.compare`'s, threshold overrides included.
    The diagnosis, and with ``suggest=True`` the mitigations tried on copies, are added only to the
    falsifying example Hypothesis replays last, not to every example the shrinker tries.
    """
    __tracebackhide__ = True
    report = compare(baseline, candidate, probes, **kwargs)
    return raise_if_hemorrhage(report, baseline, candidate, probes, suggest=suggest,
                               advice=library_accept_advice(report), rerun=kwargs)


def raise_if_hemorrhage(report: Report, baseline: Any, candidate: Any, probes: Any, *, suggest: bool,
                        advice: Sequence[str], rerun: dict[str, Any]) -> Report:
    """Apply the fuzzing verdict rule to a finished comparison (see :func:`check`)."""
    __tracebackhide__ = True
    decided(report)
    if report.passed:
        return report
    if in_final_example():
        kept = {k: rerun[k] for k in ("layers", "batch_size", "device") if k in rerun}
        kept.setdefault("layers", "auto")
        explain(report, baseline, candidate, probes, suggest=suggest, **kept)
    raise HemorrhageDetected(report.to_text(advice), report)


def representative(reports: Sequence[Report], test_failed: bool) -> tuple[Report, str]:
    """The one check of a fuzzed test that stands for it in a summary, and why it was chosen
    (e.g. ``last check of 23 examples, 3 inconclusive``).

    ``reports`` is every check the test ran, in order. A failed test: its last check (Hypothesis
    replays the shrunk falsifying example last). A passing one: its last decided hemorrhage (a
    search with ``hypothesis.find`` that found one), else its last pass, else its last check.
    """
    if not reports:
        raise ValueError("representative() needs at least one report")
    inconclusive = sum(r.verdict == "inconclusive" for r in reports)
    counts = f"of {len(reports)} example{'s' if len(reports) != 1 else ''}" + (
        f", {inconclusive} inconclusive" if inconclusive else "")
    if not test_failed:
        for wanted, what in (("fail", "last hemorrhage"), ("pass", "last pass")):
            chosen = [r for r in reports if r.verdict == wanted]
            if chosen:
                return chosen[-1], f"{what} {counts}"
    return reports[-1], f"last check {counts}"
