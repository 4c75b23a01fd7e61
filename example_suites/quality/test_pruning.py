"""Unstructured magnitude pruning as model-quality unit tests.

``prune(model, sparsity)`` zeroes the smallest-|w| fraction of every linear layer of the
decoder (embeddings and lm_head are left alone) and returns a pruned *copy*.

Measured on SmolLM2-135M (mean KL in nats/token, same top-1, PPL ratio):

* 5 % sparsity, 32 probes x 128 tokens: KL 0.0073, top-1 96.0 %, PPL ratio 0.993 -> passes.
  (2 %: KL 0.0006; 10 %: KL 0.054, fails. This small model has little slack.)
* 50 % sparsity, 16 probes x 96 tokens: KL ~3.0, top-1 ~21 %, PPL ratio ~17 -> fails, and the
  damage is already past the layer-SQNR limit in the very first block (``model.layers.0``).
"""

from __future__ import annotations

import pytest

from pytest_hemorrhage import HemorrhageDetected
from pytest_hemorrhage.modify import prune


@pytest.fixture(scope="module")
def half_pruned_model(baseline_model):
    """50 % of the weights of every decoder linear layer set to zero."""
    return prune(baseline_model, sparsity=0.5, method="magnitude")


def test_mild_magnitude_pruning_passes(hemorrhage, baseline_model, probes):
    """5 % unstructured sparsity stays inside the default thresholds."""
    candidate = prune(baseline_model, sparsity=0.05, method="magnitude")

    report = hemorrhage.check(baseline_model, candidate, probes)

    assert report.passed
    assert report.metrics["kl"].ci_high < report.thresholds["max_kl"]
    assert report.first_bad_layer is None


@pytest.mark.xfail(
    strict=True,
    raises=HemorrhageDetected,
    reason="50 % magnitude pruning of every linear layer: mean KL ~3 nats/token, PPL ratio ~17 "
           "(measured); one-shot pruning this deep breaks a 135M model",
)
def test_half_magnitude_pruning_is_caught(hemorrhage, baseline_model, half_pruned_model, quick_probes):
    """The demonstration: this check must fail (strict: an unexpected pass is an error)."""
    hemorrhage.check(baseline_model, half_pruned_model, quick_probes, suggest=False)


def test_half_magnitude_pruning_report_names_first_bad_layer(hemorrhage, baseline_model, half_pruned_model,
                                                              quick_probes):
    """The asserting twin: what the failure says, so a reviewer knows where to look."""
    with pytest.raises(HemorrhageDetected) as excinfo:
        hemorrhage.check(baseline_model, half_pruned_model, quick_probes)
    report = excinfo.value.report
    lines = str(excinfo.value).splitlines()

    # Every output metric is far past its limit, not a borderline call.
    assert report.verdicts["kl"] == "fail"
    assert report.verdicts["top1"] == "fail"
    assert report.verdicts["ppl_ratio"] == "fail"
    assert report.metrics["ppl_ratio"].ci_low > 2.0

    # Every block was pruned, so the damage is visible from the first one on.
    first = report.first_bad_layer
    assert first is not None
    assert first.name == report.layers[0].name  # measured: model.layers.0 (SQNR ~10 dB)
    assert f"first layer past threshold: {first.name} (SQNR {first.sqnr_db:.1f} dB)" in lines

    assert lines[0].startswith("Model hemorrhage: mean KL")
    # How to accept it on purpose, last: the marker (a live baseline, so no snapshot to re-record).
    assert lines[-1].startswith("to accept this on purpose: loosen the threshold in @pytest.mark.hemorrhage(")

    # The mitigations that apply were tried on copies and re-measured: re-pruning the baseline to the
    # same sparsity with gradient-aware scores, and restoring layers. The best comes first.
    tried = {s["name"]: s for s in report.suggestions}
    assert "gradient_pruning" in tried
    assert tried["gradient_pruning"]["after"] < tried["gradient_pruning"]["before"] / 2  # measured ~3.0 -> ~0.74
    assert any(line.startswith(("verified fix: ", "best mitigation tried")) for line in lines)
