"""Statistics: ratio estimator, intervals, decision rule, quantile sketch, McNemar."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pytest_hemorrhage.stats import (
    Estimate, LogHistogram, UnitAccumulator, decide, mcnemar_exact, ratio_estimate,
)


def test_equal_counts_reduce_to_one_sample_t_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 0.5, size=30)
    est = ratio_estimate(x * 4, np.full(30, 4.0), 0.95)
    ref = stats.t.interval(0.95, 29, loc=x.mean(), scale=stats.sem(x))
    assert est.value == pytest.approx(x.mean())
    assert est.low == pytest.approx(ref[0]) and est.high == pytest.approx(ref[1])


def test_ratio_estimate_is_token_weighted():
    est = ratio_estimate(np.array([10.0, 0.0]), np.array([10.0, 90.0]))
    assert est.value == pytest.approx(0.1)


def test_zero_variance_gives_a_point_interval():
    est = ratio_estimate(np.zeros(5), np.full(5, 7.0))
    assert (est.value, est.low, est.high) == (0.0, 0.0, 0.0)


def test_a_single_probe_bounds_nothing():
    est = ratio_estimate(np.array([3.0, 0.0]), np.array([4.0, 0.0]))  # the empty unit does not count
    assert est.k == 1 and est.value == 0.75
    assert est.low == -math.inf and est.high == math.inf
    assert decide(est, 1.0, "max") == ("inconclusive", 1)


def test_coverage_of_intervals_on_synthetic_data():
    rng = np.random.default_rng(1)
    truth, hits, trials = 0.3, 0, 2000
    for _ in range(trials):
        n = rng.integers(20, 60, size=25).astype(float)
        unit_means = truth + rng.normal(0, 0.1, size=25)
        sums = np.array([rng.normal(m, 0.3, size=int(k)).sum() for m, k in zip(unit_means, n)])
        est = ratio_estimate(sums, n, 0.95)
        hits += est.low <= truth <= est.high
    assert 0.93 <= hits / trials <= 0.97


@pytest.mark.parametrize(
    "est, thr, direction, verdict",
    [
        (Estimate(0.01, 0.005, 0.015, 0.002, 30), 0.02, "max", "pass"),
        (Estimate(0.03, 0.025, 0.035, 0.002, 30), 0.02, "max", "fail"),
        (Estimate(0.018, 0.014, 0.022, 0.002, 30), 0.02, "max", "inconclusive"),
        (Estimate(0.97, 0.96, 0.98, 0.005, 30), 0.95, "min", "pass"),
        (Estimate(0.90, 0.88, 0.92, 0.005, 30), 0.95, "min", "fail"),
        (Estimate(0.96, 0.94, 0.98, 0.005, 30), 0.95, "min", "inconclusive"),
        (Estimate(math.nan, math.nan, math.nan, math.nan, 30), 0.02, "max", "fail"),
    ],
)
def test_decision_rule(est, thr, direction, verdict):
    assert decide(est, thr, direction)[0] == verdict


def test_more_probes_estimate_follows_square_root_law():
    est = Estimate(0.018, 0.014, 0.022, 0.002, 30)  # half-width 0.004, margin 0.002
    verdict, more = decide(est, 0.02, "max")
    assert verdict == "inconclusive" and more == 30 * 4 - 30


def test_unit_accumulator_sums_per_unit():
    acc = UnitAccumulator(3, ("a",))
    acc.add(torch.tensor([0, 0, 2]), {"a": torch.tensor([1.0, 2.0, 5.0])})
    sums, counts = acc.numpy()
    assert sums["a"].tolist() == [3.0, 0.0, 5.0] and counts.tolist() == [2.0, 0.0, 1.0]


def test_log_histogram_quantiles_close_to_numpy():
    rng = np.random.default_rng(2)
    x = rng.lognormal(-6, 2, size=50_000)
    x[:500] = 0.0
    h = LogHistogram()
    for chunk in np.array_split(x, 7):
        h.add(torch.from_numpy(chunk))
    for q in (0.5, 0.9, 0.99, 0.999):
        assert h.quantile(q) == pytest.approx(np.quantile(x, q), rel=0.03)
    assert h.quantile(0.005) == 0.0
    assert float(h.max) == x.max()


def test_mcnemar_exact_matches_binomial():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(9, 1) == pytest.approx(stats.binomtest(9, 10, 0.5).pvalue)
