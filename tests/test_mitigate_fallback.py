"""fallback(): restore the fewest most-sensitive modules to baseline weights until the gate passes."""

from __future__ import annotations

import copy

import pytest
import torch

from pytest_hemorrhage.engine import compare
from pytest_hemorrhage.errors import HemorrhageError, InvalidArgument
from pytest_hemorrhage.mitigate import Mitigation
from pytest_hemorrhage.mitigate.fallback import applies, fallback, modified_linears
from pytest_hemorrhage.modify import expand, quantize
from pytest_hemorrhage.modify.quantize import ACTIVATION_QUANT_ATTR
from pytest_hemorrhage.probes import Probes
from tiny_models import random_token_ids, same_state, snapshot_state

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def probes() -> Probes:
    return Probes.from_token_ids(random_token_ids(16, 32).tolist())


def _restore(baseline: torch.nn.Module, candidate: torch.nn.Module, names: list[str]) -> torch.nn.Module:
    """Independent restore: a copy of the candidate with ``names`` set to the baseline's modules."""
    model = copy.deepcopy(candidate)
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, copy.deepcopy(baseline.get_submodule(name)))
    return model


@pytest.mark.parametrize("family, damaged", [
    ("llama", "model.layers.1.mlp.down_proj"),
    ("gpt2", "transformer.h.1.mlp.c_proj"),
])
def test_restores_exactly_the_heavily_damaged_module(request, probes, family, damaged):
    baseline = request.getfixturevalue(family)
    lightly = quantize(baseline, bits=8)
    candidate = quantize(lightly, bits=2, granularity="per_tensor", targets=(damaged,))
    before_b, before_c = snapshot_state(baseline), snapshot_state(candidate)
    tight = {"max_kl": 2e-4}  # tiny random models predict nearly flat distributions: their KLs are small
    assert not compare(baseline, candidate, probes, thresholds=tight).passed

    result = fallback(baseline, candidate, probes, thresholds=tight)

    assert isinstance(result, Mitigation) and result.name == "fallback"
    assert result.details["restored"] == [damaged]
    assert next(iter(result.details["sensitivity"])) == damaged
    assert len(result.details["sensitivity"]) == len(modified_linears(baseline, candidate))
    repaired = dict(result.model.named_modules())
    assert torch.equal(repaired[damaged].weight, baseline.get_submodule(damaged).weight)
    for name in result.details["sensitivity"]:
        if name != damaged:  # every other module keeps the candidate's (8-bit) weights
            assert torch.equal(repaired[name].weight, lightly.get_submodule(name).weight)
    after = compare(baseline, result.model, probes, thresholds=tight)
    assert after.passed
    assert result.details["kl_after"] == pytest.approx(after.metrics["kl"].estimate)
    assert result.details["kl_before"] > result.details["kl_after"]
    assert result.description.startswith(f"restored 1 of {result.details['n_modified']} modified linears")
    assert damaged in result.description
    assert same_state(baseline, before_b) and same_state(candidate, before_c)
    assert result.model is not candidate


def test_restoring_removes_the_activation_quantizer(probes, llama):
    damaged = "model.layers.2.self_attn.o_proj"
    # A far too small static range clips every input of one module; the rest is lightly quantized.
    candidate = quantize(quantize(llama, bits=8), bits=8, activation="static_per_tensor",
                         activation_range=0.01, targets=(damaged,))
    result = fallback(llama, candidate, probes)
    assert result.details["restored"] == [damaged]
    assert ACTIVATION_QUANT_ATTR in candidate.get_submodule(damaged)._modules
    assert ACTIVATION_QUANT_ATTR not in result.model.get_submodule(damaged)._modules
    assert compare(llama, result.model, probes).passed


def test_search_is_minimal_and_cheaper_than_linear_search(probes, llama):
    candidate = quantize(llama, bits=3, granularity="per_tensor")
    result = fallback(llama, candidate, probes)
    d = result.details
    ranked = list(d["sensitivity"])
    k = len(d["restored"])
    assert d["restored"] == ranked[:k]
    assert k >= 8  # widespread damage: many modules must go back
    # A linear search over 0, 1, ..., k needs k + 1 compares.
    assert d["compares"] < k + 1
    assert d["compares"] == len(d["searched"])
    assert all(passed == (count >= k) for count, passed in d["searched"].items())
    # Independently: the top k pass, the top k - 1 do not.
    assert compare(llama, _restore(llama, candidate, ranked[:k]), probes).passed
    assert not compare(llama, _restore(llama, candidate, ranked[: k - 1]), probes).passed


def test_max_layers_too_small_is_a_clear_error(probes, llama):
    candidate = quantize(llama, bits=3, granularity="per_tensor")
    with pytest.raises(HemorrhageError, match=r"the 1 most sensitive \(max_layers\).*raise max_layers"):
        fallback(llama, candidate, probes, max_layers=1)
    with pytest.raises(InvalidArgument, match="max_layers"):
        fallback(llama, candidate, probes, max_layers=0)


def test_damage_outside_the_linears_cannot_be_repaired(probes, llama):
    candidate = quantize(llama, bits=8)
    with torch.no_grad():
        candidate.model.norm.weight.mul_(-1.0)
    with pytest.raises(HemorrhageError, match="outside the linear layers"):
        fallback(llama, candidate, probes)


def test_changed_structure_is_rejected(probes, llama):
    expanded = expand(llama, mode="duplicate", positions=(1,))
    assert not applies(llama, expanded)
    assert applies(llama, quantize(llama, bits=4))
    with pytest.raises(InvalidArgument, match="differ in structure"):
        fallback(llama, expanded, probes)


def test_a_passing_candidate_needs_nothing(probes, llama):
    candidate = quantize(llama, bits=8)
    result = fallback(llama, candidate, probes)
    assert result.details["restored"] == [] and result.details["compares"] == 1
    assert result.description.startswith("nothing to restore")
    assert compare(llama, result.model, probes).passed


def test_thresholds_are_those_of_the_gate(probes, llama):
    candidate = quantize(llama, bits=4)
    loose = {"max_kl": 1.0, "min_top1_agreement": 0.0, "max_ppl_ratio": 10.0, "min_output_sqnr_db": None}
    assert compare(llama, candidate, probes, thresholds=loose).passed
    assert fallback(llama, candidate, probes, thresholds=loose).details["restored"] == []
