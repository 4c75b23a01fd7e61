"""Robustness thresholds: sweep a modification's strength, fit the phase transition, bisect the limit.

The paper finds that damage grows as a power law of a modification's strength up to a
transition point s*, and exponentially past it (quality "collapses"). :func:`sweep` measures a
metric at each strength with :func:`~pytest_hemorrhage.engine.compare`, fits that piecewise
curve in log space (:func:`fit_phase_transition`) and bisects the harshest strength that still
passes the thresholds.

Strengths are given in the modification's own units (sparsity, bits, ...). The fit works on a
*harshness* scale that grows as the modification gets harsher: the strength itself by default,
``2**-bits`` (the relative RTN step size) for bit widths, or any monotone ``transform``.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .arguments import must_be, number, one_of, positive_int
from .errors import HemorrhageError, InvalidArgument
from .files import atomic_write_bytes

__all__ = ["PhaseFit", "SweepPoint", "SweepResult", "fit_phase_transition", "sweep", "plot_format", "MODIFY_SHORTCUTS"]

#: Metrics a sweep reports for every strength.
SWEEP_METRICS = ("kl", "top1", "ppl_ratio")

# metric -> (threshold key, axis label of its damage). The fit needs a quantity that is positive and grows with the harm: KL itself, the top-1
# disagreement 1 - top1, and the excess perplexity ratio - 1.
_DAMAGE: dict[str, tuple[str, str]] = {
    "kl": ("max_kl", "mean KL (nats/token)"),
    "top1": ("min_top1_agreement", "1 - same top-1"),
    "ppl_ratio": ("max_ppl_ratio", "PPL ratio - 1"),
}


def _to_damage(metric: str, value: float) -> float:
    if metric == "top1":
        return 1.0 - value
    if metric == "ppl_ratio":
        return value - 1.0
    return value


# --------------------------------------------------------------------------- the fit
@dataclass(frozen=True)
class PhaseFit:
    """A power law below ``s_star`` and exponential growth above it, continuous at ``s_star``.

    ``y = a * x**b`` for ``x <= s_star``; ``y = a * s_star**b * exp(c * (x - s_star))`` above.
    R^2 values are in log space; ``power_*`` describe the single power law ``y = power_a * x**power_b``
    fitted to the same points. Adjusted R^2 counts 3 fitted parameters besides the intercept for
    the piecewise curve (b, c, s_star) and 1 for the power law.
    """

    s_star: float
    a: float
    b: float
    c: float
    r2: float
    adj_r2: float
    power_a: float
    power_b: float
    power_r2: float
    power_adj_r2: float
    n_points: int

    def predict(self, x: Any) -> np.ndarray:
        """The piecewise curve at ``x`` (on the scale the fit was made on)."""
        x = np.asarray(x, dtype=float)
        below = self.a * np.power(np.minimum(x, self.s_star), self.b)
        return below * np.exp(self.c * np.maximum(x - self.s_star, 0.0))

    def power_predict(self, x: Any) -> np.ndarray:
        """The single power law at ``x``."""
        return self.power_a * np.power(np.asarray(x, dtype=float), self.power_b)

    @property
    def transition_found(self) -> bool:
        """Damage grows exponentially past ``s_star`` and the piecewise curve beats the power law
        even after paying for its extra parameters."""
        if math.isnan(self.adj_r2) or math.isnan(self.power_adj_r2):
            better = self.r2 > self.power_r2
        else:
            better = self.adj_r2 > self.power_adj_r2
        return self.c > 0 and better

    def to_dict(self) -> dict[str, Any]:
        return {
            "s_star": self.s_star, "a": self.a, "b": self.b, "c": self.c, "r2": self.r2, "adj_r2": self.adj_r2,
            "power_a": self.power_a, "power_b": self.power_b, "power_r2": self.power_r2,
            "power_adj_r2": self.power_adj_r2, "n_points": self.n_points,
            "transition_found": self.transition_found,
        }


def _r2(sse: float, sst: float) -> float:
    return 1.0 - sse / sst if sst > 0 else 1.0


def _adjusted(r2: float, n: int, p: int) -> float:
    return 1.0 - (1.0 - r2) * (n - 1) / (n - p - 1) if n - p - 1 > 0 else math.nan


def _as_positive_array(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise must_be(name, "a flat sequence of numbers", values) from None
    if arr.ndim != 1:
        raise must_be(name, "a flat sequence of numbers", values)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise must_be(name, "finite numbers > 0 (the fit is in log space)", arr.tolist(),
                      "drop the points that are not (a sweep drops them itself)")
    return arr


def fit_phase_transition(strengths: Sequence[float], values: Sequence[float], *, grid_per_gap: int = 64) -> PhaseFit:
    """Fit :class:`PhaseFit` to ``values`` measured at ``strengths`` (both > 0, strengths distinct).

    In log space the curve is linear in (log a, b, c) once ``s_star`` is fixed, so ``s_star`` is
    searched on a grid between the observed strengths (``grid_per_gap`` candidates per gap, at
    least two points on each side) with a linear least-squares fit at each candidate, then
    refined with a bounded scalar minimisation around the best one.
    """
    from scipy.linalg import lstsq
    from scipy.optimize import minimize_scalar

    x = _as_positive_array(strengths, "strengths")
    y = _as_positive_array(values, "values")
    if len(x) != len(y):
        raise must_be("values", f"one per strength ({len(x)})", got=f"{len(y)} values")
    if len(x) < 4:
        raise must_be("strengths", "at least 4 points (two on each side of s*)", got=f"{len(x)}")
    order = np.argsort(x)
    x, y = x[order], y[order]
    if np.any(np.diff(x) == 0):
        raise must_be("strengths", "distinct", x.tolist(), "a repeated strength: pass each strength once")
    positive_int("grid_per_gap", grid_per_gap)
    u, v = np.log(x), np.log(y)
    sst = float(np.sum((v - v.mean()) ** 2))

    def solve(t: float) -> tuple[np.ndarray, float]:
        design = np.column_stack([np.ones_like(u), np.minimum(u, math.log(t)), np.maximum(x - t, 0.0)])
        coef, _, _, _ = lstsq(design, v)
        return coef, float(np.sum((design @ coef - v) ** 2))

    # s_star in [x[1], x[-2]): at least two points at or below it and two above it.
    low, high = float(x[1]), float(x[-2])
    grid = np.concatenate([np.linspace(x[k], x[k + 1], grid_per_gap, endpoint=False) for k in range(1, len(x) - 2)])
    sses = [solve(float(t))[1] for t in grid]
    best = int(np.argmin(sses))
    t_best, sse_best = float(grid[best]), sses[best]
    step = (high - low) / len(grid)
    upper = min(t_best + step, np.nextafter(high, low))
    lower = max(t_best - step, low)
    if upper > lower:
        refined = minimize_scalar(lambda t: solve(t)[1], bounds=(lower, upper), method="bounded",
                                  options={"xatol": 1e-9 * max(1.0, abs(high))})
        if refined.success and refined.fun < sse_best:
            t_best, sse_best = float(refined.x), float(refined.fun)
    (alpha, b, c), sse = solve(t_best)

    power_design = np.column_stack([np.ones_like(u), u])
    (p_alpha, p_b), _, _, _ = lstsq(power_design, v)
    power_sse = float(np.sum((power_design @ np.array([p_alpha, p_b]) - v) ** 2))
    r2, power_r2 = _r2(sse, sst), _r2(power_sse, sst)
    n = len(x)
    return PhaseFit(
        s_star=t_best, a=math.exp(alpha), b=float(b), c=float(c), r2=r2, adj_r2=_adjusted(r2, n, 3),
        power_a=math.exp(p_alpha), power_b=float(p_b), power_r2=power_r2,
        power_adj_r2=_adjusted(power_r2, n, 1), n_points=n,
    )


# --------------------------------------------------------------------------- modifications
@dataclass(frozen=True)
class _Modify:
    name: str
    apply: Callable[[Any, float], Any]
    harsher: str
    transform: Callable[[float], float] | None
    integer: bool
    label: str


def _prune(model: Any, s: float) -> Any:
    from .modify import prune

    return prune(model, sparsity=s)


def _quantize(model: Any, s: float) -> Any:
    from .modify import quantize

    return quantize(model, bits=int(s))


def _low_rank(model: Any, s: float) -> Any:
    from .modify import low_rank

    return low_rank(model, rank_ratio=1.0 - s)


def _check_config(kind: str, s: float) -> None:
    """Build the shortcut's config for ``s`` so that a bad strength fails before any model work."""
    from .modify import LowRankConfig, PruningConfig, QuantizationConfig

    if kind == "sparsity":
        PruningConfig(sparsity=s)
    elif kind == "bits":
        if float(s) != int(s):
            raise must_be("bits", "whole numbers", s)
        QuantizationConfig(bits=int(s))
    else:
        LowRankConfig(rank_ratio=1.0 - s)


