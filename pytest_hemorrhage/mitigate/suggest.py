"""suggest(): try the mitigations that apply to a failing comparison, re-measure each, rank them.

Every registered mitigation (:mod:`pytest_hemorrhage.mitigate.registry`: the built-in four and
any a user registers) is asked the same way whether it applies and then to mitigate. Each is
calibrated on probes disjoint from the evaluation probes when a tokenizer is known (the built-in
set drawn with another seed), then verified with :func:`compare` on the very probes and
thresholds of the failing report, so its before/after figures are like for like.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..arguments import must_be
from ..engine import compare
from ..errors import HemorrhageError, InvalidArgument
from ..probes import Probes, as_probes, tokenizer_for
from ..progress import MITIGATED, MITIGATING, MITIGATION, OnProgress, ProgressEvent
from ..report import METRIC_INFO, _fmt
from ..snapshot import Snapshot
from ..thresholds import Thresholds
from . import Applies, Mitigation, Mitigator
from .registry import MITIGATIONS

__all__ = ["Suggestion", "suggest", "not_applicable", "MITIGATIONS", "calibration_probes"]

#: Calibration probes when a tokenizer is known: seed 1 of the built-in set, short and few,
#: so a suggestion costs a handful of forward passes.
CALIBRATION_PROBES = 16
CALIBRATION_LENGTH = 64
CALIBRATION_SEED = 1


@dataclass
class Suggestion:
    """A mitigation that was applied to copies and re-measured on the failing check's probes."""

    name: str
    description: str
    metric: str
    before: float
    after: float
    passed: bool
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    mitigation: Mitigation | None = None
    report: Any = None

    def describe(self) -> str:
        """``what it changed: KL 0.084 -> 0.012 (checked, passes)``."""
        label = METRIC_INFO.get(self.metric, (self.metric,))[0]
        verdict = "passes" if self.passed else "still fails"
        return (f"{self.description}: {label} {_fmt(self.metric, self.before)} -> "
                f"{_fmt(self.metric, self.after)} (checked, {verdict})")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "metric": self.metric,
                "before": self.before, "after": self.after, "passed": self.passed,
                "seconds": round(self.seconds, 3), "details": self.details, "text": self.describe()}


def _applies(mitigator: Mitigator, baseline: Any, candidate: Any) -> Applies:
    """``mitigator.applies(...)`` as an :class:`Applies`; one that raises does not apply."""
    try:
        answer = mitigator.applies(baseline, candidate)
    except (HemorrhageError, InvalidArgument) as exc:
        return Applies.no(str(exc))
    return answer if isinstance(answer, Applies) else Applies(bool(answer))


def _chosen(names: list[str] | None) -> list[Mitigator]:
    if names is None:
        return list(MITIGATIONS.values())
    unknown = [n for n in names if n not in MITIGATIONS]
    if unknown:
        raise must_be("mitigations", f"names of registered mitigations ({', '.join(MITIGATIONS)})", names,
                      f"unknown: {', '.join(map(repr, unknown))}")
    return [MITIGATIONS[n] for n in names]


def not_applicable(baseline: Any, candidate: Any, mitigations: list[str] | None = None) -> dict[str, str]:
    """``{name: why not}`` for each registered mitigation (or each of ``mitigations``) that does
    not apply to this pair, e.g. to say "no mitigation applies: ..." when :func:`suggest` finds none."""
    answers = {m.name: _applies(m, baseline, candidate) for m in _chosen(mitigations)}
    return {name: answer.reason for name, answer in answers.items() if not answer}


def calibration_probes(baseline: Any, probes: Any) -> Any:
    """Probes to calibrate mitigations on: disjoint built-in probes when a tokenizer is known, else ``probes``."""
    model = getattr(baseline, "model", baseline)  # a DecodedModel's tokenizer is its model's
    tokenizer = tokenizer_for(model)
    evaluation = as_probes(probes, model)
    if tokenizer is not None and evaluation.is_tokens:
        try:
            (calib,) = Probes.builtin_split(tokenizer, (CALIBRATION_PROBES,), max_length=CALIBRATION_LENGTH,
                                            seed=CALIBRATION_SEED, exclude=evaluation)
        except InvalidArgument:  # the evaluation probes hold nearly the whole built-in corpus
            return evaluation
        return calib
    return evaluation


