"""Token-sequence and sampling-distribution metrics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.metrics.generation import first_divergence, sampling_kl, token_agreement
from pytest_hemorrhage.modify import DecodingConfig, effective_log_probs

NEG_INF = -math.inf


def test_first_divergence_hand_values() -> None:
    a = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4], [9, 2, 3, 4], [1, 2, 3, 4]])
    b = torch.tensor([[1, 2, 3, 4], [1, 2, 0, 0], [1, 2, 3, 4], [1, 2, 3, 5]])
    got = first_divergence(a, b)
    assert got.dtype == torch.long
    assert got.tolist() == [4, 2, 0, 3]
    assert first_divergence(a, a).tolist() == [4, 4, 4, 4]
    empty = torch.zeros(3, 0, dtype=torch.long)
    assert first_divergence(empty, empty).tolist() == [0, 0, 0]


def test_first_divergence_against_python_loop() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 3, (50, 12), generator=g)
    b = torch.randint(0, 3, (50, 12), generator=g)
    b[:10] = a[:10]
    expected = [next((t for t in range(12) if ra[t] != rb[t]), 12) for ra, rb in zip(a.tolist(), b.tolist())]
    assert first_divergence(a, b).tolist() == expected


def test_token_agreement_hand_values() -> None:
    a = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4], [5, 6, 7, 8]])
    b = torch.tensor([[1, 2, 3, 4], [1, 0, 3, 0], [0, 0, 0, 8]])
    assert token_agreement(a, b).tolist() == [1.0, 0.5, 0.25]
    empty = torch.zeros(2, 0, dtype=torch.long)
    assert token_agreement(empty, empty).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("fn", [first_divergence, token_agreement])
def test_token_metrics_reject_bad_shapes(fn) -> None:
    with pytest.raises(InvalidArgument, match="tokens_b"):
        fn(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(InvalidArgument, match="tokens_a"):
        fn(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))


def test_sampling_kl_hand_value() -> None:
    p = torch.tensor([0.5, 0.25, 0.25])
    q = torch.tensor([0.25, 0.25, 0.5])
    # 0.5 ln 2 + 0 + 0.25 ln 0.5 = 0.25 ln 2
    assert sampling_kl(p.log(), q.log()).item() == pytest.approx(0.25 * math.log(2))
    assert sampling_kl(p.log(), p.log()).item() == 0.0


def test_sampling_kl_matches_torch_kl_div() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 5, 30, generator=g).log_softmax(-1)
    cand = torch.randn(4, 5, 30, generator=g).log_softmax(-1)
    want = F.kl_div(cand, base, log_target=True, reduction="none").sum(-1)
    got = sampling_kl(base, cand)
    assert got.shape == (4, 5)
    torch.testing.assert_close(got, want)


def test_sampling_kl_infinities() -> None:
    base = torch.tensor([[0.0, NEG_INF, NEG_INF], [math.log(0.5), math.log(0.5), NEG_INF], [0.0, NEG_INF, NEG_INF]])
    cand = torch.tensor([[math.log(0.5), math.log(0.5), NEG_INF], [0.0, NEG_INF, NEG_INF], [0.0, NEG_INF, NEG_INF]])
    got = sampling_kl(base, cand)
    # Row 0: base is one-hot on a token the candidate gives 0.5 -> ln 2 (0 log 0 terms vanish).
    assert got[0].item() == pytest.approx(math.log(2))
    # Row 1: base mass on a token the candidate can never draw -> +inf.
    assert got[1].item() == math.inf
    # Row 2: identical one-hots -> 0, not nan.
    assert got[2].item() == 0.0
    assert not torch.isnan(got).any()
    # torch's kl_div turns 0 * log 0 into nan here; ours does not.
    assert torch.isnan(F.kl_div(cand[2], base[2], log_target=True, reduction="none")).any()


def test_sampling_kl_between_effective_distributions() -> None:
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    full = effective_log_probs(logits, DecodingConfig(do_sample=True))
    top2 = effective_log_probs(logits, DecodingConfig(do_sample=True, top_k=2))
    # Truncating the candidate loses support: infinite divergence one way, finite the other.
    assert sampling_kl(full, top2).item() == math.inf
    p2 = torch.softmax(torch.tensor([2.0, 1.0]), -1)
    z = torch.logsumexp(logits, -1)
    expected = float((p2 * (p2.log() - (logits[:2] - z))).sum())
    assert sampling_kl(top2, full).item() == pytest.approx(expected, rel=1e-5)
    greedy = effective_log_probs(logits, DecodingConfig())
    assert sampling_kl(greedy, full).item() == pytest.approx(-(logits[0] - z).item(), rel=1e-5)


def test_sampling_kl_bad_inputs() -> None:
    with pytest.raises(InvalidArgument, match="logp_cand"):
        sampling_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(InvalidArgument, match="logp_base"):
        sampling_kl(torch.zeros(3, dtype=torch.long), torch.zeros(3))