#: String shortcuts for ``modify``: sparsity of magnitude pruning, RTN bit width (per channel),
#: fraction of singular values removed by truncated SVD.
MODIFY_SHORTCUTS: dict[str, _Modify] = {
    "sparsity": _Modify("magnitude pruning", _prune, "higher", None, False, "sparsity"),
    "bits": _Modify("RTN per-channel weights", _quantize, "lower", lambda s: 2.0 ** -s, True, "bits"),
    "rank": _Modify("low-rank SVD", _low_rank, "higher", None, False, "fraction of rank removed"),
}


def _resolve_modify(modify: Any) -> _Modify:
    if isinstance(modify, str):
        one_of("modify", modify, sorted(MODIFY_SHORTCUTS), fix="or a callable (model, strength) -> modified copy")
        return MODIFY_SHORTCUTS[modify]
    if callable(modify):
        name = getattr(modify, "__name__", type(modify).__name__)
        return _Modify(name, modify, "higher", None, False, "strength")
    raise must_be("modify", f"a callable (model, strength) -> modified copy or one of {sorted(MODIFY_SHORTCUTS)}",
                  modify)


def _check_strengths(strengths: Any) -> list[float]:
    what = "a sorted list of finite numbers, like [0.1, 0.2, 0.3]"
    if isinstance(strengths, (str, bytes)) or not isinstance(strengths, Sequence):
        raise must_be("strengths", what, strengths)
    if len(strengths) == 0:
        raise must_be("strengths", what, strengths, "pass at least one strength (four or more for a fit)")
    for s in strengths:
        number("strengths", s, fix="pass numbers like [0.1, 0.2, 0.3]")
    diffs = [b - a for a, b in zip(strengths, strengths[1:])]
    if not (all(d > 0 for d in diffs) or all(d < 0 for d in diffs)):
        raise must_be("strengths", "sorted (ascending or descending) without repeats", list(strengths))
    return list(strengths)


