"""Reusable helpers of the benchmarks (efficiency statistics, numeric-suite SQNR); the numbers themselves are not asserted.

The benchmarks' own tests: they live beside the code they check, so the project's tests (``tests/``)
never import ``benchmarks``. ``python -m pytest`` runs them with the fast tier (``testpaths``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pytest_hemorrhage as ph
from benchmarks.efficiency import (
    Z95,
    bootstrap_stderr,
    bounds_rule,
    decide_rule,
    document_stderr,
    projected_tokens,
    token_stderr,
    tokens_until_right,
    unpaired_estimate,
)
from benchmarks.peer import numeric_suite_block_sqnr
from pytest_hemorrhage.modify import quantize
from pytest_hemorrhage.probes import Probes
from pytest_hemorrhage.stats import Estimate
from tests.tiny_models import tiny_llama


def test_document_stderr_is_the_limit_of_a_document_bootstrap():
    rng = np.random.default_rng(1)
    counts = rng.integers(20, 80, 200).astype(float)
    sums = counts * rng.normal(3.0, 0.5, 200)
    closed = document_stderr(sums, counts)
    assert bootstrap_stderr(sums, counts, iters=4000) == pytest.approx(closed, rel=0.06)
    # Equal-length documents: the SE of the mean of per-document means (population sd).
    equal = np.full(50, 10.0)
    doc_sums = equal * rng.normal(0.0, 1.0, 50)
    assert document_stderr(doc_sums, equal) == pytest.approx((doc_sums / 10).std() / math.sqrt(50))


def test_token_stderr_matches_numpy_on_the_tokens():
    rng = np.random.default_rng(2)
    docs = [rng.normal(2.0, 1.0, n) for n in (5, 9, 13)]
    tokens = np.concatenate(docs)
    se = token_stderr(np.array([np.square(d).sum() for d in docs]), np.array([d.sum() for d in docs]),
                      np.array([d.size for d in docs], float))
    assert se == pytest.approx(tokens.std(ddof=1) / math.sqrt(tokens.size))


def test_unpaired_estimate_adds_the_two_variances():
    counts = np.array([4.0, 4.0, 4.0, 4.0])
    b = np.array([4.0, 8.0, 6.0, 2.0])
    m = b + np.array([1.0, 0.0, 2.0, 1.0])
    est = unpaired_estimate((b, b), (m, m), counts)
    assert est.value == pytest.approx((m.sum() - b.sum()) / counts.sum())
    se = math.hypot(document_stderr(b, counts), document_stderr(m, counts))
    assert est.se == pytest.approx(se) and est.high - est.value == pytest.approx(Z95 * se)


def test_rules_and_tokens_until_right():
    thr = math.log(1.02)
    inside, straddle_low, straddle_high, above = (Estimate(v, lo, hi, 0.0, 9) for v, lo, hi in
                                                  ((0.0, -0.01, 0.01), (0.0, -0.05, 0.05),
                                                   (0.03, 0.0, 0.06), (0.05, 0.03, 0.07)))
    assert [bounds_rule(e, thr) for e in (inside, straddle_low, straddle_high, above)] == \
        ["pass", "inconclusive", "inconclusive", "fail"]
    assert [decide_rule(e, thr) for e in (inside, straddle_low, straddle_high, above)] == \
        ["pass", "inconclusive", "fail", "fail"]
    tokens = np.array([10, 20, 30, 40])
    assert tokens_until_right(["pass", "fail", "pass", "pass"], tokens, "pass") == 30
    assert tokens_until_right(["pass", "pass", "pass", "pass"], tokens, "pass") == 10
    assert math.isinf(tokens_until_right(["pass", "pass", "pass", "fail"], tokens, "pass"))
    # Half-width 0.05 against a margin of 0.02 needs (0.05/0.02)^2 = 6.25 times the tokens.
    assert projected_tokens(Estimate(0.0, -0.05, 0.05, 0.0, 9), 0.02, 100, "pass") == pytest.approx(625)
    assert math.isinf(projected_tokens(Estimate(0.0, -0.05, 0.05, 0.0, 9), 0.02, 100, "fail"))


def test_numeric_suite_sqnr_agrees_with_compare_and_leaves_models_untouched():
    llama = tiny_llama()
    g = torch.Generator().manual_seed(3)
    probes = Probes.from_token_ids([torch.randint(1, 128, (int(n),), generator=g).tolist()
                                    for n in (12, 9, 16, 5, 12, 7)])
    candidate = quantize(llama, bits=4)
    before = {k: v.clone() for k, v in llama.state_dict().items()}
    ns, check = numeric_suite_block_sqnr(llama, candidate, probes, batch_size=4)
    ours = {layer.name: layer.sqnr_db for layer in ph.compare(llama, candidate, probes, batch_size=4).layers}
    assert set(ns) == set(ours) and len(ours) == llama.config.num_hidden_layers
    for name in ours:
        assert ns[name] == pytest.approx(ours[name], abs=1e-3)
    assert check < 1e-3  # compute_sqnr works in float32
    assert all(torch.equal(before[k], v) for k, v in llama.state_dict().items())
    assert not hasattr(llama, "qconfig") and not hasattr(candidate, "qconfig")


def test_ever_past_matches_a_loop_over_looks():
    from benchmarks.sequential import ever_past

    rng = np.random.default_rng(4)
    data = rng.normal(0.3, 1.0, (200, 40))
    radius = 2.0 / np.sqrt(np.arange(1, 41))
    by_loop = {"fail": 0, "pass": 0}
    for row in data:
        for side in by_loop:
            for t in range(12, 41, 4):
                mean, half = row[:t].mean(), radius[t - 1] * row[:t].std(ddof=1)
                if (mean - half > 0.0) if side == "fail" else (mean + half < 0.0):
                    by_loop[side] += 1
                    break
    for side, hits in by_loop.items():
        assert ever_past(data, 0.0, 4, 12, radius, side) == pytest.approx(hits / 200)
    assert by_loop["fail"] > 0


def test_paired_ratio_times_check_and_reference_alternately(monkeypatch):
    from benchmarks import common

    clock = [0.0]
    calls = []
    monkeypatch.setattr(common.time, "perf_counter", lambda: clock[0])

    def advance(name, seconds):
        def fn():
            calls.append(name)
            clock[0] += seconds[len([c for c in calls if c == name]) - 1]
        return fn

    # warm-up, then pairs whose ratios are 3, 2, 4, 2.5, 5 (median 3)
    reference = advance("reference", [9.0, 1.0, 2.0, 1.0, 2.0, 1.0])
    check = advance("check", [9.0, 3.0, 4.0, 4.0, 5.0, 5.0])
    syncs = []
    got = common.paired_ratio(check, reference, repeats=5, sync=lambda: syncs.append(1))
    assert got == {"median": 3.0, "low": 2.0, "high": 5.0}
    assert calls == ["check", "reference"] + ["reference", "check"] * 5
    assert len(syncs) == 20  # before and after every timed call


def _x(cat, name, ts, dur, tid=1, **args):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "tid": tid, "args": args}


def test_trace_analysis_names_the_frame_that_kept_the_gpu_waiting():
    from benchmarks.timeline import analyse_trace

    trace = {"traceEvents": [
        _x("python_function", "pytest_hemorrhage/comparison.py(215): _run_live_batch", 0, 1000),
        _x("python_function", "transformers/modeling_llama.py(354): forward", 10, 300),
        _x("cuda_runtime", "cudaLaunchKernel", 20, 5, correlation=1),
        _x("cuda_runtime", "cudaLaunchKernel", 30, 5, correlation=2),
        _x("python_function", "pytest_hemorrhage/stats.py(38): add", 400, 200),
        _x("python_function", "torch/functional.py(1): helper", 410, 100),
        _x("cuda_runtime", "cudaStreamSynchronize", 420, 80),
        _x("cuda_runtime", "cudaLaunchKernel", 520, 5, correlation=3),
        _x("kernel", "gemm", 100, 100, tid=7, correlation=1),
        _x("kernel", "gemm", 150, 100, tid=7, correlation=2),  # overlaps the first: one busy run
        _x("kernel", "index_add", 550, 50, tid=7, correlation=3),
        _x("cuda_runtime", "cudaLaunchKernel", 40, 5),  # untraced kernel launch: never a sync
    ]}
    got = analyse_trace(trace, min_gap_us=10, blocking_us=50)
    assert got["gpu_events"] == 3
    assert got["window_ms"] == pytest.approx(0.5)  # 100 .. 600 us
    assert got["host_before_first_kernel_ms"] == pytest.approx(0.1)  # the outer frame starts at 0
    assert got["host_after_last_kernel_ms"] == pytest.approx(0.4)  # ... and ends at 1000
    assert got["busy_ms"] == pytest.approx(0.2)  # 100..250 and 550..600
    assert got["idle_ms"] == pytest.approx(0.3)
    # The gap before index_add ends with a launch made inside stats.add (torch's helper frame had returned).
    assert got["idle_ms_by_site"] == {"pytest_hemorrhage/stats.py(38): add": pytest.approx(0.3)}
    # The sync is attributed to the innermost project frame, skipping torch's own helper.
    assert got["blocking_calls_by_site"] == {
        "cudaStreamSynchronize at pytest_hemorrhage/stats.py(38): add": {"count": 1, "ms": pytest.approx(0.08)}}


def test_trace_analysis_of_a_trace_without_gpu_work():
    from benchmarks.timeline import analyse_trace, site_of

    assert analyse_trace({"traceEvents": [_x("cpu_op", "aten::mm", 0, 10)]}) == {"gpu_events": 0}
    assert site_of([]) == "(no Python frame)"
    assert site_of(["torch/a.py(1): f", "torch/b.py(2): g"]) == "torch/b.py(2): g"
