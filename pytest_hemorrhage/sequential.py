"""Sequential early stopping: decide as soon as the evidence is clear, without inflating false alarms.

Re-checking a fixed-sample confidence interval after every batch and stopping at the first
decisive look raises the error rate well above its nominal level (every look is another chance
to be fooled). A *confidence sequence* instead holds for all sample sizes at once, so the check
may stop whenever it likes.

We use the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas
(2021), Gaussian-mixture boundary: after ``t`` units with mean ``m`` and standard deviation
``s``, the true mean lies in ``m ± s · sqrt(2 (t ρ² + 1) / (t² ρ²) · log(sqrt(t ρ² + 1) / α))``
for every ``t`` simultaneously with probability about ``1 - α``. ``ρ`` sets the sample size
where the boundary is tightest; we tune it for a quarter of the probe set, where clear cases
should stop. Non-negative, skewed quantities get their bounds on the log scale, and a pass
needs at least a quarter of the probes (a fail may come earlier): on log-normal per-probe
values at the threshold that keeps false passes near the nominal rate (3 % for σ = 0.75,
against 11 % for the plain boundary from the first look). The units are probes, visited in a
seeded random order so every prefix is a random sample of the set (:class:`SequentialStop`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .thresholds import THRESHOLD_SPECS, Thresholds

if TYPE_CHECKING:
    from .report import Report
    from .stats import UnitAccumulator

__all__ = ["cs_radius", "rho_for", "SequentialRule", "SequentialStop", "Look", "MIN_UNITS", "TUNE_FRACTION",
           "SEQUENTIAL_SCALE"]

#: Units seen before any stop: the variance estimate of an asymptotic sequence needs a few.
MIN_UNITS = 12
#: The boundary is tightest at this fraction of the probe set.
TUNE_FRACTION = 0.25


def rho_for(t_opt: float, alpha: float) -> float:
    """The mixture parameter that makes the boundary tightest at ``t_opt`` units (two-sided ``alpha``)."""
    a = -2.0 * math.log(alpha)
    return math.sqrt((a + math.log(a + 1.0)) / max(t_opt, 1.0))


def cs_radius(t: int, sd: float, alpha: float, rho: float) -> float:
    """Half-width of the two-sided confidence sequence after ``t`` units of standard deviation ``sd``."""
    if t < 1:
        return math.inf
    r2 = rho * rho
    return sd * math.sqrt(2.0 * (t * r2 + 1.0) / (t * t * r2) * math.log(math.sqrt(t * r2 + 1.0) / alpha))


@dataclass
class Look:
    """One look at the data: the sequence's bounds for one metric and what they say."""

    metric: str
    units: int
    mean: float
    low: float
    high: float
    decision: str  # "pass", "fail" or "continue"


@dataclass
class SequentialRule:
    """Stop when every gated metric clearly passes, or any one clearly fails.

    ``threshold`` and ``direction`` are on the per-unit scale (e.g. mean dNLL for a perplexity
    ratio, whose threshold is ``log(max_ppl_ratio)``). Clear pass: the bound on the harmful side
    is inside the threshold. Clear fail: the bound on the benign side is past it (stricter than
    the fixed-sample rule, which fails on the estimate: with optional stopping only the whole
    sequence being past the threshold is strong evidence).
    """

    n_units: int
    confidence: float = 0.95
    min_units: int = MIN_UNITS

    def __post_init__(self) -> None:
        self.alpha = 1.0 - self.confidence
        self.pass_units = max(self.min_units, math.ceil(TUNE_FRACTION * self.n_units))
        self.rho = rho_for(self.pass_units, self.alpha)

    def bounds(self, values: np.ndarray, direction: str) -> tuple[float, float, float]:
        """``(mean, low, high)`` of the confidence sequence after ``values``.

        Harm-side quantities that cannot cross zero (a KL; the disagreement ``1 - x`` of an agreement)
        are right-skewed over probes, and early looks then underestimate both their mean and spread.
        Their bounds are taken on the log scale (delta method), which widens the harmful side.
        """
        t = int(values.size)
        mean = float(values.mean()) if t else math.nan
        sd = float(values.std(ddof=1)) if t > 1 else math.inf
        radius = cs_radius(t, sd, self.alpha, self.rho)
        if t and math.isfinite(radius):
            if direction == "max" and float(values.min()) >= 0.0 and mean > 0.0:
                return mean, mean * math.exp(-radius / mean), mean * math.exp(radius / mean)
            if direction == "min" and float(values.max()) <= 1.0 and mean < 1.0:
                gap = 1.0 - mean
                return mean, 1.0 - gap * math.exp(radius / gap), 1.0 - gap * math.exp(-radius / gap)
        return mean, mean - radius, mean + radius

    def look(self, metric: str, values: np.ndarray, threshold: float, direction: str) -> Look:
        """Judge ``values`` (one number per unit seen so far) against ``threshold``.

        A clear fail may come after ``min_units``; a clear pass only after a quarter of the probe
        set (``pass_units``): under skew, small early samples look better than they are.
        """
        t = int(values.size)
        mean, low, high = self.bounds(values, direction)
        decision = "continue"
        if t >= self.min_units and math.isfinite(mean):
            harmful, benign = (high, low) if direction == "max" else (low, high)
            past = (lambda x: x > threshold) if direction == "max" else (lambda x: x < threshold)
            if not past(harmful) and t >= self.pass_units:
                decision = "pass"
            elif past(benign):
                decision = "fail"
        elif t >= self.min_units and not math.isnan(mean):  # an infinite mean (truncated sampler)
            decision = "fail" if (mean > threshold if direction == "max" else mean < threshold) else "pass"
        return Look(metric, t, mean, low, high, decision)

    @staticmethod
    def verdict(looks: list[Look]) -> str:
        """``fail`` if any metric clearly fails, ``pass`` if all clearly pass, else ``continue``."""
        decisions = [look.decision for look in looks]
        if "fail" in decisions:
            return "fail"
        if decisions and all(d == "pass" for d in decisions):
            return "pass"
        return "continue"


