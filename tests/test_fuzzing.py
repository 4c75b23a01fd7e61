"""The fuzzing verdict rule: a decided hemorrhage fails, an inconclusive example is rejected."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from tiny_models import random_token_ids, tiny_llama

import pytest_hemorrhage as ph
from pytest_hemorrhage import fuzzing
from pytest_hemorrhage.errors import HemorrhageDetected

MODEL = tiny_llama()
PROBES = random_token_ids(16, 24)
# Only KL is gated; block 1's down_proj x(1 + k/4): k 28 is inconclusive, k 30 a decided failure,
# k 0 passes (measured on these probes; the tests below check the verdicts they rely on).
GATE = dict(layers=None, max_kl=0.005, min_top1_agreement=0.0, max_ppl_ratio=100.0, max_rms_dp=1.0)
QUICK = settings(max_examples=5, database=None, deadline=None, phases=(Phase.generate,))


def candidate(k: int) -> torch.nn.Module:
    c = copy.deepcopy(MODEL)
    with torch.no_grad():
        c.model.layers[1].mlp.down_proj.weight.mul_(1 + k / 4)
    return c


@pytest.fixture(scope="module")
def reports() -> dict[str, ph.Report]:
    out = {name: ph.compare(MODEL, candidate(k), PROBES, **GATE) for name, k in (("pass", 0), ("inconclusive", 28),
                                                                                 ("fail", 30))}
    assert {name: r.verdict for name, r in out.items()} == {n: n for n in out}  # the premise
    return out


def test_only_a_decided_failure_hemorrhages(reports) -> None:
    assert [fuzzing.hemorrhages(reports[n]) for n in ("pass", "inconclusive", "fail")] == [False, False, True]
    assert [fuzzing.undecided(reports[n]) for n in ("pass", "inconclusive", "fail")] == [False, True, False]
    lenient = ph.compare(MODEL, candidate(28), PROBES, inconclusive_fails=False, **GATE)
    assert lenient.verdict == "inconclusive" and lenient.passed and not fuzzing.undecided(lenient)


def test_check_rejects_inconclusive_examples_inside_given() -> None:
    @QUICK
    @given(st.just(28))
    def always_inconclusive(k):
        fuzzing.check(MODEL, candidate(k), PROBES, **GATE)

    with pytest.raises(Unsatisfiable):  # every example rejected: none counted as a failure
        always_inconclusive()


def test_check_fails_on_a_decided_hemorrhage_and_returns_a_pass() -> None:
    assert fuzzing.check(MODEL, candidate(0), PROBES, **GATE).verdict == "pass"
    with pytest.raises(HemorrhageDetected) as raised:
        fuzzing.check(MODEL, candidate(30), PROBES, **GATE)
    assert raised.value.report.verdict == "fail"
    assert "pass a looser threshold, assert_no_hemorrhage(..., max_kl=...)" in str(raised.value)
    # Outside a Hypothesis test nothing can be rejected: inconclusive fails, as a gate does.
    with pytest.raises(HemorrhageDetected, match="^Inconclusive"):
        fuzzing.check(MODEL, candidate(28), PROBES, **GATE)


def test_find_with_the_predicate_lands_on_a_decided_failure(reports) -> None:
    by_k = {28: reports["inconclusive"], 30: reports["fail"]}
    found = find(st.sampled_from((28, 30)), lambda k: fuzzing.hemorrhages(by_k[k]),
                 settings=settings(max_examples=10, database=None, deadline=None))
    assert found == 30  # 28 fails the gate, but only for lack of evidence


def test_representative_is_the_falsifying_check_or_the_last_pass(reports) -> None:
    p, i, f = reports["pass"], reports["inconclusive"], reports["fail"]
    assert fuzzing.representative([p, f, i], test_failed=True) == (i, "last check of 3 examples, 1 inconclusive")
    assert fuzzing.representative([f, p, i], test_failed=False) == (f, "last hemorrhage of 3 examples, 1 inconclusive")
    assert fuzzing.representative([p, i], test_failed=False) == (p, "last pass of 2 examples, 1 inconclusive")
    assert fuzzing.representative([i], test_failed=False) == (i, "last check of 1 example, 1 inconclusive")
    with pytest.raises(ValueError):
        fuzzing.representative([], test_failed=False)


def test_only_the_replayed_falsifying_example_is_final() -> None:
    seen = []

    @settings(max_examples=5, database=None, deadline=None)
    @given(st.integers(0, 10))
    def fails_from_3(k):
        seen.append((k, fuzzing.in_final_example()))
        assert k < 3

    with pytest.raises(AssertionError):
        fails_from_3()
    assert seen[-1] == (3, True)  # shrunk, then replayed once more as the final example
    assert not any(final for _, final in seen[:-1])
    assert not fuzzing.in_final_example()  # outside a Hypothesis test
