"""The OpenAI-compatible server candidate on the default model: bounds at k = 5 and k = 20 against the exact figures.

Baseline: a snapshot of the fp32 Hugging Face model on the built-in probes. Candidate: the
shipped Q4_1 GGUF served by llama-cpp-python's server, compared on the top k log-probabilities
it returns; reference: the same file in llama.cpp in this process, every logit. Prints a
Markdown table (estimates with 95 % intervals, wall time per check)::

    python -m benchmarks runtime_server            # 64 probes
    python benchmarks/runtime_server.py 16         # fewer probes
"""

from __future__ import annotations

import sys
import time

import torch

import pytest_hemorrhage as ph
from pytest_hemorrhage.llama_server import serve_gguf
from pytest_hemorrhage.models import default_model, default_model_path
from pytest_hemorrhage.sources.runtime import RuntimeSource


class _EveryLogit(RuntimeSource):
    """The GGUF in llama.cpp in this process, all logits: the figures the bounds are bounds of."""

    runtime = "llama.cpp, every logit"

    def __init__(self) -> None:
        import llama_cpp

        super().__init__(default_model_path().name)
        self.llama = llama_cpp.Llama(str(default_model_path()), n_ctx=512, logits_all=True, n_threads=1, verbose=False)

    @property
    def vocab_size(self) -> int:
        return self.llama.n_vocab()

    def score(self, ids):
        self.llama.reset()
        self.llama.eval(list(ids))
        return torch.from_numpy(self.llama.scores[: len(ids)].copy()).float()


def _cell(report, name: str, digits: int = 4) -> str:
    m = report.metrics[name]
    at_least = "≥ " if m.bound == "lower" else ""
    return f"{at_least}{m.estimate:.{digits}f} ({m.ci_low:.{digits}f}–{m.ci_high:.{digits}f}) {m.verdict}"


def run(n_probes: int = 64) -> dict:
    model, tokenizer = default_model()
    probes = ph.Probes.builtin(tokenizer, n=n_probes)
    start = time.perf_counter()
    snapshot = ph.record_snapshot(model, probes, tokenizer=tokenizer, layers=None)
    rows = [("snapshot recording (HF fp32)", None, time.perf_counter() - start)]
    start = time.perf_counter()
    rows.append(("llama.cpp in process, every logit", ph.compare(snapshot, _EveryLogit(), layers=None),
                 time.perf_counter() - start))
    with serve_gguf(default_model_path(), alias="smol") as url:
        for k in (5, 20):
            source = ph.openai_server(url, model="smol", topk=k, tokenizer=tokenizer)
            start = time.perf_counter()
            report = ph.compare(snapshot, source, layers=None)
            rows.append((f"llama-cpp-python server, k = {k}", report, time.perf_counter() - start))
    lines = [f"{n_probes} built-in probes, baseline: snapshot of the fp32 HF model; candidate: "
             f"{default_model_path().name}", "",
             "| candidate | mean KL (nats/token) | same top-1 | PPL ratio | wall s |", "|---|---|---|---|---|"]
    result: dict = {"n_probes": n_probes}
    for label, report, seconds in rows:
        if report is None:
            lines.append(f"| {label} | | | | {seconds:.1f} |")
            continue
        lines.append(f"| {label} | {_cell(report, 'kl')} | {_cell(report, 'top1')} | {_cell(report, 'ppl_ratio')} | "
                     f"{seconds:.1f} |")
        result[label] = {name: {"estimate": m.estimate, "ci": [m.ci_low, m.ci_high], "bound": m.bound,
                                "verdict": m.verdict} for name, m in report.metrics.items()}
        result[label]["seconds"] = round(seconds, 1)
    table = "\n".join(lines)
    print(table)
    result["table"] = table
    return result


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 64)
