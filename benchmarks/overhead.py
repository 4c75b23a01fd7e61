"""Overhead of compare() over the physical limit: two plain forward passes (one with a snapshot).

Default model (SmolLM2-135M, 30 blocks), 32 probes of 128 tokens, batch size 8, all in one process.
Each ratio is the median of ``repeats`` pairs timed alternately (check, then its plain passes).
"""

from __future__ import annotations

import copy

import torch

from .common import default_model_and_probes, paired_ratio, plain_forward


def run(n_probes: int = 32, max_length: int = 128, repeats: int = 5) -> dict:
    import pytest_hemorrhage as ph
    from pytest_hemorrhage.modify import quantize

    model, _, probes = default_model_and_probes(n_probes, max_length)
    candidate = quantize(model, bits=8)
    eager_base, eager_cand = copy.deepcopy(model), copy.deepcopy(candidate)
    for m in (eager_base, eager_cand):
        m.set_attn_implementation("eager")
    snap = ph.record_snapshot(model, probes)

    def two_forward():
        plain_forward(model, probes)
        plain_forward(candidate, probes)

    def two_eager_forward():
        plain_forward(eager_base, probes)
        plain_forward(eager_cand, probes)

    ratios = {
        "compare_over_two_forward": (lambda: ph.compare(model, candidate, probes), two_forward),
        "outputs_only_over_two_forward": (lambda: ph.compare(model, candidate, probes, layers=None), two_forward),
        "attention_over_two_forward": (lambda: ph.compare(model, candidate, probes, attention=True), two_forward),
        "attention_over_two_eager_forward":
            (lambda: ph.compare(model, candidate, probes, attention=True), two_eager_forward),
        "snapshot_compare_over_one_forward": (lambda: ph.compare(snap, candidate), lambda: plain_forward(candidate, probes)),
    }
    result = {"probes": n_probes, "max_length": max_length, "threads": torch.get_num_threads(), "repeats": repeats}
    for name, (check, reference) in ratios.items():
        measured = paired_ratio(check, reference, repeats)
        result[f"ratio_{name}"] = measured["median"]
        result[f"range_{name}"] = (measured["low"], measured["high"])
    result["snapshot_bytes_per_scored_token"] = snap.bytes_per_scored_token
    return result
