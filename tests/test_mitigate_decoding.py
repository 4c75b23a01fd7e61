"""sampling_kl_on_probes / calibrate_decoding: direct KL, known temperatures, top-p, errors, claim 3."""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
from tiny_models import random_token_ids, tiny_llama

from pytest_hemorrhage.errors import HemorrhageError, InvalidArgument
from pytest_hemorrhage.metrics.generation import sampling_kl
from pytest_hemorrhage.mitigate.decoding_calibration import applies, calibrate_decoding, sampling_kl_on_probes
from pytest_hemorrhage.modify import Composed, DecodedModel, DecodingConfig, QuantizationConfig, quantize
from pytest_hemorrhage.modify.decoding import effective_log_probs
from pytest_hemorrhage.probes import Probes

pytestmark = pytest.mark.usefixtures("one_thread")


def _mixed_probes(n: int = 8, seed: int = 0) -> Probes:
    ids = random_token_ids(n, 24, seed=seed).tolist()
    return Probes.from_token_ids([row[: 10 + 2 * i] for i, row in enumerate(ids)])


def _sharpened(model: torch.nn.Module, factor: float) -> torch.nn.Module:
    """A copy whose logits are ``factor`` times the original's (lm_head is untied, bias-free)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.lm_head.weight.mul_(factor)
    return out


def _direct_kl(baseline, candidate, probes: Probes) -> float:
    """Each probe alone, each position with its own prefix: the definition, token by token."""
    def side(obj):
        if isinstance(obj, DecodedModel):
            return obj.model, obj.config
        return obj, DecodingConfig(do_sample=True)

    (mb, cb), (mc, cc) = side(baseline), side(candidate)
    terms = []
    with torch.no_grad():
        for ids in probes.token_ids:
            x = torch.tensor([ids])
            lb, lc = mb(x).logits[0], mc(x).logits[0]
            for t in range(len(ids) - 1):
                prev = x[0, : t + 1]
                kl = sampling_kl(effective_log_probs(lb[t], cb, prev), effective_log_probs(lc[t], cc, prev))
                terms.append(float(kl))
    return sum(terms) / len(terms)


def test_sampling_kl_on_probes_matches_direct_computation(llama):
    probes = _mixed_probes()
    peaky = _sharpened(llama, 4.0)
    other = quantize(peaky, bits=3)
    baseline = DecodedModel(peaky, DecodingConfig(do_sample=True, temperature=0.9, repetition_penalty=1.3))
    candidate = DecodedModel(other, DecodingConfig(do_sample=True, temperature=1.2, top_p=0.97))
    got = sampling_kl_on_probes(baseline, candidate, probes, batch_size=3)
    assert got > 0.01
    assert got == pytest.approx(_direct_kl(baseline, candidate, probes), rel=1e-4)
    # A plain module is sampling at T=1.
    plain = sampling_kl_on_probes(peaky, other, probes)
    assert plain == pytest.approx(_direct_kl(peaky, other, probes), rel=1e-4)
    assert plain == pytest.approx(sampling_kl_on_probes(
        DecodedModel(peaky, DecodingConfig(do_sample=True)), DecodedModel(other, DecodingConfig(do_sample=True)),
        probes), rel=1e-6)
    # A candidate that can never draw tokens the baseline draws: infinite, as sampling_kl says.
    assert math.isinf(sampling_kl_on_probes(peaky, DecodedModel(peaky, DecodingConfig(do_sample=True, top_k=3)),
                                            probes))
    # Truncation on the baseline side only is finite.
    assert math.isfinite(sampling_kl_on_probes(DecodedModel(peaky, DecodingConfig(do_sample=True, top_k=3)),
                                               other, probes))


def test_calibration_undoes_a_temperature_change(llama):
    probes = _mixed_probes()
    peaky = _sharpened(llama, 4.0)
    before = {k: v.clone() for k, v in peaky.state_dict().items()}
    candidate = DecodedModel(peaky, DecodingConfig(do_sample=True, temperature=0.6))
    result = calibrate_decoding(peaky, candidate, probes)
    assert result.name == "decoding_calibration"
    assert isinstance(result.model, DecodedModel) and result.model.model is peaky
    assert result.model.config.temperature == pytest.approx(1.0, abs=0.01)
    d = result.details
    assert d["kl_before"] == pytest.approx(sampling_kl_on_probes(peaky, candidate, probes), rel=1e-6)
    assert d["kl_after"] == pytest.approx(sampling_kl_on_probes(peaky, result.model, probes), rel=1e-5, abs=1e-9)
    assert d["kl_after"] < d["kl_before"] / 100
    assert re.fullmatch(r"temperature 0\.6 -> 1(\.0+)? \(sampling KL [0-9.e-]+ -> [0-9.e-]+ on 8 calibration probes\)",
                        result.description), result.description
    assert candidate.config.temperature == 0.6
    assert all(torch.equal(v, before[k]) for k, v in peaky.state_dict().items())


def test_calibration_recovers_a_logit_scale(llama):
    probes = _mixed_probes()
    baseline = _sharpened(llama, 4.0)
    flatter = _sharpened(baseline, 1 / 1.5)  # logits divided by 1.5, sampled at T=1
    assert applies(flatter)
    result = calibrate_decoding(baseline, flatter, probes)
    assert result.model.model is flatter
    assert result.model.config.temperature == pytest.approx(1 / 1.5, rel=0.01)
    assert result.details["kl_after"] < result.details["kl_before"] / 100


def test_fit_top_p_finds_the_baseline_nucleus(llama):
    probes = _mixed_probes()
    peaky = _sharpened(llama, 4.0)
    baseline = DecodedModel(peaky, DecodingConfig(do_sample=True, top_p=0.9))
    candidate = DecodedModel(peaky, DecodingConfig(do_sample=True, temperature=0.7, top_p=0.6))
    result = calibrate_decoding(baseline, candidate, probes, fit_top_p=True)
    assert result.model.config.top_p == 0.9
    assert result.model.config.temperature == pytest.approx(1.0, abs=0.01)
    assert result.details["kl_after"] < 1e-4 < result.details["kl_before"]
    assert {t["top_p"] for t in result.details["tried"]} == {0.6, 0.8, 0.9, 0.95, 0.98, 1.0}
    assert "top-p 0.6 -> 0.9" in result.description


def test_calibration_keeps_a_composed_modification(llama):
    probes = _mixed_probes()
    composed = Composed((QuantizationConfig(bits=4), DecodingConfig(do_sample=True, temperature=0.5)))
    candidate = composed.apply(_sharpened(llama, 4.0))
    result = calibrate_decoding(llama, candidate, probes)
    steps = result.model.hemorrhage_modification.steps
    assert steps[0] == QuantizationConfig(bits=4)
    assert steps[1] == result.model.config and steps[1].temperature != 0.5
    assert candidate.config.temperature == 0.5 and candidate.modification is composed


def test_calibration_errors(llama):
    probes = _mixed_probes()
    greedy = DecodedModel(llama, DecodingConfig(do_sample=False))
    assert not applies(greedy) and not applies("model") and applies(llama)
    assert applies(DecodedModel(llama, DecodingConfig(do_sample=True)))
    with pytest.raises(InvalidArgument, match="greedily"):
        calibrate_decoding(llama, greedy, probes)
    # Bad arguments read "{name}: must be {what}, got {value}" (pytest_hemorrhage.arguments).
    with pytest.raises(InvalidArgument, match="candidate: must be a sampling DecodedModel or an nn.Module.*got 'model'"):
        calibrate_decoding(llama, "model", probes)
    with pytest.raises(InvalidArgument, match="baseline"):
        calibrate_decoding("model", llama, probes)
    with pytest.raises(InvalidArgument, match="token probes"):
        calibrate_decoding(llama, llama, Probes.from_tensors(torch.randn(2, 3)))
    with pytest.raises(InvalidArgument, match="fit_top_p"):
        calibrate_decoding(llama, llama, probes, fit_top_p="yes")
    with pytest.raises(InvalidArgument, match="top_p_grid"):
        calibrate_decoding(llama, llama, probes, fit_top_p=True, top_p_grid=(0.0,))
    with pytest.raises(InvalidArgument, match="batch_size"):
        sampling_kl_on_probes(llama, llama, probes, batch_size=0)
    truncated = DecodedModel(llama, DecodingConfig(do_sample=True, top_k=1))
    with pytest.raises(HemorrhageError, match="infinite"):
        calibrate_decoding(llama, truncated, probes)


# ------------------------------------------------------------------ claim 3 on the default model


def test_claim3_temperature_calibration_on_default_model(hemorrhage_default_model):
    model, tokenizer = hemorrhage_default_model
    evaluation = Probes.builtin(tokenizer, n=16, max_length=64)
    (calibration,) = Probes.builtin_split(tokenizer, (8,), max_length=64, seed=1, exclude=evaluation)
    baseline = DecodedModel(model, DecodingConfig(do_sample=True, top_k=50))
    candidate = DecodedModel(model, DecodingConfig(do_sample=True, temperature=0.7, top_k=50))
    result = calibrate_decoding(baseline, candidate, calibration)
    before = sampling_kl_on_probes(baseline, candidate, evaluation)
    after = sampling_kl_on_probes(baseline, result.model, evaluation)
    assert result.model.config.temperature == pytest.approx(1.0, abs=0.05)
    assert after < before / 4, (before, after, result.description)


def test_an_abandoned_logit_stream_leaves_autograd_alone():
    """A generator that held inference mode across its yield leaked it into the caller."""
    from pytest_hemorrhage.mitigate.decoding_calibration import scored_logits
    from pytest_hemorrhage.probes import Probes

    stream = scored_logits(tiny_llama(), Probes.from_token_ids([[1, 2, 3, 4]] * 4), batch_size=1)
    next(stream)  # suspended mid-way, as a caller that stops early leaves it
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    stream.close()
