"""Models quantized by the PyTorch quantizers people ship, as candidates: torchao, optimum-quanto and
torch.ao's quantize_dynamic. Each quantizes a copy of a tiny Llama the way its users do; the checks,
the diagnosis and the mitigations then run on the packed weights."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import pytest_hemorrhage as ph
from pytest_hemorrhage.check import run_check
from pytest_hemorrhage.engine import compare
from pytest_hemorrhage.errors import HemorrhageError
from pytest_hemorrhage.mitigate.fallback import fallback, modified_linears
from pytest_hemorrhage.mitigate.suggest import not_applicable
from pytest_hemorrhage.packed import (
    module_tree_copy, packed_by, packed_modules, storage_pointers, without_autograd,
)
from pytest_hemorrhage.probes import Probes
from tiny_models import random_token_ids, same_state, snapshot_state, tiny_llama

ao = pytest.importorskip("torchao.quantization", reason="pip install torchao")
quanto = pytest.importorskip("optimum.quanto", reason="pip install optimum-quanto")

pytestmark = pytest.mark.usefixtures("one_thread")

DAMAGED = "model.layers.1.mlp.down_proj"


def torchao_int8(model, modules=None):
    ao.quantize_(model, ao.Int8WeightOnlyConfig(), filter_fn=_only(modules))
    return model


def torchao_int8_dynamic(model, modules=None):
    ao.quantize_(model, ao.Int8DynamicActivationInt8WeightConfig(), filter_fn=_only(modules))
    return model


def torchao_int4(model, modules=None):
    ao.quantize_(model, ao.IntxWeightOnlyConfig(weight_dtype=torch.int4), filter_fn=_only(modules))
    return model


def quanto_int8(model, modules=None):
    quanto.quantize(model, weights=quanto.qint8, include=modules)
    quanto.freeze(model)
    return model


def quanto_int4(model, modules=None):
    quanto.quantize(model, weights=quanto.qint4, include=modules)
    quanto.freeze(model)
    return model


def dynamic_int8(model, modules=None):
    with warnings.catch_warnings():  # torch's deprecation notices for torch.ao and quantized tensors
        warnings.simplefilter("ignore")
        spec = {torch.nn.Linear} if modules is None else set(modules)
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)


def _only(modules):
    """torchao's ``filter_fn``: linears only (its default), or only those named in ``modules``."""
    if modules is None:
        return None
    return lambda module, name: isinstance(module, torch.nn.Linear) and name in modules


INT8 = {"torchao-int8": torchao_int8, "torchao-int8-dynamic": torchao_int8_dynamic,
        "quanto-int8": quanto_int8, "torch.ao-dynamic-int8": dynamic_int8}
# The harsher setting of each library that has one on CPU, with its int8 one.
HARSHER = {"torchao": (torchao_int8, torchao_int4), "optimum.quanto": (quanto_int8, quanto_int4)}
LIBRARY = {"torchao-int8": "torchao (Int8Tensor)", "torchao-int8-dynamic": "torchao (Int8Tensor)",
           "quanto-int8": "optimum.quanto (WeightQBytesTensor)",
           "torch.ao-dynamic-int8": "torch.ao.quantization (torch.ao.nn.quantized.dynamic.modules.linear.Linear)",
           "torchao-int4": "torchao (IntxUnpackedToInt8Tensor)", "quanto-int4": "optimum.quanto (WeightQBitsTensor)"}


@pytest.fixture(scope="module")
def baseline():
    return tiny_llama(init_std=0.1)  # peaked next-token distributions: int8's top-1 flips are rare


@pytest.fixture(scope="module")
def probes() -> Probes:
    return Probes.from_token_ids(random_token_ids(16, 32).tolist())  # one length: no padding


def quantized(baseline, recipe, modules=None):
    return recipe(copy.deepcopy(baseline), modules)


def logits(model, probes) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor(probes.token_ids)).logits


def kl_by_hand(baseline, candidate, probes) -> float:
    """Mean KL(p_baseline || p_candidate) over the probe positions that predict a probe token (all but
    the last), from the models' own logits."""
    logp_b, logp_c = (logits(m, probes)[:, :-1].double().log_softmax(-1) for m in (baseline, candidate))
    return float((logp_b.exp() * (logp_b - logp_c)).sum(-1).mean())


def ppl_ratio_by_hand(baseline, candidate, probes) -> float:
    """Perplexity of the candidate over the baseline's on the probes' own next tokens."""
    ids = torch.tensor(probes.token_ids)

    def mean_nll(model) -> torch.Tensor:
        logp = logits(model, probes)[:, :-1].double().log_softmax(-1)
        return -logp.gather(-1, ids[:, 1:, None]).mean()

    return float((mean_nll(candidate) - mean_nll(baseline)).exp())


