"""The assertion message of a failing check: verdict line, the other metrics, how to accept.

How to accept a failure on purpose is pytest's own advice: the marker, and ``--hemorrhage-update``
only where a snapshot is the baseline (the library and the command line say what fits them).
"""

from __future__ import annotations

import pytest


# top-1 fails; KL and the PPL ratio pass under these thresholds.
HARMFUL_CHECK = """
@pytest.mark.hemorrhage(max_kl=0.05, min_top1_agreement=0.9, max_ppl_ratio=1.05)
def test_harmful(hemorrhage):
    hemorrhage.check(MODEL, harmful(), PROBES)
"""


def test_fail_message_shape(pytester: pytest.Pytester, inner) -> None:
    inner(HARMFUL_CHECK)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            # The verdict line names the failing metric, its interval and the threshold.
            "E   *HemorrhageDetected: Model hemorrhage: same top-1 *% (95% CI *) < 90.00% required",
            # Then every other metric, gated ones with their threshold and verdict.
            "E *  mean KL * nats/token (95% CI *) (up to 0.05 allowed)  [[]pass[]]",
            "E *  top-k overlap *",
            "E *  PPL ratio * (up to 1.0500 allowed)  [[]pass[]]",
            "E *  KL per token: p50 *, p90 *, p99 *, p99.9 *, max *",
            "E *first layer past threshold: model.layers.1 (SQNR * dB)",
            # The marker keyword of the failing metric; no snapshot here, so no --hemorrhage-update.
            "E *to accept this on purpose: loosen the threshold in "
            "@pytest.mark.hemorrhage(min_top1_agreement=...)",
        ]
    )
    # The failing metric is the headline, not repeated in the list below it.
    result.stdout.no_fnmatch_line("E *  same top-1 *")
    result.stdout.no_fnmatch_line("*--hemorrhage-update*")


def test_fail_message_lists_passing_min_metrics_with_at_least(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        @pytest.mark.hemorrhage(max_kl=1e-9, min_top1_agreement=0.9, max_ppl_ratio=1.05)
        def test_mild_tight(hemorrhage):
            hemorrhage.check(MODEL, mild(), PROBES)
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E   *HemorrhageDetected: Model hemorrhage: mean KL * nats/token (95% CI *) > 1e-09 allowed",
            "E *  same top-1 * (at least 90.00% required)  [[]pass[]]",
            "E *  PPL ratio * (up to 1.0500 allowed)  [[]pass[]]",
            "E *no layer below 15.0 dB SQNR; lowest: model.layers.* dB)",
            "E *to accept this on purpose: loosen the threshold in @pytest.mark.hemorrhage(max_kl=...)",
        ]
    )


def test_inconclusive_message_and_exception_attributes(pytester: pytest.Pytester, inner) -> None:
    inner(
        """
        from pytest_hemorrhage.errors import HemorrhageDetected

        def test_inconclusive(hemorrhage):
            kl = hemorrhage.compare(MODEL, mild(), PROBES).metrics["kl"]
            # A threshold between the estimate and the upper bound of its interval cannot be decided.
            limit = (kl.estimate + kl.ci_high) / 2
            with pytest.raises(HemorrhageDetected) as info:
                hemorrhage.check(MODEL, mild(), PROBES, max_kl=limit)
            assert isinstance(info.value, AssertionError)
            assert info.value.report.verdict == "inconclusive"
            message = str(info.value)
            assert message.startswith("Inconclusive: mean KL ")
            assert "— inconclusive: about " in message and " more probes would decide" in message
            assert message.splitlines()[-1] == (
                "to accept this on purpose: loosen the threshold in @pytest.mark.hemorrhage(max_kl=...)")

        def test_inconclusive_fails_the_test(hemorrhage):
            kl = hemorrhage.compare(MODEL, mild(), PROBES).metrics["kl"]
            hemorrhage.check(MODEL, mild(), PROBES, max_kl=(kl.estimate + kl.ci_high) / 2)

        @pytest.mark.hemorrhage(inconclusive_fails=False)
        def test_inconclusive_allowed(hemorrhage):
            kl = hemorrhage.compare(MODEL, mild(), PROBES).metrics["kl"]
            report = hemorrhage.check(MODEL, mild(), PROBES, max_kl=(kl.estimate + kl.ci_high) / 2)
            assert report.verdict == "inconclusive"
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["E   *HemorrhageDetected: Inconclusive: mean KL * (up to * allowed) — inconclusive*"])


def test_against_a_snapshot_the_message_also_offers_to_re_record_it(pytester: pytest.Pytester, inner,
                                                                     monkeypatch) -> None:
    inner(
        """
        import os

        def test_flow(hemorrhage):
            candidate = mild() if os.environ.get("HEMO_MILD") else harmless()
            hemorrhage.check(hemorrhage.snapshot(MODEL, PROBES), candidate, max_kl=1e-9)
        """
    )
    pytester.runpytest().assert_outcomes(failed=1)  # the snapshot is recorded now, and the test says so
    monkeypatch.setenv("HEMO_MILD", "1")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E   *HemorrhageDetected: Model hemorrhage: mean KL * > 1e-09 allowed",
        "E *to accept this on purpose: loosen the threshold in @pytest.mark.hemorrhage(max_kl=...), "
        "or rerun with --hemorrhage-update to re-record the snapshot",
    ])


def test_a_failing_check_tries_mitigations_unless_told_not_to(pytester: pytest.Pytester, inner,
                                                              monkeypatch) -> None:
    # This test is about suggestions: undo the --hemorrhage-no-suggest that inner runs get (tests/conftest.py).
    monkeypatch.delenv("PYTEST_ADDOPTS")
    inner(HARMFUL_CHECK)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    # The damaged layer restored on a copy, re-measured, and shown between the diagnosis and the advice.
    result.stdout.fnmatch_lines([
        "E *first layer past threshold: model.layers.1 *",
        "E *verified fix: restored 1 of 1 modified linears to baseline weights: model.layers.1.mlp.down_proj *"
        "(checked, passes)",
        "E *mitigations tried in * s (fallback * s)",  # what the search cost, before the advice
        "E *to accept this on purpose: *",
    ], consecutive=True)
    off = pytester.runpytest("--hemorrhage-no-suggest")
    off.assert_outcomes(failed=1)
    off.stdout.fnmatch_lines(["E *first layer past threshold: model.layers.1 *"])
    off.stdout.no_fnmatch_line("*verified fix*")
    off.stdout.no_fnmatch_line("*mitigation tried*")
    off.stdout.no_fnmatch_line("*mitigations tried in*")
