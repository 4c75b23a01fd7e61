"""Progress events of a check (probes measured, verdict, mitigations) and the recorded cost of the mitigations."""

from __future__ import annotations

import copy
import gc
import time
import weakref

import pytest
import torch

import pytest_hemorrhage as ph
from pytest_hemorrhage.check import run_check
from pytest_hemorrhage.mitigate import Applies, Mitigation, SimpleMitigator
from pytest_hemorrhage.mitigate.registry import MITIGATIONS, register, unregister
from pytest_hemorrhage.progress import (COMPARED, COMPARING, MITIGATED, MITIGATING, MITIGATION, ProgressEvent,
                                        ProgressLines, format_seconds)
from pytest_hemorrhage.report import Report
from tiny_models import random_token_ids, tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")

DAMAGED = "model.layers.1.mlp.down_proj"
SLOW_SECONDS = 0.3


@pytest.fixture(scope="module")
def pair():
    base = tiny_llama()
    cand = copy.deepcopy(base)
    with torch.no_grad():  # one layer ruined: the check fails and fallback applies
        cand.get_submodule(DAMAGED).weight.mul_(-3.0)
    return base, cand


@pytest.fixture
def slow_mitigation():
    """A registered mitigation that takes a known time: restores the damaged layer after sleeping."""
    made: list[torch.nn.Module] = []

    def mitigate(baseline, candidate, calibration, thresholds, *, probes=None, **options):
        time.sleep(SLOW_SECONDS)
        model = copy.deepcopy(candidate)
        model.get_submodule(DAMAGED).load_state_dict(baseline.get_submodule(DAMAGED).state_dict())
        made.append(model)
        return Mitigation("slow_restore", model, "restored the damaged layer after a pause")

    register(SimpleMitigator("slow_restore", lambda baseline, candidate: Applies.yes(), mitigate))
    yield made
    unregister("slow_restore")


