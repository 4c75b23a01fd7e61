"""Pruning mitigations on the default model: KL / PPL ratio / top-1 against the dense baseline.

Magnitude pruning as ``modify.prune`` does it (ranked per matrix), and re-pruning by importance
ranked per output row: magnitude, Wanda and gradient-aware (GBLM-Pruner style), at 50 % and
60 % unstructured sparsity. Calibration and evaluation probes are disjoint slices of the
built-in corpus. ``python -m benchmarks.claims_pruning`` prints the table;
``python -m benchmarks.claims_pruning --alpha`` prints the sweep that chose ``DEFAULT_ALPHA``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from pytest_hemorrhage.probes import Probes

SPARSITIES = (0.5, 0.6)
METRICS = ("kl", "ppl_ratio", "top1")


def _metrics(baseline: Any, candidate: torch.nn.Module) -> dict[str, float]:
    from pytest_hemorrhage.engine import compare

    report = compare(baseline, candidate, layers=None)
    return {name: report.metrics[name].estimate for name in METRICS}


def _recorded(model: torch.nn.Module, probes: Any) -> Any:
    """The baseline recorded once: each candidate then costs one forward pass, not two.

    PPL ratio and top-1 from a snapshot are exact; KL is within 5 % of the exact value
    (tests/test_snapshot_accuracy.py).
    """
    from pytest_hemorrhage.snapshot import record_snapshot

    return record_snapshot(model, probes, layers=None)


def run(n_eval: int = 32, max_length: int = 128, n_calib: int = 16) -> dict:
    """Each method at each sparsity: KL, PPL ratio and top-1 agreement on ``n_eval`` held-out probes."""
    from pytest_hemorrhage.modify.importance import DEFAULT_ALPHA, prune_by_importance, pruning_scores
    from pytest_hemorrhage.models import default_model
    from pytest_hemorrhage.modify import prune

    model, tokenizer = default_model()
    calib, held_out = Probes.builtin_split(tokenizer, (n_calib, n_eval), max_length=max_length)
    baseline = _recorded(model, held_out)
    rows: dict[str, dict[str, Any]] = {}
    for sparsity in SPARSITIES:
        row = rows.setdefault("modify.prune (magnitude, per layer)", {})
        row[sparsity] = _metrics(baseline, prune(model, sparsity=sparsity))
    for method in ("magnitude", "wanda", "gradient"):
        start = time.perf_counter()
        scores = pruning_scores(model, calib, method, alpha=DEFAULT_ALPHA)
        seconds = time.perf_counter() - start
        label = f"{method} (per row)" if method != "gradient" else f"gradient a={DEFAULT_ALPHA:g} (per row)"
        rows[label] = {"scores_s": round(seconds, 1)}
        for sparsity in SPARSITIES:
            pruned = prune_by_importance(model, sparsity, method=method, alpha=DEFAULT_ALPHA, scores=scores)
            rows[label][sparsity] = _metrics(baseline, pruned)
            del pruned
        del scores
    return {
        "n_calib": n_calib, "n_eval": n_eval, "max_length": max_length,
        "threads": torch.get_num_threads(), "alpha": DEFAULT_ALPHA, "rows": rows,
    }


def alpha_sweep(
    alphas: tuple[float, ...] = (0.0, 10.0, 100.0, 1000.0),
    n_calib: int = 16, n_eval: int = 16, max_length: int = 64,
) -> dict:
    """KL and PPL ratio of gradient-aware pruning for each ``alpha`` (0 is Wanda).

    Evaluated on probes disjoint from both the calibration probes and those of :func:`run`'s
    first ``n_calib + 32`` (this sweep uses the slice after them), so choosing alpha here does
    not fit the reported table.
    """
    from pytest_hemorrhage.modify.importance import (
        _gradient_and_activation_sums,
        prunable_linears,
        prune_by_importance,
    )
    from pytest_hemorrhage.modify._common import weight_out_in
    from pytest_hemorrhage.models import default_model

    model, tokenizer = default_model()
    _skip, calib, held_out = Probes.builtin_split(tokenizer, (n_calib + 32, n_calib, n_eval), max_length=max_length)
    baseline = _recorded(model, held_out)
    grads, acts = _gradient_and_activation_sums(model, calib, 8)
    magnitudes = {name: weight_out_in(m).detach().abs().float() for name, m in prunable_linears(model)}
    out: dict[str, Any] = {}
    for alpha in alphas:
        scores = {n: mag * (acts[n].sqrt() + alpha * grads[n].sqrt()) for n, mag in magnitudes.items()}
        for sparsity in SPARSITIES:
            pruned = prune_by_importance(model, sparsity, method="gradient", alpha=alpha, scores=scores)
            out[f"alpha={alpha:g} sparsity={sparsity}"] = _metrics(baseline, pruned)
            print(f"alpha={alpha:<6g} sparsity={sparsity}: {out[f'alpha={alpha:g} sparsity={sparsity}']}", flush=True)
    return out


def table(result: dict) -> str:
    """The table of :func:`run`'s result as Markdown."""
    head = "| method | " + " | ".join(
        f"{name} @{s:.0%}" for s in SPARSITIES for name in ("KL", "PPL ratio", "top-1")
    ) + " |"
    lines = [head, "|" + "---|" * (1 + 3 * len(SPARSITIES))]
    for label, row in result["rows"].items():
        cells = []
        for s in SPARSITIES:
            m = row[s]
            cells += [f"{m['kl']:.3f}", f"{m['ppl_ratio']:.3f}", f"{m['top1']:.1%}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    start = time.perf_counter()
    if "--alpha" in argv:
        alpha_sweep()
    else:
        result = run()
        print(f"n_calib={result['n_calib']} n_eval={result['n_eval']} max_length={result['max_length']} "
              f"threads={result['threads']} alpha={result['alpha']:g}")
        print(table(result))
        print({k: v.get("scores_s") for k, v in result["rows"].items()})
    print(f"wall {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
