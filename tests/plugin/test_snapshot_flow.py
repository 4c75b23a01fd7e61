"""``hemorrhage.snapshot()``: record on the first run, compare on later runs, re-record on request.

Like pytest-regressions: a missing snapshot is recorded and the test fails saying so; the next
run compares against the stored file and never rewrites it; ``--hemorrhage-update`` re-records.
"""

from __future__ import annotations

import os

import pytest

from pytest_hemorrhage.snapshot import load_snapshot

# Inner-test module code (after the shared preamble): the baseline seed and probe seed come from
# the environment, so one inner file can play several runs of a project whose baseline changes.
SEEDED = """
import os

SEED = int(os.environ.get("HEMO_SEED", "0"))
BASE = MODEL if SEED == 0 else tiny_llama(seed=SEED)
PROBE_SEED = int(os.environ.get("HEMO_PROBE_SEED", "0"))
RUN_PROBES = PROBES if PROBE_SEED == 0 else random_token_ids(16, 24, seed=PROBE_SEED)
"""


def _folder(pytester: pytest.Pytester, name: str = "hemorrhage_snapshots"):
    return pytester.path / name


def _only_file(folder) -> "os.PathLike":
    names = sorted(os.listdir(folder))  # hidden temporary files included
    assert len(names) == 1, names
    return folder / names[0]


def _state(path) -> tuple[bytes, int, int]:
    st = path.stat()
    return path.read_bytes(), st.st_mtime_ns, st.st_ino


def test_first_run_records_and_fails_second_run_compares(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_flow(hemorrhage):
            snap = hemorrhage.snapshot(MODEL, PROBES)
            hemorrhage.check(snap, harmless())
        """
    )
    first = pytester.runpytest()
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines([
        "*hemorrhage snapshot *test_inner.py_test_flow.safetensors did not exist: it was recorded from the "
        "baseline now. Commit it and rerun to compare against it.",
        "*= hemorrhage snapshots recorded =*",
        "*hemorrhage_snapshots/test_inner.py_test_flow.safetensors",
    ])
    path = _only_file(_folder(pytester))
    assert path.name == "test_inner.py_test_flow.safetensors"
    snap = load_snapshot(path)
    assert snap.n_scored_tokens == 16 * 23
    before = _state(path)

    second = pytester.runpytest()
    second.assert_outcomes(passed=1)
    assert "hemorrhage snapshots recorded" not in second.stdout.str()
    second.stdout.fnmatch_lines(["*= hemorrhage checks =*", "PASS*test_inner.py::test_flow*"])
    assert _state(path) == before  # not rewritten
    assert sorted(os.listdir(_folder(pytester))) == [path.name]


def test_harmful_candidate_against_stored_snapshot(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_harmless(hemorrhage):
            hemorrhage.check(hemorrhage.snapshot(MODEL, PROBES, name="base"), harmless())


        def test_harmful(hemorrhage):
            # Here the baseline model is not needed at all: the stored snapshot stands in for it.
            hemorrhage.check(hemorrhage.snapshot(name="base"), harmful())
        """
    )
    first = pytester.runpytest()
    # test_harmless records "base" (and fails saying so); test_harmful then compares against it.
    first.assert_outcomes(failed=2)
    first.stdout.fnmatch_lines(["*base.safetensors did not exist: it was recorded*"])
    path = _folder(pytester) / "base.safetensors"
    before = _state(path)

    second = pytester.runpytest()
    second.assert_outcomes(passed=1, failed=1)
    second.stdout.fnmatch_lines([
        "E   *HemorrhageDetected: Model hemorrhage: same top-1 *",
        "*first layer past threshold: model.layers.1 (SQNR * dB)",
    ])
    out = second.stdout.str()
    assert "FAILED test_inner.py::test_harmful" in out and "test_harmless" not in out.split("short test summary")[1]
    assert _state(path) == before


def test_changed_baseline_is_refused_until_updated(pytester: pytest.Pytester, inner, monkeypatch) -> None:
    inner(
        SEEDED
        + """
def test_flow(hemorrhage):
    snap = hemorrhage.snapshot(BASE, RUN_PROBES)
    hemorrhage.check(snap, copy.deepcopy(BASE))
"""
    )
    pytester.runpytest().assert_outcomes(failed=1)  # recorded
    pytester.runpytest().assert_outcomes(passed=1)
    path = _only_file(_folder(pytester))
    before = _state(path)

    monkeypatch.setenv("HEMO_SEED", "1")  # the baseline changed
    changed = pytester.runpytest()
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines([
        "E   *SnapshotError: snapshot *test_inner.py_test_flow.safetensors does not match the current run: "
        "model parameters hash differs (recorded *, current *). If the change is intended, rerun with "
        "--hemorrhage-update to re-record the snapshot.",
    ])
    assert "model config hash" not in changed.stdout.str()
    assert _state(path) == before  # NOT overwritten

    updated = pytester.runpytest("--hemorrhage-update")
    updated.assert_outcomes(passed=1)
    updated.stdout.fnmatch_lines(["*= hemorrhage snapshots recorded =*", "*test_inner.py_test_flow.safetensors"])
    assert path.read_bytes() != before[0]  # re-recorded
    assert _only_file(_folder(pytester)) == path

    again = _state(path)
    pytester.runpytest().assert_outcomes(passed=1)  # the new baseline matches the new snapshot
    assert _state(path) == again

    monkeypatch.setenv("HEMO_SEED", "0")  # and the old baseline no longer does
    pytester.runpytest().assert_outcomes(failed=1)