@pytest.mark.parametrize("seconds, text", [(0.04, "0.0 s"), (9.94, "9.9 s"), (52.4, "52 s"), (119.4, "119 s"),
                                           (372.0, "6 min 12 s"), (779.6, "13 min 0 s")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_compare_reports_each_batch_then_the_verdict() -> None:
    model = tiny_llama()
    events: list[ProgressEvent] = []
    report = ph.compare(model, copy.deepcopy(model), random_token_ids(10, 16), batch_size=4, name="t",
                        on_progress=events.append)
    assert [e.stage for e in events] == [COMPARING] * 4 + [COMPARED]
    assert [e.done for e in events] == [0, 4, 8, 10, 10]  # before the first batch, then after each
    assert {e.total for e in events} == {10} and {e.check for e in events} == {"t"}
    assert events[-1].outcome == report.verdict == "pass"
    seconds = [e.seconds for e in events]
    assert seconds == sorted(seconds) and seconds[0] >= 0


def test_explain_records_what_each_mitigation_cost(pair, slow_mitigation) -> None:
    base, cand = pair
    events: list[ProgressEvent] = []
    started = time.perf_counter()
    report = run_check(base, cand, random_token_ids(12, 24), on_progress=events.append, name="t")
    elapsed = time.perf_counter() - started
    assert not report.passed

    timing = report.mitigation_time
    applying = [name for name in MITIGATIONS if name in ("fallback", "slow_restore")]
    assert list(timing["seconds"]) == applying  # tried in registry order; the others do not apply
    assert timing["seconds"]["slow_restore"] >= SLOW_SECONDS
    assert sum(timing["seconds"].values()) <= timing["total_seconds"] <= elapsed
    # The verified suggestions carry the same figures.
    assert {s["name"]: s["seconds"] for s in report.suggestions} == pytest.approx(timing["seconds"], abs=1e-3)

    stages = [e.stage for e in events]
    first = stages.index(MITIGATING)
    assert stages[:first] == [COMPARING] * (first - 1) + [COMPARED]
    assert stages[first:] == [MITIGATING] + [MITIGATION] * len(applying) + [MITIGATED]
    assert "slow_restore" in events[first].outcome and "do not apply" in events[first].outcome
    assert events[-1].seconds == pytest.approx(timing["total_seconds"], abs=0.05)

    line = f"mitigations tried in {format_seconds(timing['total_seconds'])} (" + ", ".join(
        f"{name} {format_seconds(seconds)}" for name, seconds in timing["seconds"].items()) + ")"
    assert line in report.to_text().splitlines()
    assert line[0].upper() + line[1:] in report.to_markdown()
    assert line[0].upper() + line[1:] in report.to_html()
    back = Report.from_dict(report.to_dict())
    assert back.mitigation_time == timing and line in back.to_text()


def test_no_mitigation_cost_without_mitigations(pair) -> None:
    base, cand = pair
    report = run_check(base, cand, random_token_ids(12, 24), suggest=False)
    assert not report.passed and report.mitigation_time is None
    assert "mitigations tried" not in report.to_text() and "itigations tried" not in report.to_markdown()


def test_run_check_keeps_no_mitigated_copy_alive(pair, slow_mitigation) -> None:
    """The copies made while explaining a failure are freed once the check returns its report."""
    base, cand = pair
    report = run_check(base, cand, random_token_ids(12, 24))
    assert not report.passed and [s["name"] for s in report.suggestions if s["name"] == "slow_restore"]
    copies = [weakref.ref(model) for model in slow_mitigation]
    slow_mitigation.clear()
    gc.collect()
    assert copies and all(ref() is None for ref in copies)


def test_progress_lines_write_lasting_lines_and_throttle_the_live_one() -> None:
    lines: list[str] = []
    updates: list[str] = []
    now = [0.0]
    show = ProgressLines(lines.append, updates.append, interval=1.0, clock=lambda: now[0])
    for done, at in [(0, 0.0), (4, 0.2), (8, 1.1), (12, 1.5), (16, 2.2)]:
        now[0] = at
        show(ProgressEvent(COMPARING, at, "t", done, 16))
    show(ProgressEvent(COMPARED, 2.3, "t", 16, 16, outcome="fail"))
    show(ProgressEvent(MITIGATING, check="t", outcome="fallback"))
    show(ProgressEvent(MITIGATION, 61.0, "t", mitigation="fallback", outcome="passes"))
    show(ProgressEvent(MITIGATED, 61.2, "t"))
    assert updates == ["hemorrhage: t: comparing: 0/16 probes, 0.0 s", "hemorrhage: t: comparing: 8/16 probes, 1.1 s",
                       "hemorrhage: t: comparing: 16/16 probes, 2.2 s"]
    assert lines == ["hemorrhage: t: compared 16 probes in 2.3 s: fail",
                     "hemorrhage: t: trying mitigations on copies: fallback",
                     "hemorrhage: t: tried fallback in 61 s: passes",
                     "hemorrhage: t: mitigations tried in 61 s"]


def test_progress_lines_without_a_live_line_write_only_lasting_lines() -> None:
    lines: list[str] = []
    show = ProgressLines(lines.append)
    show(ProgressEvent(COMPARING, 0.0, None, 0, 4))
    show(ProgressEvent(COMPARED, 0.5, None, 4, 4, outcome="pass"))
    assert lines == ["hemorrhage: compared 4 probes in 0.5 s: pass"]


def test_a_failure_does_not_keep_the_candidate_alive(pair) -> None:
    """pytest keeps the last failure's traceback; the frames in it must not hold a copy made for the check."""
    base, cand = pair
    refs = []

    def fresh_copy():
        model = copy.deepcopy(cand)
        refs.append(weakref.ref(model))
        return model

    with pytest.raises(ph.HemorrhageDetected) as info:
        ph.assert_no_hemorrhage(base, fresh_copy(), random_token_ids(12, 24), suggest=False)
    assert info.value.__traceback__ is not None  # the failure and its traceback are still alive here
    gc.collect()
    assert refs and refs[0]() is None


def test_explaining_keeps_one_repaired_copy_at_a_time(pair) -> None:
    """Each repaired copy is freed once measured, before the next mitigation makes its own."""
    base, cand = pair
    made: list[weakref.ref] = []
    alive_when_next_started: list[bool] = []

    def restore(baseline, candidate, calibration, thresholds, *, probes=None, **options):
        gc.collect()
        alive_when_next_started.extend(ref() is not None for ref in made)
        model = copy.deepcopy(candidate)
        model.get_submodule(DAMAGED).load_state_dict(baseline.get_submodule(DAMAGED).state_dict())
        made.append(weakref.ref(model))
        return Mitigation(f"restore_{len(made)}", model, "restored the damaged layer")

    names = ["restore_a", "restore_b"]
    for name in names:
        register(SimpleMitigator(name, lambda baseline, candidate: Applies.yes(), restore))
    try:
        report = run_check(base, cand, random_token_ids(12, 24))
    finally:
        for name in names:
            unregister(name)
    assert {s["name"] for s in report.suggestions} >= set(names)
    assert len(made) == 2 and alive_when_next_started == [False]
