"""compare() with decoding settings (DecodedModel on either side) and greedy-continuation metrics."""

from __future__ import annotations

import copy

import pytest
import torch

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import HemorrhageError, InvalidArgument
from pytest_hemorrhage.metrics.generation import first_divergence, sampling_kl
from pytest_hemorrhage.modify import DecodingConfig, effective_log_probs, generate_greedy, quantize

pytestmark = pytest.mark.usefixtures("one_thread")


def _probes(n: int = 6, length: int = 20, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 128, (length - (i % 3),), generator=g).tolist() for i in range(n)]


def _mean_sampling_kl(model, probes, base_cfg, cand_cfg) -> float:
    """Token-weighted mean KL of effective sampling distributions, computed probe by probe."""
    total, count = 0.0, 0
    with torch.no_grad():
        for ids in probes:
            x = torch.tensor([ids])
            logits = model(x).logits[0, :-1]
            prev = torch.stack([torch.tensor(ids[: t + 1] + [ids[t]] * (len(ids) - t - 2)) for t in range(len(ids) - 1)])
            lb = effective_log_probs(logits, base_cfg, prev)
            lm = effective_log_probs(logits, cand_cfg, prev)
            kl = sampling_kl(lb, lm)
            total += float(kl.sum())
            count += kl.numel()
    return total / count


def test_temperature_change_is_sampling_kl_of_one_model(llama):
    probes = _probes()
    base = DecodingConfig(do_sample=True, temperature=1.0)
    cand = DecodingConfig(do_sample=True, temperature=2.0)
    report = ph.compare(base.apply(llama), cand.apply(llama), probes)
    expected = _mean_sampling_kl(llama, probes, base, cand)
    assert report.metrics["kl"].estimate == pytest.approx(expected, rel=1e-4)
    assert report.identity["decoding"] == {"baseline": base.describe(), "candidate": cand.describe()}
    # One model under two samplers: perplexity is the model's, so it does not move.
    assert report.metrics["ppl_ratio"].estimate == pytest.approx(1.0, abs=1e-6)
    assert report.layers == []


def test_repetition_penalty_counts_only_earlier_tokens(llama):
    # The repeated-token construction in _mean_sampling_kl pads prev with a token already seen,
    # so it equals "tokens up to t"; a penalty makes the two distributions differ.
    probes = [[5, 6, 5, 7, 5, 6, 8, 9, 5, 6]]
    base = DecodingConfig(do_sample=True, temperature=0.05)
    cand = DecodingConfig(do_sample=True, temperature=0.05, repetition_penalty=3.0)
    report = ph.compare(base.apply(llama), cand.apply(llama), probes)
    assert report.metrics["kl"].estimate == pytest.approx(_mean_sampling_kl(llama, probes, base, cand), rel=1e-3)
    assert report.metrics["kl"].estimate > 1e-3


def test_plain_module_baseline_is_the_model_distribution(llama):
    probes = _probes(3)
    cand = DecodingConfig(do_sample=True, temperature=0.7, top_k=20)
    report = ph.compare(llama, cand.apply(llama), probes)
    expected = _mean_sampling_kl(llama, probes, DecodingConfig(do_sample=True), cand)
    assert report.metrics["kl"].estimate == pytest.approx(expected, rel=1e-4)
    assert report.identity["decoding"]["baseline"] == "model distribution"


def test_truncating_sampler_gives_infinite_kl_and_fails(llama):
    report = ph.compare(llama, DecodingConfig(do_sample=True, top_k=1).apply(llama), _probes(3))
    assert report.metrics["kl"].estimate == float("inf")
    assert not report.passed


def test_decoding_with_modified_weights_measures_layers_too(llama):
    cand = DecodingConfig(do_sample=True, temperature=1.0).apply(quantize(llama, bits=4))
    report = ph.compare(llama, cand, _probes(4))
    assert report.layers and report.metrics["kl"].estimate > 0
    assert "int4" in report.identity["modification"]


def test_same_model_same_decoding_is_rejected(llama):
    cfg = DecodingConfig(do_sample=True, temperature=1.3)
    with pytest.raises(HemorrhageError, match="same decoding settings"):
        ph.compare(cfg.apply(llama), cfg.apply(llama), _probes(2))


def test_snapshot_baseline_with_decoding_is_rejected(llama, tmp_path):
    probes = _probes(2)
    snap = ph.record_snapshot(llama, probes, tmp_path / "s.safetensors")
    with pytest.raises(InvalidArgument, match="live baseline"):
        ph.compare(snap, DecodingConfig(do_sample=True, temperature=2.0).apply(copy.deepcopy(llama)))


def test_generation_metrics_match_independent_greedy_decoding(llama):
    probes = _probes(5, length=12)
    candidate = quantize(llama, bits=3)
    report = ph.compare(llama, candidate, probes, generation=10)
    gen = report.generation
    prompt = torch.tensor([ids[: gen["prompt_tokens"]] for ids in probes])
    assert gen["prompt_tokens"] == min(len(p) for p in probes) - 1
    a = generate_greedy(llama, prompt, 10)[:, prompt.shape[1]:]
    b = generate_greedy(candidate, prompt, 10)[:, prompt.shape[1]:]
    first = first_divergence(a, b).double()
    assert gen["first_divergence_mean"] == pytest.approx(float(first.mean()))
    assert gen["first_divergence_min"] == int(first.min())
    assert gen["token_agreement"] == pytest.approx(float((a == b).double().mean()))
    assert gen["diverged_fraction"] == pytest.approx(float((first < 10).double().mean()))
    assert "greedy continuations (10 tokens)" in report.to_text()
    assert report.to_dict()["generation"]["new_tokens"] == 10


def test_identical_models_never_diverge(llama):
    report = ph.compare(llama, copy.deepcopy(llama), _probes(3), generation=6)
    assert report.generation["first_divergence_min"] == 6
    assert report.generation["diverged_fraction"] == 0.0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_bad_generation_argument(llama, bad):
    with pytest.raises(InvalidArgument, match="generation"):
        ph.compare(llama, copy.deepcopy(llama), _probes(2), generation=bad)
