"""Fuzzing throughput: modifications judged per minute, with and without reusing the baseline.

Default model (SmolLM2-135M), 16 built-in probes of up to 128 tokens, one process. The same fixed
list of 6 modifications (values the strategies in ``pytest_hemorrhage.strategies`` can draw) goes
through two arms, interleaved config by config so that a change in machine load hits both:

* with reuse: the baseline snapshot is recorded once (in memory); each example builds the
  candidate and runs ``compare(snapshot, candidate)``: one forward pass.
* without: each example builds the candidate and runs ``compare(baseline, candidate, probes)``:
  the baseline's forward pass is repeated for every example.

Both arms build candidates the same way: one working copy of the model, its weights restored from
the baseline's state dict with ``copy_``, then ``config.apply(work, inplace=True)``, on
``build_threads`` intra-op threads. Deep copy and restore are timed separately as well.

Low-rank configs are left out of the list: the SVD of every weight matrix takes minutes on two
cores, which would make the benchmark measure ``LowRankConfig.apply`` and nothing else.

Measured (2 cores shared with other jobs, load average 4-6; two runs): with reuse 5.38 and 5.29
modifications per minute, without 2.75 and 2.83; ratio 1.96 and 1.87 (1.70 and 1.64 counting the
one-off snapshot recording against only 6 examples). Building a candidate: 0.8-0.9 s for RTN,
8.7-9.8 s for pruning (magnitude pruning's full sort of every weight alone is 12-16 s); restore
0.13-0.18 s vs deep copy 0.29-0.41 s. With 2 threads the same loop measured 2.13 vs 1.38 per
minute (ratio 1.55): comparison times swung 2x between calls and restore/deep copy took 1.7 s.
"""

from __future__ import annotations

import contextlib
import copy
import time
from typing import Iterator

import torch

from .common import best_time, default_model_and_probes


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fixed_configs() -> list:
    """6 modifications from the strategies' spaces, mild to harsh (fixed: ``.example()`` is random)."""
    from pytest_hemorrhage.modify import PruningConfig, QuantizationConfig

    return [
        QuantizationConfig(bits=8, symmetric=False, granularity="per_group", group_size=16),
        QuantizationConfig(bits=8, symmetric=True, granularity="per_channel"),
        QuantizationConfig(bits=6, symmetric=False, granularity="per_channel"),
        QuantizationConfig(bits=4, symmetric=True, granularity="per_group", group_size=64),
        PruningConfig(sparsity=0.075, method="magnitude"),
        PruningConfig(method="nm", n=2, m=4),
    ]


def _build_mean(kind: str, rows: list[dict], configs: list) -> float:
    """Mean candidate-building time (both arms) of the configs of one ``kind``."""
    times = [t for row, c in zip(rows, configs) if c.kind == kind for t in (row["reuse_build_s"], row["without_build_s"])]
    return sum(times) / len(times)


class WorkingCopy:
    """One reusable candidate: restore the baseline's weights in place, then modify in place."""

    def __init__(self, baseline: torch.nn.Module) -> None:
        self.source = baseline.state_dict()
        self.model = copy.deepcopy(baseline)

    def restore(self) -> None:
        with torch.no_grad():
            state = self.model.state_dict()
            for name, value in self.source.items():
                state[name].copy_(value)

    def build(self, config) -> torch.nn.Module:
        self.restore()
        candidate = config.apply(self.model, inplace=True)
        shapes = {k: v.shape for k, v in candidate.state_dict().items()}
        if candidate is not self.model or shapes != {k: v.shape for k, v in self.source.items()}:
            raise RuntimeError(f"{config.describe()} changes the model's structure; restore cannot undo it")
        return candidate


def run(n_probes: int = 16, max_length: int = 128, threads: int | None = 1, build_threads: int | None = 1) -> dict:
    """``threads``: intra-op threads of the comparisons; ``build_threads``: of candidate building
    (None: torch's default, 2 on 2 cores). Both default to 1, as in ``example_suites/fuzz``: on a
    2-core machine shared with other jobs a second thread mostly waits on the thread pool, and
    the timings of 2-thread runs swing by 2x from one call to the next."""
    import pytest_hemorrhage as ph

    with _threads(threads):
        model, _, probes = default_model_and_probes(n_probes, max_length)
        model.eval()
        configs = fixed_configs()
        work = WorkingCopy(model)

        # Candidate-building cost, separately: a fresh deep copy vs restoring the working copy.
        with _threads(build_threads):
            deepcopy_s = best_time(lambda: copy.deepcopy(model), repeats=2)
            restore_s = best_time(work.restore, repeats=2)

        start = time.perf_counter()
        snapshot = ph.record_snapshot(model, probes)
        record_s = time.perf_counter() - start

        rows = []
        for i, config in enumerate(configs):
            row = {"config": config.describe()}
            arms = ("reuse", "without") if i % 2 == 0 else ("without", "reuse")
            for arm in arms:
                start = time.perf_counter()
                with _threads(build_threads):
                    candidate = work.build(config)
                built = time.perf_counter()
                if arm == "reuse":
                    report = ph.compare(snapshot, candidate)
                else:
                    report = ph.compare(model, candidate, probes)
                done = time.perf_counter()
                row[f"{arm}_build_s"] = built - start
                row[f"{arm}_compare_s"] = done - built
                row[f"{arm}_kl"] = report.metrics["kl"].estimate
                row[f"{arm}_verdict"] = report.verdict
            rows.append(row)

    n = len(rows)
    reuse_s = sum(r["reuse_build_s"] + r["reuse_compare_s"] for r in rows)
    without_s = sum(r["without_build_s"] + r["without_compare_s"] for r in rows)
    build_s = sum(r["reuse_build_s"] + r["without_build_s"] for r in rows) / (2 * n)
    cmp_snap = sum(r["reuse_compare_s"] for r in rows) / n
    cmp_model = sum(r["without_compare_s"] for r in rows) / n
    # What the arms would cost with a fresh deep copy per example instead of a restore.
    extra = n * (deepcopy_s - restore_s)
    return {
        "probes": n_probes,
        "max_length": max_length,
        "scored_tokens": snapshot.n_scored_tokens,
        "threads_compare": threads if threads is not None else torch.get_num_threads(),
        "threads_build": build_threads if build_threads is not None else torch.get_num_threads(),
        "modifications": n,
        "record_snapshot_once_s": record_s,
        "deepcopy_s": deepcopy_s,
        "restore_copy_s": restore_s,
        "build_mean_s": build_s,
        "compare_snapshot_mean_s": cmp_snap,
        "compare_model_mean_s": cmp_model,
        "rate_with_reuse_per_min": 60 * n / reuse_s,
        "rate_with_reuse_incl_record_per_min": 60 * n / (reuse_s + record_s),
        "rate_without_reuse_per_min": 60 * n / without_s,
        "ratio_with_over_without": without_s / reuse_s,
        "ratio_incl_record": without_s / (reuse_s + record_s),
        "ratio_compare_only": cmp_model / cmp_snap,
        "ratio_if_deepcopy_per_example": (without_s + extra) / (reuse_s + extra),
        "build_quantize_mean_s": _build_mean("quantize", rows, configs),
        "build_prune_mean_s": _build_mean("prune", rows, configs),
        "max_rel_kl_difference_between_arms": max(
            abs(r["reuse_kl"] - r["without_kl"]) / max(r["without_kl"], 1e-12) for r in rows
        ),
        "verdicts_agree": all(r["reuse_verdict"] == r["without_verdict"] for r in rows),
        "per_modification": rows,
    }
