"""suggest(): try the mitigations that apply to a failing comparison, re-measure each, rank them.

Each mitigation is calibrated on probes disjoint from the evaluation probes when a tokenizer is
known (the built-in set drawn with another seed), then verified with :func:`compare` on the very
probes and thresholds of the failing report, so its before/after figures are like for like.
"""

from __future__ import annotations

import importlib
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import HemorrhageError, InvalidArgument
from . import Mitigation

__all__ = ["Suggestion", "suggest", "MITIGATIONS", "calibration_probes"]

#: name -> (module, mitigation function). Each module also has ``applies(...)``.
MITIGATIONS: dict[str, tuple[str, str]] = {
    "gradient_pruning": ("gradient_pruning", "gradient_aware_pruning"),
    "dynamic_scaling": ("dynamic_scaling", "dynamic_scaling"),
    "decoding_calibration": ("decoding_calibration", "calibrate_decoding"),
    "fallback": ("fallback", "fallback"),
}

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
        from ..report import METRIC_INFO, _fmt

        label = METRIC_INFO.get(self.metric, (self.metric,))[0]
        verdict = "passes" if self.passed else "still fails"
        return (f"{self.description}: {label} {_fmt(self.metric, self.before)} -> "
                f"{_fmt(self.metric, self.after)} (checked, {verdict})")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "metric": self.metric,
                "before": self.before, "after": self.after, "passed": self.passed,
                "seconds": round(self.seconds, 3), "details": self.details, "text": self.describe()}


def _module(name: str) -> Any:
    return importlib.import_module(f"{__package__}.{MITIGATIONS[name][0]}")


def _applies(name: str, baseline: Any, candidate: Any) -> bool:
    from ..modify.decoding import DecodedModel

    if name == "decoding_calibration" and not isinstance(candidate, DecodedModel):
        return False  # a refit temperature cannot undo damage to the weights: only decoding changes
    applies: Callable[..., bool] = getattr(_module(name), "applies")
    try:
        return bool(applies(baseline, candidate)) if name == "fallback" else bool(applies(candidate))
    except (HemorrhageError, InvalidArgument):
        return False


def calibration_probes(baseline: Any, probes: Any) -> Any:
    """Probes to calibrate mitigations on: disjoint built-in probes when a tokenizer is known, else ``probes``."""
    from ..probes import Probes, as_probes, tokenizer_for

    model = getattr(baseline, "model", baseline)  # a DecodedModel's tokenizer is its model's
    tokenizer = tokenizer_for(model)
    evaluation = as_probes(probes, model)
    if tokenizer is not None and evaluation.is_tokens:
        calib = Probes.builtin(tokenizer, n=CALIBRATION_PROBES, max_length=CALIBRATION_LENGTH,
                               seed=CALIBRATION_SEED)
        seen = {tuple(ids) for ids in evaluation.token_ids}
        keep = [i for i, ids in enumerate(calib.token_ids) if tuple(ids) not in seen]
        if keep:
            return calib.subset(keep)
    return evaluation


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
    **compare_kwargs: Any,
) -> list[Suggestion]:
    """Try the mitigations that apply to ``candidate``; return verified suggestions, best first.

    ``report`` is the failing comparison of ``candidate`` against ``baseline`` on ``probes``;
    each mitigation is applied to copies, re-compared on the same probes and thresholds, and
    ranked: passing ones first, then by the failing metric. ``mitigations`` limits the names
    tried (see :data:`MITIGATIONS`); ``calibration`` overrides the calibration probes. A
    mitigation that raises is left out with a warning naming it and the reason.
    """
    from ..engine import compare
    from ..snapshot import Snapshot

    if isinstance(baseline, Snapshot):
        raise InvalidArgument(
            "suggest: the baseline is a snapshot; mitigations need the baseline model's weights. "
            "Pass the baseline model (or call assert_no_hemorrhage(..., suggest=False))."
        )
    names = list(MITIGATIONS) if mitigations is None else list(mitigations)
    unknown = [n for n in names if n not in MITIGATIONS]
    if unknown:
        raise InvalidArgument(f"mitigations: unknown {unknown}; allowed: {sorted(MITIGATIONS)}")
    thresholds = thresholds if thresholds is not None else report.thresholds
    if isinstance(thresholds, Mapping):
        from ..thresholds import Thresholds

        thresholds = Thresholds().merged(thresholds, source="report thresholds")
    metric = _headline_metric(report)
    before = report.metrics[metric].estimate
    calib = calibration if calibration is not None else calibration_probes(baseline, probes)
    out: list[Suggestion] = []
    for name in names:
        if not _applies(name, baseline, candidate):
            continue
        module = _module(name)
        start = time.perf_counter()
        try:
            fn = getattr(module, MITIGATIONS[name][1])
            if name == "fallback":
                mitigation = fn(baseline, candidate, probes, thresholds)
            else:
                mitigation = fn(baseline, candidate, calib)
            after = compare(baseline, mitigation.model, probes, thresholds=thresholds, **compare_kwargs)
        except (HemorrhageError, InvalidArgument) as exc:
            warnings.warn(f"mitigation {name} was not verified: {exc}", UserWarning, stacklevel=2)
            continue
        value = after.metrics[metric].estimate if metric in after.metrics else math.nan
        out.append(Suggestion(
            name=name, description=mitigation.description, metric=metric, before=before, after=value,
            passed=after.passed, seconds=time.perf_counter() - start, details=mitigation.details,
            mitigation=mitigation, report=after,
        ))
    direction = report.metrics[metric].direction or "max"
    sign = 1.0 if direction == "max" else -1.0
    out.sort(key=lambda s: (not s.passed, sign * s.after if math.isfinite(s.after) else math.inf))
    return out
