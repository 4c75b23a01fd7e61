"""Bad inputs through pytest: marker keys and values, conflicting threshold sources, snapshots that
must never be overwritten without ``--hemorrhage-update``, and Ctrl-C while a snapshot is recorded.

The library-level cases are in tests/test_bad_input_matrix.py.
"""

from __future__ import annotations

import json
import os

import pytest

from pytest_hemorrhage.snapshot import load_snapshot

FILE = "test_inner.py_test_flow.safetensors"


def _folder(pytester: pytest.Pytester):
    return pytester.path / "hemorrhage_snapshots"


def _state(path) -> tuple[bytes, int, int]:
    st = path.stat()
    return path.read_bytes(), st.st_mtime_ns, st.st_ino


@pytest.mark.parametrize(
    "marker_args, expected",
    [
        # "key(s)" became "key" for a single unknown key, which is followed by the closest known key.
        ("min_top1=0.9", "unknown threshold key min_top1 (did you mean min_top1_agreement?); known keys: confidence, "
                         "inconclusive_fails, max_flip_rate"),
        ("max_kl=[0.1]", "max_kl must be a number, got [0.1]"),
        ("max_kl=float('nan')", "max_kl must be a number, got nan"),
        ("min_top1_agreement=1.5", "min_top1_agreement=1.5 is outside the allowed range [0.0, 1.0]"),
        ("max_ppl_ratio=0.5", "max_ppl_ratio=0.5 is outside the allowed range [1.0, inf]"),
        ("inconclusive_fails='maybe'", "inconclusive_fails must be true or false, got 'maybe'"),
    ],
    ids=["unknown-key", "list-value", "nan", "above-range", "below-range", "not-a-bool"],
)
def test_bad_marker_key_or_value_fails_at_setup(pytester: pytest.Pytester, inner, marker_args, expected) -> None:
    inner(
        f"""
        @pytest.mark.hemorrhage({marker_args})
        class TestGroup:
            @pytest.mark.hemorrhage(max_rms_dp=0.5)  # a good closer marker does not hide the bad one
            def test_bad(self, hemorrhage):
                raise RuntimeError("the test body must not run")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of TestGroup.test_bad*"])
    assert f"test_inner.py::TestGroup::test_bad: @pytest.mark.hemorrhage: {expected}" in result.stdout.str()
    result.stdout.no_fnmatch_line("*the test body must not run*")


def test_a_misspelt_key_is_named_once_with_the_key_it_resembles(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        from pytest_hemorrhage import assert_no_hemorrhage

        @pytest.mark.hemorrhage(min_top1_agreemnt=0.95)
        def test_marker(hemorrhage):
            raise RuntimeError("the test body must not run")

        def test_keyword():
            assert_no_hemorrhage(MODEL, copy.deepcopy(MODEL), PROBES, min_top1_agreemnt=0.95)

        @pytest.mark.hemorrhage(min_top1_agreement=95)
        def test_percentage(hemorrhage):
            raise RuntimeError("the test body must not run")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=2, failed=1)
    out = result.stdout.str()
    typo = "unknown threshold key min_top1_agreemnt (did you mean min_top1_agreement?)"
    assert f"test_inner.py::test_marker: @pytest.mark.hemorrhage: {typo}" in out
    assert f"keyword arguments: {typo}" in out
    assert "test_inner.py::test_percentage: @pytest.mark.hemorrhage: min_top1_agreement=95 is outside the allowed " \
           "range [0.0, 1.0] (did you mean 0.95?)" in out
    # Each message once per test: no second copy after a chained exception.
    assert "During handling of the above exception" not in out
    errors = out[out.index("= ERRORS ="):out.index("= FAILURES =")]
    assert errors.count(typo) == 1


def test_bad_ini_value_is_reported_even_when_the_command_line_overrides_it(pytester: pytest.Pytester, inner) -> None:
    pytester.makeini("[pytest]\nhemorrhage_max_kl = 0.o2\n")
    inner("def test_never_runs():\n    raise RuntimeError('ran despite a bad ini value')\n")
    result = pytester.runpytest("--hemorrhage-max-kl=0.1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert ("ERROR: hemorrhage_max_kl in tox.ini: max_kl must be a number (or 'none' to stop gating it), "
            "got '0.o2'") in result.stderr.str()
    assert "ran despite" not in result.stdout.str()


def test_bad_option_value_is_reported_even_when_the_marker_overrides_it(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        @pytest.mark.hemorrhage(min_top1_agreement=0.9)
        def test_never_runs(hemorrhage):
            raise RuntimeError("ran despite a bad option")
        """
    )
    result = pytester.runpytest("--hemorrhage-min-top1-agreement=95")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert ("ERROR: command line option --hemorrhage-min-top1-agreement: min_top1_agreement=95.0 is outside "
            "the allowed range [0.0, 1.0]") in result.stderr.str()
    assert "ran despite" not in result.stdout.str()


