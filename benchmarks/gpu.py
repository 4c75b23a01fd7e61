"""Overhead of compare() on a GPU: a randomly initialised ~1.1B Llama in bf16, 64 probes x 512 tokens.

Weights cannot be downloaded on the GPU machine either; timing does not need trained weights.
Ratios are against plain forward passes of the same models on the same probes, in one process,
with ``torch.cuda.synchronize()`` around every timed call; check and plain passes are timed
alternately and the median, lowest and highest per-pair ratio are reported. ``--profile`` also reports the GPU time
each kernel adds to the plain forward passes, and CPU against GPU time; ``--cprofile`` prints
where the host's Python time goes; ``--timeline`` (and ``--trace-dir DIR`` to keep the traces)
says where the GPU sits idle and which host frame kept it waiting (:mod:`benchmarks.timeline`);
``--quick`` skips the unfused and attention ratios; ``--parts`` times one batch's forward pass and each metric
kernel. With Triton present, the checks are also timed with the fused kernels turned off
(``HEMORRHAGE_FUSED=0``), in the same process.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch

from pytest_hemorrhage.metrics import fused

from . import common


def llama_1b(seed: int = 0, layers: int = 22) -> torch.nn.Module:
    """TinyLlama-1.1B's shape (hidden 2048, 22 blocks, GQA 32/4 heads, vocab 32000), random bf16 weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
        tie_word_embeddings=False,
    )
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    return model.eval()


def random_probes(n: int, length: int, vocab: int = 32000, seed: int = 0):
    from pytest_hemorrhage.probes import Probes

    g = torch.Generator().manual_seed(seed)
    return Probes.from_token_ids(torch.randint(3, vocab, (n, length), generator=g).tolist())


def timed(fn, repeats: int = 3) -> float:
    """Best of ``repeats`` synchronised wall times after one warm-up call."""
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def plain_forward(model, probes, batch_size: int) -> None:
    with torch.inference_mode():
        for batch in probes.batches(batch_size):
            model(batch.input_ids.pin_memory().cuda(non_blocking=True),
                  attention_mask=batch.attention_mask.pin_memory().cuda(non_blocking=True), use_cache=False)


def paired_ratio(check, reference, repeats: int) -> dict:
    """:func:`benchmarks.common.paired_ratio` with the GPU synchronised around every timed call."""
    return common.paired_ratio(check, reference, repeats, sync=torch.cuda.synchronize)


