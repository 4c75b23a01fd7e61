"""Progress lines while checks run (``--hemorrhage-progress`` / ``--hemorrhage-no-progress`` /
``hemorrhage_progress``), and what a test's checks leave alive after it."""

from __future__ import annotations

import fnmatch
import re

import pytest

from pytest_hemorrhage.plugin import _TerminalProgress

PASSING_AND_FAILING = """
def test_pass(hemorrhage):
    hemorrhage.check(MODEL, harmless(), PROBES)

def test_fail(hemorrhage):
    hemorrhage.check(MODEL, harmful(), PROBES)
"""

# harmful() is a scaled copy of the baseline: only fallback (restoring layers) applies to it.
PROGRESS_LINES = [
    "hemorrhage: test_inner.py::test_pass: compared 16 probes in * s: pass",
    "hemorrhage: test_inner.py::test_fail: compared 16 probes in * s: fail",
    "hemorrhage: test_inner.py::test_fail: trying mitigations on copies: fallback (* do not apply)",
    "hemorrhage: test_inner.py::test_fail: tried fallback in * s: *(checked, *)",
    "hemorrhage: test_inner.py::test_fail: mitigations tried in * s",
]


def _progress_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("hemorrhage: ")]


@pytest.mark.parametrize("capture", [[], ["-s"]], ids=["captured", "no-capture"])
def test_progress_on_shows_elapsed_time_and_mitigation_cost(pytester: pytest.Pytester, inner, monkeypatch,
                                                            capture) -> None:
    monkeypatch.delenv("PYTEST_ADDOPTS")  # mitigations on: their start and cost are shown
    inner(PASSING_AND_FAILING)
    result = pytester.runpytest("--hemorrhage-progress", "-p", "no:randomly", *capture)
    result.assert_outcomes(passed=1, failed=1)
    lines = _progress_lines(result.stdout.str())
    # In order and once each, whether pytest captures the test's output or not.
    assert len(lines) == len(PROGRESS_LINES), lines
    assert all(fnmatch.fnmatchcase(line, pattern) for line, pattern in zip(lines, PROGRESS_LINES)), lines
    # The cost in the progress line is the one the failure message records.
    tried = re.search(r"tried fallback in ([0-9.]+) s", lines[3])
    assert tried is not None, lines[3]
    result.stdout.fnmatch_lines([f"E       mitigations tried in * s (fallback {tried.group(1)} s)"])
    # pytest's own results still read as usual: each on a line that starts with the file name.
    result.stdout.re_match_lines([r"^test_inner\.py \.$", r"^test_inner\.py F( +\[100%\])?$"])


def test_progress_is_off_by_default_without_a_terminal(pytester: pytest.Pytester, inner, monkeypatch) -> None:
    monkeypatch.delenv("PYTEST_ADDOPTS")
    inner(PASSING_AND_FAILING)
    result = pytester.runpytest("-p", "no:randomly")  # pytester's output is no terminal: "auto" is off
    result.assert_outcomes(passed=1, failed=1)
    assert _progress_lines(result.stdout.str()) == []
    # The failure message still records what the mitigations cost.
    result.stdout.fnmatch_lines(["E       mitigations tried in * s (fallback * s)"])


@pytest.mark.parametrize(
    "ini, option, shown",
    [("on", None, True), ("off", None, False), ("auto", None, False), ("on", "--hemorrhage-no-progress", False),
     ("off", "--hemorrhage-progress", True)],
)
def test_ini_key_and_options(pytester: pytest.Pytester, inner, ini: str, option: str | None, shown: bool) -> None:
    pytester.makeini(f"[pytest]\nhemorrhage_progress = {ini}\n")
    inner(
        """
        def test_pass(hemorrhage):
            hemorrhage.compare(MODEL, harmless(), PROBES)
        """
    )
    result = pytester.runpytest(*([option] if option else []))
    result.assert_outcomes(passed=1)
    expected = ["hemorrhage: test_inner.py::test_pass: compared 16 probes in * s: pass"] if shown else []
    assert len(_progress_lines(result.stdout.str())) == len(expected)
    if shown:
        result.stdout.fnmatch_lines(expected)


