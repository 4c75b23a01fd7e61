"""Sequential early stopping: the confidence sequence's math, its error rate under optional stopping
(by simulation, against naive re-checking of fixed-sample intervals), and compare(sequential=True)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats

import pytest_hemorrhage as ph
from pytest_hemorrhage.modify import quantize
from pytest_hemorrhage.probes import Probes
from pytest_hemorrhage.sequential import MIN_UNITS, SequentialRule, cs_radius, rho_for

pytestmark = pytest.mark.usefixtures("one_thread")


def test_radius_formula_and_tuning():
    alpha, t, sd = 0.05, 50, 2.0
    rho = rho_for(t, alpha)
    by_hand = sd * math.sqrt(2 * (t * rho**2 + 1) / (t**2 * rho**2) * math.log(math.sqrt(t * rho**2 + 1) / alpha))
    assert cs_radius(t, sd, alpha, rho) == pytest.approx(by_hand)
    # rho_for(t) makes the boundary (nearly) tightest at t.
    assert cs_radius(t, sd, alpha, rho) <= min(cs_radius(t, sd, alpha, rho * f) for f in (0.5, 0.8, 1.25, 2.0))
    # Always wider than the fixed-sample interval at the same t: that is the price of peeking.
    assert cs_radius(t, sd, alpha, rho) > stats.norm.ppf(1 - alpha / 2) * sd / math.sqrt(t)


def _ever_fails(data: np.ndarray, threshold: float, checker) -> float:
    """Fraction of simulated runs in which some look (every 4 units) declares a clear fail."""
    hits = 0
    for row in data:
        for t in range(MIN_UNITS, row.size + 1, 4):
            if checker(row[:t], threshold):
                hits += 1
                break
    return hits / data.shape[0]


@pytest.mark.parametrize("dist", ["normal", "lognormal"])
def test_false_alarm_rate_stays_nominal_under_optional_stopping(dist):
    """Truth exactly at the threshold (the hardest harmless case): a fail is a false alarm."""
    rng = np.random.default_rng(7)
    runs, n = 1000, 256
    if dist == "normal":
        data = rng.normal(0.0, 1.0, (runs, n))
        truth = 0.0
    else:  # skewed per-probe values like per-probe KL
        data = rng.lognormal(0.0, 0.75, (runs, n))
        truth = math.exp(0.75**2 / 2)
    rule = SequentialRule(n_units=n, confidence=0.95)

    def sequence_fails(values, threshold):
        return rule.look("kl", values, threshold, "max").decision == "fail"

    # Student-t quantiles for every sample size, computed once (scipy's ppf per look dominated the run).
    t_quantile = {t: stats.t.ppf(0.975, t - 1) for t in range(MIN_UNITS, n + 1)}

    def naive_fails(values, threshold):  # a fixed-sample t-interval re-checked at every look
        t = values.size
        low = values.mean() - t_quantile[t] * values.std(ddof=1) / math.sqrt(t)
        return low > threshold

    sequence = _ever_fails(data, truth, sequence_fails)
    naive = _ever_fails(data, truth, naive_fails)
    # One-sided nominal level alpha/2 = 2.5 %; binomial noise at 1000 runs is about ±1 %.
    assert sequence <= 0.035, sequence
    assert naive > 2 * sequence and naive > 0.06, (naive, sequence)


def _ever_passes(data: np.ndarray, threshold: float, rule: SequentialRule) -> float:
    hits = 0
    for row in data:
        for t in range(MIN_UNITS, row.size + 1, 8):
            decision = rule.look("kl", row[:t], threshold, "max").decision
            if decision != "continue":
                hits += decision == "pass"
                break
    return hits / data.shape[0]


def test_skewed_values_at_the_threshold_rarely_pass():
    """A KL-like per-probe quantity (log-normal) whose true mean sits exactly at the threshold."""
    rng = np.random.default_rng(11)
    sigma, n = 0.75, 128
    data = rng.lognormal(0.0, sigma, (1000, n))
    rule = SequentialRule(n_units=n)
    assert rule.pass_units == 32
    # Nominal 2.5 %; the plain boundary with passes from the first look measured about 11 % here.
    assert _ever_passes(data, math.exp(sigma**2 / 2), rule) <= 0.045


def test_clear_cases_decide_early_and_borderline_waits():
    rng = np.random.default_rng(3)
    rule = SequentialRule(n_units=200)
    low = np.abs(rng.normal(0.2, 0.1, 200))
    high = rng.normal(3.0, 0.5, 200)
    edge = np.abs(rng.normal(1.0, 0.5, 200))
    quarter = rule.pass_units
    assert quarter == 50
    assert rule.look("kl", low[:quarter], 1.0, "max").decision == "pass"
    assert rule.look("kl", low[: quarter - 1], 1.0, "max").decision == "continue"  # a pass waits for a quarter
    assert rule.look("kl", high[:MIN_UNITS], 1.0, "max").decision == "fail"  # a clear fail does not
    assert rule.look("kl", edge[:50], 1.0, "max").decision == "continue"
    assert rule.look("kl", high[: MIN_UNITS - 1], 1.0, "max").decision == "continue"  # too few units yet
    assert rule.look("top1", 1 - low[:quarter] / 10, 0.9, "min").decision == "pass"
    assert SequentialRule.verdict([rule.look("a", low[:60], 1.0, "max"), rule.look("b", high[:20], 1.0, "max")]) == "fail"


def test_batches_follow_a_given_order():
    probes = Probes.from_token_ids([[1, 2, 3], [4, 5], [6, 7, 8, 9], [1, 1]])
    batches = list(probes.batches(2, order=[3, 0, 2, 1]))
    assert [b.units for b in batches] == [[3, 0], [2, 1]]
    assert batches[0].input_ids[0, :2].tolist() == [1, 1] and batches[0].attention_mask[0].tolist() == [1, 1, 0]


def _probe_set(n: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(5)
    return [torch.randint(1, 128, (16,), generator=g).tolist() for _ in range(n)]


def test_harmless_change_stops_early_and_matches_a_run_on_the_used_probes(llama):
    probes = _probe_set(96)
    candidate = copy.deepcopy(llama)
    with torch.no_grad():
        candidate.lm_head.weight.mul_(1.0001)
    report = ph.compare(llama, candidate, probes, sequential=True, batch_size=8)
    seq = report.sequential
    assert seq["decision"] == "pass" and report.passed
    assert seq["probes_used"] < 96 and seq["fraction_used"] == seq["probes_used"] / 96
    assert "sequential check" in report.to_text()
    # The figures are those of a plain run on exactly the probes that were used.
    import random

    order = list(range(96))
    random.Random(0).shuffle(order)
    used = probes_used = [probes[i] for i in order[: seq["probes_used"]]]
    plain = ph.compare(llama, candidate, used, batch_size=8)
    assert report.metrics["kl"].n_units == len(probes_used)
    assert report.metrics["kl"].estimate == pytest.approx(plain.metrics["kl"].estimate, rel=1e-9)
    assert report.metrics["top1"].estimate == pytest.approx(plain.metrics["top1"].estimate, rel=1e-9)


def test_harmful_change_stops_early_with_a_fail(llama):
    report = ph.compare(llama, quantize(llama, bits=2, granularity="per_tensor"), _probe_set(96),
                        sequential=True, batch_size=8)
    assert report.sequential["decision"] == "fail" and not report.passed
    assert report.sequential["probes_used"] <= 24
    failing = [look for look in report.sequential["looks"] if look["decision"] == "fail"]
    assert failing
    for look in failing:  # the whole sequence lies past the threshold
        metric = report.metrics[look["metric"]]
        assert metric.verdict == "fail"
        if metric.direction == "max" and look["metric"] == "kl":
            assert look["low"] > metric.threshold
        elif metric.direction == "min":
            assert look["high"] < metric.threshold


def test_sequential_run_is_deterministic(llama):
    candidate = quantize(llama, bits=6)
    a = ph.compare(llama, candidate, _probe_set(48), sequential=True)
    b = ph.compare(llama, candidate, _probe_set(48), sequential=True)
    assert a.to_json() == b.to_json()