# --------------------------------------------------------------------------- results
@dataclass
class SweepPoint:
    """One evaluated strength: metrics with confidence intervals and the verdict."""

    strength: float
    harshness: float
    source: str  # "grid" or "bisection"
    verdict: str
    passed: bool
    metrics: dict[str, tuple[float, float, float]]  # name -> (estimate, ci_low, ci_high)
    description: str | None = None
    report: Any = field(default=None, repr=False, compare=False)

    def damage(self, metric: str) -> tuple[float, float, float]:
        """``metric`` as a harm that grows with strength: (estimate, low, high)."""
        est, lo, hi = self.metrics[metric]
        ends = sorted((_to_damage(metric, lo), _to_damage(metric, hi)))
        return _to_damage(metric, est), ends[0], ends[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "strength": self.strength, "harshness": self.harshness, "source": self.source,
            "verdict": self.verdict, "passed": self.passed, "description": self.description,
            "metrics": {k: {"estimate": e, "ci_low": lo, "ci_high": hi} for k, (e, lo, hi) in self.metrics.items()},
        }


@dataclass
class SweepResult:
    """The outcome of :func:`sweep`: per-strength metrics, the phase-transition fit and the limit.

    ``harshest_passing`` is the largest strength that still passes the thresholds (the smallest,
    when ``harsher == "lower"``, e.g. bits); ``mildest_failing`` the first that fails after it.
    ``s_star`` is the fitted transition point in strength units; ``fit`` holds it on the
    harshness scale with the curve's parameters.
    """

    modification: str
    metric: str
    harsher: str
    strength_label: str
    points: list[SweepPoint]
    thresholds: dict[str, Any]
    fit: PhaseFit | None
    s_star: float | None
    harshest_passing: float | None
    mildest_failing: float | None
    probes: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    transform: Callable[[float], float] = field(default=lambda s: s, repr=False, compare=False)

    @property
    def threshold(self) -> float | None:
        """The gate of ``metric`` on the damage scale (None when not gated)."""
        value = self.thresholds.get(_DAMAGE[self.metric][0])
        return None if value is None else _to_damage(self.metric, value)

    def survives(self, strength: float) -> bool:
        """Whether ``strength`` is no harsher than the harshest strength that passed."""
        if self.harshest_passing is None:
            return False
        if self.harsher == "higher":
            return strength <= self.harshest_passing
        return strength >= self.harshest_passing

    def to_dict(self) -> dict[str, Any]:
        from .report import SCHEMA_VERSION, _clean

        return _clean({
            "schema_version": SCHEMA_VERSION,
            "modification": self.modification,
            "metric": self.metric,
            "harsher": self.harsher,
            "strength_label": self.strength_label,
            "s_star": self.s_star,
            "harshest_passing": self.harshest_passing,
            "mildest_failing": self.mildest_failing,
            "fit": self.fit.to_dict() if self.fit else None,
            "threshold": self.threshold,
            "thresholds": self.thresholds,
            "probes": self.probes,
            "points": [p.to_dict() for p in self.points],
            "notes": self.notes,
        })

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_dataframe(self):
        """One row per evaluated strength (harshness order): metrics with CIs, verdict, fitted value."""
        import pandas as pd

        rows = []
        for p in self.points:
            row: dict[str, Any] = {"strength": p.strength, "harshness": p.harshness, "source": p.source,
                                   "verdict": p.verdict, "passed": p.passed}
            for name, (est, lo, hi) in p.metrics.items():
                row.update({name: est, f"{name}_ci_low": lo, f"{name}_ci_high": hi})
            row["fitted"] = float(self.fit.predict(p.harshness)) if self.fit and p.harshness > 0 else math.nan
            rows.append(row)
        return pd.DataFrame(rows).set_index("strength")

    def summary(self) -> str:
        """A few lines for a terminal: the limit, s* and the fit."""
        unit = self.strength_label
        lines = [f"sweep of {self.modification} over {unit} ({len(self.points)} points, metric {self.metric})"]
        for p in self.points:
            est, lo, hi = p.metrics[self.metric]
            tag = " (bisection)" if p.source == "bisection" else ""
            lines.append(f"  {unit} {p.strength:g}: {self.metric} {est:.4g} (CI {lo:.4g}-{hi:.4g}) {p.verdict}{tag}")
        if self.harshest_passing is None:
            lines.append(f"harshest passing {unit}: none (the mildest strength already fails)")
        else:
            more = f", first failing {self.mildest_failing:g}" if self.mildest_failing is not None else ""
            lines.append(f"harshest passing {unit}: {self.harshest_passing:g}{more}")
        if self.fit is None:
            lines.append("phase-transition fit: none (" + "; ".join(self.notes[-1:]) + ")")
        else:
            f = self.fit
            lines.append(
                f"phase transition s* = {self.s_star:.4g} {unit} (harshness {f.s_star:.4g}): "
                f"y = {f.a:.4g} x^{f.b:.4g} up to s*, then y(s*) exp({f.c:.4g} (x - s*)); "
                f"R^2 {f.r2:.4f} (adjusted {f.adj_r2:.4f}) vs power law R^2 {f.power_r2:.4f} "
                f"(adjusted {f.power_adj_r2:.4f}); transition found: {f.transition_found}"
            )
        return "\n".join(lines)

    def plot(self, path: str | Path | None = None):
        """A matplotlib Figure: the metric (log y) with CI bars, the fits, the threshold, s* and the limit.

        Drawn with the Agg canvas (no display). With ``path`` the image is written atomically in
        the format its suffix names (png, svg, pdf, ...).
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.5, 4.8))
        FigureCanvasAgg(fig)
        fmt = plot_format(path) if path is not None else None
        ax = fig.add_subplot()
        shown = [p for p in self.points if p.damage(self.metric)[0] > 0]
        colors = {"pass": "tab:green", "fail": "tab:red", "inconclusive": "tab:orange"}
        for p in shown:
            est, lo, hi = p.damage(self.metric)
            lo = lo if lo > 0 else est  # a log axis cannot show a bar reaching zero
            ax.errorbar([p.strength], [est], yerr=[[est - lo], [hi - est]], fmt="o" if p.source == "grid" else "s",
                        color=colors.get(p.verdict, "gray"), mfc="none" if p.source == "bisection" else None,
                        capsize=3, zorder=3)
        xs = np.linspace(min(p.strength for p in self.points), max(p.strength for p in self.points), 300)
        hs = np.array([self.transform(float(s)) for s in xs])
        keep = hs > 0
        if self.fit is not None and keep.any():
            f = self.fit
            ax.plot(xs[keep], f.predict(hs[keep]), color="tab:blue",
                    label=f"piecewise fit (R² {f.r2:.3f})")
            ax.plot(xs[keep], f.power_predict(hs[keep]), color="tab:gray", ls="--",
                    label=f"power law only (R² {f.power_r2:.3f})")
            ax.axvline(self.s_star, color="tab:purple", ls=":", label=f"s* = {self.s_star:.3g}")
        if self.threshold is not None and self.threshold > 0:
            ax.axhline(self.threshold, color="tab:red", ls="-.", lw=1, label=f"threshold {self.threshold:.3g}")
        if self.harshest_passing is not None:
            ax.axvline(self.harshest_passing, color="tab:green", ls="--", lw=1,
                       label=f"harshest passing {self.harshest_passing:.3g}")
        if shown:
            ax.set_yscale("log")
        if self.harsher == "lower":
            ax.invert_xaxis()  # harsher to the right, as for every other modification
        ax.set_xlabel(self.strength_label)
        ax.set_ylabel(_DAMAGE[self.metric][1])
        ax.set_title(f"{self.modification}: {_DAMAGE[self.metric][1]} against {self.strength_label}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        if path is not None:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=120)
            atomic_write_bytes(path, buf.getvalue())
        return fig


def plot_format(path: str | Path) -> str:
    """The image format ``path``'s suffix names, checked against what matplotlib's Agg canvas writes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fmt = Path(path).suffix.lstrip(".").lower()
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if fmt not in supported:
        raise must_be("path", f"an image file matplotlib writes, with a suffix in {sorted(supported)}", str(path),
                      "e.g. sweep.png")
    return fmt


