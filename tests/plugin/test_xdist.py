"""pytest-xdist: checks run on the workers are merged into the controller's summary, report and JUnit XML."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("xdist")

pytestmark = pytest.mark.slow  # worker interpreters: a subprocess run


# Workers are fresh interpreters: a torch-only model spares each of them the transformers import
# (seconds per worker), which is all this test needs; the engine treats it as a tensor-output model.
BODY = """
import copy
import os

import pytest
import torch

torch.set_num_threads(1)
torch.manual_seed(0)
MODEL = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16)).eval()
PROBES = torch.randn(16, 16)


def noisy(scale):
    c = copy.deepcopy(MODEL)
    with torch.no_grad():
        c[2].weight.add_(scale * torch.randn_like(c[2].weight))
    return c


def test_pass_{n}(hemorrhage, pytestconfig):
    hemorrhage.check(MODEL, copy.deepcopy(MODEL), PROBES)
    worker = os.environ["PYTEST_XDIST_WORKER"]
    (pytestconfig.rootpath / f"ran_on_{{worker}}").write_text("{n}")


def test_fail_{n}(hemorrhage):
    hemorrhage.check(MODEL, noisy(1.0), PROBES)


def test_two_{n}(hemorrhage):
    hemorrhage.compare(MODEL, copy.deepcopy(MODEL), PROBES)
    hemorrhage.compare(MODEL, noisy(1e-4), PROBES)
"""


def test_workers_checks_are_merged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner_a=BODY.format(n="a"), test_inner_b=BODY.format(n="b"))
    # A subprocess: xdist starts worker interpreters, which must not share this process's state.
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--dist=loadfile",
        "--hemorrhage-report=report.json", "--junitxml=junit.xml",
    )
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines(["*2 workers*"])
    # Both workers ran checks (one file each), so the merge below really spans workers.
    assert sorted(p.name for p in pytester.path.glob("ran_on_*")) == ["ran_on_gw0", "ran_on_gw1"]

    expected = {
        ("test_inner_a.py::test_pass_a", "pass"), ("test_inner_a.py::test_fail_a", "fail"),
        ("test_inner_a.py::test_two_a", "pass"), ("test_inner_a.py::test_two_a[1]", "pass"),
        ("test_inner_b.py::test_pass_b", "pass"), ("test_inner_b.py::test_fail_b", "fail"),
        ("test_inner_b.py::test_two_b", "pass"), ("test_inner_b.py::test_two_b[1]", "pass"),
    }

    # Terminal summary: one section on the controller, listing the checks of both workers.
    out = result.stdout.str()
    assert out.count("= hemorrhage checks =") == 1
    section = out.split("= hemorrhage checks =")[1].split("short test summary info")[0]
    listed = {(line.split()[1], line.split()[0].lower()) for line in section.splitlines() if "test_inner_" in line}
    assert listed == expected

    # JSON report: written once by the controller, with every worker's checks.
    data = json.loads((pytester.path / "report.json").read_text())
    assert data["schema_version"] == 1
    assert {(c["report"]["name"], c["report"]["verdict"]) for c in data["checks"]} == expected
    assert len(data["checks"]) == 8

    # JUnit XML: the properties travel back from the workers with the test reports.
    root = ET.parse(pytester.path / "junit.xml").getroot()
    verdicts = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in root.iter("testcase")
    }
    assert verdicts["test_pass_a"]["hemorrhage_verdict"] == "pass"
    assert verdicts["test_fail_b"]["hemorrhage_verdict"] == "fail"
    assert verdicts["test_two_b"]["hemorrhage[1]_verdict"] == "pass"
    assert "hemorrhage_output_sqnr_db" in verdicts["test_fail_a"]


FUZZ_BODY = BODY.split("def test_pass_")[0] + """
from hypothesis import given, settings, strategies as st


@settings(max_examples=3, database=None, deadline=None)
@given(k=st.integers(0, 2))
def test_fuzz_{n}(hemorrhage_fuzz, k):
    hemorrhage_fuzz.check(MODEL, noisy(k * 1e-4), PROBES)
"""


def test_hemorrhage_fuzz_checks_are_merged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner_a=FUZZ_BODY.format(n="a"), test_inner_b=FUZZ_BODY.format(n="b"))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--dist=loadfile",
        "--hemorrhage-report=report.json", "--junitxml=junit.xml",
    )
    result.assert_outcomes(passed=2)
    # One check per fuzzed test, from each worker, in the controller's report and JUnit.
    checks = json.loads((pytester.path / "report.json").read_text())["checks"]
    assert sorted(c["nodeid"] for c in checks) == ["test_inner_a.py::test_fuzz_a", "test_inner_b.py::test_fuzz_b"]
    examples = {}
    for check in checks:
        found = re.search(r"\[last pass of (\d+) examples?\]$", check["report"]["name"])
        assert check["report"]["verdict"] == "pass" and found, check["report"]["name"]
        examples[check["nodeid"].split("::")[1]] = found.group(1)
    root = ET.parse(pytester.path / "junit.xml").getroot()
    for case in root.iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props["hemorrhage_verdict"] == "pass", props
        assert props["hemorrhage_fuzz_examples"] == examples[case.get("name")], props