def event_ms(fn, repeats: int = 10) -> float:
    """Mean GPU time of ``fn`` in milliseconds, by CUDA events, after one warm-up call."""
    fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def _profiled(fn) -> tuple[dict, float, float]:
    """Self CUDA microseconds per kernel or op name, and the CPU and CUDA totals (ms), of one call."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    fn()
    torch.cuda.synchronize()
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = prof.key_averages()
    per_name = {e.key: e.self_device_time_total for e in events if e.self_device_time_total > 0}
    cpu = sum(e.self_cpu_time_total for e in events) / 1e3
    return per_name, cpu, sum(per_name.values()) / 1e3


def profile_extra(check, plain, top: int = 15) -> dict:
    """What a check adds to its plain forward passes: GPU time per kernel (ms) and the totals."""
    got, cpu, gpu = _profiled(check)
    ref, ref_cpu, ref_gpu = _profiled(plain)
    extra = {name: (us - ref.get(name, 0.0)) / 1e3 for name, us in got.items()}
    ranked = sorted(extra.items(), key=lambda kv: -kv[1])[:top]
    return {"cpu_ms": cpu, "gpu_ms": gpu, "plain_cpu_ms": ref_cpu, "plain_gpu_ms": ref_gpu,
            "extra_gpu_ms_by_kernel": {name[:90]: round(ms, 3) for name, ms in ranked}}


def python_profile(fn, top: int = 30) -> str:
    """cProfile of one call (after a warm-up call), by own time: where the host spends a check's time."""
    import cProfile
    import io
    import pstats

    fn()
    torch.cuda.synchronize()
    prof = cProfile.Profile()
    prof.enable()
    fn()
    torch.cuda.synchronize()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def part_times(base, cand, probes, batch_size: int) -> dict:
    """GPU milliseconds of one batch's forward pass and of each metric kernel on that batch's tensors."""
    from pytest_hemorrhage.capture import adapt, capture_layers
    from pytest_hemorrhage.metrics.activations import row_products
    from pytest_hemorrhage.metrics.outputs import token_output_metrics
    from pytest_hemorrhage.snapshot import sign_keys, sketch_projection

    batch = next(iter(probes.batches(batch_size)))
    adapter = adapt(base)
    hidden: dict = {}
    with torch.inference_mode():
        with capture_layers(adapter.layers, hidden.__setitem__):
            logits_b, _ = adapter.forward(batch)
        logits_m, _ = adapt(cand).forward(batch)
        ids = batch.input_ids.cuda()
        width = ids.shape[1]
        rows = torch.cat([torch.arange(width - 1) + r * width for r in range(ids.shape[0])]).cuda()
        targets = ids.flatten()[rows + 1]
        zb, zm = logits_b.flatten(0, 1), logits_m.flatten(0, 1)
        layers = list(hidden.values())
        stacked = torch.stack(layers).flatten(1, 2)
        keys = sign_keys(0, list(range(ids.shape[0])), [width] * ids.shape[0], torch.device("cuda"))
        proj = sketch_projection(0, 16, stacked.shape[-1], torch.device("cuda"))
        out = {
            "forward_one_batch": event_ms(lambda: adapter.forward(batch), 5),
            "output_metrics": event_ms(lambda: token_output_metrics(zb, zm, targets, rows=rows)),
            "logit_stats_kernel": event_ms(lambda: fused.logit_stats(zm, rows, zb)),
            "logit_stats_kernel_with_top5": event_ms(lambda: fused.logit_stats(zm, rows, zb, topk=5)),
            "logit_stats_kernel_candidate_only_top5": event_ms(lambda: fused.logit_stats(zm, rows, topk=5)),
            "topk_both": event_ms(lambda: (zb.topk(5, dim=-1), zm.topk(5, dim=-1))),
            "row_products_all_layers": event_ms(lambda: [row_products(h, h) for h in layers]),
            "sketch_all_layers": event_ms(lambda: fused.sketch_rows(stacked, rows, keys[: rows.numel()], proj)),
            "sketch_per_layer_tensors": event_ms(
                lambda: fused.sketch_rows([h.flatten(0, 1) for h in layers], rows, keys[: rows.numel()], proj)),
        }
        for block, warps in ((2048, 8), (1024, 8), (1024, 4), (512, 4)):
            out[f"logit_stats_top5_block{block}_warps{warps}"] = event_ms(
                lambda: fused.logit_stats(zm, rows, zb, topk=5, block=block, num_warps=warps))
            out[f"logit_stats_candidate_top5_block{block}_warps{warps}"] = event_ms(
                lambda: fused.logit_stats(zm, rows, topk=5, block=block, num_warps=warps))
        os.environ["HEMORRHAGE_FUSED"] = "0"
        try:
            out["output_metrics_unfused"] = event_ms(lambda: token_output_metrics(zb, zm, targets, rows=rows))
            out["row_products_all_layers_unfused"] = event_ms(lambda: [row_products(h, h) for h in layers])
        finally:
            del os.environ["HEMORRHAGE_FUSED"]
    return out


def timelines(fns: dict, out_dir: str | None = None) -> dict:
    """:func:`benchmarks.timeline.analyse_trace` of one call of each function; traces saved to ``out_dir``."""
    from .timeline import analyse_trace, profile_trace

    result = {}
    for name, fn in fns.items():
        path = os.path.join(out_dir, f"{name}.json.gz") if out_dir else None
        result[name] = analyse_trace(profile_trace(fn, path))
    return result


def host_setup_ms(base, cand, probes, repeats: int = 20) -> dict:
    """Host milliseconds of a comparison's fixed work: the pair checks, finding the blocks, eval mode, identity."""
    from pytest_hemorrhage.capture import adapt
    from pytest_hemorrhage.engine import _identity
    from pytest_hemorrhage.sources.module import ModuleSource, check_pair, evaluating
    from pytest_hemorrhage.validate import check_token_ids

    sides = (ModuleSource(base, "baseline"), ModuleSource(cand, "candidate"))

    def eval_mode():
        with evaluating(roles={"baseline": base, "candidate": cand}):
            pass

    steps = {
        "check_pair": lambda: check_pair(base, cand),
        "adapt_both": lambda: (adapt(base), adapt(cand)),
        "eval_mode": eval_mode,
        "check_token_ids_both": lambda: (check_token_ids(base, probes), check_token_ids(cand, probes)),
        "report_identity": lambda: _identity(probes, *sides),
    }
    return {name: round(common.best_time(fn, repeats) * 1e3, 3) for name, fn in steps.items()}


