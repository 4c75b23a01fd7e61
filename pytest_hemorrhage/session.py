"""A pytest run's hemorrhage state: settings resolved once, the checks run, the snapshots recorded.

The plugin's hooks delegate here. A check is kept in its JSON form (``Report.to_dict()``), so the
checks of pytest-xdist workers travel to the controller unchanged and merge with its own; the
renderers get ``Report`` objects back through ``Report.from_dict``. Nothing here imports pytest or
torch: ``pytest --help`` and runs without checks stay fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

from .errors import InvalidArgument
from .files import atomic_write_text
from .model_folder import check_model_folder
from .render.html import render_html
from .render.junit import properties
from .render.markdown import render_checks_markdown
from .render.terminal import summary_line
from .render.text import check_label, expected_failure_note, thresholds_to_loosen
from .report import SCHEMA_VERSION, Report
from .thresholds import Thresholds

__all__ = ["PER_WORKER", "PROGRESS_MODES", "Settings", "HemorrhageSession", "accept_advice", "shows_progress"]

PER_WORKER = "per-worker"
"""``--hemorrhage-device`` value that gives each pytest-xdist worker its own GPU."""


def _model_path(cli_model: str | None, ini_model: str | None, ini_file: str, rootdir: str) -> str | None:
    """The model folder chosen by ``--hemorrhage-model`` or the ``hemorrhage_model`` ini key (relative to
    rootdir), checked now so that a bad path is an error at startup that names where it was set."""
    chosen, where = (cli_model, "command line option --hemorrhage-model") if cli_model else \
        (ini_model, f"hemorrhage_model in {ini_file}")
    if not chosen:
        return None
    path = Path(rootdir) / chosen  # an absolute path stays as it is
    check_model_folder(path, where)
    return str(path)


PROGRESS_MODES = ("auto", "on", "off")


def _progress_mode(ini_progress: str | None, ini_file: str) -> str:
    """The ``hemorrhage_progress`` ini value, checked: ``auto`` (the default), ``on`` or ``off``."""
    mode = (ini_progress or "auto").strip().lower()
    if mode not in PROGRESS_MODES:
        raise InvalidArgument(f"hemorrhage_progress in {ini_file} must be one of {', '.join(PROGRESS_MODES)}, "
                              f"got {ini_progress!r}; auto shows progress only when the output is a terminal")
    return mode


def shows_progress(mode: str, terminal: bool) -> bool:
    """Whether checks write progress lines: ``on``, or ``auto`` with the output on a terminal (not a CI log)."""
    return mode == "on" or (mode == "auto" and terminal)


@dataclass(frozen=True)
class Settings:
    """Everything the command line and the ini file set for the run's checks."""

    thresholds: Thresholds  # ini and command line applied; each test's markers go on top
    device: str | None = None  # where checks run in this process ("cuda": this worker's one GPU)
    batch_size: int | None = None
    sequential: bool = False
    suggest: bool = True
    update: bool = False
    report_path: str | None = None
    snapshot_dir: str = "hemorrhage_snapshots"
    model_path: str | None = None  # the model folder hemorrhage_default_model loads instead of the embedded one
    progress: str = "auto"  # progress lines while checks run: "on", "off", or "auto" (on a terminal only)

    @classmethod
    def resolve(
        cls,
        *,
        ini_thresholds: Mapping[str, Any],
        cli_thresholds: Mapping[str, Any],
        ini_file: str = "the ini file",
        device: str | None = None,
        batch_size: int | None = None,
        sequential: bool = False,
        ini_suggest: bool = True,
        no_suggest: bool = False,
        update: bool = False,
        report_path: str | None = None,
        snapshot_dir: str = "hemorrhage_snapshots",
        cli_model: str | None = None,
        ini_model: str | None = None,
        rootdir: str = ".",
        cli_progress: str | None = None,
        ini_progress: str | None = None,
    ) -> "Settings":
        """Settings from the raw ini values and options that were set; errors name the bad option."""
        if batch_size is not None and batch_size < 1:
            raise InvalidArgument(f"command line option --hemorrhage-batch-size must be at least 1, got {batch_size}")
        thresholds = Thresholds.resolve(ini=ini_thresholds, cli=cli_thresholds, ini_file=ini_file)
        return cls(thresholds=thresholds, device="cuda" if device == PER_WORKER else device, batch_size=batch_size,
                   sequential=sequential, suggest=ini_suggest and not no_suggest, update=update,
                   report_path=report_path, snapshot_dir=snapshot_dir,
                   model_path=_model_path(cli_model, ini_model, ini_file, rootdir),
                   progress=cli_progress or _progress_mode(ini_progress, ini_file))

    def thresholds_for(self, markers: Sequence[Mapping[str, Any]]) -> Thresholds:
        """A test's thresholds: its ``@pytest.mark.hemorrhage`` keywords (farthest first) over the run's."""
        return Thresholds.resolve(marker=markers, base=self.thresholds)

    def compare_defaults(self) -> dict[str, Any]:
        """Keyword arguments every check of the run gets unless the test passes its own."""
        defaults: dict[str, Any] = {"device": self.device}
        if self.sequential:
            defaults["sequential"] = True
        if self.batch_size is not None:
            defaults["batch_size"] = self.batch_size
        return defaults