@pytest.mark.parametrize("name", INT8)
def test_an_int8_candidate_has_a_small_exact_kl_and_hookable_blocks(baseline, probes, name):
    before = snapshot_state(baseline)
    candidate = quantized(baseline, INT8[name])
    assert packed_by(candidate) == LIBRARY[name]  # the premise: the library packed the weights

    # One batch of every probe, as kl_by_hand runs them: torch.ao's dynamic quantization scales each
    # activation tensor by its own range, so its outputs depend on which probes share a batch.
    report = compare(baseline, candidate, probes, batch_size=len(probes))

    kl = report.metrics["kl"].estimate
    assert 0 < kl < 1e-2
    assert kl == pytest.approx(kl_by_hand(baseline, candidate, probes), rel=1e-4)
    assert report.metrics["ppl_ratio"].estimate == pytest.approx(ppl_ratio_by_hand(baseline, candidate, probes),
                                                                 abs=1e-5)
    assert report.metrics["top1"].estimate > 0.8  # torch.ao's one activation range per batch costs the most
    assert [layer.name for layer in report.layers] == [f"model.layers.{i}" for i in range(4)]
    assert all(15 < layer.sqnr_db < 80 for layer in report.layers)  # changed, but by int8 rounding only
    assert report.metrics["kl"].verdict == "pass"  # top-1 agreement may be inconclusive on 16 probes
    assert same_state(baseline, before)


@pytest.mark.parametrize("library", HARSHER)
def test_int4_weights_are_measurably_worse_than_int8(baseline, probes, library):
    int8, int4 = (compare(baseline, quantized(baseline, recipe), probes) for recipe in HARSHER[library])
    assert int4.metrics["kl"].ci_low > 10 * int8.metrics["kl"].ci_high
    assert min(layer.sqnr_db for layer in int4.layers) < min(layer.sqnr_db for layer in int8.layers) - 10


@pytest.mark.parametrize("name", INT8)
def test_the_weight_editing_mitigations_say_the_weights_are_packed(baseline, name):
    reasons = not_applicable(baseline, quantized(baseline, INT8[name]))
    assert set(reasons) == {"gradient_pruning", "dynamic_scaling", "decoding_calibration"}
    for mitigation, what in (("gradient_pruning", "gradient pruning"), ("dynamic_scaling", "dynamic scaling")):
        assert reasons[mitigation].startswith(
            f"{what} cannot run: the candidate's weights are packed by {LIBRARY[name]}, not float tensors")


@pytest.mark.parametrize("name", [*INT8, "torchao-int4", "quanto-int4"])
def test_a_failing_quantized_candidate_is_explained_and_repaired_by_fallback(baseline, probes, name):
    recipe = {**INT8, "torchao-int4": torchao_int4, "quanto-int4": quanto_int4}[name]
    candidate = quantized(baseline, recipe)
    packed = dict(packed_modules(candidate))

    report = run_check(baseline, candidate, probes, max_kl=1e-9)  # no quantization passes that

    assert not report.passed
    assert all(p["description"] for p in report.patterns)
    # What the packed weights ruled out is said, although fallback found a fix.
    assert report.notes == [
        f"diagnosis: activation outlier clipping was not measured: the candidate's weights are packed by "
        f"{LIBRARY[name]}, whose linears quantize their inputs, if at all, inside their own kernels where no hook "
        "sees them",
        *(f"mitigation {mitigation} not tried: {why}"
          for mitigation, why in not_applicable(baseline, candidate).items()),
    ]
    assert f"mitigation gradient_pruning not tried: gradient pruning cannot run: the candidate's weights are " \
           f"packed by {LIBRARY[name]}" in report.to_text()
    assert report.suggestion.startswith(f"verified fix: restored {len(packed)} of {len(packed)} modified linears")
    assert [s["name"] for s in report.suggestions] == ["fallback"]
    assert report.suggestions[0]["after"] == 0  # every linear restored: the baseline's function exactly
    assert packed_modules(candidate) == packed  # the candidate still holds its packed modules