def _plan(chosen: list[Mitigator], applying: list[Mitigator]) -> str:
    """``gradient_pruning, fallback (dynamic_scaling does not apply)``: what the search is about to try."""
    tried = ", ".join(m.name for m in applying) or "none applies"
    skipped = [m.name for m in chosen if m not in applying]
    if not skipped:
        return tried
    return f"{tried} ({', '.join(skipped)} {'does' if len(skipped) == 1 else 'do'} not apply)"


def _headline_metric(report: Any) -> str:
    for m in report.metrics.values():
        if m.verdict in ("fail", "inconclusive"):
            return m.name
    return "kl" if "kl" in report.metrics else next(iter(report.metrics))


def suggest(
    report: Any,
    baseline: Any,
    candidate: Any,
    probes: Any = None,
    thresholds: Any = None,
    *,
    mitigations: list[str] | None = None,
    calibration: Any = None,
    on_progress: OnProgress | None = None,
    keep_models: bool = True,
    **compare_kwargs: Any,
) -> list[Suggestion]:
    """Try the mitigations that apply to ``candidate``; return verified suggestions, best first.

    ``report`` is the failing comparison of ``candidate`` against ``baseline`` on ``probes``;
    each mitigation is applied to copies, re-compared on the same probes and thresholds, and
    ranked: passing ones first, then by the failing metric. ``mitigations`` limits the names
    tried (see :data:`MITIGATIONS`); ``calibration`` overrides the calibration probes. A
    mitigation that raises is left out with a warning naming it and the reason;
    :func:`not_applicable` says why the others were not tried. ``on_progress`` is told when the
    search starts, how long each mitigation took and how it ended, and the total time
    (:class:`~pytest_hemorrhage.progress.ProgressEvent`). ``keep_models=False`` drops each
    repaired model (``Suggestion.mitigation``) and its report once it is measured, so that only
    one copy is alive at a time; the figures stay.
    """
    if isinstance(baseline, Snapshot):
        raise InvalidArgument(
            "suggest: the baseline is a snapshot; mitigations need the baseline model's weights. "
            "Pass the baseline model (or call assert_no_hemorrhage(..., suggest=False))."
        )
    chosen = _chosen(None if mitigations is None else list(mitigations))
    thresholds = thresholds if thresholds is not None else report.thresholds
    if isinstance(thresholds, Mapping):
        thresholds = Thresholds().merged(thresholds, source="report thresholds")
    metric = _headline_metric(report)
    before = report.metrics[metric].estimate
    search_start = time.perf_counter()
    tell = on_progress if on_progress is not None else (lambda event: None)
    applying = [m for m in chosen if _applies(m, baseline, candidate)]
    tell(ProgressEvent(MITIGATING, check=report.name, outcome=_plan(chosen, applying)))
    calib = calibration if calibration is not None else calibration_probes(baseline, probes)
    out: list[Suggestion] = []
    for mitigator in applying:
        start = time.perf_counter()
        try:
            mitigation = mitigator.mitigate(baseline, candidate, calib, thresholds, probes=probes)
            after = compare(baseline, mitigation.model, probes, thresholds=thresholds, **compare_kwargs)
        except (HemorrhageError, InvalidArgument) as exc:
            warnings.warn(f"mitigation {mitigator.name} was not verified: {exc}", UserWarning, stacklevel=2)
            tell(ProgressEvent(MITIGATION, time.perf_counter() - start, report.name, mitigation=mitigator.name,
                               outcome="failed (see its warning)"))
            continue
        value = after.metrics[metric].estimate if metric in after.metrics else math.nan
        out.append(Suggestion(
            name=mitigator.name, description=mitigation.description, metric=metric, before=before, after=value,
            passed=after.passed, seconds=time.perf_counter() - start, details=mitigation.details,
            mitigation=mitigation if keep_models else None, report=after if keep_models else None,
        ))
        del mitigation, after  # without keep_models, the repaired copy goes before the next one is made
        tell(ProgressEvent(MITIGATION, out[-1].seconds, report.name, mitigation=mitigator.name,
                           outcome=out[-1].describe()))
    tell(ProgressEvent(MITIGATED, time.perf_counter() - search_start, report.name))
    direction = report.metrics[metric].direction or "max"
    sign = 1.0 if direction == "max" else -1.0
    out.sort(key=lambda s: (not s.passed, sign * s.after if math.isfinite(s.after) else math.inf))
    return out