def run(n_probes: int = 64, max_length: int = 512, batch_size: int = 8, repeats: int = 3,
        profile: bool = False, parts: bool = False, cprofile: bool = False, timeline: bool = False,
        quick: bool = False, trace_dir: str | None = None) -> dict:
    import pytest_hemorrhage as ph
    from pytest_hemorrhage.modify import quantize

    base = llama_1b()
    cand = quantize(base, bits=8)
    probes = random_probes(n_probes, max_length)
    snap = ph.record_snapshot(base, probes, batch_size=batch_size)

    def two_forward():
        plain_forward(base, probes, batch_size)
        plain_forward(cand, probes, batch_size)

    def one_forward():
        plain_forward(cand, probes, batch_size)

    checks = {
        "compare_over_two_forward": (lambda: ph.compare(base, cand, probes, batch_size=batch_size), two_forward),
        "outputs_only_over_two_forward":
            (lambda: ph.compare(base, cand, probes, layers=None, batch_size=batch_size), two_forward),
        "snapshot_compare_over_one_forward": (lambda: ph.compare(snap, cand, batch_size=batch_size), one_forward),
    }
    result = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
        "triton": getattr(fused.triton, "__version__", None),
        "fused_kernels": fused.enabled(torch.zeros(1, device="cuda")),
        "parameters": sum(p.numel() for p in base.parameters()), "dtype": "bfloat16",
        "probes": n_probes, "max_length": max_length, "batch_size": batch_size, "repeats": repeats,
        "two_plain_forward_s": timed(two_forward, repeats),
    }
    for name, (check, reference) in checks.items():
        result[f"ratio_{name}"] = paired_ratio(check, reference, repeats)
    if timeline:
        result["timeline"] = timelines({
            "compare": checks["compare_over_two_forward"][0], "two_forward": two_forward,
            "snapshot_compare": checks["snapshot_compare_over_one_forward"][0], "one_forward": one_forward,
        }, trace_dir)
    if not quick:  # the fused kernels off, and attention metrics
        if fused.enabled(torch.zeros(1, device="cuda")):  # the same checks with the plain PyTorch formulas
            os.environ["HEMORRHAGE_FUSED"] = "0"
            try:
                for name in ("compare_over_two_forward", "snapshot_compare_over_one_forward"):
                    result[f"unfused_ratio_{name}"] = paired_ratio(*checks[name], repeats)
            finally:
                del os.environ["HEMORRHAGE_FUSED"]
        for m in (base, cand):
            m.set_attn_implementation("eager")
        result["ratio_attention_over_two_eager_forward"] = paired_ratio(
            lambda: ph.compare(base, cand, probes, attention=True, batch_size=batch_size), two_forward, repeats)
        for m in (base, cand):
            m.set_attn_implementation("sdpa")
    result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if parts:
        result["parts_ms"] = part_times(base, cand, probes, batch_size)
        result["host_setup_ms"] = host_setup_ms(base, cand, probes)
    if cprofile:
        print(python_profile(lambda: ph.compare(base, cand, probes, batch_size=batch_size)))
        print(python_profile(lambda: ph.compare(snap, cand, batch_size=batch_size)))
    if profile:
        result["profile"] = {
            "compare": profile_extra(lambda: ph.compare(base, cand, probes, batch_size=batch_size),
                                     lambda: (plain_forward(base, probes, batch_size),
                                              plain_forward(cand, probes, batch_size))),
            "snapshot": profile_extra(lambda: ph.compare(snap, cand, batch_size=batch_size),
                                      lambda: plain_forward(cand, probes, batch_size)),
        }
    return result


def main(argv: list[str]) -> int:
    repeats = int(argv[argv.index("--repeats") + 1]) if "--repeats" in argv else 3
    trace_dir = argv[argv.index("--trace-dir") + 1] if "--trace-dir" in argv else None
    result = run(repeats=repeats, profile="--profile" in argv, parts="--parts" in argv, cprofile="--cprofile" in argv,
                 timeline="--timeline" in argv or trace_dir is not None, quick="--quick" in argv,
                 trace_dir=trace_dir)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
