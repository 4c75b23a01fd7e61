"""Gate error rates of the default thresholds on the default model (SmolLM2-135M).

Runs every case of :mod:`pytest_hemorrhage.gate_cases` through ``compare`` with default thresholds and
counts false alarms (harmless changes that did not pass) and detections (harmful changes that did
not pass). ``python -m benchmarks.gate_rates [--n-probes 32] [--max-length 128]`` prints the table
and writes ``benchmarks/results/gate_rates.json`` (atomically).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "gate_rates.json"


def _case_row(case: Any, model: Any, tokenizer: Any, probes: Any, device: str | None) -> dict[str, Any]:
    from pytest_hemorrhage.engine import compare

    start = time.perf_counter()
    row: dict[str, Any] = {"name": case.name, "kind": case.kind, "description": case.description}
    try:
        baseline, candidate, case_probes, kwargs = case.build(model, tokenizer, probes)
        report = compare(baseline, candidate, case_probes, **kwargs, **({"device": device} if device else {}))
    except Exception as exc:  # a case the library cannot run yet is reported, not hidden
        row.update(verdict="error", passed=None, error=f"{type(exc).__name__}: {exc}")
    else:
        m = report.metrics
        row.update(
            verdict=report.verdict, passed=report.passed, verdicts=report.verdicts,
            kl=m["kl"].estimate, kl_ci_high=m["kl"].ci_high, top1=m["top1"].estimate,
            top1_ci_low=m["top1"].ci_low, ppl_ratio=m["ppl_ratio"].estimate,
            ppl_ratio_ci_high=m["ppl_ratio"].ci_high,
        )
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def run(n_probes: int = 32, max_length: int = 128, names: list[str] | None = None,
        device: str | None = None) -> dict[str, Any]:
    """Run the catalogue (or the cases in ``names``) on ``n_probes`` built-in probes; return the rates.

    ``device`` (e.g. ``"cuda"``) is passed to ``compare``; the cases are built on the CPU.
    """
    from pytest_hemorrhage.gate_cases import CASES
    from pytest_hemorrhage.models import default_model
    from pytest_hemorrhage.probes import Probes

    model, tokenizer = default_model()
    probes = Probes.builtin(tokenizer, n=n_probes, max_length=max_length)
    rows = []
    for case in CASES:
        if names is None or case.name in names:
            rows.append(_case_row(case, model, tokenizer, probes, device))
            print(_format_row(rows[-1]), flush=True)
    harmless = [r for r in rows if r["kind"] == "harmless" and r["verdict"] != "error"]
    harmful = [r for r in rows if r["kind"] == "harmful" and r["verdict"] != "error"]
    return {
        "model": "SmolLM2-135M (default_model)", "n_probes": n_probes, "max_length": max_length,
        "probes": probes.name, "thresholds": "defaults", "device": device or "cpu",
        "false_alarms": sum(not r["passed"] for r in harmless), "harmless_run": len(harmless),
        "detections": sum(not r["passed"] for r in harmful), "harmful_run": len(harmful),
        "errors": [r["name"] for r in rows if r["verdict"] == "error"],
        "cases": rows,
    }


def _format_row(row: dict[str, Any]) -> str:
    if row["verdict"] == "error":
        return f"{row['kind']:9s} {row['name']:40s} ERROR {row['error'][:90]}"
    return (f"{row['kind']:9s} {row['name']:40s} KL {row['kl']:9.3g}  top-1 {row['top1']:7.2%}  "
            f"PPL ratio {row['ppl_ratio']:8.4f}  {row['verdict']:12s} {row['seconds']:6.1f} s")


def main(argv: list[str] | None = None) -> int:
    """Print the per-case table and the error rates; write them to benchmarks/results/gate_rates.json."""
    from pytest_hemorrhage.files import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-probes", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--case", action="append", dest="names", help="run only this case (repeatable)")
    parser.add_argument("--device", default=None, help="where compare runs (default: the CPU)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = run(args.n_probes, args.max_length, args.names, args.device)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"false alarms {result['false_alarms']}/{result['harmless_run']}  "
          f"detections {result['detections']}/{result['harmful_run']}  "
          f"errors {len(result['errors'])} {result['errors']}  ({result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
