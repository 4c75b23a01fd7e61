"""Startup cost: the plugin loads without torch, so ``pytest --help`` and unrelated runs stay fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # fresh interpreters: subprocess runs

SCRIPT = """\
import sys
import pytest

code = pytest.main(["--help"])
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print("EXIT", int(code))
print("HEAVY", ",".join(heavy) or "-")
print("PLUGIN", "pytest_hemorrhage.plugin" in sys.modules)
"""


def test_help_does_not_import_torch(tmp_path: Path) -> None:
    # A fresh interpreter: this process has torch loaded already. Run outside the project so
    # no conftest is loaded; the plugin itself still comes in through its pytest11 entry point.
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "--hemorrhage-report=PATH" in out  # the plugin was active
    lines = out.splitlines()
    assert "EXIT 0" in lines
    assert "PLUGIN True" in lines
    assert "HEAVY -" in lines, [line for line in lines if line.startswith("HEAVY")]


def test_session_without_checks_does_not_import_torch(pytester: pytest.Pytester) -> None:
    # A fresh interpreter again (this process has torch loaded): marker, ini, options, the fixture
    # and the report all work without the engine, which comes in only when a check runs.
    pytester.makeini("[pytest]\nhemorrhage_max_ppl_ratio = 1.5\n")
    pytester.makepyfile(
        """
        import sys
        import pytest

        @pytest.mark.hemorrhage(max_kl=0.5)
        def test_unused(hemorrhage):
            assert hemorrhage.reports == []
            t = hemorrhage.thresholds
            assert (t.max_kl, t.max_ppl_ratio, t.min_top1_agreement) == (0.5, 1.5, 0.8)
            assert "torch" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--hemorrhage-min-top1-agreement=0.8", "--hemorrhage-report=r.json"
    )
    result.assert_outcomes(passed=1)
    assert (pytester.path / "r.json").read_text().startswith("{")
