"""A pull-request gate against a committed baseline snapshot.

CI often cannot hold the baseline model next to the candidate, so the baseline is a snapshot
(`snapshots/smollm2-135m-gate.safetensors`, recorded once from the embedded SmolLM2-135M on 16
built-in probes) and only the candidate runs here. Recipes under test are the deployment
recipes a team would change in a pull request.

Re-record after an intended baseline change:
    python -m pytest example_suites/ci_gate --hemorrhage-update
"""

from __future__ import annotations

from pathlib import Path

import pytest

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import HemorrhageDetected
from pytest_hemorrhage.modify import prune, quantize

SNAPSHOT_NAME = "smollm2-135m-gate"
SNAPSHOT_FILE = Path(__file__).parent / "snapshots" / f"{SNAPSHOT_NAME}.safetensors"


@pytest.fixture
def gate_snapshot(hemorrhage, baseline_model, tokenizer):
    """The committed snapshot, checked against the current baseline (model, tokenizer, probes).

    Recorded on first use (the test then fails saying so); a stale one names what changed.
    """
    gate_probes = ph.Probes.builtin(tokenizer, n=16, max_length=128)
    return hemorrhage.snapshot(baseline_model, gate_probes, name=SNAPSHOT_NAME)


def test_snapshot_is_committed_and_small(baseline_model):
    """The gate must not depend on recording in CI: the snapshot ships with the repository."""
    snap = ph.load_snapshot(SNAPSHOT_FILE)
    assert snap.meta["probes"]["n"] == 16
    full_row_bytes = baseline_model.config.vocab_size * 2  # one fp16 logit per vocabulary entry
    assert snap.bytes_per_scored_token < 0.02 * full_row_bytes


def test_int8_weight_recipe_passes_the_gate(hemorrhage, gate_snapshot, baseline_model):
    hemorrhage.check(gate_snapshot, quantize(baseline_model, bits=8, granularity="per_channel"))


@pytest.mark.xfail(raises=HemorrhageDetected, strict=True,
                   reason="demonstration: 4-bit round-to-nearest weights hemorrhage on this model")
def test_int4_weight_recipe_is_blocked(hemorrhage, gate_snapshot, baseline_model):
    hemorrhage.check(gate_snapshot, quantize(baseline_model, bits=4, granularity="per_group", group_size=64))


def test_pruning_recipe_is_blocked_with_first_bad_layer(hemorrhage, gate_snapshot, baseline_model):
    with pytest.raises(HemorrhageDetected) as info:
        hemorrhage.check(gate_snapshot, prune(baseline_model, sparsity=0.3))
    report = info.value.report
    assert report.first_bad_layer is not None
    assert str(info.value).startswith("Model hemorrhage:")
    assert "first layer past threshold: model.layers." in str(info.value)
