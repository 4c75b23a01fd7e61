"""Fixtures of the fuzzing suite: small probes, a baseline snapshot captured once, and a bench
that builds and judges one drawn modification at a time on a single reusable working copy.

Every comparison goes through the plugin's ``hemorrhage_fuzz`` fixture (session-scoped, so safe
inside ``@given``): it takes the running test's thresholds (marker > command line > ini), and each
test's checks stand in the session summary, ``--hemorrhage-report`` and JUnit as one check.

Cost model (why the suite stays within a few minutes on 2 CPU cores):

* The baseline runs once: ``record_snapshot(baseline, probes)`` with no path keeps its outputs
  in memory, and every example is then ``compare(snapshot, candidate)``: one forward pass.
* The candidate is not a fresh ``copy.deepcopy`` (0.5 GB) per example: one working copy is made
  once, its weights are restored from the baseline's state dict with ``copy_`` and the drawn
  modification is applied to it in place. If a modification changes the structure (adds or
  removes modules, resizes a weight), the next example gets a fresh deep copy instead.
* Verdicts are memoised per effective config and thresholds: Hypothesis' shrinker revisits the
  same config often (e.g. with a ``group_size`` that per-channel quantization ignores).
* Everything runs on ONE intra-op thread (``FUZZ_THREADS``). Building a candidate is hundreds of
  small element-wise passes and the fuzz probes are small batches; on a 2-core machine shared
  with other jobs a second thread mostly waits on the thread pool. Measured here (SmolLM2-135M,
  machine shared): int8 per-channel RTN 0.6 s with 1 thread vs 3-17 s with 2; one snapshot
  comparison on 8 probes x 64 tokens 1.5-2.5 s vs 9-16 s. Set ``FUZZ_THREADS = None`` to keep
  torch's default on a machine of your own.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from pytest_hemorrhage import Probes, fuzzing, record_snapshot

#: Probe set of the fuzz suite: 8 built-in probes of up to 64 tokens. Enough to see a
#: modification whose mean KL is past ``max_kl`` (a failure needs far less evidence than a pass).
FUZZ_PROBES = 8
FUZZ_MAX_LENGTH = 64
#: Intra-op threads for recording, building and comparing (None: torch's default).
FUZZ_THREADS: int | None = 1

FINDINGS_KEY = pytest.StashKey[list]()
BENCH_KEY = pytest.StashKey["CandidateBench"]()


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (``None``: leave the setting alone)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def config_key(config: Any) -> str:
    """A key equal for configs that modify the model identically (fields the method ignores dropped)."""
    data = dict(config.to_dict())
    if data.get("kind") == "quantize" and data.get("granularity") != "per_group":
        data.pop("group_size", None)
    if data.get("kind") == "prune":
        if data.get("method") == "nm":
            data.pop("sparsity", None)
        else:
            data.pop("n", None)
            data.pop("m", None)
    return json.dumps(data, sort_keys=True, default=str)


@dataclass(frozen=True)
class Evaluation:
    """One judged modification: the config, its report against the snapshot, and the cost."""

    config: Any
    report: Any
    seconds: float

    @property
    def kl(self) -> float:
        return self.report.metrics["kl"].estimate

    @property
    def hemorrhages(self) -> bool:
        """A decided hemorrhage (an estimate past its threshold), not just a lack of evidence."""
        return fuzzing.hemorrhages(self.report)

    def line(self) -> str:
        kl = self.report.metrics["kl"]
        top1 = self.report.metrics["top1"]
        sparsity = getattr(self.config, "sparsity", None)
        exact = f" (sparsity {sparsity:g})" if sparsity is not None and self.config.method != "nm" else ""
        return (f"{self.config.describe()}{exact}: mean KL {kl.estimate:.4f} (95% CI {kl.ci_low:.4f}-{kl.ci_high:.4f}, "
                f"max {kl.threshold}), same top-1 {top1.estimate:.1%} (min {top1.threshold:.0%}), "
                f"gate {self.report.verdict}")


class CandidateBench:
    """Builds candidates on one working copy of ``baseline`` and judges them against ``snapshot``
    with ``judge`` (the ``hemorrhage_fuzz`` fixture).

    ``threads``: intra-op threads while building and comparing (None: torch's default).
    """

    def __init__(self, baseline: torch.nn.Module, snapshot: Any, judge: Any,
                 threads: int | None = FUZZ_THREADS) -> None:
        self.baseline = baseline
        self.snapshot = snapshot
        self.judge = judge
        self.threads = threads
        self._source = baseline.state_dict()
        self._signature = self._structure(baseline)
        self._work: torch.nn.Module | None = None
        self._dirty = False  # the working copy holds a modification not yet undone
        self._memo: dict[str, Evaluation] = {}
        self.evaluations: list[Evaluation] = []  # in the order they were computed (memo hits excluded)
        self.deep_copies = 0

    @staticmethod
    def _structure(model: torch.nn.Module) -> tuple:
        modules = tuple(name for name, _ in model.named_modules())
        shapes = tuple((name, tuple(t.shape)) for name, t in model.state_dict().items())
        return modules, shapes

    def restore(self) -> torch.nn.Module:
        """The working copy, equal to the baseline again (a deep copy the first time)."""
        with torch_threads(self.threads), torch.no_grad():
            if self._work is None:
                self._work = copy.deepcopy(self.baseline)
                self.deep_copies += 1
            elif self._dirty:
                work_state = self._work.state_dict()
                for name, value in self._source.items():
                    work_state[name].copy_(value)
            self._dirty = False
        return self._work

    def torch_threads(self) -> contextlib.AbstractContextManager[None]:
        """The bench's thread setting, for a comparison made outside :meth:`evaluate`."""
        return torch_threads(self.threads)
    def release(self) -> None:
        """Drop the working copy (0.5 GB); the next :meth:`restore` makes a new one."""
        self._work = None

    def build(self, config: Any) -> torch.nn.Module:
        """The candidate for ``config``: restored working copy, modified in place."""
        work = self.restore()
        self._dirty = True
        try:
            with torch_threads(self.threads):
                candidate = config.apply(work, inplace=True)
        except BaseException:
            self._work = None  # possibly half-modified, in any structure: start over next time
            raise
        if candidate is not work or self._structure(work) != self._signature:
            self._work = None  # structure changed (or a wrapper came back): rebuild next time
        return candidate

    def evaluate(self, config: Any) -> Evaluation:
        """Build ``config`` and compare it against the snapshot with the running test's thresholds
        (memoised per effective config and thresholds; a memoised verdict counts as the test's check)."""
        key = (config_key(config), self.judge.thresholds)
        if key in self._memo:
            self.judge.record(self._memo[key].report)
        else:
            start = time.perf_counter()
            candidate = self.build(config)
            with torch_threads(self.threads):
                report = self.judge.compare(self.snapshot, candidate, name=config.describe())
            evaluation = Evaluation(config, report, time.perf_counter() - start)
            self._memo[key] = evaluation
            self.evaluations.append(evaluation)
        return self._memo[key]

    def hemorrhages(self, config: Any) -> bool:
        """The predicate Hypothesis searches with: does ``config`` definitely hemorrhage?"""
        return self.evaluate(config).hemorrhages


@pytest.fixture(scope="session")
def fuzz_probes(tokenizer) -> Probes:
    """8 built-in probes of up to 64 tokens (one forward pass ~ 500 tokens)."""
    return Probes.builtin(tokenizer, n=FUZZ_PROBES, max_length=FUZZ_MAX_LENGTH)


@pytest.fixture(scope="session")
def fuzz_snapshot(baseline_model, fuzz_probes):
    """The baseline's outputs on the fuzz probes, captured once, in memory (no file)."""
    with torch_threads(FUZZ_THREADS):
        return record_snapshot(baseline_model, fuzz_probes)


@pytest.fixture(scope="session")
def bench(request, baseline_model, fuzz_snapshot, hemorrhage_fuzz) -> CandidateBench:
    """Shared by every fuzz test, so a config judged once (under the same thresholds) is never judged again."""
    bench = CandidateBench(baseline_model, fuzz_snapshot, hemorrhage_fuzz)
    request.config.stash[BENCH_KEY] = bench
    return bench


def pytest_runtest_teardown(item, nextitem) -> None:
    """After the last fuzz test, drop the bench's working copy: the rest of the session need not carry it."""
    bench = item.config.stash.get(BENCH_KEY, None)
    if bench is not None and (nextitem is None or Path(__file__).parent not in nextitem.path.parents):
        bench.release()


@pytest.fixture
def record_finding(request):
    """Record a shrunk modification: test properties (JUnit XML), ``-s`` output, terminal summary."""

    def record(label: str, evaluation: Evaluation) -> None:
        line = evaluation.line()
        key = "fuzz_" + "_".join(label.replace("-", " ").split())
        # user_properties directly (as the plugin does): record_property warns under junit_family=xunit2.
        request.node.user_properties.extend([
            (key, evaluation.config.describe()),
            (f"{key}_config", json.dumps(evaluation.config.to_dict(), sort_keys=True, default=str)),
            (f"{key}_kl", f"{evaluation.kl:.6g}"),
        ])
        print(f"\n[fuzz] {label}: {line}")
        request.config.stash.setdefault(FINDINGS_KEY, []).append(f"{label}: {line}")

    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    findings = config.stash.get(FINDINGS_KEY, [])
    bench = config.stash.get(BENCH_KEY, None)
    if not findings and bench is None:
        return
    terminalreporter.write_sep("=", "fuzz: mildest breaking modifications found (shrunk by Hypothesis)")
    for line in findings:
        terminalreporter.write_line(line)
    if bench is not None and bench.evaluations:
        seconds = sum(e.seconds for e in bench.evaluations)
        broken = sum(e.hemorrhages for e in bench.evaluations)
        terminalreporter.write_line(
            f"{len(bench.evaluations)} distinct modifications judged ({broken} hemorrhaged) in {seconds:.0f} s, "
            f"{bench.deep_copies} deep copy of the model, baseline run once (snapshot of "
            f"{len(bench.snapshot.probes)} probes)"
        )
        kinds: dict[str, list[float]] = {}
        for e in bench.evaluations:
            kinds.setdefault(e.config.kind, []).append(e.seconds)
        terminalreporter.write_line("per example (build + compare): " + ", ".join(
            f"{kind} {sum(t) / len(t):.1f} s x {len(t)}" for kind, t in kinds.items()))
