"""suggest() and the explained failure: mitigations tried on copies, re-measured, shown in the message."""

from __future__ import annotations

import copy

import pytest
import torch

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import HemorrhageDetected, InvalidArgument
from pytest_hemorrhage.mitigate import Applies, Mitigation, SimpleMitigator
from pytest_hemorrhage.mitigate.registry import MITIGATIONS, register, unregister
from pytest_hemorrhage.mitigate.suggest import not_applicable
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


# --------------------------------------------------------------------------- the mitigation protocol


class UndoScale:
    """A user's own mitigation: divides the damaged layer's weight by the factor that ruined it."""

    name = "undo_scale"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def applies(self, baseline, candidate):
        if not isinstance(candidate, torch.nn.Module) or DAMAGED not in dict(candidate.named_modules()):
            return Applies.no(f"the candidate has no {DAMAGED}")
        return Applies.yes()

    def mitigate(self, baseline, candidate, calibration, thresholds, *, probes=None, **options):
        self.calls.append((calibration, thresholds, probes))
        model = copy.deepcopy(candidate)
        with torch.no_grad():
            model.get_submodule(DAMAGED).weight.div_(-3.0)
        return Mitigation(self.name, model, f"divided {DAMAGED} by -3", {"factor": -3.0})


@pytest.fixture
def undo_scale():
    mitigator = register(UndoScale())
    yield mitigator
    unregister(mitigator.name)


def test_a_registered_mitigation_is_tried_and_re_measured(pair, undo_scale):
    base, cand = pair
    probes = _probes()
    report = ph.compare(base, cand, probes)
    found = {s.name: s for s in ph.suggest(report, base, cand, probes, calibration=_probes(4, 16))}
    assert set(found) == {"undo_scale", "fallback"}
    mine = found["undo_scale"]
    # It got the calibration probes, the failing report's thresholds and the evaluation probes.
    (calibration, thresholds, judged), = undo_scale.calls
    assert calibration == _probes(4, 16) and judged is probes
    assert {k: getattr(thresholds, k) for k in report.thresholds} == report.thresholds
    assert mine.description == f"divided {DAMAGED} by -3" and mine.details == {"factor": -3.0}
    # The weight is back up to rounding, so an independent compare agrees with the suggestion's figure.
    again = ph.compare(base, mine.mitigation.model, probes)
    assert mine.passed and again.passed
    assert mine.after == pytest.approx(again.metrics[mine.metric].estimate)
    assert mine.before == pytest.approx(report.metrics[mine.metric].estimate)


def test_a_mitigation_that_does_not_apply_says_why(pair, undo_scale):
    base, _ = pair
    quantized = quantize(base, bits=4)
    reasons = not_applicable(base, DecodingConfig(do_sample=False).apply(base))
    assert set(reasons) == {"gradient_pruning", "dynamic_scaling", "decoding_calibration", "fallback", "undo_scale"}
    assert "decodes greedily" in reasons["decoding_calibration"]
    assert f"no {DAMAGED}" in reasons["undo_scale"]
    reasons = not_applicable(base, quantized)
    assert set(reasons) == {"gradient_pruning", "dynamic_scaling", "decoding_calibration"}
    assert "RTN int4" in reasons["gradient_pruning"] and "not unstructured pruning" in reasons["gradient_pruning"]
    assert "nothing to rescale" in reasons["dynamic_scaling"]
    assert "cannot undo changed weights" in reasons["decoding_calibration"]
    report = ph.compare(base, quantized, _probes())
    names = [s.name for s in ph.suggest(report, base, quantized, _probes(), mitigations=["undo_scale"])]
    assert names == ["undo_scale"] and len(undo_scale.calls) == 1


def test_register_checks_the_protocol_and_names():
    class NoMitigate:
        name = "half"

        def applies(self, baseline, candidate):
            return True

    with pytest.raises(InvalidArgument, match="mitigator: must be an object with a name"):
        register(NoMitigate())
    with pytest.raises(InvalidArgument, match="'fallback'.*replace=True"):
        register(SimpleMitigator("fallback", lambda b, c: True, lambda *a, **k: None))
    with pytest.raises(InvalidArgument, match="registered mitigation"):
        unregister("magic")
    assert list(MITIGATIONS) == ["gradient_pruning", "dynamic_scaling", "decoding_calibration", "fallback"]


def _restructured(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose damaged linear sits inside an ``nn.Sequential``: the same function under
    other parameter names, so no module has a baseline counterpart to restore. (A candidate from
    ``torch.ao.quantization.quantize_dynamic`` no longer serves: fallback swaps its packed linears.)"""
    restructured = copy.deepcopy(model)
    parent, _, child = DAMAGED.rpartition(".")
    setattr(restructured.get_submodule(parent), child, torch.nn.Sequential(restructured.get_submodule(DAMAGED)))
    return restructured


def test_when_no_mitigation_applies_the_failure_says_why_for_each(pair):
    base, cand = pair
    # The damaged linear moved under another name: no built-in mitigation can prune, rescale,
    # refit or restore it.
    dynamic = _restructured(cand)
    reasons = not_applicable(base, dynamic)
    assert set(reasons) == set(MITIGATIONS)  # the premise: none applies
    with pytest.raises(HemorrhageDetected) as info:
        ph.assert_no_hemorrhage(base, dynamic, _probes())
    report = info.value.report
    assert report.suggestions == []
    expected = "no mitigation applies: " + "; ".join(f"{name}: {why}" for name, why in reasons.items())
    assert report.suggestion == expected
    assert expected in str(info.value).splitlines()
    assert "not a model from quantize" in reasons["dynamic_scaling"]
    assert ph.Report.from_dict(report.to_dict()).suggestion == expected  # kept in the JSON report


def test_a_mitigation_that_applies_but_breaks_is_named_apart_from_those_that_do_not_apply(pair):
    base, cand = pair

    def broken(baseline, candidate, calibration, thresholds, probes=None):
        raise InvalidArgument("broken: cannot mitigate")

    register(SimpleMitigator("always_breaks", lambda baseline, candidate: Applies.yes(), broken))
    try:
        dynamic = _restructured(cand)
        report = ph.compare(base, dynamic, _probes())
        with pytest.warns(UserWarning, match="mitigation always_breaks was not verified: broken: cannot mitigate"):
            ph.explain(report, base, dynamic, _probes())
    finally:
        unregister("always_breaks")
    assert report.suggestion.startswith("no mitigation could be verified: gradient_pruning: ")
    assert report.suggestion.endswith("; always_breaks: failed while it was tried (see its warning)")
