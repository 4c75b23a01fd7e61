"""Reading a report: which domains suffer (``report.by_tag``) and where in depth
(``report.layers_dataframe()``).

These tests use ``hemorrhage.compare(...)``, which returns the report without raising, because
they inspect a change that is *known* to be harmful rather than gate it.

Measured on SmolLM2-135M:

* Digit tokens remapped off by one (32 probes x 128 tokens): overall KL 0.13, but math
  0.45, list 0.23, qa 0.18, code 0.13, science 0.02, and prose, news, dialogue,
  instructions all below 0.002.
* 50 % magnitude pruning of blocks 3-5 only (16 probes x 96 tokens): blocks 0-2 exact
  (SQNR inf); SQNR 23.6 dB at block 3, 17.7 dB at block 5, then still falling through the
  untouched blocks 6-10 (17.4, 17.2, 16.8, 15.4, 15.2 dB). Block 11 jumps back to ~30 dB: from
  block 11 to 27 the first token of every probe carries a hidden state of norm ~23 000 (mostly
  dimension 507: an attention sink, vs ~150-600 for other tokens), which dominates the pooled
  signal power. Keep such jumps in mind when reading a layer table. The last block ends at
  15.9 dB.
"""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch

from pytest_hemorrhage.modify import prune


def _digits_remapped_off_by_one(model, tokenizer):
    """A copy whose token embeddings for '0'..'9' are rotated by one: '0' reads as '1', and so on.

    The kind of bug a vocabulary remap or embedding-trimming step can introduce: invisible
    on prose, severe wherever numbers matter. (SmolLM2 ties the input embeddings to lm_head,
    so the candidate also *predicts* shifted digits.)
    """
    ids = tokenizer.convert_tokens_to_ids([str(d) for d in range(10)])
    assert all(i is not None and i != tokenizer.unk_token_id for i in ids) and len(set(ids)) == 10, (
        "this demonstration needs a tokenizer with one token per digit 0-9; adapt it to your tokenizer"
    )
    candidate = copy.deepcopy(model)  # never touch the shared baseline
    with torch.no_grad():
        weight = candidate.get_input_embeddings().weight
        weight[ids] = weight[ids].roll(1, dims=0)
    return candidate


def test_by_tag_points_at_the_damaged_domain(hemorrhage, baseline_model, tokenizer, probes):
    """A change that breaks numbers shows up as a math problem, not as a general one."""
    candidate = _digits_remapped_off_by_one(baseline_model, tokenizer)

    report = hemorrhage.compare(baseline_model, candidate, probes)

    assert not report.passed
    by_tag = pd.DataFrame(report.by_tag).T.sort_values("kl", ascending=False)
    print("\nper-domain damage, worst first:\n", by_tag.to_string(float_format="{:.4f}".format))

    # Every probe domain gets its own row.
    assert set(by_tag.index) == set(probes.tags)
    assert by_tag["n_units"].sum() == len(probes)
    # The domain with the most digits suffers most, well above the all-probe mean ...
    assert by_tag.index[0] == "math"
    assert by_tag.loc["math", "kl"] > 2 * report.metrics["kl"].estimate
    assert by_tag.loc["math", "top1"] == by_tag["top1"].min()
    # ... while domains without numbers would still pass the KL gate on their own.
    max_kl = report.thresholds["max_kl"]
    clean = by_tag.index[by_tag["kl"] < max_kl]
    assert {"prose", "dialogue"} <= set(clean)


@pytest.mark.hemorrhage(min_layer_sqnr_db=16)
def test_layer_table_shows_damage_cascading_through_depth(hemorrhage, baseline_model, quick_probes):
    """Pruning three early blocks: exact before them, and the error keeps growing after them.

    This is the "information-loss cascade" of compression (Ma et al., 2025): the blocks after
    the pruned ones amplify the error they inherit, so the first block the report flags is one
    that was never modified. The marker moves the layer-SQNR limit (default 15 dB) to 16 dB;
    it only changes which layer is reported, not the output verdict.
    """
    modified = [3, 4, 5]
    candidate = prune(baseline_model, sparsity=0.5, method="magnitude",
                      targets=tuple(f"layers.{i}." for i in modified))

    report = hemorrhage.compare(baseline_model, candidate, quick_probes)

    table = report.layers_dataframe()
    print("\n", table[["index", "sqnr_db", "rel_error", "cosine"]].to_string(float_format="{:.3f}".format))
    assert {"index", "sqnr_db", "rel_error", "cosine", "n_tokens"} <= set(table.columns)
    assert len(table) == baseline_model.config.num_hidden_layers
    by_index = table.set_index("index")
    sqnr = by_index["sqnr_db"]
    first_mod, last_mod = modified[0], modified[-1]

    # Blocks before the first pruned one see exactly the baseline's activations.
    assert all(math.isinf(sqnr[i]) for i in range(first_mod))
    assert (by_index["rel_error"][:first_mod] == 0).all()
    # Damage starts at the first pruned block and deepens across the pruned span ...
    assert math.isfinite(sqnr[first_mod])
    assert sqnr[first_mod] - sqnr[last_mod] > 3.0  # measured: ~23.6 dB -> ~17.7 dB
    # ... and keeps growing in the untouched blocks after it (measured: down to ~15.2 dB) ...
    downstream = sqnr[sqnr.index > last_mod]
    assert downstream.iloc[0] < sqnr[last_mod]
    assert downstream.min() < sqnr[last_mod] - 1.5
    # ... so the first block past the limit is one that was not modified (measured: block 9),
    first = report.first_bad_layer
    assert first is not None and first.index > last_mod
    assert all(sqnr[i] >= report.thresholds["min_layer_sqnr_db"] for i in modified)
    # and the last block ends worse than the first pruned one: depth does not heal it.
    assert sqnr.iloc[-1] < sqnr[first_mod]
