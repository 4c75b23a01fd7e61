"""Runs tests/kernels/ (the fused Triton kernels on the CPU) in a process with TRITON_INTERPRET=1.

Triton's interpreter must be switched on before Triton is first imported, which in this process
has already happened; a failure shows the inner run's output.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def test_fused_kernels_under_the_triton_interpreter():
    if importlib.util.find_spec("triton") is None:
        pytest.fail("the fused-kernel tests need Triton: pip install 'triton>=3.9' (scripts/setup.sh does)")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env.pop("HEMORRHAGE_FUSED", None)
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(HERE / "kernels")],
        cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=900,
    )
    output = inner.stdout[-6000:] + inner.stderr[-2000:]
    assert inner.returncode == 0, output
    summary = re.search(r"(\d+) passed", inner.stdout)
    assert summary and int(summary.group(1)) >= 12, output
    assert not re.search(r"\d+ (skipped|deselected|xfailed)", inner.stdout), output
