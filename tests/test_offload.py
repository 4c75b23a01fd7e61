"""Models placed by accelerate (dispatch_model with CPU and disk offload) compare like in-memory ones."""

from __future__ import annotations

import copy

import pytest
import torch
from accelerate import dispatch_model

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import InvalidArgument
from tiny_models import tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")

# Two blocks live on disk and are loaded on demand by accelerate's hooks (their parameters are meta).
DEVICE_MAP = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk",
              "model.layers.2": "disk", "model.layers.3": "cpu", "model.norm": "cpu",
              "model.rotary_emb": "cpu", "lm_head": "cpu"}


def _probes() -> list[list[int]]:
    g = torch.Generator().manual_seed(2)
    return [torch.randint(1, 128, (18,), generator=g).tolist() for _ in range(6)]


def _damaged(base):
    cand = copy.deepcopy(base)
    with torch.no_grad():
        cand.model.layers[1].mlp.down_proj.weight.mul_(1.5)
    return cand


def _offloaded(model, folder):
    return dispatch_model(model, device_map=DEVICE_MAP, offload_dir=str(folder))


def test_disk_offloaded_candidate_gives_the_in_memory_figures(tmp_path):
    base = tiny_llama()
    expected = ph.compare(base, _damaged(base), _probes())
    cand = _offloaded(_damaged(base), tmp_path)
    assert any(p.device.type == "meta" for p in cand.parameters())
    got = ph.compare(base, cand, _probes())
    assert got.metrics["kl"].estimate == pytest.approx(expected.metrics["kl"].estimate, rel=1e-6)
    assert [round(layer.sqnr_db, 6) for layer in got.layers] == [round(layer.sqnr_db, 6) for layer in expected.layers]


def test_both_sides_offloaded_and_snapshot_recorded_from_an_offloaded_baseline(tmp_path):
    base = tiny_llama()
    expected = ph.compare(base, _damaged(base), _probes())
    off_base = _offloaded(tiny_llama(), tmp_path / "b")
    off_cand = _offloaded(_damaged(tiny_llama()), tmp_path / "c")
    got = ph.compare(off_base, off_cand, _probes())
    assert got.metrics["kl"].estimate == pytest.approx(expected.metrics["kl"].estimate, rel=1e-6)
    snap = ph.record_snapshot(off_base, _probes(), tmp_path / "s.safetensors")
    from_snapshot = ph.compare(snap, _damaged(tiny_llama()))
    assert from_snapshot.metrics["top1"].estimate == pytest.approx(expected.metrics["top1"].estimate)


def test_moving_a_dispatched_model_is_refused(tmp_path):
    base = tiny_llama()
    cand = _offloaded(_damaged(base), tmp_path)
    with pytest.raises(InvalidArgument, match="accelerate"):
        ph.compare(base, cand, _probes(), device="cpu")