def accept_advice(report: Report, snapshot: bool) -> list[str]:
    """How a pytest user accepts a failing check on purpose: the marker, and re-recording a snapshot."""
    keywords = ", ".join(f"{key}=..." for key in thresholds_to_loosen(report))
    advice = [f"loosen the threshold in @pytest.mark.hemorrhage({keywords})"] if keywords else []
    if snapshot:
        advice.append("rerun with --hemorrhage-update to re-record the snapshot")
    return advice


class TerminalWriter(Protocol):
    """The part of pytest's terminal reporter the summary writes with."""

    def write_sep(self, sep: str, title: str) -> Any: ...

    def write(self, text: str, **markup: bool) -> Any: ...

    def write_line(self, line: str) -> Any: ...


class HemorrhageSession:
    """The checks and recorded snapshots of one pytest process (or, merged, of all its workers)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # {"nodeid": ..., "report": Report.to_dict(), "test_outcome": "passed" | "failed" | "xfailed" | "xpassed"}
        self.checks: list[dict[str, Any]] = []
        self.snapshots: list[str] = []

    # ------------------------------------------------------------------ recording
    def record(self, nodeid: str, report: Report, index: int) -> list[tuple[str, str]]:
        """Keep the ``index``-th check of test ``nodeid``; returns its JUnit properties."""
        self.checks.append({"nodeid": nodeid, "report": report.to_dict()})
        return properties(report, index)

    def record_test_outcome(self, nodeid: str, outcome: str) -> None:
        """Note how test ``nodeid`` ended on its checks, so an expected failing check is told apart."""
        for check in self.checks:
            if check["nodeid"] == nodeid and "test_outcome" not in check:
                check["test_outcome"] = outcome

    def record_snapshot(self, path: str) -> None:
        self.snapshots.append(path)

    # ------------------------------------------------------------------ xdist
    def worker_output(self) -> dict[str, str]:
        """What a worker hands the controller at the end of its session."""
        return {"hemorrhage_checks": json.dumps(self.checks), "hemorrhage_snapshots": json.dumps(self.snapshots)}

    def merge_worker(self, output: Mapping[str, Any]) -> None:
        """Add a finished worker's checks and snapshots (its :meth:`worker_output`)."""
        self.checks.extend(json.loads(output.get("hemorrhage_checks") or "[]"))
        self.snapshots.extend(json.loads(output.get("hemorrhage_snapshots") or "[]"))

    # ------------------------------------------------------------------ output
    def labelled_reports(self) -> Iterator[tuple[str, Report]]:
        """Every check as ``(label, Report)``, in the order they ran; an expected failure's label says so."""
        for label, report, expected in self._checks_with_notes():
            yield (f"{label} ({expected})" if expected else label), report

    def _checks_with_notes(self) -> Iterator[tuple[str, Report, str | None]]:
        """Every check as ``(label, Report, why its failure was expected or None)``."""
        for check in self.checks:
            report = Report.from_dict(check["report"])
            expected = expected_failure_note(report.verdict, check.get("test_outcome"))
            yield check_label(check["nodeid"], report.name), report, expected

    def write_report(self) -> str | None:
        """Write ``--hemorrhage-report``: Markdown for ``.md``, HTML for ``.html`` / ``.htm``, else JSON."""
        path = self.settings.report_path
        if not path:
            return None
        if path.endswith(".md"):
            text = render_checks_markdown(self.labelled_reports())
        elif path.lower().endswith((".html", ".htm")):
            text = render_html(self.labelled_reports())
        else:
            text = json.dumps({"schema_version": SCHEMA_VERSION, "checks": self.checks}, indent=2)
        atomic_write_text(Path(path), text)
        return path

    def terminal_summary(self, tr: TerminalWriter) -> None:
        """The ``hemorrhage snapshots recorded`` and ``hemorrhage checks`` sections, when there are any."""
        if self.snapshots:
            tr.write_sep("=", "hemorrhage snapshots recorded")
            for path in dict.fromkeys(self.snapshots):  # xdist workers may each record the same file
                tr.write_line(path)
        if not self.checks:
            return
        tr.write_sep("=", "hemorrhage checks")
        failed = {"as expected": 0, "unexpectedly": 0}
        for label, report, expected in self._checks_with_notes():
            line = summary_line(label, report, expected)
            tr.write(line.verdict, **{line.colour: True})
            tr.write_line(line.text)
            if report.verdict == "fail":
                failed["as expected" if expected else "unexpectedly"] += 1
        if failed["as expected"]:  # only then can a FAIL line mislead
            total = sum(failed.values())
            tr.write_line(f"{total} check{'s' if total != 1 else ''} failed: "
                          + ", ".join(f"{n} {how}" for how, n in failed.items() if n))
