"""pytest hooks only: options, ini keys, the marker and the fixtures; each hook delegates.

The run's settings, checks and reports live in :mod:`pytest_hemorrhage.session`. Nothing here
imports torch at import time, so ``pytest --help`` stays fast; the comparison engine is imported
when a check actually runs.
"""

from __future__ import annotations

import inspect
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Generator, Iterator

import pytest

from .errors import HemorrhageDetected, InvalidArgument
from .memory import release_freed_memory
from .progress import OnProgress, ProgressLines
from .session import PER_WORKER, HemorrhageSession, Settings, accept_advice, shows_progress
from .thresholds import MARKER, Thresholds, option_name, with_suggestion

SESSION_KEY = pytest.StashKey[HemorrhageSession]()
CURRENT_ITEM_KEY = pytest.StashKey[pytest.Item]()
FUZZ_KEY = pytest.StashKey["HemorrhageFuzzFixture"]()
PROGRESS_KEY = pytest.StashKey["OnProgress | None"]()
TERMINAL_PROGRESS_KEY = pytest.StashKey["_TerminalProgress"]()
RAN_CHECKS_KEY = pytest.StashKey[bool]()

MARKER_DOC = (
    "hemorrhage(**thresholds): thresholds for the `hemorrhage` fixture's checks in this test, e.g. "
    "@pytest.mark.hemorrhage(max_kl=0.02, min_top1_agreement=0.95). Keys: "
    + ", ".join(Thresholds.keys())
)


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
        group.addoption(option_name(key), dest=f"hemorrhage_{key}", default=None, metavar="VALUE",
                        help=f"default {key} for every check (the marker overrides it)")
        parser.addini(f"hemorrhage_{key}", help=f"default {key} for every hemorrhage check", default=None)
    parser.addini("hemorrhage_suggest", type="bool", default=True,
                  help="on a failing check, try mitigations on copies and show the best verified one (default true)")
    group.addoption("--hemorrhage-model", dest="hemorrhage_model", metavar="PATH", default=None,
                    help="Hugging Face model folder (save_pretrained) that hemorrhage_default_model loads instead of "
                         "the embedded SmolLM2 (relative to rootdir)")
    parser.addini("hemorrhage_model", default=None,
                  help="Hugging Face model folder that hemorrhage_default_model loads (relative to rootdir)")
    group.addoption("--hemorrhage-progress", dest="hemorrhage_progress", action="store_const", const="on",
                    default=None, help="show each check's progress, elapsed time and mitigations as it runs "
                                       "(default: only when the output is a terminal)")
    group.addoption("--hemorrhage-no-progress", dest="hemorrhage_progress", action="store_const", const="off",
                    help="show no progress lines, even on a terminal")
    parser.addini("hemorrhage_progress", default="auto",
                  help="progress lines while checks run: auto (only on a terminal, the default), on, or off")
    parser.addini("hemorrhage_snapshot_dir", help="folder of baseline snapshots (relative to rootdir)",
                  default="hemorrhage_snapshots")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: pin each worker to one GPU before it starts (it must not have touched CUDA yet)."""
    config = node.config
    if config.getoption("hemorrhage_device") != PER_WORKER:
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
    try:  # settled once, so a bad value is a usage error at startup
        _refuse_unknown_ini_keys(config)
        settings = Settings.resolve(**_raw_settings(config))
    except InvalidArgument as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[SESSION_KEY] = HemorrhageSession(settings)


INI_KEYS = (*(f"hemorrhage_{key}" for key in Thresholds.keys()),
            "hemorrhage_suggest", "hemorrhage_model", "hemorrhage_progress", "hemorrhage_snapshot_dir")


def _refuse_unknown_ini_keys(config: pytest.Config) -> None:
    """A misspelt ``hemorrhage_*`` ini key would leave a threshold at its default: refuse it, with the
    nearest known key (pytest itself only warns about unknown keys)."""
    # pytest has no public list of the keys a file sets (config.inicfg is deprecated); this is the one
    # its own "unknown config option" warning uses. tests/plugin/test_ini.py fails if it goes away.
    unknown_keys = getattr(config, "_get_unknown_ini_keys", lambda: set())()
    unknown = sorted(key for key in unknown_keys if key.startswith("hemorrhage_"))
    if unknown:
        inipath = getattr(config, "inipath", None)
        where = inipath.name if inipath else "the ini file"
        raise InvalidArgument(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
            + ", ".join(with_suggestion(key, INI_KEYS) for key in unknown)
            + f"; the hemorrhage keys are {', '.join(INI_KEYS)}"
        )


def _raw_settings(config: pytest.Config) -> dict[str, Any]:
    """The ini values and options that were set, as written (Settings.resolve parses them)."""
    inipath = getattr(config, "inipath", None)
    ini = {key: config.getini(f"hemorrhage_{key}") for key in Thresholds.keys()}
    cli = {key: config.getoption(f"hemorrhage_{key}") for key in Thresholds.keys()}
    return {
        "ini_thresholds": {k: v for k, v in ini.items() if v not in (None, "", [])},
        "cli_thresholds": {k: v for k, v in cli.items() if v is not None},
        "ini_file": inipath.name if inipath else "the ini file",
        "device": config.getoption("hemorrhage_device"),
        "batch_size": config.getoption("hemorrhage_batch_size"),
        "sequential": config.getoption("hemorrhage_sequential"),
        "ini_suggest": config.getini("hemorrhage_suggest"),
        "no_suggest": config.getoption("hemorrhage_no_suggest"),
        "update": config.getoption("hemorrhage_update"),
        "report_path": config.getoption("hemorrhage_report"),
        "snapshot_dir": config.getini("hemorrhage_snapshot_dir"),
        "cli_model": config.getoption("hemorrhage_model"),
        "ini_model": config.getini("hemorrhage_model"),
        "rootdir": str(config.rootpath),
        "cli_progress": config.getoption("hemorrhage_progress"),
        "ini_progress": config.getini("hemorrhage_progress"),
    }


def _session(config: pytest.Config) -> HemorrhageSession:
    return config.stash[SESSION_KEY]


class _TerminalProgress:
    """Progress lines on pytest's own terminal, past output capturing (``-s`` or not).

    Like pytest's live logging, capturing is suspended for each write. The result line pytest is
    filling is ended before the first progress line; the last progress line is left open, and
    :meth:`finish` ends it and, in pytest's short (non-verbose) mode, starts the result line again
    with the file name, so the test's ``.`` or ``F`` lands where pytest's output expects it.
    """

    def __init__(self, terminal: Any, capture: Any) -> None:
        self._terminal = terminal
        self._capture = capture
        self._open: str | None = None  # the line left open: "update" (rewritten in place), "line", or None

    @contextlib.contextmanager
    def _uncaptured(self) -> Iterator[None]:
        if self._capture is None:
            yield
        else:
            with self._capture.global_and_fixture_disabled():
                yield

    def update(self, text: str) -> None:
        """Rewrite the in-place line (a live terminal only)."""
        with self._uncaptured():
            if self._open == "line":
                self._terminal.write("\n")
            elif self._open is None:
                self._terminal.ensure_newline()
            self._terminal.rewrite(text, erase=True)
            self._terminal.flush()
            self._open = "update"

    def line(self, text: str) -> None:
        """Write a lasting line (over the in-place line, when one is open)."""
        with self._uncaptured():
            if self._open == "update":
                self._terminal.rewrite(text, erase=True)
            elif self._open == "line":
                self._terminal.write("\n" + text)
            else:
                self._terminal.ensure_newline()
                self._terminal.write(text)
            self._terminal.flush()
            self._open = "line"

    def finish(self, nodeid: str, verbose: bool) -> None:
        """End the open progress line before pytest reports test ``nodeid``'s result."""
        if self._open is None:
            return
        with self._uncaptured():
            if verbose:  # pytest writes the test's name again before its result
                self._terminal.write("\n")
            else:
                self._terminal.write_fspath_result(nodeid, "")
        self._open = None


