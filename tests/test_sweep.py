"""Sweeps: the phase-transition fit, bisection of the limit, results and plots, errors."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from tiny_models import random_token_ids

import pytest_hemorrhage.engine as engine
from pytest_hemorrhage.errors import HemorrhageError, InvalidArgument
from pytest_hemorrhage.modify import prune
from pytest_hemorrhage.probes import Probes
from pytest_hemorrhage.report import MetricResult, Report
from pytest_hemorrhage.sweep import PhaseFit, fit_phase_transition, sweep

pytestmark = pytest.mark.usefixtures("one_thread")


def planted(x: np.ndarray, s_star: float, a: float, b: float, c: float) -> np.ndarray:
    return np.where(x <= s_star, a * x**b, a * s_star**b * np.exp(c * (x - s_star)))


def sse_log(x: np.ndarray, y: np.ndarray, t: float) -> float:
    """Least-squares error in log space of the piecewise curve with its knee at ``t`` (numpy only)."""
    design = np.column_stack([np.ones_like(x), np.minimum(np.log(x), math.log(t)), np.maximum(x - t, 0)])
    coef = np.linalg.lstsq(design, np.log(y), rcond=None)[0]
    return float(np.sum((design @ coef - np.log(y)) ** 2))


# --------------------------------------------------------------------------- the fit
def test_fit_recovers_planted_curve_exactly_without_noise():
    x = np.linspace(0.05, 0.9, 18)
    fit = fit_phase_transition(x, planted(x, 0.55, 2.0, 1.5, 6.0))
    assert fit.s_star == pytest.approx(0.55, abs=1e-6)
    assert (fit.a, fit.b, fit.c) == pytest.approx((2.0, 1.5, 6.0), rel=1e-6)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12) and fit.power_r2 < 0.97
    assert fit.transition_found
    assert fit.predict(x) == pytest.approx(planted(x, 0.55, 2.0, 1.5, 6.0), rel=1e-6)


@pytest.mark.parametrize("s_star, a, b, c, seed", [(0.55, 2.0, 1.5, 6.0, 0), (0.3, 0.05, 2.5, 9.0, 1),
                                                    (0.7, 1.0, 1.0, 12.0, 2)])
def test_fit_recovers_planted_transition_under_noise(s_star, a, b, c, seed):
    x = np.linspace(0.05, 0.95, 19)
    noise = np.exp(np.random.default_rng(seed).normal(0, 0.05, len(x)))
    fit = fit_phase_transition(x, planted(x, s_star, a, b, c) * noise)
    assert fit.s_star == pytest.approx(s_star, abs=0.05)
    assert fit.b == pytest.approx(b, rel=0.15)
    assert fit.c == pytest.approx(c, rel=0.2)
    assert fit.r2 > 0.99 and fit.r2 > fit.power_r2 and fit.adj_r2 > fit.power_adj_r2
    assert fit.transition_found


def test_fit_is_the_least_squares_optimum_and_power_law_matches_polyfit():
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0.1, 2.0, 12))
    y = planted(x, 1.1, 0.3, 2.0, 3.0) * np.exp(rng.normal(0, 0.1, len(x)))
    fit = fit_phase_transition(x, y)
    # Brute force over every admissible knee (two points on each side) finds nothing better.
    knees = np.linspace(x[1], x[-2], 4000, endpoint=False)
    assert sse_log(x, y, fit.s_star) <= min(sse_log(x, y, t) for t in knees) + 1e-9
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    assert (fit.power_b, math.log(fit.power_a)) == pytest.approx((slope, intercept), rel=1e-9)
    resid = np.log(y) - (intercept + slope * np.log(x))
    sst = np.sum((np.log(y) - np.log(y).mean()) ** 2)
    assert fit.power_r2 == pytest.approx(1 - np.sum(resid**2) / sst, rel=1e-9)
    assert fit.r2 == pytest.approx(1 - sse_log(x, y, fit.s_star) / sst, rel=1e-9)
    assert fit.adj_r2 == pytest.approx(1 - (1 - fit.r2) * 11 / 8, rel=1e-12)


def test_fit_of_a_pure_power_law_finds_no_exponential_collapse():
    x = np.linspace(0.1, 1.0, 10)
    y = 3.0 * x**2 * np.exp(np.random.default_rng(4).normal(0, 0.03, len(x)))
    fit = fit_phase_transition(x, y)
    assert fit.power_b == pytest.approx(2.0, rel=0.05)
    # c only follows the power law's local log-slope (b / x) past the knee: three extra parameters
    # buy less than they cost, so no transition is claimed.
    assert fit.adj_r2 < fit.power_adj_r2 and not fit.transition_found


@pytest.mark.parametrize("strengths, values, message", [
    ([0.1, 0.2, 0.3], [1, 2, 3], "at least 4 points"),
    ([0.1, 0.2, 0.3, 0.4], [1, 2, 3], r"values: must be one per strength \(4\), got 3 values"),
    ([0.1, 0.2, 0.3, 0.4], [1, 0, 3, 4], "> 0"),
    ([0.0, 0.2, 0.3, 0.4], [1, 2, 3, 4], "> 0"),
    ([0.1, 0.2, 0.2, 0.4], [1, 2, 3, 4], "repeated"),
    ([0.1, 0.2, 0.3, float("nan")], [1, 2, 3, 4], "finite"),
    ("abcd", [1, 2, 3, 4], "sequence of numbers"),
])
def test_fit_rejects_bad_input(strengths, values, message):
    with pytest.raises(InvalidArgument, match=message):
        fit_phase_transition(strengths, values)


# --------------------------------------------------------------------------- bisection with a fake compare
class Dial(torch.nn.Module):
    """A stand-in candidate that only carries its strength."""

    def __init__(self, strength: float) -> None:
        super().__init__()
        self.strength = strength


def fake_compare(kl_of):
    calls = []

    def compare(baseline, candidate, probes, thresholds, **kwargs):
        calls.append(candidate.strength)
        kl = kl_of(candidate.strength)
        verdict = "pass" if kl <= thresholds.max_kl else "fail"
        metrics = {
            "kl": MetricResult("kl", kl, 0.9 * kl, 1.1 * kl, thresholds.max_kl, "max_kl", "max", verdict),
            "top1": MetricResult("top1", math.exp(-kl), math.exp(-1.1 * kl), math.exp(-0.9 * kl)),
            "ppl_ratio": MetricResult("ppl_ratio", 1 + kl, 1 + 0.9 * kl, 1 + 1.1 * kl),
        }
        return Report(metrics=metrics, thresholds=thresholds.to_dict())

    return compare, calls


PROBES = [[1, 2, 3, 4]]


def test_bisection_finds_planted_float_boundary(monkeypatch):
    compare, calls = fake_compare(lambda s: 0.01 * math.exp(5 * s))  # crosses 0.1 at ln(10)/5
    monkeypatch.setattr(engine, "compare", compare)
    boundary = math.log(10) / 5
    result = sweep(torch.nn.Linear(2, 2), lambda m, s: Dial(s), [0.1, 0.3, 0.5, 0.7, 0.9], PROBES, max_kl=0.1)
    assert result.harshest_passing <= boundary < result.mildest_failing
    assert result.mildest_failing - result.harshest_passing <= 0.2 / 8 + 1e-12
    assert calls[:5] == [0.1, 0.3, 0.5, 0.7, 0.9] and len(calls) == 5 + 3  # gap 0.2 halved 3 times
    bisected = [p for p in result.points if p.source == "bisection"]
    assert [p.strength for p in bisected] == sorted(calls[5:])
    assert [p.strength for p in result.points] == sorted(calls)  # kept in harshness order
    assert result.survives(result.harshest_passing) and not result.survives(result.mildest_failing)


def test_bisection_tolerance_and_switch(monkeypatch):
    compare, calls = fake_compare(lambda s: 0.01 * math.exp(5 * s))
    monkeypatch.setattr(engine, "compare", compare)
    coarse = sweep(torch.nn.Linear(2, 2), lambda m, s: Dial(s), [0.1, 0.3, 0.5, 0.7], PROBES, max_kl=0.1,
                   tolerance=0.1)
    assert len(calls) == 4 + 1 and coarse.mildest_failing - coarse.harshest_passing == pytest.approx(0.1)
    calls.clear()
    off = sweep(torch.nn.Linear(2, 2), lambda m, s: Dial(s), [0.1, 0.3, 0.5, 0.7], PROBES, max_kl=0.1, bisect=False)
    assert len(calls) == 4 and (off.harshest_passing, off.mildest_failing) == (0.3, 0.5)


def test_bisection_over_integers_when_lower_is_harsher(monkeypatch):
    compare, calls = fake_compare(lambda b: 50 * 4.0**-b)  # passes max_kl=0.05 down to 5 bits
    monkeypatch.setattr(engine, "compare", compare)
    result = sweep(torch.nn.Linear(2, 2), lambda m, b: Dial(b), [8, 6, 4, 2], PROBES, max_kl=0.05,
                   harsher="lower")
    assert calls == [8, 6, 4, 2, 5]
    assert (result.harshest_passing, result.mildest_failing) == (5, 4)
    assert result.survives(6) and not result.survives(4)
    assert [p.strength for p in result.points] == [8, 6, 5, 4, 2]
    assert [p.harshness for p in result.points] == [1 / 8, 1 / 6, 1 / 5, 1 / 4, 1 / 2]


def test_all_pass_and_none_pass(monkeypatch):
    compare, calls = fake_compare(lambda s: s)
    monkeypatch.setattr(engine, "compare", compare)
    grid = [0.1, 0.2, 0.3, 0.4]
    every = sweep(torch.nn.Linear(2, 2), lambda m, s: Dial(s), grid, PROBES, max_kl=1.0)
    assert (every.harshest_passing, every.mildest_failing) == (0.4, None) and len(calls) == 4
    none = sweep(torch.nn.Linear(2, 2), lambda m, s: Dial(s), grid, PROBES, max_kl=0.01)
    assert (none.harshest_passing, none.mildest_failing) == (None, 0.1) and len(calls) == 8
    assert not none.survives(0.1) and "mildest strength already fails" in " ".join(none.notes)


# --------------------------------------------------------------------------- real sweeps on a tiny model
@pytest.fixture(scope="module")
def tiny_probes():
    return Probes.from_token_ids(random_token_ids(n=8, length=24).tolist())


@pytest.fixture(scope="module")
def pruning_sweep(llama, tiny_probes):
    before = {k: v.clone() for k, v in llama.state_dict().items()}
    result = sweep(llama, "sparsity", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], tiny_probes, max_kl=0.005)
    after = llama.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the baseline was modified"
    return result


def test_tiny_llama_pruning_sweep(pruning_sweep, llama, tiny_probes):
    grid = [p for p in pruning_sweep.points if p.source == "grid"]
    kl = [p.metrics["kl"][0] for p in grid]
    assert sum(b < a for a, b in zip(kl, kl[1:])) <= 1 and kl[-1] > 10 * kl[0]  # monotone-ish, growing
    for p in pruning_sweep.points:
        est, lo, hi = p.metrics["kl"]
        assert lo <= est <= hi and set(p.metrics) == {"kl", "top1", "ppl_ratio"}
        assert p.description and "magnit" in p.description.lower()
    independent = engine.compare(llama, prune(llama, sparsity=0.5), tiny_probes, max_kl=0.005, layers=None)
    point = next(p for p in grid if p.strength == 0.5)
    assert point.metrics["kl"][0] == pytest.approx(independent.metrics["kl"].estimate, rel=1e-9)
    assert point.verdict == independent.verdict
    assert pruning_sweep.fit is not None and 0.1 < pruning_sweep.s_star < 0.8
    assert pruning_sweep.fit.r2 >= pruning_sweep.fit.power_r2
    assert pruning_sweep.threshold == 0.005 and pruning_sweep.probes["n_probes"] == 8


def test_result_json_and_dataframe(pruning_sweep):
    data = json.loads(pruning_sweep.to_json())
    assert data["s_star"] == pytest.approx(pruning_sweep.s_star)
    assert data["fit"]["r2"] == pytest.approx(pruning_sweep.fit.r2)
    assert [p["strength"] for p in data["points"]] == [p.strength for p in pruning_sweep.points]
    assert data["points"][0]["metrics"]["kl"]["ci_high"] == pruning_sweep.points[0].metrics["kl"][2]
    frame = pruning_sweep.to_dataframe()
    assert list(frame.index) == [p.strength for p in pruning_sweep.points]
    assert {"kl", "kl_ci_low", "kl_ci_high", "top1", "ppl_ratio", "verdict", "fitted"} <= set(frame.columns)
    assert frame["fitted"].to_numpy() == pytest.approx(pruning_sweep.fit.predict(frame["harshness"].to_numpy()))
    assert "phase transition s*" in pruning_sweep.summary()


def test_plot_writes_png_with_every_mark(pruning_sweep, tmp_path):
    path = tmp_path / "deep" / "sweep.png"
    fig = pruning_sweep.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    labels = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "s* =" in labels and "threshold" in labels and "power law" in labels and "piecewise" in labels
    assert not list(tmp_path.joinpath("deep").glob(".*.tmp"))  # atomic write left nothing behind
    assert pruning_sweep.plot() is not None and pruning_sweep.plot(tmp_path / "s.svg") is not None
    assert (tmp_path / "s.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(InvalidArgument, match="path: must be an image file matplotlib writes"):
        pruning_sweep.plot(tmp_path / "sweep.nope")


def test_bits_shortcut_on_tiny_model(llama, tiny_probes):
    result = sweep(llama, "bits", [8, 6, 4, 3, 2], tiny_probes, max_kl=1e-4)
    assert result.harsher == "lower"
    assert [p.strength for p in result.points if p.source == "grid"] == [8, 6, 4, 3, 2]
    assert all(p.harshness == 2.0 ** -p.strength for p in result.points)
    assert all(float(p.strength).is_integer() for p in result.points)
    kl = [p.metrics["kl"][0] for p in result.points]
    assert kl[-1] > 10 * kl[0] and sum(b < a for a, b in zip(kl, kl[1:])) <= 1  # fewer bits, more damage
    assert result.fit is not None and 2 < result.s_star < 8
    assert result.plot().axes[0].xaxis_inverted()  # harsher (fewer bits) to the right


def test_rank_shortcut_and_metric_choice(llama, tiny_probes):
    result = sweep(llama, "rank", [0.2, 0.5, 0.8], tiny_probes, metric="top1", bisect=False)
    assert result.metric == "top1" and result.fit is None and "needs 4 usable points" in result.notes[-1]
    top1 = [p.metrics["top1"][0] for p in result.points]
    assert top1[0] >= top1[-1]
    assert result.points[0].damage("top1")[0] == pytest.approx(1 - top1[0])


# --------------------------------------------------------------------------- errors
# Bad arguments read "{name}: must be {what}, got {value}" (pytest_hemorrhage.arguments).
@pytest.mark.parametrize("kwargs, message", [
    ({"modify": "nope"}, "modify: must be one of 'bits', 'rank', 'sparsity', got 'nope'; or a callable"),
    ({"modify": 42}, r"modify: must be a callable \(model, strength\).*got 42"),
    ({"strengths": []}, r"strengths: must be a sorted list.*got \[\]; pass at least one strength"),
    ({"strengths": 0.5}, "strengths: must be a sorted list of finite numbers.*got 0.5"),
    ({"strengths": [0.3, 0.1, 0.2]}, "strengths: must be sorted"),
    ({"strengths": [0.1, 0.1]}, "strengths: must be sorted"),
    ({"strengths": ["0.1"]}, "strengths: must be a finite number, got '0.1'"),
    ({"strengths": [True]}, "strengths: must be a finite number, got True"),
    ({"strengths": [float("nan")]}, "strengths: must be a finite number, got nan"),
    ({"modify": "bits", "strengths": [8, 4.5]}, "bits: must be whole numbers, got 4.5"),
    ({"modify": "bits", "strengths": [8, 1]}, r"strengths: must be values modify='bits' works with, got 1; bits: .*\[2, 8\]"),
    ({"metric": "bogus"}, "metric: must be one of 'kl', 'ppl_ratio', 'top1', got 'bogus'"),
    ({"harsher": "sideways"}, "harsher: must be one of 'higher', 'lower', got 'sideways'"),
    ({"tolerance": 0}, "tolerance: must be a number > 0, got 0"),
    ({"tolerance": -1.0}, "tolerance: must be a number > 0, got -1.0"),
    ({"transform": lambda s: (s - 0.3) ** 2, "strengths": [0.1, 0.3, 0.5]}, "transform: must be finite harshness growing"),
    ({"transform": "log"}, "transform: must be a callable strength -> harshness, got 'log'"),
    ({"harsher": "lower", "strengths": [0.0, 0.5]}, "strengths: must be > 0 with harsher='lower'"),
    ({"max_kl": "abc"}, "max_kl must be a number"),
    ({"thresholds": {"max_kll": 1}}, "unknown threshold key"),
])
def test_bad_arguments_fail_before_any_model_work(llama, tiny_probes, kwargs, message):
    calls = []
    args = {"modify": "sparsity", "strengths": [0.1, 0.2]} | kwargs
    if args["modify"] == "sparsity":
        args["modify"] = lambda m, s: calls.append(s) or prune(m, sparsity=s)
    with pytest.raises(InvalidArgument, match=message):
        sweep(llama, probes=tiny_probes, **args)
    assert not calls


def test_shortcut_strength_error_names_the_shortcut(llama, tiny_probes):
    with pytest.raises(InvalidArgument, match="strengths: must be values modify='sparsity' works with, got 1.5"):
        sweep(llama, "sparsity", [0.5, 1.5], tiny_probes)


def test_baseline_must_be_a_module_and_modify_must_copy(llama, tiny_probes):
    with pytest.raises(InvalidArgument, match="must be a torch.nn.Module"):
        sweep("model", "sparsity", [0.1], tiny_probes)
    with pytest.raises(HemorrhageError, match="returned the baseline itself"):
        sweep(llama, lambda m, s: m, [0.1], tiny_probes)


# --------------------------------------------------------------------------- the default model
@pytest.fixture
def every_thread():
    """SmolLM2-135M is large enough for intra-op threads to pay off (unlike the tiny models)."""
    before = torch.get_num_threads()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    yield
    torch.set_num_threads(before)


def test_default_model_phase_transitions(hemorrhage_default_model, every_thread):
    model, tokenizer = hemorrhage_default_model
    probes = Probes.builtin(tokenizer, n=8, max_length=64)
    pruning = sweep(model, "sparsity", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], probes)
    bits = sweep(model, "bits", [8, 7, 6, 5, 4, 3, 2], probes)
    for result, (low, high) in ((pruning, (0.1, 0.8)), (bits, (2, 8))):
        assert result.fit is not None, result.notes
        assert low < result.s_star < high, result.summary()
        assert result.fit.r2 > result.fit.power_r2, result.summary()
        assert result.fit.c > 0, result.summary()
    assert pruning.harshest_passing is None  # 10 % magnitude pruning already fails the default gate
    assert bits.harshest_passing in (7, 8) and bits.mildest_failing in (6, 7)
