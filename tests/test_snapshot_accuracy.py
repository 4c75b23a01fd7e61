"""Snapshot estimates against the exact comparison on the embedded default model (SmolLM2-135M).

Targets: KL within 5 % (relative) of the exact value; layer SQNR within 0.5 dB; same-top-1 and
PPL ratio exact; at most 2 % of a full-vocabulary fp16 row per scored token.
"""

import pytest

import pytest_hemorrhage as ph
from pytest_hemorrhage.modify import prune, quantize
from pytest_hemorrhage.probes import Probes

pytestmark = pytest.mark.slow

CANDIDATES = {
    "int8": lambda m: quantize(m, bits=8),
    "int4": lambda m: quantize(m, bits=4, granularity="per_group", group_size=64),
    "pruned50": lambda m: prune(m, sparsity=0.5),
}


@pytest.fixture(scope="module")
def setup(hemorrhage_default_model, tmp_path_factory):
    model, tokenizer = hemorrhage_default_model
    probes = Probes.builtin(tokenizer, n=16, max_length=128)
    path = tmp_path_factory.mktemp("snap") / "smollm2.safetensors"
    ph.record_snapshot(model, probes, path, tokenizer=tokenizer)
    return model, probes, ph.load_snapshot(path)


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_snapshot_estimates_match_exact_comparison(setup, name):
    model, probes, snap = setup
    candidate = CANDIDATES[name](model)
    exact = ph.compare(model, candidate, probes)
    approx = ph.compare(snap, candidate)
    kl_exact, kl_snap = exact.metrics["kl"].estimate, approx.metrics["kl"].estimate
    assert abs(kl_snap / kl_exact - 1) < 0.05, (kl_exact, kl_snap)
    assert approx.metrics["top1"].estimate == exact.metrics["top1"].estimate
    assert approx.metrics["ppl_ratio"].estimate == pytest.approx(exact.metrics["ppl_ratio"].estimate, rel=1e-6)
    assert approx.metrics["topk"].estimate == exact.metrics["topk"].estimate
    assert [layer.name for layer in approx.layers] == [layer.name for layer in exact.layers]
    for a, b in zip(exact.layers, approx.layers):
        assert abs(a.sqnr_db - b.sqnr_db) < 0.5, (a.name, a.sqnr_db, b.sqnr_db)


def test_snapshot_size_per_scored_token(setup):
    model, _, snap = setup
    full_fp16_row = model.config.vocab_size * 2
    assert snap.bytes_per_scored_token <= 0.02 * full_fp16_row
    assert snap.path.stat().st_size / snap.n_scored_tokens <= 0.02 * full_fp16_row + 64
