"""--hemorrhage-device=per-worker: each pytest-xdist worker gets its own GPU through CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # worker interpreters: subprocess runs

BODY = """
import os


def test_where_{n}(hemorrhage_device, pytestconfig):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    visible = os.environ["CUDA_VISIBLE_DEVICES"]
    (pytestconfig.rootpath / f"{{worker}}.txt").write_text(visible + " " + str(hemorrhage_device))
"""


def test_each_worker_sees_one_gpu(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a=BODY.format(n="a"), test_b=BODY.format(n="b"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--dist=loadfile",
                                           "--hemorrhage-device=per-worker", "--hemorrhage-gpus=2")
    result.assert_outcomes(passed=2)
    seen = {p.stem: p.read_text() for p in pytester.path.glob("gw*.txt")}
    # GPU counting uses --hemorrhage-gpus here, so this runs on a machine without CUDA too.
    assert seen == {"gw0": "0 cuda", "gw1": "1 cuda"}


def test_workers_share_the_gpus_round_robin_within_a_visible_set(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    pytester.makepyfile(test_a=BODY.format(n="a"), test_b=BODY.format(n="b"), test_c=BODY.format(n="c"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "3", "--dist=loadfile",
                                           "--hemorrhage-device=per-worker", "--hemorrhage-gpus=2")
    result.assert_outcomes(passed=3)
    seen = {p.stem: p.read_text().split()[0] for p in pytester.path.glob("gw*.txt")}
    assert seen == {"gw0": "3", "gw1": "5", "gw2": "3"}


def test_per_worker_without_gpus_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a=BODY.format(n="a"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "1",
                                           "--hemorrhage-device=per-worker", "--hemorrhage-gpus=0")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*per-worker found no CUDA device*"])
