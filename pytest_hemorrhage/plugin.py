"""pytest hooks only: options, ini keys, the marker, fixtures, terminal summary, JUnit properties.

Nothing here imports torch at import time, so ``pytest --help`` stays fast; the comparison
engine is imported when a check actually runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from .errors import HemorrhageDetected, InvalidArgument
from .thresholds import Thresholds

CHECKS_KEY = pytest.StashKey[list]()
SNAPSHOTS_KEY = pytest.StashKey[list]()

MARKER_DOC = (
    "hemorrhage(**thresholds): thresholds for the `hemorrhage` fixture's checks in this test, e.g. "
    "@pytest.mark.hemorrhage(max_kl=0.02, min_top1_agreement=0.95). Keys: "
    + ", ".join(Thresholds.keys())
)


def _option_name(key: str) -> str:
    return "--hemorrhage-" + key.replace("_", "-")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hemorrhage", "model hemorrhage checks (pytest-hemorrhage)")
    group.addoption("--hemorrhage-report", dest="hemorrhage_report", metavar="PATH", default=None,
                    help="write every check of the session to PATH as JSON (Markdown if PATH ends in .md, a "
                         "self-contained HTML page with plots if it ends in .html)")
    group.addoption("--hemorrhage-device", dest="hemorrhage_device", metavar="DEVICE", default=None,
                    help="run checks on this torch device (e.g. cpu, cuda, cuda:1); 'per-worker' gives each "
                         "pytest-xdist worker its own GPU (CUDA_VISIBLE_DEVICES); default: where the models are")
    group.addoption("--hemorrhage-gpus", dest="hemorrhage_gpus", type=int, default=None, metavar="N",
                    help="with --hemorrhage-device=per-worker: spread workers over N GPUs (default: all visible)")
    group.addoption("--hemorrhage-batch-size", dest="hemorrhage_batch_size", type=int, default=None,
                    metavar="N", help="probes per forward pass (default 8)")
    group.addoption("--hemorrhage-sequential", dest="hemorrhage_sequential", action="store_true", default=False,
                    help="stop each check as soon as a confidence sequence decides it (probes in random order)")
    group.addoption("--hemorrhage-no-suggest", dest="hemorrhage_no_suggest", action="store_true", default=False,
                    help="on a failing check, do not try mitigations on copies (faster failures)")
    group.addoption("--hemorrhage-update", dest="hemorrhage_update", action="store_true", default=False,
                    help="re-record baseline snapshots instead of comparing against them")
    for key in Thresholds.keys():
        group.addoption(_option_name(key), dest=f"hemorrhage_{key}", default=None, metavar="VALUE",
                        help=f"default {key} for every check (the marker overrides it)")
        parser.addini(f"hemorrhage_{key}", help=f"default {key} for every hemorrhage check", default=None)
    parser.addini("hemorrhage_suggest", type="bool", default=True,
                  help="on a failing check, try mitigations on copies and show the best verified one (default true)")
    parser.addini("hemorrhage_snapshot_dir", help="folder of baseline snapshots (relative to rootdir)",
                  default="hemorrhage_snapshots")


PER_WORKER = "per-worker"


def device_option(config: pytest.Config) -> str | None:
    """The device checks run on in this process (``per-worker`` means this worker's one visible GPU)."""
    device = config.getoption("hemorrhage_device", default=None)
    return "cuda" if device == PER_WORKER else device


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: pin each worker to one GPU before it starts (it must not have touched CUDA yet)."""
    config = node.config
    if config.getoption("hemorrhage_device", default=None) != PER_WORKER:
        return
    count = config.getoption("hemorrhage_gpus")
    if count is None:
        import torch

        count = torch.cuda.device_count()
    if count < 1:
        raise pytest.UsageError(
            "--hemorrhage-device=per-worker found no CUDA device; run on a GPU machine, pass --hemorrhage-gpus=N, "
            "or choose --hemorrhage-device=cpu"
        )
    index = int("".join(ch for ch in node.gateway.id if ch.isdigit()) or 0)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    choices = visible.split(",") if visible else [str(i) for i in range(count)]
    node.workerinput["hemorrhage_cuda_visible"] = choices[index % min(count, len(choices))]


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "hemorrhage_cuda_visible" in workerinput:
        os.environ["CUDA_VISIBLE_DEVICES"] = workerinput["hemorrhage_cuda_visible"]
    config.addinivalue_line("markers", MARKER_DOC)
    config.stash[CHECKS_KEY] = []
    config.stash[SNAPSHOTS_KEY] = []
    # Settle ini / command-line thresholds once, so a bad value is a usage error at startup.
    _session_thresholds(config)
    batch = config.getoption("hemorrhage_batch_size", default=None)
    if batch is not None and batch < 1:
        raise pytest.UsageError(f"--hemorrhage-batch-size must be at least 1, got {batch}")


def _session_thresholds(config: pytest.Config) -> Thresholds:
    """Defaults, then the ini file, then the command line; errors name the exact ini key or option."""
    inipath = getattr(config, "inipath", None)
    ini_file = inipath.name if inipath else "the ini file"
    result = Thresholds()
    try:
        for key in Thresholds.keys():
            value = config.getini(f"hemorrhage_{key}")
            if value not in (None, "", []):
                result = result.merged({key: value}, source=f"hemorrhage_{key} in {ini_file}")
        for key in Thresholds.keys():
            opt = config.getoption(f"hemorrhage_{key}", default=None)
            if opt is not None:
                result = result.merged({key: opt}, source=f"command line option {_option_name(key)}")
    except InvalidArgument as exc:
        raise pytest.UsageError(str(exc)) from None
    return result


def _marker_kwargs(item: pytest.Item) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    # Closest marker wins: iter_markers yields the function's own markers first.
    for marker in reversed(list(item.iter_markers("hemorrhage"))):
        if marker.args:
            raise InvalidArgument(
                f"@pytest.mark.hemorrhage takes keyword arguments only (e.g. max_kl=0.02), got "
                f"positional {marker.args!r}"
            )
        # Each marker on its own: a bad class-level value must not hide behind a closer marker's key.
        Thresholds().merged(marker.kwargs, source="@pytest.mark.hemorrhage")
        merged.update(marker.kwargs)
    return merged


def resolve_item_thresholds(item: pytest.Item) -> Thresholds:
    """Thresholds for ``item``: marker > command line > ini > defaults."""
    base = _session_thresholds(item.config)
    return base.merged(_marker_kwargs(item), source="@pytest.mark.hemorrhage")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("hemorrhage") is None:
        return
    try:
        resolve_item_thresholds(item)
    except InvalidArgument as exc:
        pytest.fail(f"{item.nodeid}: {exc}", pytrace=False)


class HemorrhageFixture:
    """The ``hemorrhage`` fixture: run checks with this test's thresholds and record them."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self._item = request.node
        self.reports: list[Any] = []

    @property
    def thresholds(self) -> Thresholds:
        """This test's thresholds (marker > command line > ini > defaults)."""
        return resolve_item_thresholds(self._item)

    def compare(self, baseline: Any, candidate: Any, probes: Any = None, **kwargs: Any):
        """Compare and record the report without raising; returns the Report."""
        from .engine import compare

        config = self._item.config
        kwargs.setdefault("device", device_option(config))
        if config.getoption("hemorrhage_sequential"):
            kwargs.setdefault("sequential", True)
        batch = config.getoption("hemorrhage_batch_size")
        if batch is not None:
            kwargs.setdefault("batch_size", batch)
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in Thresholds.keys() or k.startswith(("max_", "min_"))}
        thresholds = self.thresholds.merged(overrides, source="hemorrhage.check() keyword arguments")
        name = kwargs.pop("name", None) or self._item.nodeid + (f"[{len(self.reports)}]" if self.reports else "")
        report = compare(baseline, candidate, probes, thresholds=thresholds, name=name, **kwargs)
        self._record(report)
        return report

    def check(self, baseline: Any, candidate: Any, probes: Any = None, **kwargs: Any):
        """Compare; raise :class:`HemorrhageDetected` with the full report unless it passes."""
        __tracebackhide__ = True
        config = self._item.config
        suggest = kwargs.pop("suggest", None)
        if suggest is None:
            suggest = config.getini("hemorrhage_suggest") and not config.getoption("hemorrhage_no_suggest")
        report = self.compare(baseline, candidate, probes, **kwargs)
        if not report.passed:
            from .check import explain

            rerun = {k: kwargs[k] for k in ("layers",) if k in kwargs}
            rerun["device"] = device_option(config)
            if config.getoption("hemorrhage_batch_size") is not None:
                rerun["batch_size"] = config.getoption("hemorrhage_batch_size")
            explain(report, baseline, candidate, probes, suggest=bool(suggest), **rerun)
            self._refresh(report)
            raise HemorrhageDetected(report.to_text(), report)
        return report

    def snapshot(self, baseline: Any = None, probes: Any = None, *, name: str | None = None,
                 tokenizer: Any = None, **record_kwargs: Any):
        """This test's baseline snapshot, from the ``hemorrhage_snapshot_dir`` folder.

        Missing: recorded from ``baseline`` and the test fails saying so (commit the file).
        ``--hemorrhage-update``: re-recorded. Present: loaded and, when ``baseline`` / ``probes`` /
        ``tokenizer`` are given, checked against them (a mismatch names what differs).
        """
        __tracebackhide__ = True
        from .errors import SnapshotError
        from .probes import as_probes, tokenizer_for
        from .snapshot import load_snapshot, record_snapshot, snapshot_path

        config = self._item.config
        root = Path(config.rootpath) / config.getini("hemorrhage_snapshot_dir")
        path = snapshot_path(root, name or self._item.nodeid)
        update = config.getoption("hemorrhage_update")
        tokenizer = tokenizer if tokenizer is not None else (tokenizer_for(baseline) if baseline is not None else None)
        if update or not path.exists():
            if baseline is None:
                raise SnapshotError(
                    f"no snapshot at {path} and no baseline model to record it from; pass the baseline "
                    "model to hemorrhage.snapshot(baseline, probes) once to record it"
                )
            snap = record_snapshot(baseline, probes, path, tokenizer=tokenizer, **record_kwargs)
            config.stash[SNAPSHOTS_KEY].append(str(path))
            if not update:
                pytest.fail(
                    f"hemorrhage snapshot {path} did not exist: it was recorded from the baseline now. "
                    "Commit it and rerun to compare against it.",
                    pytrace=False,
                )
            return snap
        snap = load_snapshot(path, root=root)
        snap.check_identity(baseline, tokenizer, as_probes(probes) if probes is not None else None)
        return snap

    def _refresh(self, report: Any) -> None:
        """Re-serialise ``report`` in the session's list after the diagnosis was added to it."""
        for entry in reversed(self._item.config.stash[CHECKS_KEY]):
            if entry["nodeid"] == self._item.nodeid and entry["report"].get("name") == report.name:
                entry["report"] = json.loads(report.to_json())
                return

    def _record(self, report: Any) -> None:
        self.reports.append(report)
        self._item.config.stash[CHECKS_KEY].append(
            {"nodeid": self._item.nodeid, "report": json.loads(report.to_json())}
        )
        prefix = "hemorrhage" if len(self.reports) == 1 else f"hemorrhage[{len(self.reports) - 1}]"
        props = self._item.user_properties
        props.append((f"{prefix}_verdict", report.verdict))
        for metric in report.metrics.values():
            props.append((f"{prefix}_{metric.name}", f"{metric.estimate:.6g}"))
            if metric.verdict != "info":
                props.append((f"{prefix}_{metric.name}_ci_high" if metric.direction == "max"
                              else f"{prefix}_{metric.name}_ci_low",
                              f"{(metric.ci_high if metric.direction == 'max' else metric.ci_low):.6g}"))
        first = report.first_bad_layer
        if first is not None:
            props.append((f"{prefix}_first_bad_layer", first.name))


