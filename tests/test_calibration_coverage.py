"""Coverage of ``stats.ratio_estimate`` intervals on synthetic per-probe data with a known truth.

Each setting draws, per repetition, ``k`` probes with their own mean (the correlation inside a
probe) and per-probe sums of ``n_i`` per-token values; the truth is the population mean per token.
Per-token values are sampled through distributions closed under summation, so a probe's sum is
drawn exactly without drawing its tokens: Gamma for skewed KL-like values (a probe's sum of ``n``
Gamma(a, s) tokens is Gamma(n a, s)), Binomial for same-top-1 indicators, Normal for dNLL-like values.
2000 repetitions per setting, fixed seeds; the 95 % interval must cover the truth 93-97 % of the time.

Measured (seed 0, 2000 repetitions; coverage, truth below / above the interval):

* KL-like, probe means log-normal sigma 0.3: k=30 equal sizes 94.05 % (1.85 / 4.10), k=30 unequal
  93.55 % (1.75 / 4.70), k=100 equal 94.90 %, k=100 unequal 94.55 %.
* same-top-1, p ~ Beta(97, 3): k=30 93.35 % (5.00 / 1.65), k=100 93.85 % (4.30 / 1.85).
* dNLL-like (normal), k=30 unequal sizes: 93.30 % (3.35 / 3.35): symmetric but low, the known
  small-sample downward bias of the cluster-robust (CR1) variance with unequal probe sizes.
* Outside the band (not asserted here, see the report of issue 8): more skewed probe means
  (log-normal sigma 0.6 at k=30: 92.3 %, 6.9 % above; sigma 1.0: 87.6-89.3 % at k=30, 90.5-92.9 %
  at k=100) and top-1 with p ~ Beta(19, 1) at k=30 (90.95 %, 7.7 % below). The misses fall on the
  harmful side (KL above the upper bound, agreement below the lower bound): the symmetric t interval
  ignores the skew of the probe means.
"""

import math

import numpy as np
import pytest

from pytest_hemorrhage.stats import ratio_estimate

REPETITIONS = 2000


def _sizes(rng, k, equal):
    return np.full(k, 64.0) if equal else rng.integers(8, 129, size=k).astype(float)


def _kl_like(k, equal, sigma=0.3, mu=-4.0):
    """Per-token values ~ Gamma(0.5, 2 m_i) (skewed, mean m_i); probe means m_i log-normal."""

    def draw(rng):
        n = _sizes(rng, k, equal)
        means = np.exp(rng.normal(mu, sigma, size=k))
        return rng.gamma(0.5 * n, means / 0.5), n

    return draw, math.exp(mu + sigma**2 / 2)


def _top1_like(k, a=97.0, b=3.0):
    """Same-top-1 indicators: probe agreement rates p_i ~ Beta(a, b), unequal probe lengths."""

    def draw(rng):
        n = _sizes(rng, k, equal=False)
        return rng.binomial(n.astype(int), rng.beta(a, b, size=k)).astype(float), n

    return draw, a / (a + b)


def _dnll_like(k):
    """Paired dNLL: symmetric per-token noise around probe means scattered around 0.01."""

    def draw(rng):
        n = _sizes(rng, k, equal=False)
        means = 0.01 + rng.normal(0.0, 0.02, size=k)
        return rng.normal(means * n, 0.3 * np.sqrt(n)), n

    return draw, 0.01


SETTINGS = {
    "kl-30-equal": _kl_like(30, equal=True),
    "kl-30-unequal": _kl_like(30, equal=False),
    "kl-100-equal": _kl_like(100, equal=True),
    "kl-100-unequal": _kl_like(100, equal=False),
    "top1-30": _top1_like(30),
    "top1-100": _top1_like(100),
    "dnll-30": _dnll_like(30),
}


def coverage(draw, truth, repetitions=REPETITIONS, seed=0, confidence=0.95):
    """(coverage, share with the truth below the interval, share above)."""
    rng = np.random.default_rng(seed)
    inside = below = above = 0
    for _ in range(repetitions):
        sums, counts = draw(rng)
        est = ratio_estimate(sums, counts, confidence)
        below += truth < est.low
        above += truth > est.high
        inside += est.low <= truth <= est.high
    return inside / repetitions, below / repetitions, above / repetitions


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_95_percent_intervals_cover_the_truth_93_to_97_percent(setting):
    draw, truth = SETTINGS[setting]
    covered, below, above = coverage(draw, truth)
    assert 0.93 <= covered <= 0.97, f"{setting}: coverage {covered:.2%} (below {below:.2%}, above {above:.2%})"


def test_the_draws_have_the_stated_truth():
    """The data-generating settings are right: pooled over many draws the ratio reaches the truth."""
    for name, (draw, truth) in SETTINGS.items():
        rng = np.random.default_rng(99)
        sums, counts = zip(*(draw(rng) for _ in range(400)))
        pooled = np.concatenate(sums).sum() / np.concatenate(counts).sum()
        assert pooled == pytest.approx(truth, rel=0.03, abs=5e-4), name


def test_a_wrong_truth_is_rarely_covered():
    """The check can fail: intervals around a KL of 0.019 seldom contain 1.5 times it."""
    draw, truth = _kl_like(100, equal=False)
    covered, _, above = coverage(draw, truth * 1.5, repetitions=300)
    assert covered < 0.2 and above > 0.8
