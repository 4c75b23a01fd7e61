"""The ``hemorrhage_fuzz`` fixture: checks inside ``@given`` tests.

It must run where the function-scoped ``hemorrhage`` fixture trips Hypothesis' health check, take
the running test's thresholds, stand in the summary, the report file and JUnit with one check per
test, and make shrinking converge on a decided hemorrhage rather than on an inconclusive check.
"""

from __future__ import annotations

import functools
import json
import re
import textwrap
import xml.etree.ElementTree as ET

import pytest
import torch
from tiny_models import random_token_ids, tiny_llama

import pytest_hemorrhage as ph

# A family of candidates on the plugin tests' tiny model: block 1's down_proj scaled by 1 + k / 4.
# Mean KL grows with k; under MAX_KL the mildest k that does not pass is inconclusive (its KL
# estimate inside, its confidence bound past it) and a few steps harsher come decided failures.
MAX_KL = 0.005
KS = range(16, 41)  # k below 16 passes by a wide margin: left out to keep the test fast
FAMILY = f"""
from hypothesis import given, settings, strategies as st

FUZZ = settings(max_examples=15, derandomize=True, database=None, deadline=None)
ONLY_KL = pytest.mark.hemorrhage(max_kl={MAX_KL}, min_top1_agreement=0.0, max_ppl_ratio=100.0, max_rms_dp=1.0)


def candidate(k):
    return scaled(1 + k / 4)
"""


def with_family(body: str) -> str:
    """An inner test file's body after the family's definitions."""
    return FAMILY + textwrap.dedent(body)


@functools.cache
def _family_verdicts() -> dict[int, str]:
    """Each k's verdict, computed here with the library, independently of the fixture."""
    torch.set_num_threads(1)
    model, probes = tiny_llama(), random_token_ids(16, 24)
    verdicts = {}
    for k in KS:
        cand = tiny_llama()
        with torch.no_grad():
            cand.model.layers[1].mlp.down_proj.weight.mul_(1 + k / 4)
        report = ph.compare(model, cand, probes, layers=None, max_kl=MAX_KL, min_top1_agreement=0.0,
                            max_ppl_ratio=100.0, max_rms_dp=1.0)
        verdicts[k] = report.verdict
    return verdicts


def _falsifying_k(stdout: str, test: str) -> int:
    found = re.search(rf"(?:Falsifying example|Failing test case): {test}\(.*?\bk=(\d+)", stdout, re.DOTALL)
    assert found, f"no falsifying example of {test} in the output:\n{stdout}"
    return int(found.group(1))


