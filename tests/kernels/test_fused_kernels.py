"""The fused Triton kernels against independent PyTorch computations.

Without a GPU these run on CPU tensors under Triton's interpreter, which must be on before Triton
is first imported: ``tests/test_fused_kernels.py`` runs this folder in a fresh process with
``TRITON_INTERPRET=1`` (tests/conftest.py leaves it out of the main run otherwise). With the
interpreter on, ``compare`` itself goes through the kernels, so the whole pipeline is checked too.
On a GPU machine the folder is collected directly and the kernels run compiled, on CUDA tensors.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from pytest_hemorrhage.metrics import fused
from pytest_hemorrhage.metrics.activations import activation_sums
from pytest_hemorrhage.modify import quantize
from pytest_hemorrhage.snapshot import sign_keys, sketch_projection, sketch_signs, sketch_tokens
from tiny_models import assert_reports_agree, fused_and_plain_reports, tiny_llama

DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


@pytest.fixture
def interpreted(monkeypatch):
    """The kernel module, its kernels interpreted on CPU tensors, or compiled on a GPU."""
    monkeypatch.delenv("HEMORRHAGE_FUSED", raising=False)
    assert fused.enabled(torch.zeros(1, device=DEVICE)), (
        "run these tests with TRITON_INTERPRET=1 (tests/test_fused_kernels.py does) or on a GPU with Triton")
    return fused


def _on(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.to(DEVICE) for t in tensors]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter evaluates both sides of tl.where
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_logit_stats_match_log_softmax(interpreted, dtype):
    g = torch.Generator().manual_seed(1)
    zb = (3 * torch.randn(4, 6, 700, generator=g)).to(dtype)
    zm = (zb.float() + 0.4 * torch.randn(4, 6, 700, generator=g)).to(dtype)
    zb[0, 1, 5] = zm[0, 1, 5] = float("-inf")  # masked in both: 0·log 0 counts as 0
    zb[0, 3, 9] = float("-inf")  # masked in the baseline only: contributes nothing
    zm[0, 2, 7] = float("-inf")  # masked in the candidate only where p_b > 0: infinite KL
    flat_b, flat_m = zb.flatten(0, 1), zm.flatten(0, 1)
    rows = torch.tensor([0, 1, 2, 3, 5, 8, 23])
    stats = interpreted.logit_stats(*_on(flat_m, rows, flat_b), block=256)
    lse_m, lse_b, kl = (stats[k].cpu() for k in ("lse_m", "lse_b", "kl"))
    b64, m64 = flat_b[rows].double(), flat_m[rows].double()
    torch.testing.assert_close(lse_b.double(), torch.logsumexp(b64, -1), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(lse_m.double(), torch.logsumexp(m64, -1), rtol=1e-6, atol=1e-5)
    lp_b, lp_m = torch.log_softmax(b64, -1), torch.log_softmax(m64, -1)
    p_b = lp_b.exp()
    expected = torch.where(p_b > 0, p_b * (lp_b - lp_m), torch.zeros_like(p_b)).sum(-1)
    assert math.isinf(kl[2]) and math.isinf(expected[2])
    finite = torch.arange(len(rows)) != 2
    torch.testing.assert_close(kl[finite].double(), expected[finite], rtol=1e-4, atol=1e-6)
    only_m = interpreted.logit_stats(*_on(flat_m, rows))
    assert set(only_m) == {"lse_m"}
    torch.testing.assert_close(only_m["lse_m"].cpu(), lse_m)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_logit_stats_of_rows_whose_maximum_lies_far_past_the_first_chunk(interpreted):
    # The kernel shifts exponents by the first chunk's maximum; e^(z - shift) would overflow float32
    # for these rows, which must be summed again against their true maximum.
    g = torch.Generator().manual_seed(3)
    zb = torch.randn(4, 600, generator=g)
    zm = zb + 0.3 * torch.randn(4, 600, generator=g)
    zb[0, 500], zm[0, 400] = 150.0, 120.0  # both far above their first 128 entries
    zm[1, 300] = 95.0  # the candidate only
    zb[2, :128] = zm[2, :128] = float("-inf")  # the first chunk is all masked (shift 0) ...
    zb[2, 200] = zm[2, 201] = 300.0  # ... and the maxima are huge
    rows = torch.arange(4)
    stats = interpreted.logit_stats(*_on(zm, rows, zb), topk=2, block=128)
    b64, m64 = zb.double(), zm.double()
    torch.testing.assert_close(stats["lse_b"].cpu().double(), torch.logsumexp(b64, -1), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(stats["lse_m"].cpu().double(), torch.logsumexp(m64, -1), rtol=1e-6, atol=1e-5)
    lp_b, lp_m = torch.log_softmax(b64, -1), torch.log_softmax(m64, -1)
    p_b = lp_b.exp()
    expected = torch.where(p_b > 0, p_b * (lp_b - lp_m), torch.zeros_like(p_b)).sum(-1)
    torch.testing.assert_close(stats["kl"].cpu().double(), expected, rtol=1e-4, atol=1e-5)
    assert stats["kl"][0] > 20 and stats["kl"][2] > 90  # the maxima moved: large, finite divergences
    assert torch.equal(stats["top_b"].cpu(), _reference_top(zb, 2))


@pytest.mark.slow  # a top-4 under the interpreter
def test_logit_stats_of_identical_rows_give_exactly_zero_kl(interpreted):
    z = 5 * torch.randn(10, 333)
    stats = interpreted.logit_stats(*_on(z, torch.arange(10), z.clone()), topk=4, block=128)
    assert torch.equal(stats["kl"].cpu(), torch.zeros(10))
    assert torch.equal(stats["top_b"], stats["top_m"])


def _reference_top(z: torch.Tensor, k: int) -> torch.Tensor:
    """Ids of the k largest values, largest first, the lower id first on ties."""
    return torch.sort(-z.float(), dim=-1, stable=True).indices[:, :k]


# Each top-k of k > 1 costs the interpreter seconds to tens of seconds: those run in the slow tier.
@pytest.mark.parametrize(("k", "block"), [(1, 16)] + [pytest.param(k, block, marks=pytest.mark.slow)
                                                      for k, block in ((5, 16), (16, 16), (5, 512))])
def test_fused_top_ids_match_a_stable_sort(interpreted, k, block):
    # block 512 over a 300-word row leaves one value per lane, so the lane maxima are the top k;
    # block 16 puts about 19 values in each lane, so several of the top k often share a lane.
    g = torch.Generator().manual_seed(k)
    z = torch.randn(8, 300, generator=g)
    z[3, 100:120] = 9.0  # 20 tied maxima: ties go to the lower id
    z[4, :] = torch.randint(0, 3, (300,), generator=g).float()  # massive ties everywhere
    z[5, 7] = float("-inf")
    z[6, 3::16][:16] = 20.0 - torch.arange(16.0)  # the whole top 16 in one lane when block is 16
    rows = torch.arange(8)
    stats = interpreted.logit_stats(*_on(z, rows, z.flip(-1).contiguous()), topk=k, block=block)
    assert torch.equal(stats["top_m"].cpu(), _reference_top(z, k))
    assert torch.equal(stats["top_b"].cpu(), _reference_top(z.flip(-1), k))


def test_fused_top_ids_with_fewer_finite_words_than_k(interpreted):
    z = torch.full((2, 3), float("-inf"))
    z[0, 2] = 1.0
    z[1] = torch.tensor([0.5, 2.0, 0.5])
    stats = interpreted.logit_stats(*_on(z, torch.arange(2)), topk=3, block=4)
    assert stats["top_m"].tolist() == [[2, 0, 1], [1, 0, 2]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_row_products_match_float64_sums(interpreted, dtype):
    g = torch.Generator().manual_seed(2)
    b = torch.randn(37, 300, generator=g).to(dtype)
    m = (b.float() + 0.05 * torch.randn(37, 300, generator=g)).to(dtype)
    got = interpreted.row_products(*_on(b, m)).double().cpu()
    b64, m64 = b.double(), m.double()
    expected = torch.stack([(b64 * b64).sum(-1), (m64 * m64).sum(-1), (b64 * m64).sum(-1),
                            ((b64 - m64) ** 2).sum(-1)], dim=-1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("per_layer", ["stacked", "per-layer", "mixed-strides", "unaligned"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_sketch_rows_match_the_snapshot_signs_and_projection(interpreted, dtype, per_layer):
    layers, batch, width, hidden, dim = 3, 2, 9, 200, 16
    h = torch.randn(layers, batch, width, hidden).to(dtype)
    units, lengths = [4, 11], [9, 6]  # the second probe is right-padded
    rows = torch.cat([torch.arange(n) + r * width for r, n in enumerate(lengths)])
    keys = sign_keys(7, units, lengths, torch.device("cpu"))
    proj = sketch_projection(7, dim, hidden, torch.device("cpu"))
    flat, rows, keys, proj_on = _on(h.flatten(1, 2), rows, keys, proj)
    # Per layer: separate tensors, as the blocks' outputs arrive, read through a table of offsets;
    # layers laid out differently (a slice of a wider tensor, or not 16-byte aligned) are stacked instead.
    source = flat if per_layer == "stacked" else [flat[i].clone() for i in range(layers)]
    if per_layer == "mixed-strides":
        wide = torch.zeros(flat.shape[1], hidden + 8, dtype=dtype, device=flat.device)
        wide[:, :hidden] = flat[1]
        source[1] = wide[:, :hidden]
    if per_layer == "unaligned":  # starts one element past an aligned address
        shifted = torch.zeros(flat[1].numel() + 1, dtype=dtype, device=flat.device)
        shifted[1:] = flat[1].flatten()
        source[1] = shifted[1:].view_as(flat[1])
    y, norms = (t.cpu() for t in interpreted.sketch_rows(source, rows, keys, proj_on))
    rows = rows.cpu()
    selected = h.flatten(1, 2)[:, rows].double()
    signs = torch.cat([sketch_signs(7, u, n, hidden, torch.device("cpu")) for u, n in zip(units, lengths)]).double()
    expected = (selected * signs) @ proj.double().T
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(norms.double(), selected.norm(dim=-1), rtol=1e-5, atol=1e-5)
    # The kernel's sketch is the snapshot's (sketch_tokens divides by sqrt(d)).
    reference = sketch_tokens(selected.float(), signs.float(), proj) * math.sqrt(dim)
    torch.testing.assert_close(y, reference, rtol=1e-4, atol=1e-3)


def test_activation_sums_agree_with_and_without_the_kernel(interpreted, monkeypatch):
    b, m, mask = _on(torch.randn(3, 5, 64), torch.randn(3, 5, 64),
                     torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]))
    with_kernel = activation_sums(b, m, mask)
    monkeypatch.setenv("HEMORRHAGE_FUSED", "0")
    assert not fused.enabled(b)
    torch.testing.assert_close(with_kernel, activation_sums(b, m, mask), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # the whole pipeline, interpreted: minutes on a CPU
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_compare_and_snapshot_give_the_same_report_through_the_kernels(interpreted, monkeypatch):
    base = tiny_llama().to(DEVICE)
    cand = quantize(base, bits=4)
    g = torch.Generator().manual_seed(3)
    probes = [torch.randint(1, 128, (n,), generator=g).tolist() for n in (20, 13, 20, 7)]  # right padding too
    pairs = fused_and_plain_reports(base, cand, probes, monkeypatch, batch_size=2)
    for got, expected in pairs:
        assert_reports_agree(got, expected, rel=1e-5, sqnr_db=1e-3, cosine=1e-6)
    plain = pairs[0][1]
    assert plain.metrics["kl"].estimate > 1e-4  # the candidate really differs


def test_kernels_stay_off_without_triton_or_when_turned_off(monkeypatch):
    cpu = torch.zeros(1)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not fused.enabled(cpu)  # CPU tensors use the PyTorch formulas unless interpreting
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("HEMORRHAGE_FUSED", "0")
    assert not fused.enabled(cpu)
    monkeypatch.delenv("HEMORRHAGE_FUSED")
    monkeypatch.setattr(fused, "triton", None)
    assert not fused.enabled(cpu)
