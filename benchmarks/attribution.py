"""Why the default model's GGUF candidates fail: runtime against compression, and the block to blame.

On the built-in probes, against the live fp32 Hugging Face baseline (the shipped Q4_1 file
dequantised by transformers):

- the noise floor of each runtime: the same weights at full precision (the F32 GGUF in llama.cpp,
  the fp32 ONNX export in ONNX Runtime) against PyTorch;
- the attribution of Q4_K_M and Q2_K (reference: the F32 GGUF) and of the int8 ONNX file
  (reference: the fp32 export): total, runtime and compression parts with 95 % intervals;
- the per-block localisation of Q4_K_M and Q2_K, and its verification: the costliest blocks taken
  from the Q8_0 file, 1, 2, 4, 8 and 16 of them, until the gate passes.

Each step's wall time is recorded. llama.cpp runs one thread (on a shared 2-core machine a
second one spins while waiting).

Last, :func:`replay` times one localisation with the baseline's outputs replayed against the same
run measuring them afresh for every comparison (``python -c "from benchmarks import attribution;
print(attribution.replay())"`` runs it alone); :func:`fewest_blocks` bisects the number of Q4_K_M blocks
that must stay at Q8_0 for the gate to pass (run alone the same way).

Run: ``nice python -m benchmarks attribution`` (about half an hour on 2 cores; writes
benchmarks/results/attribution.json) and ``python -m benchmarks.attribution`` to print the
Markdown tables of that file.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

THREADS = 1
KINDS = ("Q4_K_M", "Q2_K")
STEPS = (1, 2, 4, 8, 16)


def _metrics(report) -> dict:
    out = {"verdict": report.verdict}
    for key in ("kl", "top1", "ppl_ratio"):
        metric = report.metrics[key]
        out[key] = {"estimate": metric.estimate, "ci_low": metric.ci_low, "ci_high": metric.ci_high}
    return out


def _timed(work):
    start = time.perf_counter()
    value = work()
    return value, round(time.perf_counter() - start, 1)


def run() -> dict:
    import pytest_hemorrhage as ph
    from pytest_hemorrhage.gguf_files import default_model_gguf
    from pytest_hemorrhage.models import default_model
    from pytest_hemorrhage.onnx_export import default_model_onnx

    model, tokenizer = default_model()
    probes = ph.Probes.builtin(tokenizer)
    files = {kind: default_model_gguf(kind) for kind in ("F32", "Q8_0", *KINDS)}
    onnx = {kind: default_model_onnx(kind) for kind in ("fp32", "int8")}

    def gguf(kind):
        return ph.llama_cpp(files[kind], n_threads=THREADS)

    floors = {}
    for name, source in (("llama.cpp F32", lambda: gguf("F32")),
                         ("ONNX Runtime fp32", lambda: ph.onnx_runtime(onnx["fp32"], threads=THREADS))):
        report, seconds = _timed(lambda: ph.compare(model, source(), probes, layers=None))
        floors[name] = {**_metrics(report), "seconds": seconds}

    attributions = {}
    for kind in KINDS:
        found, seconds = _timed(lambda: ph.attribute(model, gguf(kind), gguf("F32"), probes))
        attributions[f"llama.cpp {kind}"] = {"cause": found.cause, "seconds": seconds,
                                             "markdown": found.to_markdown(),
                                             "parts": {p: {**_metrics(r), "share": found.share(p),
                                                           "seconds": round(found.seconds[p], 1)}
                                                       for p, r in found.reports.items()}}
    found, seconds = _timed(lambda: ph.attribute(model, ph.onnx_runtime(onnx["int8"], threads=THREADS),
                                                 ph.onnx_runtime(onnx["fp32"], threads=THREADS), probes))
    attributions["ONNX Runtime int8"] = {"cause": found.cause, "seconds": seconds, "markdown": found.to_markdown(),
                                         "parts": {p: {**_metrics(r), "share": found.share(p)}
                                                   for p, r in found.reports.items()}}

    localisations = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in KINDS:
            found, seconds = _timed(lambda: ph.localise(model, files[kind], probes))
            _, verify_seconds = _timed(lambda: found.verify(files["Q8_0"], steps=STEPS, folder=Path(folder) / kind,
                                                            n_threads=THREADS))
            localisations[kind] = {
                "blamed": found.blamed, "seconds": seconds, "verify_seconds": verify_seconds,
                "file_bytes": files[kind].stat().st_size, "markdown": found.to_markdown(),
                "costs": [{"group": c.group, "types": c.types,
                           **(_metrics(c.report) if c.report is not None else {"verdict": "unchanged"})}
                          for c in found.costs],
                "whole_file": _metrics(found.whole_file),
                "verifications": [{"kept": v.kept, "size_bytes": v.size_bytes, "seconds": round(v.seconds, 1),
                                   **_metrics(v.report)} for v in found.verifications],
            }
    return {"probes": probes.name, "n_probes": len(probes), "threads": THREADS, "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "floors": floors, "attributions": attributions,
            "localisations": localisations, "replay": replay()}


def replay(n_probes: int = 16, kind: str = "Q4_K_M") -> dict:
    """Localisation with the baseline's outputs replayed to every comparison, against the same run
    measuring the baseline afresh each time: wall times and their ratio, in one process."""
    import importlib

    import pytest_hemorrhage as ph
    from pytest_hemorrhage.gguf_files import default_model_gguf
    from pytest_hemorrhage.models import default_model

    module = importlib.import_module("pytest_hemorrhage.localise")  # the package's `localise` is the function
    model, tokenizer = default_model()
    probes = ph.Probes.builtin(tokenizer, n=n_probes)
    path = default_model_gguf(kind)
    budget = module.REPLAY_BUDGET_BYTES
    seconds = {}
    try:
        for name, limit in (("replayed", budget), ("afresh", 0)):
            module.REPLAY_BUDGET_BYTES = limit
            found, seconds[name] = _timed(lambda: ph.localise(model, path, probes))
            seconds[f"{name}_blamed"] = found.blamed
    finally:
        module.REPLAY_BUDGET_BYTES = budget
    return {"n_probes": n_probes, "file": kind, **seconds, "ratio": round(seconds["replayed"] / seconds["afresh"], 3),
            "load_average": os.getloadavg()}


def fewest_blocks(kind: str = "Q4_K_M", steps: tuple = (16, 24, 30)) -> dict:
    """The fewest of ``kind``'s costliest blocks that, kept at Q8_0, pass the default gate: localisation on
    the 64 built-in probes, then the ladder ``steps`` and bisection (``verify(bisect=True)``)."""
    import pytest_hemorrhage as ph
    from pytest_hemorrhage.gguf_files import default_model_gguf
    from pytest_hemorrhage.models import default_model

    model, tokenizer = default_model()
    probes = ph.Probes.builtin(tokenizer)
    found, localise_seconds = _timed(lambda: ph.localise(model, default_model_gguf(kind), probes))
    with tempfile.TemporaryDirectory() as folder:
        fixed, verify_seconds = _timed(lambda: found.verify(default_model_gguf("Q8_0"), steps=steps, bisect=True,
                                                            folder=folder, n_threads=THREADS))
    return {"file": kind, "file_bytes": default_model_gguf(kind).stat().st_size,
            "localise_seconds": localise_seconds, "verify_seconds": verify_seconds,
            "fewest": None if fixed is None else len(fixed.kept),
            "attempts": [{"kept": len(v.kept), "size_bytes": v.size_bytes, "seconds": round(v.seconds, 1),
                          **_metrics(v.report)} for v in found.verifications],
            "load_average": os.getloadavg()}


def markdown(result: dict) -> str:
    lines = ["Noise floors (full-precision weights in the runtime vs PyTorch):", ""]
    for name, floor in result["floors"].items():
        kl = floor["kl"]
        lines.append(f"- {name}: mean KL {kl['estimate']:.3g} [{kl['ci_low']:.3g}, {kl['ci_high']:.3g}], "
                     f"same top-1 {floor['top1']['estimate']:.2%}, {floor['seconds']} s")
    for name, found in result["attributions"].items():
        lines += ["", f"Attribution, {name} ({found['seconds']} s):", "", found["markdown"]]
    for kind, found in result["localisations"].items():
        lines += ["", f"Localisation, {kind} ({found['seconds']} s; verification {found['verify_seconds']} s):", "",
                  found["markdown"]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(json.loads((Path(__file__).parent / "results" / "attribution.json").read_text())))
