"""suggest() and the explained failure: mitigations tried on copies, re-measured, shown in the message."""

from __future__ import annotations

import copy

import pytest
import torch

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import HemorrhageDetected, InvalidArgument
from pytest_hemorrhage.modify import DecodingConfig, quantize
from tiny_models import tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")

DAMAGED = "model.layers.1.mlp.down_proj"


def _probes(n: int = 12, length: int = 24) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(1, 128, (length,), generator=g).tolist() for _ in range(n)]


@pytest.fixture(scope="module")
def pair():
    base = tiny_llama()
    cand = copy.deepcopy(base)
    with torch.no_grad():  # one layer ruined, the rest untouched
        cand.get_submodule(DAMAGED).weight.mul_(-3.0)
    return base, cand


def test_fallback_suggestion_is_verified_by_an_independent_compare(pair):
    base, cand = pair
    before = {k: v.clone() for k, v in cand.state_dict().items()}
    report = ph.compare(base, cand, _probes())
    assert not report.passed
    found = ph.suggest(report, base, cand, _probes())
    assert found, "fallback applies to a same-shaped candidate"
    best = found[0]
    assert best.name == "fallback" and best.passed
    assert DAMAGED in best.description
    again = ph.compare(base, best.mitigation.model, _probes())
    assert best.after == pytest.approx(again.metrics[best.metric].estimate)
    assert best.before == pytest.approx(report.metrics[best.metric].estimate)
    assert all(torch.equal(v, cand.state_dict()[k]) for k, v in before.items())  # candidate untouched
    assert best.to_dict()["text"] == best.describe() and "(checked, passes)" in best.describe()


def test_failure_message_shows_the_pattern_and_the_verified_fix(pair):
    base, cand = pair
    with pytest.raises(HemorrhageDetected) as info:
        ph.assert_no_hemorrhage(base, cand, _probes())
    text = str(info.value)
    assert "verified fix: " in text and DAMAGED in text
    report = info.value.report
    assert report.suggestions and report.suggestions[0]["passed"]
    assert report.to_dict()["suggestions"][0]["name"] == "fallback"


def test_suggest_false_skips_the_mitigations(pair):
    base, cand = pair
    with pytest.raises(HemorrhageDetected) as info:
        ph.assert_no_hemorrhage(base, cand, _probes(), suggest=False)
    assert "verified fix" not in str(info.value)
    assert info.value.report.suggestions == []


def test_decoding_change_gets_a_temperature_calibration():
    base = tiny_llama()
    reference = DecodingConfig(do_sample=True, temperature=1.0).apply(base)
    changed = DecodingConfig(do_sample=True, temperature=0.4).apply(base)
    report = ph.compare(reference, changed, _probes(), max_kl=1e-4)
    assert not report.passed
    found = ph.suggest(report, reference, changed, _probes(), calibration=_probes(8, 16))
    assert [s.name for s in found] == ["decoding_calibration"]
    assert found[0].after < found[0].before / 10


def test_weight_change_is_not_offered_a_temperature_refit(pair):
    base, cand = pair
    report = ph.compare(base, cand, _probes())
    assert "decoding_calibration" not in [s.name for s in ph.suggest(report, base, cand, _probes())]


def test_quantized_candidate_is_offered_dynamic_scaling():
    base = tiny_llama()
    cand = quantize(base, bits=8, granularity="per_tensor", activation="static_per_tensor", activation_bits=4)
    report = ph.compare(base, cand, _probes(), max_kl=1e-5)
    names = [s.name for s in ph.suggest(report, base, cand, _probes(), mitigations=["dynamic_scaling"],
                                        calibration=_probes(6, 16))]
    assert names == ["dynamic_scaling"]


def test_suggest_rejects_snapshots_and_unknown_names(pair, tmp_path):
    base, cand = pair
    report = ph.compare(base, cand, _probes())
    snap = ph.record_snapshot(base, _probes(), tmp_path / "s.safetensors")
    with pytest.raises(InvalidArgument, match="snapshot"):
        ph.suggest(report, snap, cand, _probes())
    with pytest.raises(InvalidArgument, match="unknown"):
        ph.suggest(report, base, cand, _probes(), mitigations=["magic"])
