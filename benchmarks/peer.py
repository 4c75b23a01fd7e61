"""Peer comparison: PyTorch's eager numeric suite (torch.ao.ns._numeric_suite) against compare().

Same model pair (default model vs ``quantize(bits=8)`` per-channel, and vs int4 per-group), same
probes and batches. What the numeric suite needs here:

* ``compare_model_outputs`` / ``prepare_model_outputs`` attach an ``OutputLogger`` only to *leaf*
  modules of an allow list (and, on the quantized side, to the non-leaf ``nnq.Linear`` family).
  Decoder blocks are non-leaf, and our fake-quantized candidate keeps float ``nn.Linear`` modules,
  so we call the same machinery one level down: ``torch.ao.quantization.prepare`` with the suite's
  qconfig (``QConfig(activation=OutputLogger, weight=None)``), an empty ``allow_list`` (no leaf
  loggers) and ``observer_non_leaf_module_list={decoder block class}`` on both models, then
  ``get_matching_activations``. In transformers 5 a Llama decoder block returns a tensor, so the
  logger sees the hidden states directly.
* ``prepare`` modifies models in place: it runs on ``copy.deepcopy`` copies (counted in its time).
* The loggers keep every batch's outputs; we read and clear them after each batch, so memory stays
  bounded (the suite as shipped would hold 30 blocks x all probes).
* SQNR pooled like ours: 10·log10(Σ‖h_b‖² / Σ‖h_b − h_m‖²) over non-padding tokens, summed in
  float64; the suite's ``compute_sqnr`` (torch.ao.ns.fx.utils; float32 only) is checked against that on one batch.
"""

from __future__ import annotations

import copy
import math
import time
import warnings

import torch


def numeric_suite_block_sqnr(model: torch.nn.Module, candidate: torch.nn.Module, probes,
                             batch_size: int = 8, pad_id: int = 0) -> tuple[dict[str, float], float]:
    """Per-block pooled SQNR (dB) from the numeric suite's logged outputs; also the largest
    difference between ``compute_sqnr`` and the pooled formula on the first batch (a check)."""
    from torch.ao.ns._numeric_suite import OutputLogger, get_matching_activations
    from torch.ao.ns.fx.utils import compute_sqnr
    from torch.ao.quantization import QConfig, prepare

    from pytest_hemorrhage.capture import adapt

    block_types = {type(m) for _, m in adapt(model).layers}
    float_copy, quant_copy = copy.deepcopy(model), copy.deepcopy(candidate)
    for m in (float_copy, quant_copy):
        m.qconfig = QConfig(activation=OutputLogger, weight=None)
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
            warnings.simplefilter("ignore", DeprecationWarning)
            prepare(m, inplace=True, allow_list=set(), observer_non_leaf_module_list=block_types)
    sums: dict[str, list[float]] = {}
    check = 0.0
    with torch.inference_mode():
        for i, batch in enumerate(probes.batches(batch_size, pad_id=pad_id)):
            float_copy(batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
            quant_copy(batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
            mask = batch.attention_mask.bool()
            for key, logged in get_matching_activations(float_copy, quant_copy).items():
                f_b, f_m = logged["float"][-1][mask], logged["quantized"][-1][mask]
                h_b, h_m = f_b.double(), f_m.double()
                acc = sums.setdefault(key.removesuffix(".stats"), [0.0, 0.0])
                signal, error = float(h_b.square().sum()), float((h_b - h_m).square().sum())
                acc[0] += signal
                acc[1] += error
                if i == 0:
                    check = max(check, abs(float(compute_sqnr(f_b, f_m)) - 10 * math.log10(signal / error)))
            for m in (float_copy, quant_copy):
                for logger in m.modules():
                    if isinstance(logger, OutputLogger):
                        logger.stats["tensor_val"].clear()
    return {name: 10.0 * math.log10(s / e) if e > 0 else math.inf for name, (s, e) in sums.items()}, check


def run(n_probes: int = 16, max_length: int = 64, batch_size: int = 8) -> dict:
    import pytest_hemorrhage as ph
    from pytest_hemorrhage.modify import quantize

    from .common import default_model_and_probes

    model, _, probes = default_model_and_probes(n_probes, max_length)
    pad = model.config.pad_token_id if isinstance(model.config.pad_token_id, int) else 0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result: dict = {"probes": n_probes, "max_length": max_length, "threads": torch.get_num_threads(),
                    "numeric_suite": "torch.ao.ns._numeric_suite OutputLogger via prepare(non-leaf blocks)"}
    candidates = {"int8": quantize(model, bits=8),
                  "int4_g128": quantize(model, bits=4, granularity="per_group", group_size=128)}
    for name, candidate in candidates.items():
        start = time.perf_counter()
        ns, check = numeric_suite_block_sqnr(model, candidate, probes, batch_size, pad)
        t_ns = time.perf_counter() - start
        start = time.perf_counter()
        report = ph.compare(model, candidate, probes, batch_size=batch_size)
        t_ours = time.perf_counter() - start
        ours = {layer.name: layer.sqnr_db for layer in report.layers}
        common = [n for n in ours if n in ns]
        diffs = [abs(ours[n] - ns[n]) for n in common]
        result[f"{name}/blocks_compared"] = len(common)
        result[f"{name}/numeric_suite_s"] = t_ns
        result[f"{name}/compare_s"] = t_ours
        result[f"{name}/time_ratio_numeric_suite_over_compare"] = t_ns / t_ours
        result[f"{name}/max_abs_sqnr_diff_db"] = max(diffs)
        result[f"{name}/min_block_sqnr_db_ours"] = min(ours[n] for n in common)
        result[f"{name}/max_block_sqnr_db_ours"] = max(ours[n] for n in common)
        result[f"{name}/check_compute_sqnr_vs_pooled_db"] = check
        result[f"{name}/per_block"] = [{"name": n, "ours_db": ours[n], "numeric_suite_db": ns[n]} for n in common]
    after = model.state_dict()
    result["baseline_untouched"] = all(torch.equal(before[k], after[k]) for k in before)
    return result