@pytest.mark.parametrize("recipes", [
    pytest.param((torchao_int8, torchao_int4), id="torchao"),
    pytest.param((quanto_int8, quanto_int4), id="quanto"),
    pytest.param((dynamic_int8, None), id="torch.ao-dynamic"),
])
def test_fallback_restores_exactly_the_damaged_packed_module(baseline, probes, recipes):
    light, harsh = recipes
    names = [n for n, m in baseline.named_modules() if isinstance(m, torch.nn.Linear)]
    lightly = quantized(baseline, light, [n for n in names if n != DAMAGED])
    if harsh is not None:  # (a frozen quanto model cannot be deep-copied: quantized twice from the float one)
        candidate = harsh(quantized(baseline, light, [n for n in names if n != DAMAGED]), [DAMAGED])
    else:  # torch's dynamic int8 is its only setting: the damaged linear's weights are scrambled first
        scrambled = copy.deepcopy(baseline)
        with torch.no_grad():
            scrambled.get_submodule(DAMAGED).weight.mul_(-3.0)
        candidate = quantized(scrambled, light)
        lightly = quantized(baseline, light, [n for n in names if n != DAMAGED])
    light_report, damaged_report = (compare(baseline, m, probes) for m in (lightly, candidate))
    light_high, damaged_low = light_report.metrics["kl"].ci_high, damaged_report.metrics["kl"].ci_low
    assert light_high < damaged_low / 4  # the premise: one module carries most of the damage
    # Gated on KL alone: on 16 probes, top-1 agreement is inconclusive even for the lightly quantized one.
    tight = {"max_kl": (light_high * damaged_low) ** 0.5, "min_top1_agreement": None}
    packed_before = {n: candidate.get_submodule(n) for n in packed_modules(candidate)}
    outputs_before = logits(candidate, probes)

    result = fallback(baseline, candidate, probes, thresholds=tight)

    assert result.details["restored"] == [DAMAGED]
    assert set(result.details["sensitivity"]) == set(modified_linears(baseline, candidate))
    restored = result.model.get_submodule(DAMAGED)
    assert type(restored) is torch.nn.Linear and packed_by(restored) is None
    assert torch.equal(restored.weight, baseline.get_submodule(DAMAGED).weight)
    assert set(packed_modules(result.model)) == set(packed_before) - {DAMAGED}
    after = compare(baseline, result.model, probes, thresholds=tight)
    assert after.passed
    assert after.metrics["kl"].estimate == pytest.approx(light_report.metrics["kl"].estimate, rel=0.5)
    # The candidate is untouched: the same packed module objects, the same outputs.
    assert {n: candidate.get_submodule(n) for n in packed_modules(candidate)} == packed_before
    assert torch.equal(logits(candidate, probes), outputs_before)


def test_an_in_place_quantization_is_refused_by_the_shared_storage_check(baseline, probes):
    candidate = quantized(baseline, torchao_int8)
    twin = module_tree_copy(candidate)  # the same packed tensors, as after quantizing the baseline in place
    assert storage_pointers(candidate.lm_head.weight)  # a wrapper tensor's storages are those it wraps
    assert storage_pointers(candidate.lm_head.weight) == storage_pointers(twin.lm_head.weight)
    with pytest.raises(HemorrhageError, match="share parameter storage"):
        compare(twin, candidate, probes)


def test_the_public_assertion_passes_an_int8_candidate_and_fails_a_strict_threshold(baseline, probes):
    candidate = quantized(baseline, quanto_int8)
    assert ph.assert_no_hemorrhage(baseline, candidate, probes).passed
    with pytest.raises(ph.HemorrhageDetected, match="verified fix: restored"):
        ph.assert_no_hemorrhage(baseline, candidate, probes, max_kl=1e-9)


@pytest.mark.slow
def test_int8_weights_on_the_default_model_pass_the_default_gate(hemorrhage_default_model):
    model, tokenizer = hemorrhage_default_model
    probes = Probes.builtin(tokenizer, n=16, max_length=64)
    candidate = quantized(model, quanto_int8)

    report = ph.assert_no_hemorrhage(model, candidate, probes)

    assert 0 < report.metrics["kl"].estimate < 0.01
    assert len(report.layers) == model.config.num_hidden_layers
    assert all(layer.sqnr_db > 15 for layer in report.layers)


def test_float_models_keep_inference_mode_and_packed_ones_run_without_grad(baseline):
    assert packed_by(baseline) is None and packed_modules(baseline) == {}
    with without_autograd(baseline):
        assert torch.is_inference_mode_enabled()
    int4 = quantized(baseline, quanto_int4)  # its 4-bit weights make views that inference mode refuses
    with without_autograd(baseline, int4):
        assert not torch.is_inference_mode_enabled() and not torch.is_grad_enabled()
        int4(torch.tensor([[1, 2, 3]]))
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference tensor"):
        int4(torch.tensor([[1, 2, 3]]))  # the premise: why compare() must not use inference mode here
