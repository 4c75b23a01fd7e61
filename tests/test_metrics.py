"""Metric functions against hand-computed values and independent formulas."""

import math

import pytest
import torch
import torch.nn.functional as F

from pytest_hemorrhage.metrics.activations import activation_sums, relative_error, sqnr_db
from pytest_hemorrhage.metrics.attention import attention_sums
from pytest_hemorrhage.metrics.outputs import TOPK_BLOCK, kl_from_log_probs, token_output_metrics, topk_ids


def test_kl_matches_torch_kl_div():
    g = torch.Generator().manual_seed(0)
    lb = torch.randn(50, 30, generator=g)
    lm = lb + 0.3 * torch.randn(50, 30, generator=g)
    ours = token_output_metrics(lb, lm, torch.zeros(50, dtype=torch.long))["kl"]
    ref = F.kl_div(F.log_softmax(lm, -1), F.log_softmax(lb, -1), log_target=True, reduction="none").sum(-1)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)


def test_kl_hand_computed_two_token_vocab():
    # p_b = (0.5, 0.5), p_m = (0.25, 0.75): KL = 0.5 ln 2 + 0.5 ln(2/3)
    lb = torch.log(torch.tensor([[0.5, 0.5]]))
    lm = torch.log(torch.tensor([[0.25, 0.75]]))
    expected = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert kl_from_log_probs(lb, lm).item() == pytest.approx(expected, rel=1e-6)


def test_kl_zero_mass_tokens_count_zero():
    lb = torch.tensor([[0.0, -math.inf]])  # all mass on token 0
    lm = torch.log(torch.tensor([[0.5, 0.5]]))
    assert kl_from_log_probs(lb, lm).item() == pytest.approx(math.log(2))


def test_identical_logits_give_exact_zeros_and_full_agreement():
    logits = torch.randn(20, 11)
    m = token_output_metrics(logits, logits.clone(), torch.randint(0, 11, (20,)), topk=3)
    assert torch.all(m["kl"] == 0)
    assert torch.all(m["dnll"] == 0)
    assert torch.all(m["dp2"] == 0)
    assert torch.all(m["top1"] == 1) and torch.all(m["topk"] == 1)


def test_paired_nll_top1_topk_and_dp_hand_values():
    pb = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    pm = torch.tensor([[0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    y = torch.tensor([0, 2])
    m = token_output_metrics(pb.log(), pm.log(), y, topk=2)
    assert m["top1"].tolist() == [0.0, 1.0]
    assert m["topk"].tolist() == [1.0, 1.0]  # {0,1} vs {1,0}; {2,1} vs {2,1}
    expected_dnll = [-math.log(0.2) + math.log(0.7), -math.log(0.7) + math.log(0.6)]
    assert m["dnll"].tolist() == pytest.approx(expected_dnll, rel=1e-5)
    assert m["dp2"].tolist() == pytest.approx([(0.2 - 0.7) ** 2, (0.7 - 0.6) ** 2], rel=1e-4)


def test_chunking_does_not_change_results():
    lb, lm = torch.randn(37, 9), torch.randn(37, 9)
    y = torch.randint(0, 9, (37,))
    whole = token_output_metrics(lb, lm, y, chunk_tokens=1000)
    chunked = token_output_metrics(lb, lm, y, chunk_tokens=5)
    for k in whole:
        torch.testing.assert_close(whole[k], chunked[k])


def test_bf16_inputs_are_computed_in_float32():
    lb = torch.randn(8, 16)
    m = token_output_metrics(lb.bfloat16(), lb.bfloat16(), torch.zeros(8, dtype=torch.long))
    assert m["kl"].dtype == torch.float32 and torch.all(m["kl"] == 0)


def test_sqnr_matches_independent_formula():
    x = torch.randn(2, 5, 7)
    y = x + 0.1 * torch.randn(2, 5, 7)
    s = activation_sums(x, y).sum(0)
    expected = 20 * math.log10(x.norm().item() / (x - y).norm().item())
    assert sqnr_db(s[0].item(), s[1].item()) == pytest.approx(expected, abs=1e-4)
    assert relative_error(s[0].item(), s[1].item()) == pytest.approx(((x - y).norm() / x.norm()).item(), rel=1e-5)
    cos = F.cosine_similarity(x, y, dim=-1).mean().item()
    assert (s[2] / s[3]).item() == pytest.approx(cos, rel=1e-5)


def test_activation_mask_excludes_padding():
    x = torch.randn(1, 4, 3)
    y = x.clone()
    y[0, 3] += 100.0  # only a padded position differs
    mask = torch.tensor([[1, 1, 1, 0]])
    s = activation_sums(x, y, mask)[0]
    assert s[1].item() == 0.0 and s[3].item() == 3.0
    assert sqnr_db(s[0].item(), s[1].item()) == math.inf


def test_attention_js_hand_value_and_bounds():
    p = torch.tensor([1.0, 0.0])
    q = torch.tensor([0.0, 1.0])
    a_b = p.view(1, 1, 1, 2).expand(1, 1, 2, 2).clone()
    a_m = q.view(1, 1, 1, 2).expand(1, 1, 2, 2).clone()
    s = attention_sums(a_b, a_m)[0, 0]
    assert (s[0] / s[2]).item() == pytest.approx(math.log(2), rel=1e-5)  # disjoint support: JS = ln 2
    assert s[1].item() == pytest.approx(0.0, abs=1e-6)  # both one-hot: no entropy change
    same = attention_sums(a_b, a_b.clone())[0, 0]
    assert same[0].item() == 0.0


def test_attention_entropy_shift_sign():
    sharp = torch.tensor([[[[0.9, 0.1]]]])
    flat = torch.tensor([[[[0.5, 0.5]]]])
    s = attention_sums(sharp, flat)[0, 0]
    expected = math.log(2) - (-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)))
    assert s[1].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("vocab", [49152, 50257, 3 * TOPK_BLOCK * 5 + 7, 300])
@pytest.mark.parametrize("k", [1, 5, 16])
def test_blockwise_topk_ids_are_the_top_k(vocab, k):
    # The CPU shortcut ranks only the k blocks with the largest maxima (and the tail); small
    # vocabularies fall back to torch.topk. Values are compared, so equal values may swap ids.
    g = torch.Generator().manual_seed(vocab + k)
    z = 3 * torch.randn(40, vocab, generator=g)
    z[1, : vocab // 2] = float("-inf")
    z[2, 5 * TOPK_BLOCK: 5 * TOPK_BLOCK + 20] = 50.0  # all of the top k in one block, tied
    z[3, -3:] = 60.0  # the top values in the ragged tail
    ids = topk_ids(z, k)
    assert ids.shape == (40, k)
    assert torch.equal(z.gather(1, ids), torch.topk(z, k, dim=-1).values)
    assert all(len(set(row)) == k for row in ids.tolist())  # k distinct ids per row
    # A strided view (one probe's rows of a padded batch) gives the same ids as a contiguous copy.
    batch = z.reshape(4, 10, vocab)
    torch.testing.assert_close(topk_ids(batch[2, :7], k), topk_ids(batch[2, :7].contiguous(), k))