def _on_progress(config: pytest.Config) -> OnProgress | None:
    """Where this run's checks report progress: pytest's terminal, or nowhere (see ``hemorrhage_progress``)."""
    if PROGRESS_KEY not in config.stash:
        terminal = config.pluginmanager.get_plugin("terminalreporter")
        on_terminal = terminal is not None and bool(terminal.isatty)
        # An xdist worker's output is no terminal and reaches nobody: its checks show none.
        if terminal is None or getattr(config, "workerinput", None) is not None or \
                not shows_progress(_session(config).settings.progress, on_terminal):
            config.stash[PROGRESS_KEY] = None
        else:
            out = _TerminalProgress(terminal, config.pluginmanager.get_plugin("capturemanager"))
            config.stash[TERMINAL_PROGRESS_KEY] = out
            config.stash[PROGRESS_KEY] = ProgressLines(out.line, out.update if on_terminal else None)
    return config.stash[PROGRESS_KEY]




def _item_thresholds(item: pytest.Item) -> Thresholds:
    """Thresholds for ``item``: marker > command line > ini > defaults."""
    markers = list(item.iter_markers("hemorrhage"))  # the closest first
    for marker in markers:
        if marker.args:
            raise InvalidArgument(f"{MARKER} takes keyword arguments only (e.g. max_kl=0.02), got positional "
                                  f"{marker.args!r}")
    return _session(item.config).settings.thresholds_for([marker.kwargs for marker in reversed(markers)])


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("hemorrhage") is None:
        return
    try:
        _item_thresholds(item)
    except InvalidArgument as exc:
        problem = f"{item.nodeid}: {exc}"
    else:
        return
    # Failed outside the except block: pytest would otherwise print the message twice, the second
    # time after "During handling of the above exception, another exception occurred".
    pytest.fail(problem, pytrace=False)


