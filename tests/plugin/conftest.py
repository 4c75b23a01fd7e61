"""Shared helpers for the plugin tests: every test drives the plugin through ``pytester``.

Inner test files get a preamble that puts ``tests/`` on ``sys.path`` (as a literal path) and
builds tiny random models, so they run without any download.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent.parent

# Candidates, measured on tiny_llama() with random_token_ids(16, 24):
#   harmless(): an exact copy, every metric identical -> passes.
#   mild():     down_proj of block 1 x1.05 -> KL ~3e-7, top-1 ~99.5 %; passes the defaults,
#               fails max_kl=1e-9.
#   harmful():  down_proj of block 1 x20 -> top-1 ~10 % fails the default min_top1_agreement,
#               while KL (~0.013) stays inside the default max_kl (near-uniform outputs). Its PPL
#               ratio (~1.0099, 95 % CI up to ~1.025) is inconclusive under the default
#               max_ppl_ratio (1.02), so a test that needs harmful() to pass once top-1 is
#               loosened pins max_ppl_ratio=1.05 explicitly.
PREAMBLE = """\
import copy
import sys

sys.path.insert(0, TESTS_DIR_LITERAL)

import pytest
import torch

from tiny_models import random_token_ids, tiny_llama

torch.set_num_threads(1)  # tiny models: threads only add contention
MODEL = tiny_llama()
PROBES = random_token_ids(16, 24)


def scaled(factor):
    c = copy.deepcopy(MODEL)
    with torch.no_grad():
        c.model.layers[1].mlp.down_proj.weight.mul_(factor)
    return c


def harmless():
    return copy.deepcopy(MODEL)


def mild():
    return scaled(1.05)


def harmful():
    return scaled(20.0)


def spy_on_compare(monkeypatch):
    # Record the keyword arguments the hemorrhage fixture passes to compare(), directly or through
    # check.run_check: every loaded pytest_hemorrhage module that holds compare gets the spy.
    from pytest_hemorrhage.engine import compare

    seen = {}

    def spy(*args, **kwargs):
        seen.clear()
        seen.update(kwargs)
        return compare(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "pytest_hemorrhage" and getattr(module, "compare", None) is compare:
            monkeypatch.setattr(module, "compare", spy)
    return seen

""".replace("TESTS_DIR_LITERAL", repr(str(TESTS_DIR)))


@pytest.fixture(scope="session", autouse=True)
def _heavy_modules_loaded():
    """Import torch, transformers, the engine and hypothesis here, before any in-process run.

    In-process ``pytester.runpytest`` restores ``sys.modules`` afterwards, dropping every module
    the inner run imported first: importing torch a second time then crashes the interpreter,
    and the hypothesis plugin's lazy imports would cost ~2 s again in every inner run. One real
    comparison here pulls in every lazily imported module the inner runs will use.
    Tiny models also run far faster on one thread (no contention on a busy machine).
    """
    import copy

    import hypothesis  # noqa: F401  (imported lazily by its pytest plugin)
    import pytest_hemorrhage
    import torch

    from tiny_models import random_token_ids, tiny_llama

    compare = getattr(pytest_hemorrhage, "compare", None)
    if compare is None:  # pytest_hemorrhage imported as a namespace package: its __init__ did not run
        from pytest_hemorrhage.engine import compare

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = tiny_llama()
    compare(model, copy.deepcopy(model), random_token_ids(2, 8))
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def inner(pytester: pytest.Pytester):
    """Write an inner test file: ``inner(body, name="test_inner")`` -> its path."""

    def write(body: str, name: str = "test_inner") -> Path:
        return pytester.makepyfile(**{name: PREAMBLE + textwrap.dedent(body)})

    return write
