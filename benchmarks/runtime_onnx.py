"""The default model in ONNX Runtime, fp32 and ORT dynamic int8, against its fp32 Hugging Face baseline.

``python -m benchmarks.runtime_onnx`` records a snapshot of the default model (fp32, transformers)
on the built-in probes, exports the model to ONNX with torch's dynamo exporter into a temporary
folder (the one-off export and quantisation are timed), then checks each candidate against the
snapshot (ORT's int8 as quantize_dynamic_int8 writes it, per-tensor weights, and with per-channel
weights): KL, same top-1 and PPL ratio with their 95 % intervals and verdicts, and the wall time of
each check (the best of ``REPEATS``; a check includes opening the ONNX Runtime session). The live
fp32 torch model is checked the same way, as the reference for the times. Prints a Markdown table
and writes ``benchmarks/results/runtime_onnx.json``.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from pathlib import Path

import torch

REPEATS = 3
THREADS = 2


def _row(name: str, report, seconds: float) -> dict:
    metrics = {m["name"]: m for m in report.to_dict()["metrics"]}
    row = {"candidate": name, "verdict": report.verdict, "check_s": round(seconds, 2)}
    for key in ("kl", "top1", "ppl_ratio"):
        m = metrics[key]
        row[key] = {"estimate": m["estimate"], "ci": [m["ci_low"], m["ci_high"]], "verdict": m["verdict"]}
    return row


def run() -> dict:
    import pytest_hemorrhage as ph
    from pytest_hemorrhage.models import default_model
    from pytest_hemorrhage.onnx_export import export_causal_lm, quantize_dynamic_int8

    torch.set_num_threads(THREADS)
    model, tokenizer = default_model()
    probes = ph.Probes.builtin(tokenizer)
    snapshot = ph.record_snapshot(model, probes)
    result: dict = {"probes": len(probes), "tokens": sum(len(ids) for ids in probes.token_ids),
                    "threads": THREADS, "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as folder:
        fp32, int8 = Path(folder) / "model-fp32.onnx", Path(folder) / "model-int8.onnx"
        int8_channel = Path(folder) / "model-int8-per-channel.onnx"
        start = time.perf_counter()
        export_causal_lm(model, fp32)
        result["export_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        quantize_dynamic_int8(fp32, int8)
        result["quantize_s"] = round(time.perf_counter() - start, 1)
        quantize_dynamic_int8(fp32, int8_channel, per_channel=True)
        result["size_mb"] = {"fp32": round(os.path.getsize(fp32) / 2**20, 1),
                             "int8": round(os.path.getsize(int8) / 2**20, 1)}
        import onnxruntime

        result["onnxruntime"] = onnxruntime.__version__
        candidates = {
            "transformers fp32 (live torch, reference)": lambda: copy.deepcopy(model),
            "ONNX fp32": lambda: ph.onnx_runtime(fp32, threads=THREADS),
            "ORT int8 (dynamic)": lambda: ph.onnx_runtime(int8, threads=THREADS),
            "ORT int8 (dynamic, per-channel weights)": lambda: ph.onnx_runtime(int8_channel, threads=THREADS),
        }
        rows = []
        for name, make in candidates.items():
            best, report = float("inf"), None
            for _ in range(REPEATS):
                candidate = make()
                start = time.perf_counter()
                report = ph.compare(snapshot, candidate)
                best = min(best, time.perf_counter() - start)
            rows.append(_row(name, report, best))
        result["rows"] = rows
    return result


def _interval(m: dict, fmt: str) -> str:
    low, high = m["ci"]
    return f"{m['estimate']:{fmt}} ({low:{fmt}} to {high:{fmt}}) {m['verdict']}"


def markdown(result: dict) -> str:
    lines = [
        f"Default model (SmolLM2-135M) vs its fp32 snapshot, {result['probes']} built-in probes "
        f"({result['tokens']} tokens), {result['threads']} threads, torch {result['torch']}, "
        f"onnxruntime {result['onnxruntime']}. One-off: export {result['export_s']} s "
        f"({result['size_mb']['fp32']} MB), int8 quantisation {result['quantize_s']} s ({result['size_mb']['int8']} MB).",
        "",
        "| candidate | verdict | mean KL (nats/token, 95 % CI) | same top-1 | PPL ratio | time per check |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['candidate']} | {row['verdict']} | {_interval(row['kl'], '.2e')} | "
                     f"{_interval(row['top1'], '.4f')} | {_interval(row['ppl_ratio'], '.4f')} | {row['check_s']} s |")
    return "\n".join(lines)


if __name__ == "__main__":
    result = run()
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "runtime_onnx.json").write_text(json.dumps(result, indent=2))
    print(markdown(result))
