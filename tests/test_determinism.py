"""Determinism: the same inputs give a byte-identical ``report.to_json()``.

Within one process (run twice) and across separate processes (each running the comparison twice
with a fixed seed), on a tiny model and on the default model with a few short probes.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pytest_hemorrhage.engine import compare
from pytest_hemorrhage.modify import quantize
from pytest_hemorrhage.probes import Probes
from tiny_models import random_token_ids, tiny_llama

REPO = Path(__file__).resolve().parents[1]

# One program for the in-process and the subprocess runs, so both compute exactly the same thing.
# It prints two JSON reports (two runs of one comparison) separated by a line holding only "----".
PROGRAM = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {tests!r})
    torch.manual_seed(1234)
    torch.set_num_threads({threads})
    from pytest_hemorrhage.engine import compare
    from pytest_hemorrhage.modify import quantize
    from pytest_hemorrhage.probes import Probes
    which = {which!r}
    if which == "tiny":
        from tiny_models import random_token_ids, tiny_llama
        model = tiny_llama()
        probes = Probes.from_token_ids(random_token_ids(n=6, length=20).tolist())
    else:
        from pytest_hemorrhage.models import default_model
        model, tokenizer = default_model()
        probes = Probes.builtin(tokenizer, n=3, max_length=24)
    candidate = quantize(model, bits=4, granularity="per_group", group_size=32)
    runs = [compare(model, candidate, probes, batch_size=2, attention=(which == "tiny")).to_json() for _ in range(2)]
    sys.stdout.write(runs[0] + "\\n----\\n" + runs[1])
    """
)


def _program(which: str, threads: int) -> str:
    return PROGRAM.format(tests=str(Path(__file__).parent), threads=threads, which=which)


def _run_in_subprocess(which: str, threads: int) -> list[str]:
    done = subprocess.run([sys.executable, "-c", _program(which, threads)], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split("\n----\n")


def _run_here(which: str, threads: int) -> list[str]:
    out: dict = {}
    before = torch.get_num_threads()
    try:
        exec(compile(_program(which, threads).replace("sys.stdout.write(", "result = ("), "<program>", "exec"), out)
    finally:
        torch.set_num_threads(before)
    return out["result"].split("\n----\n")


def _first_difference(a: str, b: str) -> str:
    for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines())):
        if x != y:
            return f"line {i + 1}: {x.strip()!r} != {y.strip()!r}"
    return "lengths differ"


def test_two_runs_in_one_process_are_byte_identical_tiny():
    first, second = _run_here("tiny", threads=1)
    assert first == second, _first_difference(first, second)
    assert '"attention_js"' in first and '"estimate"' in first


@pytest.mark.slow
def test_two_runs_in_one_process_are_byte_identical_default_model():
    first, second = _run_here("default", threads=1)
    assert first == second, _first_difference(first, second)


@pytest.mark.slow  # two fresh interpreters each
@pytest.mark.parametrize("which", ["tiny", "default"])
def test_two_processes_give_byte_identical_reports(which):
    here = _run_here(which, threads=1)
    a = _run_in_subprocess(which, threads=1)
    b = _run_in_subprocess(which, threads=1)
    assert a[0] == a[1] and b[0] == b[1]
    assert a[0] == b[0], _first_difference(a[0], b[0])
    assert here[0] == a[0], _first_difference(here[0], a[0])


def test_the_report_is_not_trivially_constant():
    """The determinism above means something: another candidate gives other bytes."""
    model = tiny_llama()
    probes = Probes.from_token_ids(random_token_ids(n=6, length=20).tolist())
    four = compare(model, quantize(model, bits=4, granularity="per_group", group_size=32), probes).to_json()
    three = compare(model, quantize(model, bits=3, granularity="per_group", group_size=32), probes).to_json()
    assert four != three
