"""Property-based fuzzing of weight quantization with Hypothesis, against a snapshot captured once.

What this file shows (measured on SmolLM2-135M, 8 built-in probes x 64 tokens, max_kl 0.02):

* A property that holds: 8-bit RTN with one scale per output channel or per group of weights
  never hemorrhages (mean KL 0.0006-0.0033, every gate passes).
* The same property over *all* 8-bit recipes is false, and Hypothesis shrinks the counterexample
  to the mildest one: ``RTN int8 asymmetric per-tensor`` (one scale for a whole matrix; mean KL
  ~0.057). Coarse scales hurt more than a lost bit.
* With per-channel scales, the mildest breaking bit width is found and checked to be at the
  boundary: ``RTN int7 asymmetric per-channel`` hemorrhages (same top-1 92.9 %, under
  min_top1_agreement 0.93, while its mean KL ~0.011 is inside max_kl); one bit more, int8, passes
  the whole gate.

"Hemorrhages" is the predicate Hypothesis searches with: a metric's *estimate* is past its
threshold (a decided failure, not merely "not proven safe": ``pytest_hemorrhage.fuzzing.hemorrhages``).
The strategies shrink toward milder modifications (higher bits, asymmetric, finer scales), so the
shrunk example is the mildest breaking one along that order. Every example costs one forward pass
of the candidate: the baseline's outputs come from ``fuzz_snapshot``.
"""

from __future__ import annotations

import dataclasses

import hypothesis.strategies as st
from hypothesis import Phase, example, find, given, settings

from pytest_hemorrhage.modify import QuantizationConfig
from pytest_hemorrhage.strategies import quantization_configs

#: Bounded, reproducible search: fixed seed, no example database, no wall-clock deadline
#: (an example is a model build plus a forward pass, a few seconds on 2 cores).
FUZZ = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
)


def milder_neighbours(config: QuantizationConfig) -> list[QuantizationConfig]:
    """Configs one step milder than ``config`` in the strategy's shrink order."""
    out = []
    if config.bits < 8:
        out.append(dataclasses.replace(config, bits=config.bits + 1))
    if config.symmetric:
        out.append(dataclasses.replace(config, symmetric=False))
    finer = {"per_tensor": "per_channel", "per_channel": "per_group"}.get(config.granularity)
    if finer is not None:
        out.append(dataclasses.replace(config, granularity=finer))
    return out


def test_working_copy_is_restored_to_the_baseline_exactly(bench, baseline_model):
    """The bench reuses one model copy; after a harsh modification it must equal the baseline again."""
    bench.build(QuantizationConfig(bits=2, granularity="per_tensor"))
    restored = bench.restore()
    assert restored is not baseline_model
    base = baseline_model.state_dict()
    for name, value in restored.state_dict().items():
        assert value.data_ptr() != base[name].data_ptr(), f"{name} shares storage with the baseline"
        assert value.equal(base[name]), f"{name} differs from the baseline after restore"


@settings(FUZZ, max_examples=5)
@given(config=quantization_configs(bits=8, granularity=st.sampled_from(("per_group", "per_channel"))))
@example(config=QuantizationConfig(bits=8, symmetric=True, granularity="per_channel"))  # the common recipe
def test_8bit_per_group_or_per_channel_never_hemorrhages(hemorrhage_fuzz, fuzz_snapshot, bench, config):
    """Holds: every example passes the full gate (confidence bounds inside the thresholds).

    ``hemorrhage_fuzz.check`` fails on a decided hemorrhage and would reject an inconclusive
    example; every example it returns passed.
    """
    candidate = bench.build(config)
    with bench.torch_threads():
        report = hemorrhage_fuzz.check(fuzz_snapshot, candidate, name=config.describe())
    assert report.passed


def test_any_8bit_is_safe_is_false_and_shrinks_to_per_tensor(bench, record_finding):
    """Hypothesis falsifies "every 8-bit recipe is safe" and shrinks to the mildest counterexample."""
    # One group size keeps the space to 6 recipes, so the search cannot miss per-tensor scales.
    found = find(quantization_configs(bits=8, group_size=128), bench.hemorrhages, settings=FUZZ)
    evaluation = bench.evaluate(found)
    record_finding("mildest breaking 8-bit recipe", evaluation)

    assert evaluation.hemorrhages
    # Shrunk: every one-step-milder recipe (finer scales, asymmetric) stays inside max_kl.
    for milder in milder_neighbours(found):
        assert not bench.hemorrhages(milder), bench.evaluate(milder).line()
    # Measured on the default model: one scale per whole matrix is what breaks 8 bits.
    assert found.granularity == "per_tensor"


def test_mildest_breaking_bit_width_is_at_the_boundary(bench, record_finding):
    """With per-channel scales, the shrunk bit width is the largest one that still hemorrhages."""
    found = find(quantization_configs(granularity="per_channel"), bench.hemorrhages, settings=FUZZ)
    evaluation = bench.evaluate(found)
    record_finding("mildest breaking per-channel bit width", evaluation)

    assert evaluation.hemorrhages
    assert not found.symmetric  # asymmetric (one more level) is milder and still breaks
    assert found.bits < 8
    one_more_bit = bench.evaluate(dataclasses.replace(found, bits=found.bits + 1))
    assert not one_more_bit.hemorrhages, one_more_bit.line()
    # Not just "no decided hemorrhage": one more bit passes the whole gate, confidence bounds included.
    assert one_more_bit.report.passed, one_more_bit.line()
