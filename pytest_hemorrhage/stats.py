"""Per-probe aggregation, confidence intervals and the pass / fail / inconclusive rule.

The unit of evidence is a probe: tokens inside one probe are correlated. A token-weighted
mean over probes is a ratio estimator R = sum S_i / sum n_i (S_i the metric summed over the
tokens of probe i, n_i its token count); its standard error is the cluster-robust
(linearisation) estimate, and the interval uses Student's t with k-1 degrees of freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "UnitAccumulator",
    "LogHistogram",
    "Estimate",
    "ratio_estimate",
    "decide",
    "mcnemar_exact",
]


class UnitAccumulator:
    """Running per-unit sums of several per-token quantities, kept on the metric device.

    Memory is O(units × quantities): a few numbers per probe, never per token.
    """

    def __init__(self, n_units: int, names: tuple[str, ...], device: torch.device | str = "cpu") -> None:
        self.names = names
        self.sums = torch.zeros(n_units, len(names), dtype=torch.float64, device=device)
        self.counts = torch.zeros(n_units, dtype=torch.float64, device=device)

    def add(self, units: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        """Add per-token ``values`` (each ``[N]``) that belong to ``units`` (``[N]`` unit ids)."""
        units = units.to(self.sums.device)
        stacked = torch.stack([values[n].to(self.sums.device, torch.float64) for n in self.names], dim=-1)
        if stacked.device != self.sums.device:
            stacked = stacked.to(self.sums.device)
        self.sums.index_add_(0, units, stacked)
        self.counts.index_add_(0, units, torch.ones_like(units, dtype=torch.float64))

    def numpy(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        sums = self.sums.cpu().numpy()
        return {n: sums[:, i] for i, n in enumerate(self.names)}, self.counts.cpu().numpy()


class LogHistogram:
    """Streaming quantiles of a non-negative quantity (per-token KL) in constant memory.

    Log-spaced bins (``per_decade`` per factor of ten) between ``lo`` and ``hi``; exact zeros
    and values below ``lo`` fall in an underflow bin; the maximum is tracked exactly. A quantile
    is reported as its bin's geometric centre, so its relative error is at most ~10^(1/(2·per_decade)) − 1.
    """

    def __init__(self, lo: float = 1e-10, hi: float = 1e4, per_decade: int = 200,
                 device: torch.device | str = "cpu") -> None:
        self.log_lo = math.log10(lo)
        self.per_decade = per_decade
        self.n_bins = int(round((math.log10(hi) - self.log_lo) * per_decade))
        self.counts = torch.zeros(self.n_bins + 2, dtype=torch.float64, device=device)
        self.max = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, values: torch.Tensor) -> None:
        v = values.detach().to(self.counts.device, torch.float64).flatten()
        if v.numel() == 0:
            return
        pos = ((torch.log10(v.clamp_min(1e-300)) - self.log_lo) * self.per_decade).floor() + 1
        idx = torch.where(v > 0, pos.clamp(0, self.n_bins + 1), torch.zeros_like(pos)).long()
        self.counts.index_add_(0, idx, torch.ones_like(v))
        self.max = torch.maximum(self.max, v.max())

    def quantile(self, q: float) -> float:
        counts = self.counts.cpu().numpy()
        total = counts.sum()
        if total == 0:
            return math.nan
        cum = np.cumsum(counts)
        b = int(np.searchsorted(cum, q * total, side="left"))
        if b == 0:
            return 0.0
        if b >= self.n_bins + 1:
            return float(self.max)
        centre = 10 ** (self.log_lo + (b - 0.5) / self.per_decade)
        return min(centre, float(self.max))


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a two-sided confidence interval over ``k`` units."""

    value: float
    low: float
    high: float
    se: float
    k: int

    def map(self, fn) -> "Estimate":
        """Apply a monotone increasing transform (e.g. exp, sqrt) to value and bounds."""
        return Estimate(fn(self.value), fn(self.low), fn(self.high), self.se, self.k)


def ratio_estimate(sums: np.ndarray, counts: np.ndarray, confidence: float = 0.95) -> Estimate:
    """Token-weighted mean over units with a cluster-robust Student-t interval."""
    from scipy import stats

    keep = counts > 0
    s = np.asarray(sums, dtype=np.float64)[keep]
    n = np.asarray(counts, dtype=np.float64)[keep]
    k = int(keep.sum())
    if k == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0)
    total = n.sum()
    r = float(s.sum() / total)
    if not math.isfinite(r):  # an infinite KL (a truncated sampler) has no spread to measure
        return Estimate(r, math.nan, math.nan, math.nan, k)
    resid = s - r * n
    ss = float(np.square(resid).sum())
    if k < 2:  # one probe shows no spread between probes: nothing bounds the mean
        return Estimate(r, -math.inf, math.inf, math.inf, k)
    # Relative tolerance: an identical candidate leaves only rounding noise in the residuals.
    if ss <= (1e-24 * max(1.0, float(np.square(s).sum()))):
        return Estimate(r, r, r, 0.0, k)
    se = math.sqrt(k / (k - 1) * ss) / total
    t = float(stats.t.ppf(0.5 + confidence / 2.0, k - 1))
    return Estimate(r, r - t * se, r + t * se, se, k)


def decide(est: Estimate, threshold: float, direction: str) -> tuple[str, int | None]:
    """Non-inferiority rule.

    ``direction`` is ``"max"`` (harm is a high value) or ``"min"`` (harm is a low value).
    Pass when the bound on the harmful side is inside the threshold; fail when the estimate
    itself is past it; otherwise inconclusive, with an estimate of how many *more* probes
    would shrink the interval enough to decide (the half-width scales as 1/sqrt(k)).
    """
    if math.isnan(est.value):
        return "fail", None
    harmful_bound = est.high if direction == "max" else est.low
    past = (lambda x: x > threshold) if direction == "max" else (lambda x: x < threshold)
    if math.isnan(harmful_bound):  # an infinite estimate has no interval: judge the estimate itself
        return ("fail", None) if past(est.value) else ("inconclusive", None)
    if not past(harmful_bound):
        return "pass", None
    if past(est.value):
        return "fail", None
    margin = abs(threshold - est.value)
    half = abs(harmful_bound - est.value)
    if est.k < 2:
        return "inconclusive", 1
    if margin <= 0 or not math.isfinite(half):
        return "inconclusive", None
    needed = est.k * (half / margin) ** 2
    return "inconclusive", max(1, math.ceil(needed - est.k))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b (correct→wrong) vs c (wrong→correct) flips."""
    from scipy import stats

    if b + c == 0:
        return 1.0
    return float(stats.binomtest(b, b + c, 0.5).pvalue)
