"""Runs tests/kernels/ (the fused Triton kernels on the CPU) in a process with TRITON_INTERPRET=1.

Triton's interpreter must be switched on before Triton is first imported, which in this process
has already happened; a failure shows the inner run's output. The fast tier runs the kernel tests
not marked ``slow``, the slow tier the others.
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


def _run_kernel_tests(marks: str) -> tuple[int, int]:
    """Run the tests of tests/kernels/ that ``-m marks`` selects under the interpreter; (passed, deselected)."""
    if importlib.util.find_spec("triton") is None:
        pytest.fail("the fused-kernel tests need Triton: pip install 'triton>=3.9' (scripts/setup.sh does)")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env.pop("HEMORRHAGE_FUSED", None)
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-m", marks,
         str(HERE / "kernels")],
        cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=900,
    )
    output = inner.stdout[-6000:] + inner.stderr[-2000:]
    assert inner.returncode == 0, output
    passed = re.search(r"(\d+) passed", inner.stdout)
    deselected = re.search(r"(\d+) deselected", inner.stdout)
    assert passed and deselected, output
    assert not re.search(r"\d+ (skipped|xfailed)", inner.stdout), output
    return int(passed.group(1)), int(deselected.group(1))


def test_fused_kernels_under_the_triton_interpreter():
    passed, slow = _run_kernel_tests("not slow")
    assert passed >= 12 and slow >= 5


@pytest.mark.slow
def test_slow_fused_kernel_tests_under_the_triton_interpreter():
    """The kernel tests the fast run leaves out: the top-k cases of k > 1 and the whole pipeline."""
    passed, fast = _run_kernel_tests("slow")
    assert passed >= 5 and fast >= 12