def test_hemorrhage_fixture_in_given_names_hemorrhage_fuzz_which_passes_the_health_check(
        pytester: pytest.Pytester, inner) -> None:
    inner(
        with_family("""
        @FUZZ
        @given(k=st.integers(0, 4))
        def test_with_hemorrhage(hemorrhage, k):
            hemorrhage.check(MODEL, candidate(k), PROBES, layers=None)

        @ONLY_KL
        @FUZZ
        @given(k=st.integers(0, 4))
        def test_with_hemorrhage_fuzz(hemorrhage_fuzz, k):
            report = hemorrhage_fuzz.check(MODEL, candidate(k), PROBES, layers=None)
            assert report.passed
        """)
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    # The health check is named, and the fixture that avoids it.
    result.stdout.fnmatch_lines(["*test_with_hemorrhage: the hemorrhage fixture is function-scoped, and Hypothesis "
                                 "stops a @given test that takes one (FailedHealthCheck, function_scoped_fixture); "
                                 "take the hemorrhage_fuzz fixture instead*"])
    result.stdout.no_fnmatch_line("*hypothesis.errors.FailedHealthCheck*")
    # One line in the summary stands for all the examples of the property.
    result.stdout.fnmatch_lines(["*= hemorrhage checks =*",
                                 "PASS * test_inner.py::test_with_hemorrhage_fuzz [[]last pass of * examples[]]  KL *"])


def test_hemorrhage_fixture_stays_usable_where_hypothesis_allows_it(
        pytester: pytest.Pytester, inner) -> None:
    inner(
        with_family("""
        from hypothesis import HealthCheck

        @ONLY_KL
        @settings(FUZZ, max_examples=2, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(k=st.integers(0, 1))
        def test_suppressed(hemorrhage, k):
            hemorrhage.check(MODEL, candidate(k), PROBES, layers=None)

        # Taken through an autouse fixture, which Hypothesis does not check either.
        @pytest.fixture(autouse=True)
        def checked(hemorrhage):
            yield
            assert all(report.passed for report in hemorrhage.reports)

        @FUZZ
        @given(k=st.integers(0, 1))
        def test_through_autouse(k):
            pass
        """)
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)


def test_shrinking_converges_on_a_decided_hemorrhage(pytester: pytest.Pytester, inner) -> None:
    verdicts = _family_verdicts()
    mildest_not_passing = min(k for k, v in verdicts.items() if v != "pass")
    mildest_hemorrhage = min(k for k, v in verdicts.items() if v == "fail")
    # The premise: the gate's mildest failure is only inconclusive, a real break is harsher.
    assert verdicts[mildest_not_passing] == "inconclusive"
    assert mildest_hemorrhage > mildest_not_passing
    assert all(v == "fail" for k, v in verdicts.items() if k >= mildest_hemorrhage)
    inner(
        with_family(f"""
        @ONLY_KL
        @FUZZ
        @given(k=st.integers({KS.start}, {KS.stop - 1}))
        def test_gate(hemorrhage_fuzz, k):
            # The gate's rule: inconclusive fails. Shrinking stops at "not enough evidence".
            assert hemorrhage_fuzz.compare(MODEL, candidate(k), PROBES, layers=None).passed

        @ONLY_KL
        @FUZZ
        @given(k=st.integers({KS.start}, {KS.stop - 1}))
        def test_fuzz(hemorrhage_fuzz, k):
            hemorrhage_fuzz.check(MODEL, candidate(k), PROBES, layers=None, suggest=False)
        """)
    )
    result = pytester.runpytest("-p", "no:randomly", "--hemorrhage-report=checks.json", "--junitxml=junit.xml",
                                "--hypothesis-show-statistics")
    result.assert_outcomes(failed=2)
    # The rejected examples are counted where Hypothesis users look for them.
    result.stdout.fnmatch_lines(["*test_fuzz:*", "*hemorrhage: inconclusive (rejected)*"])
    out = result.stdout.str()
    assert _falsifying_k(out, "test_gate") == mildest_not_passing
    assert _falsifying_k(out, "test_fuzz") == mildest_hemorrhage
    result.stdout.fnmatch_lines(["*HemorrhageDetected: Model hemorrhage: mean KL *"])

    checks = {c["nodeid"].split("::")[1]: c for c in json.loads((pytester.path / "checks.json").read_text())["checks"]}
    fuzzed = checks["test_fuzz"]["report"]
    assert fuzzed["verdict"] == "fail"
    kl = next(m for m in fuzzed["metrics"] if m["name"] == "kl")
    assert kl["threshold"] == MAX_KL and kl["estimate"] > MAX_KL  # decided: the estimate itself is past
    assert re.fullmatch(r"test_inner\.py::test_fuzz \[last check of \d+ examples, \d+ inconclusive\]",
                        fuzzed["name"]), fuzzed["name"]
    assert checks["test_gate"]["report"]["verdict"] == "inconclusive"

    cases = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
             for case in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    assert cases["test_fuzz"]["hemorrhage_verdict"] == "fail"
    assert float(cases["test_fuzz"]["hemorrhage_kl"]) == pytest.approx(kl["estimate"], rel=1e-5)
    assert int(cases["test_fuzz"]["hemorrhage_fuzz_examples"]) > 1


def test_thresholds_follow_marker_command_line_and_ini(pytester: pytest.Pytester, inner) -> None:
    pytester.makeini("[pytest]\nhemorrhage_max_kl = 0.1\nhemorrhage_max_rms_dp = 0.2\n")
    inner(
        """
        from hypothesis import given, settings, strategies as st

        @settings(max_examples=2, database=None, deadline=None)
        @given(k=st.integers(0, 1))
        @pytest.mark.hemorrhage(max_kl=0.004)
        def test_marker(hemorrhage_fuzz, k):
            assert hemorrhage_fuzz.thresholds.max_kl == 0.004
            assert hemorrhage_fuzz.thresholds.max_rms_dp == 0.2
            report = hemorrhage_fuzz.check(MODEL, harmless(), PROBES, layers=None)
            assert report.thresholds["max_kl"] == 0.004

        @settings(max_examples=2, database=None, deadline=None)
        @given(k=st.integers(0, 1))
        def test_command_line(hemorrhage_fuzz, k):
            assert hemorrhage_fuzz.thresholds.max_kl == 0.3
            assert hemorrhage_fuzz.thresholds.max_rms_dp == 0.2
        """
    )
    pytester.runpytest("-p", "no:randomly", "--hemorrhage-max-kl=0.3").assert_outcomes(passed=2)


def test_inconclusive_fails_outside_a_hypothesis_test(pytester: pytest.Pytester, inner) -> None:
    verdicts = _family_verdicts()
    inconclusive = min(k for k, v in verdicts.items() if v == "inconclusive")
    inner(
        with_family(f"""
        @ONLY_KL
        def test_plain(hemorrhage_fuzz):
            hemorrhage_fuzz.check(MODEL, candidate({inconclusive}), PROBES, layers=None, suggest=False)
        """)
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*HemorrhageDetected: Inconclusive: mean KL * about * more probes would decide"])
