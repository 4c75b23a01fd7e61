"""llama.cpp candidates of the default model against its fp32 Hugging Face baseline snapshot.

One snapshot of the baseline (the shipped Q4_1 GGUF file dequantised by transformers, fp32) is
recorded on the built-in probes; each GGUF file (:mod:`pytest_hemorrhage.gguf_files`) is then run
by llama.cpp and compared with it: KL, same top-1 and the PPL ratio with their 95 % intervals, and
the wall time of the check. A last row compares the live transformers model with the very Q4_1
file it was loaded from, run by llama.cpp: the same weights, two runtimes.

Run: ``nice python -m benchmarks.runtime_llamacpp`` (prints a Markdown table), or
``python -m benchmarks runtime_llamacpp`` (also writes benchmarks/results/runtime_llamacpp.json).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

KINDS = ("F32", "Q8_0", "Q4_1", "Q4_K_M", "Q2_K")
#: One llama.cpp thread: on a shared 2-core machine a second one waits spinning and slows the run.
THREADS = 1
METRICS = ("kl", "top1", "ppl_ratio")


def _row(name: str, report, seconds: float) -> dict:
    row = {"candidate": name, "verdict": report.verdict, "seconds": round(seconds, 1)}
    for key in METRICS:
        metric = report.metrics[key]
        row[key] = {"estimate": metric.estimate, "ci_low": metric.ci_low, "ci_high": metric.ci_high}
    return row


def run() -> dict:
    import pytest_hemorrhage as ph
    from pytest_hemorrhage.gguf_files import default_model_gguf
    from pytest_hemorrhage.models import default_model

    made = {}
    for kind in KINDS:
        start = time.perf_counter()
        files = default_model_gguf(kind)
        made[kind] = (files, round(time.perf_counter() - start, 1))
    model, tokenizer = default_model()
    probes = ph.Probes.builtin(tokenizer)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        ph.record_snapshot(model, probes, Path(folder) / "baseline.safetensors")
        recorded = time.perf_counter() - start
        snapshot = ph.load_snapshot(Path(folder) / "baseline.safetensors")
        start = time.perf_counter()
        rows.append(_row("transformers fp32 (the baseline itself)", ph.compare(snapshot, model),
                         time.perf_counter() - start))
        for kind in KINDS:
            start = time.perf_counter()
            report = ph.compare(snapshot, ph.llama_cpp(made[kind][0], n_threads=THREADS))
            rows.append(_row(f"llama.cpp {kind}", report, time.perf_counter() - start))
    start = time.perf_counter()
    report = ph.compare(model, ph.llama_cpp(made["Q4_1"][0], n_threads=THREADS), probes)
    rows.append(_row("llama.cpp Q4_1 vs transformers' dequantised Q4_1 (live)", report, time.perf_counter() - start))
    return {
        "probes": probes.name, "n_probes": len(probes), "tokens": sum(len(ids) for ids in probes.token_ids),
        "threads": THREADS, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "snapshot_seconds": round(recorded, 1),
        "file_seconds": {kind: seconds for kind, (_, seconds) in made.items()},
        "rows": rows,
    }


def markdown(result: dict) -> str:
    def cell(values: dict, percent: bool = False, digits: int = 4) -> str:
        scale, unit = (100, " %") if percent else (1, "")
        fmt = (lambda v: f"{v * scale:.2f}") if percent else (lambda v: f"{v:.{digits}g}")
        return f"{fmt(values['estimate'])}{unit} [{fmt(values['ci_low'])}, {fmt(values['ci_high'])}]"

    lines = ["| candidate | mean KL (nats/token) [95 % CI] | same top-1 [95 % CI] | PPL ratio [95 % CI] | verdict "
             "| check (s) |", "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['candidate']} | {cell(row['kl'], digits=3)} | {cell(row['top1'], percent=True)} | "
                     f"{cell(row['ppl_ratio'], digits=5)} | {row['verdict']} | {row['seconds']} |")
    lines.append("")
    lines.append(f"{result['n_probes']} built-in probes ({result['probes']}), {result['tokens']} tokens; llama.cpp "
                 f"on {result['threads']} thread(s) of {result['cpus']} cores, load average "
                 f"{', '.join(f'{x:.1f}' for x in result['load_average'])} at the end; snapshot recorded in "
                 f"{result['snapshot_seconds']} s; GGUF files made (0 when cached) in "
                 + ", ".join(f"{kind} {s} s" for kind, s in result["file_seconds"].items()) + ".")
    return "\n".join(lines)


if __name__ == "__main__":
    outcome = run()
    print(markdown(outcome))
    print()
    print(json.dumps(outcome, indent=1))
