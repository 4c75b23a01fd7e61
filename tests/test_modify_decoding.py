"""Decoding configs, effective sampling distributions and greedy generation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.modify import DecodedModel, DecodingConfig, effective_log_probs, generate_greedy
from tiny_models import random_token_ids, tiny_llama


pytestmark = pytest.mark.usefixtures("one_thread")


def _hand_distribution(logits: list[float], temperature: float, top_k: int, top_p: float) -> list[float]:
    """Plain-Python reference: temperature, then top-k, then top-p (smallest top set with mass >= top_p)."""
    scaled = [x / temperature for x in logits]
    allowed = set(range(len(scaled)))
    if top_k:
        kth = sorted(scaled, reverse=True)[top_k - 1]
        allowed = {i for i in allowed if scaled[i] >= kth}
    z = sum(math.exp(scaled[i]) for i in allowed)
    probs = {i: math.exp(scaled[i]) / z for i in allowed}
    if top_p < 1.0:
        kept, mass = set(), 0.0
        for i in sorted(allowed, key=lambda i: -probs[i]):
            kept.add(i)
            mass += probs[i]
            if mass >= top_p:
                break
        allowed = kept
    z = sum(probs[i] for i in allowed)
    return [probs[i] / z if i in allowed else 0.0 for i in range(len(logits))]


@pytest.mark.parametrize(
    "temperature,top_k,top_p",
    [(1.0, 0, 1.0), (0.5, 0, 1.0), (2.0, 3, 1.0), (1.0, 0, 0.6), (0.7, 4, 0.8), (1.3, 1, 1.0), (1.0, 0, 0.05)],
)
def test_matches_hand_computation(temperature: float, top_k: int, top_p: float) -> None:
    logits = [2.0, -1.0, 0.5, 3.0, 0.0, 1.5, -2.0, 0.25]
    cfg = DecodingConfig(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p)
    got = effective_log_probs(torch.tensor(logits), cfg).exp().tolist()
    want = _hand_distribution(logits, temperature, top_k, top_p)
    assert got == pytest.approx(want, abs=1e-6)
    assert sum(got) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "temperature,top_k,top_p,penalty",
    [(0.8, 10, 0.9, 1.0), (1.5, 0, 0.7, 1.3), (1.0, 5, 1.0, 0.8), (0.6, 0, 0.95, 1.1)],
)
def test_matches_transformers_processors(temperature: float, top_k: int, top_p: float, penalty: float) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, generator=g) * 3
    prev = torch.randint(0, 50, (6, 7), generator=g)
    procs = LogitsProcessorList()
    if penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(penalty))
    procs.append(TemperatureLogitsWarper(temperature))
    if top_k:
        procs.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        procs.append(TopPLogitsWarper(top_p))
    want = procs(prev, logits.clone()).log_softmax(-1)
    cfg = DecodingConfig(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=penalty)
    got = effective_log_probs(logits, cfg, prev)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    finite = torch.isfinite(want)
    torch.testing.assert_close(got[finite], want[finite], rtol=1e-5, atol=1e-5)


def test_greedy_is_one_hot_at_argmax() -> None:
    logits = torch.tensor([[0.1, 2.0, -1.0, 2.0], [5.0, 0.0, 1.0, 4.9]])
    logp = effective_log_probs(logits, DecodingConfig())
    assert logp.exp().tolist() == [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]  # first max wins ties
    assert logp[0, 1] == 0 and torch.isneginf(logp[0, 0])
    # Sampling settings are irrelevant for greedy; repetition penalty is not.
    assert torch.equal(effective_log_probs(logits, DecodingConfig(temperature=3.0, top_p=0.1)), logp)
    penalised = effective_log_probs(logits, DecodingConfig(repetition_penalty=2.0), torch.tensor([[1], [0]]))
    assert penalised.exp().tolist() == [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]]


def test_repetition_penalty_convention() -> None:
    logits = torch.tensor([2.0, -2.0, 1.0])
    cfg = DecodingConfig(do_sample=True, repetition_penalty=2.0)
    got = effective_log_probs(logits, cfg, torch.tensor([0, 1, 1]))
    torch.testing.assert_close(got, torch.tensor([1.0, -4.0, 1.0]).log_softmax(-1))


def test_batch_shapes_and_dtype() -> None:
    logits = torch.randn(2, 3, 11, dtype=torch.float16)
    out = effective_log_probs(logits, DecodingConfig(do_sample=True, top_k=3))
    assert out.shape == (2, 3, 11) and out.dtype == torch.float32
    assert (torch.isfinite(out).sum(-1) == 3).all()


def test_generate_greedy_matches_naive_loop() -> None:
    model = tiny_llama()
    prompt = random_token_ids(2, 5)
    got = generate_greedy(model, prompt, 6)
    tokens = prompt
    with torch.no_grad():
        for _ in range(6):
            nxt = model(tokens, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            tokens = torch.cat([tokens, nxt], dim=1)
    assert torch.equal(got, tokens)
    # With a repetition penalty the continuation avoids repeats the plain one makes.
    penalised = generate_greedy(model, prompt, 6, DecodingConfig(repetition_penalty=100.0))
    assert penalised.shape == got.shape
    for row in penalised[:, 5:]:
        assert len(set(row.tolist())) == 6


def test_decoded_model_holder() -> None:
    model = tiny_llama()
    cfg = DecodingConfig(do_sample=True, temperature=0.7, top_k=5)
    decoded = cfg.apply(model)
    assert isinstance(decoded, DecodedModel) and not isinstance(decoded, nn.Module)
    assert decoded.model is model and decoded.hemorrhage_modification is cfg
    prompt = random_token_ids(2, 4)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = decoded.generate(prompt, 5, generator=g1)
    assert torch.equal(a, decoded.generate(prompt, 5, generator=g2))
    # Every sampled token lies in the top-5 of the model's logits at that step.
    with torch.no_grad():
        logits = decoded(a).logits
    for t in range(4, 9):
        top = logits[:, t - 1].float().div(0.7).topk(5).indices
        assert all(a[b, t] in top[b] for b in range(2))
    greedy = DecodingConfig().apply(model)
    assert torch.equal(greedy.generate(prompt, 4), generate_greedy(model, prompt, 4))


def test_describe_and_strength() -> None:
    assert DecodingConfig().describe() == "greedy decoding"
    assert DecodingConfig().strength == 0.0
    cfg = DecodingConfig(do_sample=True, temperature=0.5, top_k=10, top_p=0.9)
    assert cfg.describe() == "sampling T=0.5, top-k 10, top-p 0.9"
    assert cfg.strength == pytest.approx(math.log(2) + 0.1 + 0.1)
    hotter, colder = DecodingConfig(do_sample=True, temperature=2.0), DecodingConfig(do_sample=True, temperature=0.5)
    assert hotter.strength == colder.strength


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"temperature": 0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"do_sample": 1}, "do_sample"),
    ],
)
def test_bad_arguments(kwargs: dict, argument: str) -> None:
    with pytest.raises(InvalidArgument, match=argument):
        DecodingConfig(**kwargs)


def test_bad_inputs() -> None:
    with pytest.raises(InvalidArgument, match="prev_tokens"):
        effective_log_probs(torch.zeros(2, 5), DecodingConfig(), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(InvalidArgument, match="prev_tokens"):
        effective_log_probs(torch.zeros(2, 5), DecodingConfig(), torch.full((2, 2), 5))
    with pytest.raises(InvalidArgument, match="config"):
        effective_log_probs(torch.zeros(5), {"temperature": 1.0})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="max_new_tokens"):
        generate_greedy(tiny_llama(), random_token_ids(1, 3), -1)
