"""Overhead of compare() on a GPU: a randomly initialised ~1.1B Llama in bf16, 64 probes x 512 tokens.

Weights cannot be downloaded on the GPU machine either; timing does not need trained weights.
Ratios are against plain forward passes of the same models on the same probes, in one process,
with ``torch.cuda.synchronize()`` around every timed call. ``--profile`` also prints the kernels
that dominate one compare() call.
"""

from __future__ import annotations

import json
import sys
import time

import torch


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
            model(batch.input_ids.cuda(non_blocking=True), attention_mask=batch.attention_mask.cuda(non_blocking=True),
                  use_cache=False)


def run(n_probes: int = 64, max_length: int = 512, batch_size: int = 8, repeats: int = 3,
        profile: bool = False) -> dict:
    import pytest_hemorrhage as ph
    from pytest_hemorrhage.modify import quantize

    base = llama_1b()
    cand = quantize(base, bits=8)
    probes = random_probes(n_probes, max_length)
    two = timed(lambda: (plain_forward(base, probes, batch_size), plain_forward(cand, probes, batch_size)), repeats)
    full = timed(lambda: ph.compare(base, cand, probes, batch_size=batch_size), repeats)
    outputs = timed(lambda: ph.compare(base, cand, probes, layers=None, batch_size=batch_size), repeats)
    snap = ph.record_snapshot(base, probes, batch_size=batch_size)
    snapshot = timed(lambda: ph.compare(snap, cand, batch_size=batch_size), repeats)
    for m in (base, cand):
        m.set_attn_implementation("eager")
    two_eager = timed(lambda: (plain_forward(base, probes, batch_size), plain_forward(cand, probes, batch_size)),
                      repeats)
    attention = timed(lambda: ph.compare(base, cand, probes, attention=True, batch_size=batch_size), repeats)
    for m in (base, cand):
        m.set_attn_implementation("sdpa")
    result = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
        "parameters": sum(p.numel() for p in base.parameters()), "dtype": "bfloat16",
        "probes": n_probes, "max_length": max_length, "batch_size": batch_size,
        "two_plain_forward_s": two,
        "ratio_compare_over_two_forward": full / two,
        "ratio_outputs_only_over_two_forward": outputs / two,
        "ratio_snapshot_compare_over_one_forward": snapshot / (two / 2),
        "ratio_attention_over_two_eager_forward": attention / two_eager,
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    if profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            ph.compare(base, cand, probes, batch_size=batch_size)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25))
    return result


def main(argv: list[str]) -> int:
    result = run(profile="--profile" in argv)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
