"""GPU behaviour: bf16/fp16 capture, CUDA streams, --hemorrhage-device style moves.

Marked ``gpu``: tests/conftest.py deselects them (and says so in the header) where no CUDA device
is present; run them on a GPU machine with ``python -m pytest -m gpu tests/test_gpu.py``.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

import pytest_hemorrhage as ph
from pytest_hemorrhage.modify import quantize
from tiny_models import assert_reports_agree, fused_and_plain_reports, tiny_llama

pytestmark = pytest.mark.gpu


def _probes(n: int = 8, length: int = 24) -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(1, 128, (length,), generator=g).tolist() for _ in range(n)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_capture_on_cuda(dtype):
    base = tiny_llama().to("cuda", dtype)
    same = ph.compare(base, copy.deepcopy(base), _probes())
    assert same.passed and same.metrics["kl"].estimate == 0.0
    assert all(math.isinf(layer.sqnr_db) for layer in same.layers)
    report = ph.compare(base, quantize(base, bits=4), _probes())
    assert all(math.isfinite(m.estimate) for m in report.metrics.values())
    assert all(math.isfinite(layer.sqnr_db) for layer in report.layers)
    # The same comparison in fp32 on the CPU agrees to within half-precision noise.
    cpu = ph.compare(tiny_llama(), quantize(tiny_llama(), bits=4), _probes())
    assert report.metrics["kl"].estimate == pytest.approx(cpu.metrics["kl"].estimate, rel=0.25, abs=1e-3)


def test_side_stream_gives_the_same_report():
    base = tiny_llama().cuda()
    cand = quantize(base, bits=4)
    expected = ph.compare(base, cand, _probes()).to_json()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = ph.compare(base, cand, _probes()).to_json()
    stream.synchronize()
    assert got == expected


def test_device_argument_moves_models_and_back():
    base = tiny_llama()
    cand = quantize(base, bits=4)
    on_gpu = ph.compare(base, cand, _probes(), device="cuda")
    assert next(base.parameters()).device.type == "cpu" and next(cand.parameters()).device.type == "cpu"
    on_cpu = ph.compare(base, cand, _probes())
    assert on_gpu.metrics["kl"].estimate == pytest.approx(on_cpu.metrics["kl"].estimate, rel=1e-3)


def _our_hooks(model) -> int:
    """Forward hooks installed by this package (transformers adds output-capturing hooks of its own)."""
    return sum(hook.__module__.startswith("pytest_hemorrhage")
               for m in model.modules() for hook in list(m._forward_hooks.values()) + list(m._forward_pre_hooks.values()))


def test_hooks_are_removed_after_a_cuda_run():
    base = tiny_llama().cuda()
    cand = quantize(base, bits=4)
    before = _our_hooks(cand), _our_hooks(base)
    seen = []

    def count(name, h):  # capture hooks are live during the run ...
        seen.append(name)

    from pytest_hemorrhage.capture import adapt, capture_layers

    with capture_layers(adapt(cand).layers, count):
        assert _our_hooks(cand) > before[0]
    ph.compare(base, cand, _probes(), attention=True)
    assert (_our_hooks(cand), _our_hooks(base)) == before  # ... and gone afterwards


@pytest.mark.gpu2
def test_model_split_across_two_gpus_gives_the_single_gpu_figures():
    from accelerate import dispatch_model

    base = tiny_llama()
    cand = quantize(base, bits=4)
    expected = ph.compare(base.cuda(), cand.cuda(), _probes())
    device_map = {"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": 0, "model.layers.2": 1,
                  "model.layers.3": 1, "model.norm": 1, "model.rotary_emb": 1, "lm_head": 1}
    split_base = dispatch_model(copy.deepcopy(base), device_map=device_map)
    split_cand = dispatch_model(copy.deepcopy(cand), device_map=device_map)
    assert {p.device.index for p in split_cand.parameters()} == {0, 1}
    got = ph.compare(split_base, split_cand, _probes())
    assert got.metrics["kl"].estimate == pytest.approx(expected.metrics["kl"].estimate, rel=1e-4)
    assert [layer.name for layer in got.layers] == [layer.name for layer in expected.layers]
    for a, b in zip(got.layers, expected.layers):
        assert a.sqnr_db == pytest.approx(b.sqnr_db, abs=1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_fused_kernels_give_the_plain_pytorch_figures(dtype, monkeypatch):
    from pytest_hemorrhage.metrics import fused

    assert fused.enabled(torch.zeros(1, device="cuda")), "Triton is missing: the fused kernels are not tested"
    base = tiny_llama().to("cuda", dtype)
    cand = quantize(base, bits=4)
    probes = _probes() + [p[:11] for p in _probes(3)]  # right padding too
    pairs = fused_and_plain_reports(base, cand, probes, monkeypatch, batch_size=4)
    for got, expected in pairs:
        assert_reports_agree(got, expected, rel=1e-4, sqnr_db=1e-2, cosine=1e-5)
    plain = pairs[0][1]
    assert plain.metrics["kl"].estimate > 1e-4