def test_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhemorrhage_progress = sometimes\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*hemorrhage_progress in tox.ini must be one of auto, on, off, got 'sometimes'*"])


def test_progress_lines_bypass_the_tests_own_capture(pytester: pytest.Pytester, inner) -> None:
    """A test that reads its own output (capsys, capfd) does not find progress lines in it."""
    inner(
        """
        def test_reads_its_output(hemorrhage, capfd):
            print("from the test")
            hemorrhage.compare(MODEL, harmless(), PROBES)
            out, err = capfd.readouterr()
            assert out == "from the test\\n" and err == ""
        """
    )
    result = pytester.runpytest("--hemorrhage-progress")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["hemorrhage: test_inner.py::test_reads_its_output: compared 16 probes in * s: pass"])


class _Terminal:
    """What _TerminalProgress calls on pytest's terminal reporter, recorded as the screen would show it."""

    def __init__(self) -> None:
        self.screen = "test_inner.py "  # pytest's result line, not ended yet
        self.currentfspath: str | None = "test_inner.py"

    def ensure_newline(self) -> None:
        if self.currentfspath:
            self.screen += "\n"
            self.currentfspath = None

    def rewrite(self, line: str, erase: bool = False) -> None:
        self.screen = self.screen[: self.screen.rfind("\n") + 1] + line  # "\r" then the line, erased to the end

    def write(self, text: str) -> None:
        self.screen += text

    def flush(self) -> None:
        pass

    def write_fspath_result(self, nodeid: str, result: str) -> None:
        path = nodeid.split("::")[0]
        if self.currentfspath != path:
            self.screen += "\n" + path + " "
            self.currentfspath = path
        self.screen += result


@pytest.mark.parametrize("verbose", [False, True])
def test_live_terminal_updates_one_line_in_place_then_ends_it(verbose: bool) -> None:
    terminal = _Terminal()
    out = _TerminalProgress(terminal, capture=None)
    out.update("hemorrhage: t: comparing: 0/4 probes, 0.0 s")
    out.update("hemorrhage: t: comparing: 2/4 probes, 0.5 s")
    out.line("hemorrhage: t: compared 4 probes in 1.0 s: fail")
    out.line("hemorrhage: t: trying mitigations on copies: fallback")
    out.update("hemorrhage: t: comparing: 1/4 probes, 0.1 s")
    out.line("hemorrhage: t: compared 4 probes in 0.3 s: pass")
    out.finish("test_inner.py::test_x", verbose)
    out.finish("test_inner.py::test_x", verbose)  # nothing left open: nothing more
    lines = ("test_inner.py \nhemorrhage: t: compared 4 probes in 1.0 s: fail\n"
             "hemorrhage: t: trying mitigations on copies: fallback\nhemorrhage: t: compared 4 probes in 0.3 s: pass\n")
    # Verbose: pytest writes the test's name again; short: the file name is back for the result letter.
    assert terminal.screen == lines + ("" if verbose else "test_inner.py ")


def test_a_failed_check_leaves_no_model_copy_alive_after_its_test(pytester: pytest.Pytester, inner,
                                                                    monkeypatch) -> None:
    """pytest keeps the last failure's traceback for post-mortem debugging; the candidate made for the
    failing check, and the copies its mitigations tried, must not stay alive with it."""
    monkeypatch.delenv("PYTEST_ADDOPTS")  # mitigations on: they make copies of their own
    inner(
        """
        import gc
        import weakref

        REFS = []

        def tracked(model):
            REFS.append(weakref.ref(model))
            return model

        def test_fails(hemorrhage):
            hemorrhage.check(MODEL, tracked(harmful()), PROBES)

        def test_then_nothing_is_left():
            gc.collect()
            assert len(REFS) == 1 and REFS[0]() is None
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
