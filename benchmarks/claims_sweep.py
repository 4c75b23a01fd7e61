"""Robustness thresholds of the default model: where does quality collapse?

Two sweeps on SmolLM2-135M with 32 built-in probes of 128 tokens, default thresholds, metric
KL: magnitude pruning at sparsity 0.1..0.8 and RTN per-channel weights at 8..2 bits. For each,
the phase-transition fit (power law below s*, exponential above), its R^2 against a single power
law, and the harshest strength that still passes. Plots go to ``benchmarks/results/``.
``python -m benchmarks.claims_sweep`` prints the figures and writes ``claims_sweep.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"
SWEEPS: dict[str, tuple[str, tuple[float, ...]]] = {
    "rtn_bits": ("bits", (8, 7, 6, 5, 4, 3, 2)),
    "pruning": ("sparsity", (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)),
}


def run(n_probes: int = 32, max_length: int = 128) -> dict:
    """Both sweeps: s*, fit parameters, R^2 and the harshest passing strength; plots saved."""
    from pytest_hemorrhage.models import default_model
    from pytest_hemorrhage.probes import Probes
    from pytest_hemorrhage.sweep import sweep

    model, tokenizer = default_model()
    probes = Probes.builtin(tokenizer, n=n_probes, max_length=max_length)
    out: dict[str, Any] = {"probes": n_probes, "max_length": max_length, "threads": torch.get_num_threads()}
    for name, (modify, strengths) in SWEEPS.items():
        start = time.perf_counter()
        result = sweep(model, modify, list(strengths), probes, progress=True)
        seconds = time.perf_counter() - start
        result.plot(RESULTS / f"sweep_{name}.png")
        print(result.summary(), flush=True)
        out[name] = {
            "seconds": round(seconds, 1),
            "s_star": result.s_star,
            "fit": result.fit.to_dict() if result.fit else None,
            "harshest_passing": result.harshest_passing,
            "mildest_failing": result.mildest_failing,
            "kl": {f"{p.strength:g}": p.metrics["kl"] for p in result.points},
            "verdicts": {f"{p.strength:g}": p.verdict for p in result.points},
            "plot": str((RESULTS / f"sweep_{name}.png").relative_to(Path(__file__).parent.parent)),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    RESULTS.mkdir(exist_ok=True)
    start = time.perf_counter()
    result = run()
    result["wall_s"] = round(time.perf_counter() - start, 1)
    (RESULTS / "claims_sweep.json").write_text(json.dumps(result, indent=2))
    for name in SWEEPS:
        r = result[name]
        fit = r["fit"] or {}
        print(f"{name}: s* = {r['s_star']}, harshest passing = {r['harshest_passing']}, "
              f"b = {fit.get('b')}, c = {fit.get('c')}, R^2 = {fit.get('r2')} "
              f"(power law {fit.get('power_r2')}), {r['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