# --------------------------------------------------------------------------- the sweep
def _point(strength: float, harshness: float, source: str, report: Any, candidate: Any) -> SweepPoint:
    metrics = {}
    for name in SWEEP_METRICS:
        m = report.metrics.get(name)
        if m is not None:
            metrics[name] = (float(m.estimate), float(m.ci_low), float(m.ci_high))
    config = getattr(candidate, "hemorrhage_modification", None)
    description = config.describe() if hasattr(config, "describe") else None
    return SweepPoint(strength, harshness, source, report.verdict, report.passed, metrics, description, report)


def _inverse(transform: Callable[[float], float], h: float, grid: list[float]) -> float:
    """The strength whose harshness is ``h`` (``grid`` in harshness order brackets it)."""
    from scipy.optimize import brentq

    hs = [transform(s) for s in grid]
    for (s0, h0), (s1, h1) in zip(zip(grid, hs), zip(grid[1:], hs[1:])):
        if h0 <= h <= h1:
            if h == h0:
                return s0
            return float(brentq(lambda s: transform(s) - h, s0, s1, xtol=1e-12))
    raise HemorrhageError(f"internal: harshness {h} outside the swept range {hs}")  # pragma: no cover


def sweep(
    baseline: Any,
    modify: str | Callable[[Any, float], Any],
    strengths: Sequence[float],
    probes: Any = None,
    thresholds: Any = None,
    *,
    metric: str = "kl",
    bisect: bool = True,
    tolerance: float | None = None,
    progress: bool = False,
    harsher: str | None = None,
    transform: Callable[[float], float] | None = None,
    **compare_kwargs: Any,
) -> SweepResult:
    """Compare ``modify(baseline, s)`` with ``baseline`` for each strength ``s``; fit and bisect.

    ``modify``: a callable ``(model, strength) -> modified copy`` or a shortcut: ``"sparsity"``
    (magnitude pruning), ``"bits"`` (RTN per-channel weights; fewer bits are harsher, harshness
    ``2**-bits``), ``"rank"`` (fraction of singular values removed). ``strengths`` must be sorted
    (either way) without repeats. ``harsher``: ``"higher"`` or ``"lower"`` strengths are harsher
    (default from the shortcut, else ``"higher"``); ``transform`` maps a strength to a positive
    harshness that grows as the modification gets harsher (default: the strength itself, or
    ``1/strength`` when lower is harsher). ``metric``: ``"kl"``, ``"top1"`` or ``"ppl_ratio"``,
    fitted as KL, ``1 - top1`` and ``ppl_ratio - 1``.

    With ``bisect`` the strength between the last passing and the first failing grid point is
    bisected down to ``tolerance`` (default 1/8 of that gap; whole numbers for integer
    strengths). ``compare_kwargs`` go to :func:`compare` (threshold overrides such as
    ``max_kl=0.01`` included); ``layers`` defaults to None there, as the sweep needs outputs only.
    """
    import torch.nn as nn

    from .engine import _resolve_thresholds, compare
    from .probes import as_probes
    from .thresholds import Thresholds

    if not isinstance(baseline, nn.Module):
        raise must_be("baseline", "a torch.nn.Module (a sweep modifies it)", baseline)
    mod = _resolve_modify(modify)
    grid = _check_strengths(strengths)
    integer = mod.integer or all(isinstance(s, numbers.Integral) for s in grid)
    if isinstance(modify, str):
        for s in grid:
            try:
                _check_config(modify, s)
            except InvalidArgument as exc:
                raise must_be("strengths", f"values modify={modify!r} works with", s, str(exc)) from None
    harsher = harsher if harsher is not None else mod.harsher
    one_of("harsher", harsher, ("higher", "lower"))
    if transform is None:
        transform = mod.transform if (mod.transform and harsher == mod.harsher) else None
    if transform is None:
        if harsher == "higher":
            transform = float
        else:
            if any(s <= 0 for s in grid):
                raise must_be("strengths", "> 0 with harsher='lower' (the default harshness is 1/strength)", grid,
                              "or pass transform=(a function mapping strength to harshness)")
            transform = lambda s: 1.0 / s  # noqa: E731
    elif not callable(transform):
        raise must_be("transform", "a callable strength -> harshness", transform)
    grid = sorted(grid, reverse=harsher == "lower")  # harshness order: mildest first
    hs = [float(transform(s)) for s in grid]
    if not all(math.isfinite(h) for h in hs) or any(b <= a for a, b in zip(hs, hs[1:])):
        raise must_be("transform", f"finite harshness growing as strengths get harsher (harsher={harsher!r})",
                      got=f"harshness {hs}", fix="fix transform or harsher")
    one_of("metric", metric, sorted(_DAMAGE))
    if tolerance is not None:
        number("tolerance", tolerance, 0.0, low_open=True)
    overrides = {k: compare_kwargs.pop(k) for k in list(compare_kwargs) if k in Thresholds.keys()}
    thr = _resolve_thresholds(thresholds, overrides)
    compare_kwargs.setdefault("layers", None)
    probe_set = as_probes(probes, baseline)

    def evaluate(s: float, source: str) -> SweepPoint:
        candidate = mod.apply(baseline, s)
        if candidate is baseline:
            raise HemorrhageError(
                f"modify returned the baseline itself at strength {s}; return a modified copy "
                "(e.g. apply it to copy.deepcopy(model))"
            )
        report = compare(baseline, candidate, probe_set, thr, **compare_kwargs)
        point = _point(s, float(transform(s)), source, report, candidate)
        del candidate
        if progress:
            est = point.metrics.get(metric, (math.nan,))[0]
            print(f"sweep {mod.name}: {mod.label} {s:g}: {metric} {est:.4g} {point.verdict}", file=sys.stderr, flush=True)
        return point

    points = [evaluate(s, "grid") for s in grid]
    notes: list[str] = []
    first_fail = next((i for i, p in enumerate(points) if not p.passed), None)
    if first_fail is None:
        harshest, mildest = grid[-1], None
        notes.append("every strength passes: the limit lies past the harshest strength swept")
    elif first_fail == 0:
        harshest, mildest = None, grid[0]
        notes.append("the mildest strength already fails: sweep milder strengths to find the limit")
    else:
        harshest, mildest = grid[first_fail - 1], grid[first_fail]
        if any(p.passed for p in points[first_fail + 1:]):
            notes.append("some strengths past the first failing one pass again (noise): the limit uses the first failure")
        if bisect:
            gap = abs(mildest - harshest)
            step = max(1, int(tolerance or 1)) if integer else (tolerance or gap / 8)
            while abs(mildest - harshest) > step * (1 + 1e-9):  # float halving of 0.1 is not exact
                mid = (harshest + mildest) // 2 if integer else (harshest + mildest) / 2
                point = evaluate(mid, "bisection")
                points.append(point)
                if point.passed:
                    harshest = mid
                else:
                    mildest = mid
    points.sort(key=lambda p: p.harshness)

    usable = [p for p in points if p.harshness > 0 and metric in p.metrics and p.damage(metric)[0] > 0
              and math.isfinite(p.damage(metric)[0])]
    fit = s_star = None
    if len(usable) < len(points):
        notes.append(f"{len(points) - len(usable)} point(s) with zero or negative {metric} damage or harshness "
                     "left out of the log-space fit")
    if len(usable) >= 4:
        fit = fit_phase_transition([p.harshness for p in usable], [p.damage(metric)[0] for p in usable])
        s_star = _inverse(transform, fit.s_star, [p.strength for p in points])
    else:
        notes.append(f"no phase-transition fit: it needs 4 usable points, got {len(usable)}")
    return SweepResult(
        modification=mod.name, metric=metric, harsher=harsher, strength_label=mod.label, points=points,
        thresholds=thr.to_dict(), fit=fit, s_star=s_star, harshest_passing=harshest, mildest_failing=mildest,
        probes={"n_probes": len(probe_set), "n_tokens": probe_set.n_tokens, "fingerprint": probe_set.fingerprint(),
                "name": getattr(probe_set, "name", None)},
        notes=notes, transform=transform,
    )
