"""Hypothesis strategies: valid configs, call-time validation, shrinking toward milder modifications."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from torch import nn

from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.modify import (
    Composed,
    DecodedModel,
    DecodingConfig,
    ExpansionConfig,
    LowRankConfig,
    PruningConfig,
    QuantizationConfig,
    effective_log_probs,
)
from pytest_hemorrhage.strategies import (
    decoding_configs,
    expansion_configs,
    lowrank_configs,
    modifications,
    pruning_configs,
    quantization_configs,
)
from tiny_models import random_token_ids, tiny_gpt2, tiny_llama

# No example database: keep the working tree clean and runs reproducible.
pytestmark = pytest.mark.usefixtures("one_thread")


FAST = settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FIND = settings(database=None, max_examples=2000)

LLAMA = tiny_llama(layers=2)
GPT2 = tiny_gpt2(layers=2)
IDS = random_token_ids(2, 8)


def _check_runs(model: nn.Module, config) -> None:
    out = config.apply(model, calibration=IDS)
    with torch.no_grad():
        logits = out(IDS).logits
    assert torch.isfinite(logits).all()
    assert out.hemorrhage_modification is config


# ---------------------------------------------------------------- generated configs are valid


@FAST
@given(quantization_configs(activation=st.sampled_from([None, "dynamic_per_token", "static_per_tensor"])))
def test_quantization_configs_apply(config: QuantizationConfig) -> None:
    assert isinstance(config, QuantizationConfig) and 2 <= config.bits <= 8
    _check_runs(LLAMA, config)


@FAST
@given(pruning_configs())
def test_pruning_configs_apply(config: PruningConfig) -> None:
    assert 0.0 <= config.sparsity <= 0.9
    _check_runs(GPT2 if config.method in ("heads", "channels") and config.sparsity > 0.5 else LLAMA, config)


@FAST
@given(lowrank_configs())
def test_lowrank_configs_apply(config: LowRankConfig) -> None:
    assert 0.05 <= config.rank_ratio <= 1.0
    _check_runs(LLAMA, config)


@FAST
@given(expansion_configs())
def test_expansion_configs_apply(config: ExpansionConfig) -> None:
    _check_runs(GPT2, config)


@FAST
@given(decoding_configs())
def test_decoding_configs_give_distributions(config: DecodingConfig) -> None:
    assert config.do_sample and 0.5 <= config.temperature <= 2.0 and 0.5 <= config.top_p <= 1.0
    logp = effective_log_probs(torch.randn(3, 40), config, torch.randint(0, 40, (3, 5)))
    assert torch.allclose(logp.exp().sum(-1), torch.ones(3))


@FAST
@given(modifications(kinds=("quantize", "prune", "lowrank", "expand", "decoding"), max_composed=3))
def test_modifications_apply(config) -> None:
    steps = config.steps if isinstance(config, Composed) else (config,)
    assert 1 <= len(steps) <= 3
    assert all(not isinstance(s, DecodingConfig) for s in steps[:-1])
    out = config.apply(LLAMA, calibration=IDS)
    assert out.hemorrhage_modification is config
    with torch.no_grad():
        assert torch.isfinite(out(IDS).logits).all()
    if isinstance(steps[-1], DecodingConfig):
        assert isinstance(out, DecodedModel)


# ---------------------------------------------------------------- shrinking toward milder


def test_planted_sparsity_failure_shrinks_to_boundary() -> None:
    found = find(pruning_configs(method="magnitude"), lambda c: c.sparsity >= 0.6, settings=FIND)
    assert 0.6 <= found.sparsity < 0.62


def test_planted_sparsity_failure_any_method() -> None:
    found = find(pruning_configs(), lambda c: c.method != "nm" and c.sparsity >= 0.6, settings=FIND)
    assert found.method == "magnitude" and 0.6 <= found.sparsity < 0.62


def test_planted_bits_failure_shrinks_to_boundary() -> None:
    found = find(quantization_configs(), lambda c: c.bits <= 3, settings=FIND)
    assert found.bits == 3
    # The rest shrinks to the mildest options too.
    assert found.symmetric is False and found.granularity == "per_group" and found.group_size == 16


def test_planted_rank_failure_shrinks_to_boundary() -> None:
    found = find(lowrank_configs(), lambda c: c.rank_ratio <= 0.4, settings=FIND)
    assert 0.38 < found.rank_ratio <= 0.4


@pytest.mark.parametrize(
    "predicate,check",
    [
        (lambda c: c.temperature >= 1.5, lambda c: 1.5 <= c.temperature < 1.52),
        (lambda c: c.temperature <= 0.8, lambda c: 0.79 < c.temperature <= 0.8),
        (lambda c: 0 < c.top_k <= 20, lambda c: c.top_k == 20),
    ],
)
def test_planted_decoding_failures_shrink_to_boundary(predicate, check) -> None:
    strategy = decoding_configs(top_p=1.0, repetition_penalty=1.0)
    found = find(strategy, predicate, settings=FIND)
    assert check(found), found


def test_planted_top_p_failure_shrinks_every_parameter() -> None:
    found = find(decoding_configs(), lambda c: c.top_p <= 0.9, settings=FIND)
    assert 0.89 < found.top_p <= 0.9
    assert found.top_k == 0 and found.temperature == 1.0 and found.repetition_penalty == 1.0


def test_strength_threshold_shrinks_to_mild_config() -> None:
    found = find(pruning_configs(method="magnitude"), lambda c: c.strength > 0.3, settings=FIND)
    assert found.strength < 0.32
    everything = find(modifications(max_composed=3), lambda c: True, settings=FIND)
    # A single step at its kind's mildest setting.
    assert not isinstance(everything, Composed)
    assert everything in (
        QuantizationConfig(bits=8, symmetric=False, granularity="per_group", group_size=16),
        PruningConfig(0.0),
        LowRankConfig(1.0),
    )


# ---------------------------------------------------------------- plain values and validation


def test_plain_values_are_used_as_is() -> None:
    found = find(quantization_configs(bits=4, granularity="per_tensor"), lambda c: True, settings=FIND)
    assert found.bits == 4 and found.granularity == "per_tensor"
    found = find(pruning_configs(sparsity=0.5, method="heads"), lambda c: True, settings=FIND)
    assert found == PruningConfig(0.5, method="heads")
    strategy = decoding_configs(temperature=0.7, top_k=0, top_p=1.0, repetition_penalty=1.0)
    found = find(strategy, lambda c: True, settings=FIND)
    assert found == DecodingConfig(do_sample=True, temperature=0.7)


@pytest.mark.parametrize(
    "make,argument",
    [
        (lambda: quantization_configs(bits=0), "bits"),
        (lambda: quantization_configs(bits=9), "bits"),
        (lambda: quantization_configs(granularity="per_row"), "granularity"),
        (lambda: quantization_configs(group_size=-4), "group_size"),
        (lambda: pruning_configs(sparsity=1.5), "sparsity"),
        (lambda: pruning_configs(method="random"), "method"),
        (lambda: pruning_configs(n_m=(5, 4)), "n"),
        (lambda: pruning_configs(max_sparsity=1.0), "max_sparsity"),
        (lambda: lowrank_configs(rank_ratio=0.0), "rank_ratio"),
        (lambda: lowrank_configs(min_ratio=0.0), "min_ratio"),
        (lambda: decoding_configs(temperature=0), "temperature"),
        (lambda: decoding_configs(top_p=1.2), "top_p"),
        (lambda: decoding_configs(top_k=-1), "top_k"),
        (lambda: expansion_configs(mode="triplicate"), "mode"),
        (lambda: modifications(kinds=("quantize", "distill")), "kinds"),
        (lambda: modifications(kinds=()), "kinds"),
        (lambda: modifications(max_composed=0), "max_composed"),
    ],
)
def test_bad_plain_values_raise_at_call_time(make, argument: str) -> None:
    with pytest.raises(InvalidArgument, match=argument):
        make()


def test_only_strategies_module_imports_hypothesis() -> None:
    import ast
    from pathlib import Path

    import pytest_hemorrhage.metrics.generation as generation
    import pytest_hemorrhage.modify as modify

    files = [*Path(modify.__file__).parent.glob("*.py"), Path(generation.__file__)]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "hypothesis" for n in names), path


# --------------------------------------------------------------------------- readable examples

REPR_NAMESPACE = {
    cls.__name__: cls
    for cls in (Composed, DecodingConfig, ExpansionConfig, LowRankConfig, PruningConfig, QuantizationConfig)
}


def test_config_repr_shows_only_fields_that_apply_and_differ_from_defaults() -> None:
    assert repr(PruningConfig(sparsity=0.068)) == "PruningConfig(sparsity=0.068)"
    assert repr(PruningConfig(method="nm", n=4, m=8)) == "PruningConfig(method='nm', n=4, m=8)"
    assert repr(PruningConfig(method="blocks", blocks=(1,))) == "PruningConfig(method='blocks', blocks=(1,))"
    assert repr(QuantizationConfig(bits=3, granularity="per_group", group_size=32)) == (
        "QuantizationConfig(bits=3, granularity='per_group', group_size=32)"
    )
    # The group size (and activation settings) are left out where they do not apply.
    assert repr(QuantizationConfig(bits=3, group_size=32)) == "QuantizationConfig(bits=3)"
    assert repr(DecodingConfig(do_sample=True, top_k=5)) == "DecodingConfig(do_sample=True, top_k=5)"
    assert repr(ExpansionConfig(mode="identity", count=2)) == "ExpansionConfig(mode='identity', count=2)"


@settings(FAST, max_examples=300)
@given(config=modifications(kinds=("quantize", "prune", "lowrank", "expand", "decoding"), max_composed=3))
def test_drawn_config_reprs_eval_back_to_equal_configs(config) -> None:
    text = repr(config)
    assert eval(text, dict(REPR_NAMESPACE)) == config
    assert "build" not in text and "skip=" not in text


FAILING_EXAMPLE = """
import sys
sys.path.insert(0, {tests!r})
from hypothesis import given, settings, strategies as st
from pytest_hemorrhage.probes import Probes
from pytest_hemorrhage.strategies import modifications
from tiny_models import tiny_llama

MODEL = tiny_llama(layers=1)
PROBES = Probes.from_token_ids([[1, 2, 3, 4]] * 40, tags=["code", "prose"] * 20)

@settings(max_examples=60, deadline=None, database=None)
@given(config=modifications(kinds="prune"), probes=st.just(PROBES))
def test_always_fails(config, probes):
    config.apply(MODEL)
    assert config.method == "nm" or config.sparsity < 0.25
"""


def test_falsifying_example_prints_short_readable_configs(pytester) -> None:
    from pathlib import Path

    pytester.makepyfile(FAILING_EXAMPLE.format(tests=str(Path(__file__).parent)))
    result = pytester.runpytest("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "Failing test case" in line or "Falsifying example" in line)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("test_falsifying"))
    example = "\n".join(lines[start:end])
    assert end - start < 40, example
    # Pruning 25% or more (N:M aside) fails: the example shrinks to the boundary, printed as the config's own repr.
    assert "config=PruningConfig(sparsity=0.25)" in example
    assert "probes=Probes('custom', 40 probes, 160 tokens, tags: code, prose)" in example
    assert "build(" not in example and "LlamaForCausalLM" not in example
