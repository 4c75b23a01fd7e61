"""PyTorch quantizers as candidates on the default model, against its float32 Hugging Face weights.

Each quantizer is applied to a copy of the default model the way its users apply it
(torchao's ``quantize_``, optimum-quanto's ``quantize`` + ``freeze``, torch's
``quantize_dynamic``) and compared with the live float32 baseline on the built-in probes.
``python -m benchmarks.quantizers`` prints a markdown table: KL, same top-1 and PPL ratio with
their 95 % intervals, the verdict at the default thresholds, and the wall time of each check.
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from typing import Any, Callable

import torch

METRICS = ("kl", "top1", "ppl_ratio")


def _torchao(config_name: str, **options: Any) -> Callable[[torch.nn.Module], torch.nn.Module]:
    def apply(model: torch.nn.Module) -> torch.nn.Module:
        import torchao.quantization as ao

        ao.quantize_(model, getattr(ao, config_name)(**options))
        return model
    return apply


def _quanto(weights: str) -> Callable[[torch.nn.Module], torch.nn.Module]:
    def apply(model: torch.nn.Module) -> torch.nn.Module:
        import optimum.quanto as quanto

        quanto.quantize(model, weights=getattr(quanto, weights))
        quanto.freeze(model)
        return model
    return apply


def _dynamic(model: torch.nn.Module) -> torch.nn.Module:
    with warnings.catch_warnings():  # torch's deprecation notice for torch.ao.quantization
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


#: label -> how the library's users quantize a model (in place, on a copy made here).
QUANTIZERS: dict[str, Callable[[torch.nn.Module], torch.nn.Module]] = {
    "torchao Int8WeightOnlyConfig": _torchao("Int8WeightOnlyConfig"),
    "torchao Int8DynamicActivationInt8WeightConfig": _torchao("Int8DynamicActivationInt8WeightConfig"),
    "optimum-quanto qint8 weights": _quanto("qint8"),
    "torch.ao quantize_dynamic qint8": _dynamic,
    "optimum-quanto qint4 weights": _quanto("qint4"),
}


def run() -> dict:
    """Each quantizer: its metrics with intervals, verdict, and seconds to quantize and to check."""
    from pytest_hemorrhage.engine import compare
    from pytest_hemorrhage.models import default_model

    model, _tokenizer = default_model()
    rows = {}
    for label, quantize in QUANTIZERS.items():
        start = time.perf_counter()
        candidate = quantize(copy.deepcopy(model))
        quantized_s = time.perf_counter() - start
        start = time.perf_counter()
        report = compare(model, candidate)  # the built-in probes, through the model's tokenizer
        check_s = time.perf_counter() - start
        metrics = {metric["name"]: metric for metric in report.to_dict()["metrics"]}
        rows[label] = {
            **{name: {key: metrics[name][key] for key in ("estimate", "ci_low", "ci_high", "verdict")}
               for name in METRICS},
            "passed": report.passed, "probes": metrics["kl"]["n_units"],
            "quantize_s": round(quantized_s, 1), "check_s": round(check_s, 1),
        }
        print(f"{label}: {rows[label]}", file=sys.stderr, flush=True)  # progress: the run takes minutes
        del candidate
    return {"rows": rows}


def table(result: dict) -> str:
    """The result as a markdown table."""
    lines = ["| quantizer | KL (nats/token) | same top-1 | PPL ratio | verdict | check (s) |",
             "|---|---|---|---|---|---|"]
    for label, row in result["rows"].items():
        kl, top1, ppl = (row[name] for name in METRICS)
        lines.append(
            f"| {label} | {kl['estimate']:.4f} [{kl['ci_low']:.4f}, {kl['ci_high']:.4f}] "
            f"| {top1['estimate']:.1%} [{top1['ci_low']:.1%}, {top1['ci_high']:.1%}] "
            f"| {ppl['estimate']:.4f} [{ppl['ci_low']:.4f}, {ppl['ci_high']:.4f}] "
            f"| {'pass' if row['passed'] else 'fail'} | {row['check_s']:.1f} |")
    probes = {row["probes"] for row in result["rows"].values()}
    lines.append(f"\n{'/'.join(map(str, sorted(probes)))} built-in probes; 95 % intervals in brackets; "
                 f"live float32 baseline (two forward passes per check), {torch.get_num_threads()} torch threads.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run()))
    sys.exit(0)
