"""session.py without pytest: settings resolved once, checks merged across workers, reports written."""

from __future__ import annotations

import json

import pytest

from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.report import LayerResult, MetricResult, Report
from pytest_hemorrhage.session import HemorrhageSession, Settings, accept_advice
from pytest_hemorrhage.thresholds import Thresholds


def _settings(**raw) -> Settings:
    return Settings.resolve(ini_thresholds=raw.pop("ini", {}), cli_thresholds=raw.pop("cli", {}), **raw)


def _report(name: str, kl: float, limit: float = 0.02) -> Report:
    verdict = "pass" if kl <= limit else "fail"
    metric = MetricResult("kl", kl, kl * 0.9, kl * 1.1, threshold=limit, threshold_key="max_kl", direction="max",
                          verdict=verdict, n_units=4, n_tokens=40)
    layers = [LayerResult("block.0", 0, 30.0, 0.01, 0.99, 40), LayerResult("block.1", 1, 9.0, 0.3, 0.8, 40)]
    return Report(metrics={"kl": metric}, layers=layers, thresholds=Thresholds().to_dict(), name=name)


def test_settings_resolve_once_with_precedence_and_named_errors():
    s = _settings(ini={"max_kl": "0.3", "max_ppl_ratio": "1.5"}, cli={"max_kl": "0.1"}, ini_file="tox.ini",
                  device="per-worker", batch_size=4, ini_suggest=True, no_suggest=True)
    assert (s.thresholds.max_kl, s.thresholds.max_ppl_ratio) == (0.1, 1.5)
    assert s.device == "cuda" and not s.suggest
    assert s.compare_defaults() == {"device": "cuda", "batch_size": 4}
    assert _settings(sequential=True).compare_defaults() == {"device": None, "sequential": True}
    assert not _settings(ini_suggest=False).suggest and _settings().suggest
    # A test's markers go on top, the closest last.
    assert s.thresholds_for([{"max_kl": 0.5}, {"max_kl": 0.4}]).max_kl == 0.4
    with pytest.raises(InvalidArgument, match="^hemorrhage_max_kl in tox.ini: max_kl must be a number"):
        _settings(ini={"max_kl": "abc"}, ini_file="tox.ini")
    with pytest.raises(InvalidArgument, match="^command line option --hemorrhage-batch-size must be at least 1, got 0"):
        _settings(batch_size=0)


def test_pytest_advice_offers_the_update_option_only_with_a_snapshot():
    failing = _report("t", 0.5)
    assert accept_advice(failing, snapshot=False) == ["loosen the threshold in @pytest.mark.hemorrhage(max_kl=...)"]
    assert accept_advice(failing, snapshot=True)[1] == "rerun with --hemorrhage-update to re-record the snapshot"


def test_worker_checks_merge_and_the_reports_render_them(tmp_path):
    worker, controller = HemorrhageSession(_settings()), HemorrhageSession(_settings())
    props = worker.record("t.py::a", _report("t.py::a", 0.5), 0)
    assert ("hemorrhage_verdict", "fail") in props and ("hemorrhage_kl_ci_high", "0.55") in props
    worker.record_snapshot("snaps/a.safetensors")
    controller.record("t.py::b", _report("mild", 0.001), 0)
    controller.merge_worker(json.loads(json.dumps(worker.worker_output())))  # as xdist carries it
    assert [c["nodeid"] for c in controller.checks] == ["t.py::b", "t.py::a"]
    assert [label for label, _ in controller.labelled_reports()] == ["t.py::b (mild)", "t.py::a"]

    written = {}
    for suffix in ("json", "md", "html"):
        path = tmp_path / f"r.{suffix}"
        session = HemorrhageSession(Settings(Thresholds(), report_path=str(path)))
        session.checks = controller.checks
        assert session.write_report() == str(path)
        written[suffix] = path.read_text(encoding="utf-8")
    data = json.loads(written["json"])
    assert data["schema_version"] == 1 and [c["report"]["verdict"] for c in data["checks"]] == ["pass", "fail"]
    assert "### t.py::b (mild): ✅ pass" in written["md"] and "### t.py::a: ❌ fail" in written["md"]
    assert "First layer past threshold: `block.1`" in written["md"]
    assert written["html"].startswith("<!DOCTYPE html>") and "t.py::b (mild)" in written["html"]
    assert HemorrhageSession(_settings()).write_report() is None  # no --hemorrhage-report


class _Terminal:
    def __init__(self):
        self.out = []

    def write_sep(self, sep, title):
        self.out.append(f"== {title} ==")

    def write(self, text, **markup):
        self.out.append((text, markup))

    def write_line(self, line):
        self.out.append(line)


def test_terminal_summary_lists_snapshots_once_and_every_check():
    session = HemorrhageSession(_settings())
    session.record("t.py::a", _report("t.py::a", 0.5), 0)
    session.snapshots = ["s/a.safetensors", "s/a.safetensors"]  # two workers recorded the same file
    tr = _Terminal()
    session.terminal_summary(tr)
    assert tr.out == ["== hemorrhage snapshots recorded ==", "s/a.safetensors", "== hemorrhage checks ==",
                      ("FAIL         ", {"red": True}), "t.py::a  KL 0.5, first bad layer block.1"]
    quiet = _Terminal()
    HemorrhageSession(_settings()).terminal_summary(quiet)
    assert quiet.out == []


def test_test_outcomes_survive_the_worker_merge_and_mark_expected_failures():
    worker, controller = HemorrhageSession(_settings()), HemorrhageSession(_settings())
    worker.record("t.py::xf", _report("t.py::xf", 0.5), 0)
    worker.record_test_outcome("t.py::xf", "xfailed")
    worker.record_test_outcome("t.py::other", "failed")  # a test without checks changes nothing
    controller.record("t.py::bad", _report("t.py::bad", 0.5), 0)
    controller.record_test_outcome("t.py::bad", "failed")
    controller.merge_worker(json.loads(json.dumps(worker.worker_output())))  # as xdist carries it
    assert [c["test_outcome"] for c in controller.checks] == ["failed", "xfailed"]
    assert [label for label, _ in controller.labelled_reports()] == ["t.py::bad", "t.py::xf (xfail, expected)"]
    tr = _Terminal()
    controller.terminal_summary(tr)
    assert tr.out[1:] == [("FAIL         ", {"red": True}), "t.py::bad  KL 0.5, first bad layer block.1",
                          ("FAIL (xfail, expected) ", {"yellow": True}), "t.py::xf  KL 0.5, first bad layer block.1",
                          "2 checks failed: 1 as expected, 1 unexpectedly"]