@pytest.fixture
def hemorrhage(request: pytest.FixtureRequest) -> HemorrhageFixture:
    """Run hemorrhage checks: ``hemorrhage.check(baseline, candidate, probes=None)``."""
    return HemorrhageFixture(request)


@pytest.fixture(scope="session")
def hemorrhage_device(pytestconfig: pytest.Config) -> str | None:
    """Where this process runs checks (``--hemorrhage-device``; ``"cuda"`` for this worker's GPU under
    ``per-worker``), or None: put session models there once instead of moving them for every check."""
    return device_option(pytestconfig)


@pytest.fixture(scope="session")
def hemorrhage_default_model():
    """The embedded default model and tokenizer (SmolLM2-135M), loaded once per session.

    Modify a copy, never this object: other tests share it.
    """
    from .models import default_model

    return default_model()


@pytest.fixture(scope="session")
def hemorrhage_default_probes(hemorrhage_default_model):
    """32 built-in probes of up to 128 tokens for the default model."""
    from .probes import Probes

    return Probes.builtin(hemorrhage_default_model[1], n=32, max_length=128)


# ---------------------------------------------------------------------- xdist
@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    recorded = getattr(node, "workeroutput", {}).get("hemorrhage_snapshots")
    if recorded:
        node.config.stash[SNAPSHOTS_KEY].extend(json.loads(recorded))
    checks = getattr(node, "workeroutput", {}).get("hemorrhage_checks")
    if checks:
        node.config.stash[CHECKS_KEY].extend(json.loads(checks))


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    checks = config.stash.get(CHECKS_KEY, [])
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the checks to the controller
        workeroutput["hemorrhage_checks"] = json.dumps(checks)
        workeroutput["hemorrhage_snapshots"] = json.dumps(config.stash.get(SNAPSHOTS_KEY, []))
        return
    path = config.getoption("hemorrhage_report")
    if path:
        from .files import atomic_write_text

        if path.endswith(".md"):
            text = "\n".join(_markdown_for(c) for c in checks) or "No hemorrhage checks ran.\n"
        elif path.lower().endswith((".html", ".htm")):
            from .html_report import render_html

            text = render_html(checks)
        else:
            text = json.dumps({"schema_version": 1, "checks": checks}, indent=2)
        atomic_write_text(path, text)