class HemorrhageFixture:
    """The ``hemorrhage`` fixture: run checks with this test's thresholds and record them."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._item = request.node
        self._session = _session(request.config)
        self.reports: list[Any] = []

    @property
    def thresholds(self) -> Thresholds:
        """This test's thresholds (marker > command line > ini > defaults)."""
        return _item_thresholds(self._item)

    def compare(self, baseline: Any, candidate: Any, probes: Any = None, **kwargs: Any):
        """Compare and record the report without raising; returns the Report."""
        from .engine import compare

        report = compare(baseline, candidate, probes, **self._arguments(kwargs))
        self._record(report)
        return report

    def check(self, baseline: Any, candidate: Any, probes: Any = None, **kwargs: Any):
        """Compare; raise :class:`HemorrhageDetected` with the full report unless it passes.

        A failure is explained (the vulnerability pattern and, unless ``suggest=False`` or
        ``--hemorrhage-no-suggest``, the best mitigation tried on copies) before it is raised.
        """
        __tracebackhide__ = True
        from .check import run_check
        from .snapshot import Snapshot
        from .sources.pairing import opened

        suggest = kwargs.pop("suggest", None)
        suggest = self._session.settings.suggest if suggest is None else bool(suggest)
        baseline = opened(baseline, "baseline")  # a snapshot file's path is a snapshot, for the advice
        report = run_check(baseline, candidate, probes, suggest=suggest, **self._arguments(kwargs))
        self._record(report)
        if not report.passed:
            snapshot = isinstance(baseline, Snapshot)
            # pytest keeps the last failure's traceback, and with it this frame: not the models as well
            # (the candidate is often a copy made for this call only).
            del baseline, candidate, probes, kwargs
            raise HemorrhageDetected(report.to_text(accept_advice(report, snapshot)), report)
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

        settings = self._session.settings
        root = Path(self._item.config.rootpath) / settings.snapshot_dir
        path = snapshot_path(root, name or self._item.nodeid)
        update = settings.update
        tokenizer = tokenizer if tokenizer is not None else (tokenizer_for(baseline) if baseline is not None else None)
        if update or not path.exists():
            if baseline is None:
                raise SnapshotError(
                    f"no snapshot at {path} and no baseline model to record it from; pass the baseline "
                    "model to hemorrhage.snapshot(baseline, probes) once to record it"
                )
            snap = record_snapshot(baseline, probes, path, tokenizer=tokenizer, **record_kwargs)
            self._session.record_snapshot(str(path))
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

    def _arguments(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """compare() keywords: the run's defaults, the test's thresholds, a name in the session."""
        arguments = {**self._session.settings.compare_defaults(), **kwargs}
        overrides = {k: arguments.pop(k) for k in list(arguments)
                     if k in Thresholds.keys() or k.startswith(("max_", "min_"))}
        arguments["thresholds"] = self.thresholds.merged(overrides, source="hemorrhage.check() keyword arguments")
        arguments["name"] = arguments.pop("name", None) or self._default_name()
        on_progress = _on_progress(self._item.config)
        if on_progress is not None:
            arguments.setdefault("on_progress", on_progress)
        return arguments

    def _default_name(self) -> str:
        """The test id, numbered from the second check of the test on."""
        return self._item.nodeid + (f"[{len(self.reports)}]" if self.reports else "")

    def _record(self, report: Any) -> None:
        self._item.stash[RAN_CHECKS_KEY] = True
        self.reports.append(report)
        self._item.user_properties.extend(self._session.record(self._item.nodeid, report, len(self.reports) - 1))


@pytest.fixture
def hemorrhage(request: pytest.FixtureRequest) -> HemorrhageFixture:
    """Run hemorrhage checks: ``hemorrhage.check(baseline, candidate, probes=None)``."""
    _refuse_in_given(request)
    return HemorrhageFixture(request)


def _refuse_in_given(request: pytest.FixtureRequest) -> None:
    """Name ``hemorrhage_fuzz`` where Hypothesis would stop a ``@given`` test that takes this
    function-scoped fixture (its ``function_scoped_fixture`` health check), without a word about it."""
    hypothesis = sys.modules.get("hypothesis")  # not imported: no @given test in this run
    function = getattr(request, "function", None)
    if hypothesis is None or function is None or not hypothesis.is_hypothesis_test(function):
        return
    if "hemorrhage" not in inspect.signature(function).parameters:
        return  # taken through another fixture: Hypothesis checks only the test's own arguments
    settings = getattr(function, "_hypothesis_internal_use_settings", None)  # where Hypothesis' plugin reads them
    if settings is not None and hypothesis.HealthCheck.function_scoped_fixture in settings.suppress_health_check:
        return
    pytest.fail(
        f"{request.node.nodeid}: the hemorrhage fixture is function-scoped, and Hypothesis stops a @given test "
        "that takes one (FailedHealthCheck, function_scoped_fixture); take the hemorrhage_fuzz fixture instead: "
        "the same checks and thresholds, made for @given (see docs/fuzzing.md)",
        pytrace=False,
    )


class HemorrhageFuzzFixture(HemorrhageFixture):
    """The ``hemorrhage_fuzz`` fixture: the checks of ``hemorrhage``, safe inside ``@given``.

    One object serves the whole session (Hypothesis' ``function_scoped_fixture`` health check does
    not apply); each call uses the test that is running: its marker's thresholds, its id. ``check``
    fails only on a *decided* hemorrhage and rejects an inconclusive example, so shrinking
    converges on real breaks (:mod:`pytest_hemorrhage.fuzzing`). A test's examples stand in the
    session summary, the report file and JUnit as one check: for a failed test the falsifying
    example's, for a passing one its last hemorrhage found or else its last pass
    (:func:`pytest_hemorrhage.fuzzing.representative`).
    """

    def __init__(self, config: pytest.Config) -> None:  # no per-test state: see _item and reports
        self._config = config
        self._session = _session(config)
        self._pending: dict[str, list[Any]] = {}  # test id -> its checks, until the test ends

    @property
    def _item(self) -> pytest.Item:  # type: ignore[override]
        item = self._config.stash.get(CURRENT_ITEM_KEY, None)
        if item is None:
            raise InvalidArgument(
                "hemorrhage_fuzz checks belong to a test, and no test is running (a call from a hook, "
                "at collection or after the session?); call it from a test function or a fixture"
            )
        return item

    @property
    def reports(self) -> list[Any]:  # type: ignore[override]
        """The checks of the running test so far, every example's."""
        return self._pending.setdefault(self._item.nodeid, [])

    def __repr__(self) -> str:  # Hypothesis prints it in every falsifying example
        return "<hemorrhage_fuzz fixture>"

    def check(self, baseline: Any, candidate: Any, probes: Any = None, **kwargs: Any):
        """Compare; raise :class:`HemorrhageDetected` on a decided hemorrhage; reject an inconclusive
        example inside a Hypothesis test (outside one it fails, as ``hemorrhage.check`` does).

        The diagnosis and, unless ``suggest=False`` or ``--hemorrhage-no-suggest``, the mitigations
        tried on copies are added to the falsifying example Hypothesis replays last only.
        """
        __tracebackhide__ = True
        from .fuzzing import raise_if_hemorrhage
        from .snapshot import Snapshot
        from .sources.pairing import opened

        suggest = kwargs.pop("suggest", None)
        suggest = self._session.settings.suggest if suggest is None else bool(suggest)
        baseline = opened(baseline, "baseline")
        report = self.compare(baseline, candidate, probes, **kwargs)
        return raise_if_hemorrhage(report, baseline, candidate, probes, suggest=suggest,
                                   advice=accept_advice(report, isinstance(baseline, Snapshot)),
                                   rerun={**self._session.settings.compare_defaults(), **kwargs})

    def hemorrhages(self, baseline: Any, candidate: Any, probes: Any = None, **kwargs: Any) -> bool:
        """Compare and say whether it is a decided hemorrhage (never raises on the verdict): the
        condition for ``hypothesis.find``. An inconclusive comparison is not one."""
        from .fuzzing import hemorrhages

        return hemorrhages(self.compare(baseline, candidate, probes, **kwargs))

    def record(self, report: Any) -> Any:
        """Count ``report``, computed earlier, as the running test's latest check (for a cache of
        verdicts: the check that stands for the test is chosen from the ones recorded)."""
        self._record(report)
        return report

    def _default_name(self) -> str:
        return self._item.nodeid

    def _record(self, report: Any) -> None:
        self.reports.append(report)

    def finish(self, item: pytest.Item, test_failed: bool) -> None:
        """Record the check that stands for ``item``'s examples in the session (summary, report
        file) and on the item (JUnit properties)."""
        from dataclasses import replace

        from .fuzzing import representative

        reports = self._pending.pop(item.nodeid, [])
        if not reports:
            return
        chosen, why = representative(reports, test_failed)
        chosen = replace(chosen, name=f"{chosen.name} [{why}]", notes=[*chosen.notes, f"fuzzing: {why}"])
        index = sum(check["nodeid"] == item.nodeid for check in self._session.checks)
        item.user_properties.extend(self._session.record(item.nodeid, chosen, index))
        item.user_properties.append(("hemorrhage_fuzz_examples", str(len(reports))))


@pytest.fixture(scope="session")
def hemorrhage_fuzz(pytestconfig: pytest.Config) -> HemorrhageFuzzFixture:
    """Hemorrhage checks inside ``@given`` tests: ``hemorrhage_fuzz.check(baseline, candidate)``
    fails on a decided hemorrhage and rejects an inconclusive example; thresholds and records
    follow the running test."""
    fuzz = HemorrhageFuzzFixture(pytestconfig)
    pytestconfig.stash[FUZZ_KEY] = fuzz
    return fuzz


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
    """Tell ``hemorrhage_fuzz`` (one object for the session) which test is running; after a test that
    ran checks (its fixtures torn down, its arguments let go), give their memory back."""
    item.config.stash[CURRENT_ITEM_KEY] = item
    try:
        result = yield
    finally:
        del item.config.stash[CURRENT_ITEM_KEY]
    if item.stash.get(RAN_CHECKS_KEY, False):
        release_freed_memory()
    return result


@pytest.fixture(scope="session")
def hemorrhage_device(pytestconfig: pytest.Config) -> str | None:
    """Where this process runs checks (``--hemorrhage-device``; ``"cuda"`` for this worker's GPU under
    ``per-worker``), or None: put session models there once instead of moving them for every check."""
    return _session(pytestconfig).settings.device


@pytest.fixture(scope="session")
def hemorrhage_default_model(pytestconfig: pytest.Config):
    """``(model, tokenizer)``, loaded once per session: the folder named by ``hemorrhage_model``
    (ini) or ``--hemorrhage-model``, or else the embedded default model (SmolLM2-135M).

    Modify a copy, never this object: other tests share it.
    """
    path = _session(pytestconfig).settings.model_path
    if path is not None:
        from .model_folder import load_model

        return load_model(path)
    from .models import default_model

    return default_model()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Give the test's outcome to its checks (a failing check inside an xfail or a passing test was expected),
    and end the progress line before pytest writes the result; first, hemorrhage_fuzz records the check
    that stands for the test's examples."""
    if call.when == "call":  # before the report exists: it copies the item's user_properties
        fuzz = item.config.stash.get(FUZZ_KEY, None)
        if fuzz is not None:
            fuzz.finish(item, test_failed=call.excinfo is not None)
    report = yield
    out = item.config.stash.get(TERMINAL_PROGRESS_KEY, None)
    if out is not None:  # pytest writes the result next: end a progress line the test left open
        out.finish(item.nodeid, item.config.getoption("verbose") > 0)
    if report.when == "call":
        if hasattr(report, "wasxfail"):  # a strict XPASS has none: it is a plain failure
            outcome = "xfailed" if report.skipped else "xpassed"
        else:
            outcome = report.outcome
        _session(item.config).record_test_outcome(item.nodeid, outcome)
    return report


# ---------------------------------------------------------------------- xdist and the end of the run
@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    _session(node.config).merge_worker(getattr(node, "workeroutput", {}))


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the checks to the controller
        workeroutput.update(_session(session.config).worker_output())
    else:
        _session(session.config).write_report()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if getattr(config, "workeroutput", None) is None:
        _session(config).terminal_summary(terminalreporter)