def test_conflicting_sources_resolve_by_precedence_and_the_report_records_the_winner(
        pytester: pytest.Pytester, inner) -> None:
    """ini < command line < marker < check() keywords, per key; the mild candidate has KL ~3e-7."""
    pytester.makeini("[pytest]\nhemorrhage_max_kl = 1e-9\nhemorrhage_min_top1_agreement = 0.5\n")
    inner(
        """
        @pytest.mark.hemorrhage(max_kl=1.0)
        def test_marker_loosens(hemorrhage):
            hemorrhage.check(MODEL, mild(), PROBES)


        def test_command_line_tightens(hemorrhage):
            hemorrhage.check(MODEL, mild(), PROBES)


        @pytest.mark.hemorrhage(max_kl=1.0)
        def test_keyword_tightens(hemorrhage):
            hemorrhage.check(MODEL, mild(), PROBES, max_kl=1e-9)
        """
    )
    result = pytester.runpytest("--hemorrhage-max-kl=1e-8", "--hemorrhage-report=report.json")
    result.assert_outcomes(passed=1, failed=2)
    checks = json.loads((pytester.path / "report.json").read_text())["checks"]
    winners = {c["nodeid"].split("::")[1]: c["report"]["thresholds"] for c in checks}
    assert {k: v["max_kl"] for k, v in winners.items()} == {
        "test_marker_loosens": 1.0, "test_command_line_tightens": 1e-8, "test_keyword_tightens": 1e-9}
    assert {v["min_top1_agreement"] for v in winners.values()} == {0.5}  # set only in the ini: kept everywhere
    result.stdout.fnmatch_lines(["*Model hemorrhage: mean KL * > 1e-08 allowed*"])


def test_snapshot_is_never_overwritten_without_update(pytester: pytest.Pytester, inner, monkeypatch) -> None:
    inner(
        """
        import os


        def test_flow(hemorrhage):
            candidate = harmful() if os.environ.get("HEMO_HARMFUL") else harmless()
            hemorrhage.check(hemorrhage.snapshot(MODEL, PROBES), candidate)
        """
    )
    pytester.runpytest().assert_outcomes(failed=1)  # recorded now, fails saying so
    path = _folder(pytester) / FILE
    recorded = _state(path)

    monkeypatch.setenv("HEMO_HARMFUL", "1")
    failing = pytester.runpytest()
    failing.assert_outcomes(failed=1)
    failing.stdout.fnmatch_lines(["*HemorrhageDetected: Model hemorrhage*", "*--hemorrhage-update*"])
    assert _state(path) == recorded  # a failing check never rewrites the baseline

    path.write_bytes(recorded[0][: len(recorded[0]) // 2])
    damaged = _state(path)
    broken = pytester.runpytest()
    broken.assert_outcomes(failed=1)
    broken.stdout.fnmatch_lines(["E   *SnapshotError: snapshot *is truncated*rerun with --hemorrhage-update*"])
    assert _state(path) == damaged and sorted(os.listdir(_folder(pytester))) == [FILE]

    monkeypatch.delenv("HEMO_HARMFUL")
    pytester.runpytest("--hemorrhage-update").assert_outcomes(passed=1)
    assert path.read_bytes() == recorded[0]  # the same baseline records the same bytes
    assert sorted(os.listdir(_folder(pytester))) == [FILE]


INTERRUPTIBLE = """
import os

calls = []


def interrupt_on_second_batch(module, args, output):
    calls.append(1)
    if len(calls) == 2:
        raise KeyboardInterrupt


def test_flow(hemorrhage):
    base = copy.deepcopy(MODEL)
    if os.environ.get("HEMO_INTERRUPT"):
        with torch.no_grad():
            base.model.layers[3].mlp.down_proj.weight.mul_(2.0)  # another baseline: a rewrite would show
        base.model.layers[1].register_forward_hook(interrupt_on_second_batch)
    hemorrhage.check(hemorrhage.snapshot(base, PROBES, batch_size=4), copy.deepcopy(MODEL))
"""


def test_keyboard_interrupt_while_recording_keeps_the_old_snapshot(pytester: pytest.Pytester, inner,
                                                                   monkeypatch) -> None:
    inner(INTERRUPTIBLE)
    pytester.runpytest().assert_outcomes(failed=1)  # recorded
    path = _folder(pytester) / FILE
    before = _state(path)

    monkeypatch.setenv("HEMO_INTERRUPT", "1")
    result = pytester.runpytest("--hemorrhage-update", no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    assert "hemorrhage snapshots recorded" not in result.stdout.str()
    assert _state(path) == before and sorted(os.listdir(_folder(pytester))) == [FILE]

    monkeypatch.delenv("HEMO_INTERRUPT")
    pytester.runpytest().assert_outcomes(passed=1)  # the old baseline still compares
    load_snapshot(path)


def test_keyboard_interrupt_while_recording_the_first_snapshot_leaves_no_file(pytester: pytest.Pytester, inner,
                                                                             monkeypatch) -> None:
    inner(INTERRUPTIBLE)
    monkeypatch.setenv("HEMO_INTERRUPT", "1")
    result = pytester.runpytest(no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert not _folder(pytester).exists() or os.listdir(_folder(pytester)) == []
