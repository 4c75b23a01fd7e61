"""Fixtures shared by the example suites: the baseline model, its tokenizer and the probes.

Out of the box they give the embedded default model (SmolLM2-135M-Instruct, 30 decoder
blocks), loaded once per session from its local cache. To run the suites against your own
model, name its Hugging Face folder (``save_pretrained`` output, tokenizer included) on the
command line, nothing else::

    pytest example_suites --hemorrhage-model=path/to/your/model

or set ``hemorrhage_model = path/to/your/model`` in the ini file (relative to the rootdir).

The fixtures are session-scoped and shared by every test: a test must never modify
``baseline_model`` in place. The modifications in ``pytest_hemorrhage.modify`` return a
modified copy; anything hand-made should start from ``copy.deepcopy(baseline_model)``.

These fixtures are deliberately generic (any causal LM with a Hugging Face tokenizer) so
that every suite under ``example_suites/`` can use or override them.
"""

from __future__ import annotations

import pytest

from pytest_hemorrhage import Probes


@pytest.fixture(scope="session")
def baseline_model(request):
    """The reference model every candidate is compared against (eval mode, on the CPU)."""
    return request.getfixturevalue("hemorrhage_default_model")[0].eval()


@pytest.fixture(scope="session")
def tokenizer(request):
    """The tokenizer of ``baseline_model``; the probes are built with it."""
    return request.getfixturevalue("hemorrhage_default_model")[1]


@pytest.fixture(scope="session")
def probes(tokenizer):
    """32 probes of up to 128 tokens from the built-in corpus (9 tagged domains).

    The project's default thresholds were calibrated on this size: use it for checks that
    must *pass*, where the confidence interval has to fit inside the threshold. To probe with
    your own data instead: ``Probes.from_texts(tokenizer, texts, tags=[...], max_length=128)``.
    """
    return Probes.builtin(tokenizer, n=32, max_length=128)


@pytest.fixture(scope="session")
def quick_probes(tokenizer):
    """16 probes of up to 96 tokens: enough to show a change that fails by a wide margin.

    A failure is decided as soon as the estimate is past the threshold, so it needs far less
    evidence than a pass; this set costs about half the time of ``probes``.
    """
    return Probes.builtin(tokenizer, n=16, max_length=96)
