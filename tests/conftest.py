import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
pytest_plugins = ["pytester"]
# The kernel tests run compiled on a GPU, or interpreted with TRITON_INTERPRET=1 set from the start of
# the process: without a GPU, tests/test_fused_kernels.py runs them in such a process.
collect_ignore = [] if os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available() else ["kernels"]


import pytest  # noqa: E402
from tiny_models import tiny_gpt2, tiny_llama, tiny_qwen2  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """Run a module on one torch thread: on tiny tensors intra-op threads only add wake-up latency."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _inner_runs_without_suggestions(request):
    """Inner pytest runs (pytester) pass ``--hemorrhage-no-suggest``: a failing check would otherwise
    try and re-measure every mitigation, which only tests about suggestions need. Such a test
    deletes ``PYTEST_ADDOPTS`` (or passes ``suggest=True`` to the check) to get them back."""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # starting, pytester clears PYTEST_ADDOPTS: set it after
        request.getfixturevalue("monkeypatch").setenv("PYTEST_ADDOPTS", "--hemorrhage-no-suggest")


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


@pytest.fixture(scope="module")
def gpt2():
    return tiny_gpt2()


@pytest.fixture(scope="module")
def qwen2():
    return tiny_qwen2()


@pytest.hookimpl(tryfirst=True)  # before -m selects: the slow marker added here counts
def pytest_collection_modifyitems(config, items):
    """Put every test that loads the default model in the slow tier; deselect ``gpu`` tests where no
    CUDA device exists, and say so (never a silent skip)."""
    for item in items:
        if "hemorrhage_default_model" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    needs = {"gpu": 1, "gpu2": 2}
    lacking = [item for item in items
               if any(item.get_closest_marker(mark) is not None and gpus < n for mark, n in needs.items())]
    if lacking:
        items[:] = [item for item in items if item not in lacking]
        config.hook.pytest_deselected(items=lacking)


def pytest_report_header(config):
    return ("gpu tests: deselected without a CUDA device (gpu2 ones without two); on a GPU machine run "
            "python -m pytest -m \"\" tests/test_gpu.py tests/kernels")


@pytest.fixture(scope="module")
def gguf_baseline():
    """The tiny Llama whose GGUF files the attribution and localisation tests write."""
    return tiny_llama(seed=5)


@pytest.fixture(scope="module")
def gguf_probes():
    """Token-id probes of the byte vocabulary those files carry."""
    from pytest_hemorrhage import Probes
    from tiny_models import random_token_ids

    return Probes.from_token_ids(random_token_ids(n=12, length=24, seed=2).tolist())
