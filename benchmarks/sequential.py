"""Sequential early stopping: how much of the probe set compare(sequential=True) uses, and its error rate.

Part 1 (default model): a clearly harmless (int8 per-channel), a clearly harmful (int4 per-channel)
and a borderline (int7 per-channel, measured near the KL and top-1 limits) modification, each
compared with ``sequential=True``: fraction of the probes used, the decision, and wall time over
the full (non-sequential) run. A full run's cost does not depend on the weights' values, so it is
timed once, on the harmless pair. A sequence that never stops has used every probe: its report is
the full run's. Metrics are reported on the probes used.

Part 2 (numpy only): false-alarm rate under optional stopping, with the truth exactly at the
threshold (the hardest harmless case), looking after every batch as compare() does: the confidence
sequence against a fixed-sample t-interval re-checked at every look.
"""

from __future__ import annotations

import math
import time

import numpy as np

from pytest_hemorrhage.sequential import MIN_UNITS, SequentialRule, cs_radius


def ever_past(data: np.ndarray, threshold: float, look_every: int, min_units: int, radius_sd1: np.ndarray,
              side: str = "fail") -> float:
    """Fraction of rows (simulated runs) where some look declares a clear ``side``.

    ``radius_sd1[t - 1]``: interval half-width for ``t`` units and unit standard deviation. A clear
    fail is a lower bound above ``threshold``, a clear pass an upper bound below it.
    """
    runs, n = data.shape
    t = np.arange(1, n + 1)
    mean = np.cumsum(data, axis=1) / t
    sq = np.cumsum(np.square(data), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(np.maximum(sq - t * np.square(mean), 0.0) / (t - 1))
    looks = np.arange(min_units, n + 1, look_every)
    half = radius_sd1[looks - 1] * sd[:, looks - 1]
    hits = (mean[:, looks - 1] - half > threshold) if side == "fail" else (mean[:, looks - 1] + half < threshold)
    return float(hits.any(axis=1).mean())


def simulate(runs: int = 20000, n: int = 128, look_every: int = 8, confidence: float = 0.95,
             seed: int = 0) -> dict:
    """False-alarm (and false-pass) rates at the threshold for normal and skewed per-probe values."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    rule = SequentialRule(n_units=n, confidence=confidence)
    t = np.arange(1, n + 1)
    sequence = np.array([cs_radius(int(k), 1.0, rule.alpha, rule.rho) for k in t])
    with np.errstate(invalid="ignore", divide="ignore"):
        naive = stats.t.ppf(0.5 + confidence / 2, t - 1) / np.sqrt(t)
    out: dict[str, float] = {"sim_runs": runs, "sim_units": n, "sim_look_every": look_every,
                             "sim_nominal_one_sided": (1 - confidence) / 2}
    for dist in ("normal", "lognormal"):
        if dist == "normal":
            data, truth = rng.normal(0.0, 1.0, (runs, n)), 0.0
        else:  # skewed like per-probe KL
            data, truth = rng.lognormal(0.0, 0.75, (runs, n)), math.exp(0.75**2 / 2)
        for name, radius in (("plain_sequence", sequence), ("naive", naive)):
            for side in ("fail", "pass"):
                out[f"sim_{dist}_{name}_false_{side}"] = ever_past(data, truth, look_every, MIN_UNITS, radius, side)
        # The rule compare() applies (log-scale bounds for non-negative values, passes after a quarter).
        decisions = [_first_decision(rule, row, truth, look_every) for row in data[: runs // 5]]
        for side in ("fail", "pass"):
            out[f"sim_{dist}_rule_false_{side}"] = decisions.count(side) / len(decisions)
    return out


def _first_decision(rule: SequentialRule, row: np.ndarray, threshold: float, look_every: int) -> str:
    for t in range(MIN_UNITS, row.size + 1, look_every):
        decision = rule.look("kl", row[:t], threshold, "max").decision
        if decision != "continue":
            return decision
    return "continue"


def run(n_probes: int = 128, max_length: int = 64, batch_size: int = 8) -> dict:
    import pytest_hemorrhage as ph
    from pytest_hemorrhage.modify import quantize

    from .common import default_model_and_probes

    result: dict = {}
    start = time.perf_counter()
    result.update(simulate())
    result["sim_wall_s"] = time.perf_counter() - start
    model, _, probes = default_model_and_probes(n_probes, max_length)
    result.update({"probes": n_probes, "max_length": max_length, "batch_size": batch_size})
    cases = {"harmless_int8": quantize(model, bits=8), "harmful_int4": quantize(model, bits=4),
             "borderline_int7": quantize(model, bits=7)}
    start = time.perf_counter()
    full = ph.compare(model, cases["harmless_int8"], probes, batch_size=batch_size)
    full_s = time.perf_counter() - start
    result["full_run_s"] = full_s
    for name, candidate in cases.items():
        start = time.perf_counter()
        report = ph.compare(model, candidate, probes, batch_size=batch_size, sequential=True)
        seconds = time.perf_counter() - start
        seq = report.sequential
        result[f"{name}/fraction_used"] = seq["fraction_used"]
        result[f"{name}/probes_used"] = seq["probes_used"]
        result[f"{name}/sequential_decision"] = seq["decision"]
        result[f"{name}/passed"] = report.passed
        result[f"{name}/time_over_full_run"] = seconds / full_s
        for metric in ("kl", "top1", "ppl_ratio"):  # on the probes used
            result[f"{name}/{metric}"] = report.metrics[metric].estimate
    result["harmless_int8/full_run_passed"] = full.passed
    result["harmless_int8/full_run_kl"] = full.metrics["kl"].estimate
    return result
