"""A model quantized by HQQ (half-quadratic quantization, ``HQQLinear`` modules on a CPU) as a candidate.

Apart from tests/test_quantizers.py: HQQ is one more optional library, and without it only these skip.
"""

from __future__ import annotations

import pytest
import torch

from pytest_hemorrhage.check import run_check
from pytest_hemorrhage.engine import compare
from pytest_hemorrhage.packed import packed_by, packed_modules
from test_quantizers import baseline, kl_by_hand, probes, quantized  # noqa: F401 (fixtures)

hqq_quantize = pytest.importorskip("hqq.core.quantize", reason="pip install hqq")
hqq_models = pytest.importorskip("hqq.models.hf.base", reason="pip install hqq")

pytestmark = pytest.mark.usefixtures("one_thread")


def hqq(bits: int):
    def quantize(model, modules=None):
        config = hqq_quantize.BaseQuantizeConfig(nbits=bits, group_size=64)
        hqq_models.AutoHQQHFModel.quantize_model(model, quant_config=config, compute_dtype=torch.float32,
                                                 device="cpu")
        return model
    return quantize


def test_hqq_int8_is_close_int4_measurably_worse(baseline, probes):
    int8, int4 = (quantized(baseline, hqq(bits)) for bits in (8, 4))
    assert packed_by(int8) == "hqq (hqq.core.quantize.HQQLinear)"
    reports = [compare(baseline, model, probes, batch_size=len(probes)) for model in (int8, int4)]
    assert reports[0].metrics["kl"].estimate == pytest.approx(kl_by_hand(baseline, int8, probes), rel=1e-4)
    assert 0 < reports[0].metrics["kl"].estimate < 1e-3 and reports[0].passed
    assert [layer.name for layer in reports[1].layers] == [f"model.layers.{i}" for i in range(4)]
    assert reports[1].metrics["kl"].ci_low > 10 * reports[0].metrics["kl"].ci_high


def test_a_failing_hqq_candidate_is_explained_and_repaired_by_fallback(baseline, probes):
    candidate = quantized(baseline, hqq(8))
    linears = len(packed_modules(candidate))  # HQQ leaves lm_head in float
    report = run_check(baseline, candidate, probes, max_kl=1e-9)
    assert not report.passed
    assert report.suggestion.startswith(f"verified fix: restored {linears} of {linears} modified linears")
    assert "mitigation gradient_pruning not tried: gradient pruning cannot run: the candidate's weights are " \
           "packed by hqq (hqq.core.quantize.HQQLinear)" in report.to_text()