# threshold key -> (per-token quantity, threshold on that quantity's scale)
SEQUENTIAL_SCALE = {
    "max_kl": ("kl", lambda t: t),
    "min_top1_agreement": ("top1", lambda t: t),
    "min_topk_overlap": ("topk", lambda t: t),
    "max_ppl_ratio": ("dnll", math.log),
    "max_rms_dp": ("dp2", lambda t: t * t),
}


class SequentialStop:
    """Early stopping of a comparison (``compare(..., sequential=True)``) over ``n_probes`` probes.

    The comparison visits the probes in :attr:`order` (seeded, random) and asks :meth:`should_stop`
    after each batch, passing its per-probe token sums; language models only.
    """

    SEED = 0

    def __init__(self, n_probes: int, thresholds: Thresholds) -> None:
        self.order = list(range(n_probes))
        random.Random(self.SEED).shuffle(self.order)
        self.rule = SequentialRule(n_probes, thresholds.confidence)
        self.gated = {key: value for key, value in thresholds.gated().items() if key in SEQUENTIAL_SCALE}
        self.looks: list[Look] = []
        self.decision = "continue"

    def _looks(self, tokens: "UnitAccumulator") -> list[Look]:
        sums, counts = tokens.numpy()
        seen = counts > 0
        out = []
        for key, threshold in self.gated.items():
            quantity, scale = SEQUENTIAL_SCALE[key]
            values = sums[quantity][seen] / counts[seen]
            out.append(self.rule.look(THRESHOLD_SPECS[key].metric, values, scale(threshold),
                                      THRESHOLD_SPECS[key].direction))
        return out

    def should_stop(self, kind: str | None, tokens: "UnitAccumulator") -> bool:
        """Whether the evidence so far decides every gated metric (``kind``: the outputs compared)."""
        if kind != "lm" or not self.gated:
            return False
        self.looks = self._looks(tokens)
        self.decision = self.rule.verdict(self.looks)
        return self.decision != "continue"

    def annotate(self, report: "Report", kind: str | None, tokens: "UnitAccumulator") -> None:
        """Record how far the run went and let a sequential decision set the verdicts."""
        used = int((tokens.counts > 0).sum()) if kind == "lm" else len(self.order)
        info: dict[str, Any] = {"probes_used": used, "probes_total": len(self.order),
                                "fraction_used": used / len(self.order), "decision": self.decision,
                                "confidence": self.rule.confidence}
        if kind != "lm":
            report.notes.append("sequential stopping applies to language models; every probe was used")
        elif self.decision != "continue":
            info["looks"] = [vars(look) for look in self.looks]
            for look in self.looks:
                metric = report.metrics.get(look.metric)
                if metric is not None:
                    metric.verdict = look.decision
                    metric.more_probes_needed = None
                    metric.extra["sequence_bounds_per_probe"] = [look.low, look.high]
        report.sequential = info
