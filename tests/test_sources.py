"""Sources: eval mode restored exactly, the source protocol, one forward for one model under two samplers."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from tiny_models import random_token_ids, tiny_llama
from torch import nn

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import HemorrhageError
from pytest_hemorrhage.modify import DecodingConfig, quantize
from pytest_hemorrhage.modify.decoding import apply_repetition_penalty
from pytest_hemorrhage.probes import as_probes
from pytest_hemorrhage.sources.module import ModuleSource, evaluating
from pytest_hemorrhage.sources.observation import TensorObservation

pytestmark = pytest.mark.usefixtures("one_thread")


def training_flags(model: nn.Module) -> dict[str, bool]:
    return {name: module.training for name, module in model.named_modules()}


# ---------------------------------------------------------------------- evaluating
def test_a_training_submodule_under_an_eval_parent_is_restored():
    model = tiny_llama()  # built in eval mode
    model.model.layers[1].train()
    model.model.layers[2].mlp.train()
    before = training_flags(model)
    assert before["model.layers.1.mlp"] and before["model.layers.2.mlp"] and not before["model"]
    with evaluating(model):
        assert not any(training_flags(model).values())
    assert training_flags(model) == before


def test_an_eval_submodule_under_a_training_parent_is_restored():
    model = tiny_llama()
    model.train()
    model.model.layers[0].eval()
    model.lm_head.eval()
    before = training_flags(model)
    assert before[""] and not before["model.layers.0.self_attn"] and not before["lm_head"]
    with pytest.warns(UserWarning, match="baseline was in train mode"), evaluating(roles={"baseline": model}):
        assert not any(training_flags(model).values())
    assert training_flags(model) == before
    with pytest.raises(RuntimeError, match="inside"), evaluating(model):  # also when the block raises
        assert not any(training_flags(model).values())
        raise RuntimeError("inside")
    assert training_flags(model) == before


def test_a_comparison_restores_mixed_states_of_both_models():
    base, cand = tiny_llama(), tiny_llama(seed=1)
    base.model.layers[3].train()
    cand.train()
    cand.model.norm.eval()
    flags = training_flags(base), training_flags(cand)
    with pytest.warns(UserWarning, match="candidate was in train mode"):
        ph.compare(base, cand, random_token_ids(n=2, length=8))
    assert (training_flags(base), training_flags(cand)) == flags


def test_recording_a_snapshot_restores_mixed_states():
    model = tiny_llama()
    model.model.layers[2].train()
    flags = training_flags(model)
    ph.record_snapshot(model, random_token_ids(n=2, length=8))
    assert training_flags(model) == flags


def test_the_train_mode_warning_names_the_callers_line():
    model = tiny_llama()
    model.train()
    with pytest.warns(UserWarning, match="baseline was in train mode") as caught:
        ph.compare(model, copy.deepcopy(model).eval(), random_token_ids(n=2, length=8), layers=None)
    assert caught[0].filename == __file__


# ---------------------------------------------------------------------- the source protocol
class LogitsOnly:
    """A side that hands over every logit and nothing else: no blocks, no attention (as a runtime would)."""

    model = None
    decoding = None
    attentions = False
    parameters = None
    modification = None
    kind = None
    pad_id = None
    layer_names: list[str] = []
    device = torch.device("cpu")

    def __init__(self, model: nn.Module, role: str) -> None:
        self.origin, self.role, self.label = model, role, "logits only"
        self.forwards = 0

    def paired_with(self, candidate, generation):
        return candidate

    def probes_for(self, probes):
        return as_probes(probes)

    def check(self, probes):
        pass

    @contextlib.contextmanager
    def opened(self, device, attention):
        yield

    def observe(self, batch, blocks, attentions):
        self.forwards += 1
        logits = self.origin(batch.input_ids, attention_mask=batch.attention_mask).logits
        return TensorObservation(batch, "lm", logits)


class TopKOnly(LogitsOnly):
    """A side that gives no full logits (as a server returning only top-k log-probabilities)."""

    def observe(self, batch, blocks, attentions):
        return TensorObservation(batch, "lm", None)


@pytest.fixture(scope="module")
def pair():
    base = tiny_llama()
    return base, quantize(base, bits=4)


def estimates(report) -> dict[str, float]:
    return {name: metric.estimate for name, metric in report.metrics.items()}


def test_a_logits_only_baseline_gives_a_report_without_layers(pair):
    base, cand = pair
    ids = random_token_ids(n=6, length=12)
    source = LogitsOnly(base, "baseline")
    report = ph.compare(source, cand, ids, batch_size=4)
    assert source.forwards == 2
    assert report.layers == []
    assert report.unmatched_layers == {"candidate": [f"model.layers.{i}" for i in range(4)]}
    assert report.identity["baseline"] == "logits only" and report.identity["baseline_parameters"] is None
    # The same outputs as a live baseline measured on outputs only.
    assert estimates(report) == estimates(ph.compare(base, cand, ids, layers=None, batch_size=4))


def test_a_logits_only_candidate_is_measured_against_a_live_baseline(pair):
    base, cand = pair
    ids = random_token_ids(n=4, length=10)
    report = ph.compare(base, LogitsOnly(cand, "candidate"), ids)
    # No list of the baseline's blocks: the report's note says once that the candidate has none.
    assert report.layers == [] and report.unmatched_layers == {}
    assert any("(logits only) gives no hidden states" in note for note in report.notes)
    assert estimates(report) == estimates(ph.compare(base, cand, ids, layers=None))


@pytest.mark.parametrize("baseline", ["model", "snapshot"])
def test_a_candidate_without_full_logits_is_refused_with_the_cause(pair, baseline):
    base, cand = pair
    ids = random_token_ids(n=2, length=8)
    side = base if baseline == "model" else ph.record_snapshot(base, ids)
    with pytest.raises(HemorrhageError, match="gives no full"):
        ph.compare(side, TopKOnly(cand, "candidate"), ids)


def test_one_model_under_two_samplers_runs_one_forward_per_batch(pair):
    base, _ = pair
    calls = []
    handle = base.register_forward_hook(lambda *args: calls.append(1))
    try:
        report = ph.compare(base, DecodingConfig(do_sample=True, temperature=0.7).apply(base),
                            random_token_ids(n=6, length=10), batch_size=4)
    finally:
        handle.remove()
    assert len(calls) == 2
    assert report.metrics["kl"].estimate > 0 and report.layers == []


def test_a_twin_source_shares_its_primarys_adapter_and_checks(pair):
    base, _ = pair
    primary = ModuleSource(base, "baseline")
    twin = primary.twin(DecodingConfig(temperature=2.0, do_sample=True), base)
    assert twin.adapter is primary.adapter and primary.layer_names == []  # outputs only
    assert twin.role == "candidate" and twin.decoding.temperature == 2.0 and primary.decoding is None


# ---------------------------------------------------------------------- decoding maths
def test_model_scores_penalise_each_position_by_its_own_prefix():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 11, generator=g)
    ids = torch.randint(0, 11, (8,), generator=g)
    config = DecodingConfig(repetition_penalty=1.7)
    got = config.model_scores(logits, ids[:-1])
    for t in range(7):  # position t has seen ids[: t + 1]
        seen = set(ids[: t + 1].tolist())
        expected = [(v / 1.7 if v > 0 else v * 1.7) if i in seen else v for i, v in enumerate(logits[t].tolist())]
        assert got[t].tolist() == pytest.approx(expected, abs=0, rel=1e-6)
        assert torch.equal(got[t], apply_repetition_penalty(logits[t:t + 1], ids[None, : t + 1], 1.7)[0])
    assert torch.equal(DecodingConfig().model_scores(logits, ids[:-1]), logits)