def _check_label(check: dict) -> str:
    """The test id, plus the check's own name when it has one (hemorrhage.check(..., name=...))."""
    name, nodeid = check["report"].get("name"), check["nodeid"]
    return name if name and name.startswith(nodeid) else (f"{nodeid} ({name})" if name else nodeid)


def _markdown_for(check: dict) -> str:
    rep = check["report"]
    lines = [f"### {_check_label(check)}: {rep['verdict']}", "", "| metric | estimate | CI | threshold | verdict |",
             "|---|---|---|---|---|"]
    for m in rep["metrics"]:
        lines.append(f"| {m['name']} | {m['estimate']} | {m['ci_low']} – {m['ci_high']} | "
                     f"{m['threshold'] if m['threshold'] is not None else '-'} | {m['verdict']} |")
    return "\n".join(lines) + "\n"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    checks = config.stash.get(CHECKS_KEY, [])
    recorded = config.stash.get(SNAPSHOTS_KEY, [])
    if getattr(config, "workeroutput", None) is not None:
        return
    tr = terminalreporter
    if recorded:
        tr.write_sep("=", "hemorrhage snapshots recorded")
        for path in dict.fromkeys(recorded):  # xdist workers may each record the same file
            tr.write_line(path)
    if not checks:
        return
    tr.write_sep("=", "hemorrhage checks")
    for check in checks:
        rep = check["report"]
        metrics = {m["name"]: m for m in rep["metrics"]}
        parts = []
        for name, label, fmt in (("kl", "KL", "{:.4g}"), ("top1", "top-1", "{:.2%}"),
                                 ("ppl_ratio", "PPL ratio", "{:.4f}"), ("output_sqnr_db", "SQNR dB", "{:.1f}"),
                                 ("label_agreement", "labels", "{:.2%}")):
            m = metrics.get(name)
            if m is not None and isinstance(m["estimate"], (int, float)):
                parts.append(f"{label} {fmt.format(m['estimate'])}")
        if rep.get("first_bad_layer"):
            parts.append(f"first bad layer {rep['first_bad_layer']}")
        verdict = rep["verdict"].upper()
        markup = {"PASS": {"green": True}, "FAIL": {"red": True}}.get(verdict, {"yellow": True})
        tr.write(f"{verdict:<13}", **markup)
        tr.write_line(f"{_check_label(check)}  " + ", ".join(parts))