def test_other_probes_are_refused(pytester: pytest.Pytester, inner, monkeypatch) -> None:
    inner(
        SEEDED
        + """
def test_flow(hemorrhage):
    snap = hemorrhage.snapshot(BASE, RUN_PROBES)
    hemorrhage.check(snap, copy.deepcopy(BASE))
"""
    )
    pytester.runpytest().assert_outcomes(failed=1)  # recorded
    path = _only_file(_folder(pytester))
    before = _state(path)
    monkeypatch.setenv("HEMO_PROBE_SEED", "5")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E   *SnapshotError: *probe hash differs (recorded *)*--hemorrhage-update*"])
    assert "model parameters hash" not in result.stdout.str()
    assert _state(path) == before


def test_other_probes_passed_to_check_are_refused(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_flow(hemorrhage):
            snap = hemorrhage.snapshot(MODEL, PROBES)
            hemorrhage.check(snap, harmless(), random_token_ids(16, 24, seed=9))
        """
    )
    pytester.runpytest().assert_outcomes(failed=1)  # recorded
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E   *SnapshotError: *probe hash differs*--hemorrhage-update*"])


def test_no_baseline_and_no_file_is_a_clear_error(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_flow(hemorrhage):
            hemorrhage.snapshot()
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E   *SnapshotError: no snapshot at *test_inner.py_test_flow.safetensors and no baseline model to "
        "record it from; pass the baseline model to hemorrhage.snapshot(baseline, probes) once to record it",
    ])
    assert "hemorrhage snapshots recorded" not in result.stdout.str()
    assert not _folder(pytester).exists() or os.listdir(_folder(pytester)) == []


def test_custom_snapshot_dir_ini(pytester: pytest.Pytester, inner) -> None:
    pytester.makeini(
        """
        [pytest]
        hemorrhage_snapshot_dir = snaps/custom
        """
    )
    inner(
        """
        def test_flow(hemorrhage):
            hemorrhage.check(hemorrhage.snapshot(MODEL, PROBES, name="mine"), harmless())
        """
    )
    pytester.runpytest().assert_outcomes(failed=1)
    path = _only_file(pytester.path / "snaps" / "custom")
    assert path.name == "mine.safetensors"
    assert not _folder(pytester).exists()
    load_snapshot(path)
    pytester.runpytest().assert_outcomes(passed=1)


def test_damaged_snapshot_file_is_reported_not_overwritten(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        def test_flow(hemorrhage):
            hemorrhage.check(hemorrhage.snapshot(MODEL, PROBES), harmless())
        """
    )
    pytester.runpytest().assert_outcomes(failed=1)
    path = _only_file(_folder(pytester))
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E   *SnapshotError: *content hash mismatch*--hemorrhage-update*"])
    assert path.read_bytes() == bytes(data)
    pytester.runpytest("--hemorrhage-update").assert_outcomes(passed=1)
    load_snapshot(path)


# Workers are fresh interpreters: a torch-only causal LM spares each of them the transformers import.
XDIST_BODY = """
import copy

import pytest
import torch

torch.set_num_threads(1)


class TinyLM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(64, 16)
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(16, 16) for _ in range(3))
        self.head = torch.nn.Linear(16, 64)

    def can_generate(self):
        return True

    def forward(self, input_ids, attention_mask=None):
        h = self.embed(input_ids)
        for block in self.blocks:
            h = h + torch.tanh(block(h))
        return self.head(h)


MODEL = TinyLM().eval()
PROBES = torch.randint(0, 64, (12, 20), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("i", range(4))
def test_shared_{n}(hemorrhage, i):
    snap = hemorrhage.snapshot(MODEL, PROBES, name="shared")
    hemorrhage.check(snap, copy.deepcopy(MODEL))
"""


@pytest.mark.slow  # worker interpreters: a subprocess run
def test_xdist_workers_recording_the_same_snapshot(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_inner_a=XDIST_BODY.format(n="a"), test_inner_b=XDIST_BODY.format(n="b"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    outcomes = result.parseoutcomes()
    # Each test either recorded the snapshot (and failed saying so) or compared against it (and passed).
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 8, outcomes
    assert outcomes.get("failed", 0) >= 1
    assert "error" not in outcomes and "errors" not in outcomes
    out = result.stdout.str()
    # Count in the failure sections only: the short summary repeats (and may truncate) messages.
    failures = out.split("short test summary info")[0]
    assert failures.count("did not exist: it was recorded") == outcomes["failed"]
    # One section on the controller, listing the file once however many workers recorded it.
    assert out.count("= hemorrhage snapshots recorded =") == 1
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "= hemorrhage snapshots recorded =" in line) + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("="))
    assert lines[start:end] == [str(pytester.path / "hemorrhage_snapshots" / "shared.safetensors")]
    assert out.count("PASS ") == outcomes.get("passed", 0)
    folder = _folder(pytester)
    assert sorted(os.listdir(folder)) == ["shared.safetensors"]  # no temporary files left
    snap = load_snapshot(folder / "shared.safetensors", root=folder)
    assert snap.n_scored_tokens == 12 * 19
    assert snap.layer_names == ["blocks.0", "blocks.1", "blocks.2"]
