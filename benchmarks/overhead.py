"""Overhead of compare() over the physical limit: two plain forward passes (one with a snapshot).

Default model (SmolLM2-135M, 30 blocks), 32 probes of 128 tokens, batch size 8, all in one process.
"""

from __future__ import annotations

import copy

import torch

from .common import best_time, default_model_and_probes, plain_forward


def run(n_probes: int = 32, max_length: int = 128, repeats: int = 3) -> dict:
    import pytest_hemorrhage as ph
    from pytest_hemorrhage.modify import quantize

    model, _, probes = default_model_and_probes(n_probes, max_length)
    candidate = quantize(model, bits=8)
    plain2 = best_time(lambda: (plain_forward(model, probes), plain_forward(candidate, probes)), repeats)
    plain1 = plain2 / 2
    full = best_time(lambda: ph.compare(model, candidate, probes), repeats)
    outputs_only = best_time(lambda: ph.compare(model, candidate, probes, layers=None), repeats)
    attention = best_time(lambda: ph.compare(model, candidate, probes, attention=True), repeats)
    plain_eager = None
    eager_base, eager_cand = copy.deepcopy(model), copy.deepcopy(candidate)
    for m in (eager_base, eager_cand):
        m.set_attn_implementation("eager")
    plain_eager = best_time(lambda: (plain_forward(eager_base, probes), plain_forward(eager_cand, probes)), repeats)
    snap = ph.record_snapshot(model, probes)
    snapshot = best_time(lambda: ph.compare(snap, candidate), repeats)
    return {
        "probes": n_probes, "max_length": max_length, "threads": torch.get_num_threads(),
        "two_plain_forward_s": plain2,
        "compare_outputs_and_blocks_s": full,
        "ratio_compare_over_two_forward": full / plain2,
        "ratio_outputs_only_over_two_forward": outputs_only / plain2,
        "ratio_attention_over_two_forward": attention / plain2,
        "ratio_attention_over_two_eager_forward": attention / plain_eager,
        "ratio_snapshot_compare_over_one_forward": snapshot / plain1,
        "snapshot_bytes_per_scored_token": snap.bytes_per_scored_token,
    }
