"""The runtime seam (pytest_hemorrhage.sources.runtime): a side that takes token ids and returns every logit.

The runtime here scores with a tiny torch model in the same process, so what the seam adds
(batching, the token checks, the report's wording) is tested against an independent computation
without a runtime installed; the real runtimes have their own tests.
"""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from tiny_models import VOCAB, tiny_llama

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import HemorrhageError, InvalidArgument
from pytest_hemorrhage.sources.runtime import RuntimeSource, require


class InProcessRuntime(RuntimeSource):
    """Scores with a torch model; its "tokenizer" writes id i as the word ``t<i>``."""

    runtime = "in-process"

    def __init__(self, model, *, merges=None, context=None, vocab=None):
        super().__init__("tiny-model")
        self.net, self.merges, self.context, self.vocab = model, merges or {}, context, vocab
        self.loads = 0

    @property
    def vocab_size(self):
        return self.vocab or self.net.config.vocab_size

    @property
    def context_length(self):
        return self.context

    def loaded(self):
        self.loads += 1
        return super().loaded()

    def score(self, ids):
        with torch.no_grad():
            return self.net(torch.tensor([ids])).logits[0].float()

    def detokenize(self, ids):
        return " ".join(f"t{i}" for i in ids)

    def tokenize(self, text):
        words = text.split()
        out = []
        while words:
            pair = " ".join(words[:2])
            if pair in self.merges:  # a tokenizer with a merge the probes' tokenizer lacks
                out.append(self.merges[pair])
                words = words[2:]
            else:
                out.append(int(words.pop(0)[1:]))
        return out


@pytest.fixture(scope="module")
def base():
    return tiny_llama(seed=3)


@pytest.fixture(scope="module")
def probes():
    gen = torch.Generator().manual_seed(0)
    lengths = [9, 14, 5, 12, 16, 7]
    return ph.Probes.from_token_ids([torch.randint(0, VOCAB, (n,), generator=gen).tolist() for n in lengths])


def test_a_runtime_of_the_same_weights_matches_the_live_model(base, probes):
    report = ph.compare(base, InProcessRuntime(copy.deepcopy(base)), probes, batch_size=4)
    assert report.passed
    assert report.metrics["kl"].estimate == pytest.approx(0.0, abs=1e-6)
    assert report.metrics["top1"].estimate == 1.0
    assert report.layers == []
    assert any("gives no hidden states" in note and "in-process tiny-model" in note for note in report.notes)


def test_a_runtime_is_scored_as_its_torch_model_would_be(base, probes):
    """Rows of different lengths in one batch: the runtime's KL equals the live candidate's."""
    noisy = copy.deepcopy(base)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    live = ph.compare(base, noisy, probes, batch_size=4, layers=None)
    runtime = ph.compare(base, InProcessRuntime(noisy), probes, batch_size=4)
    for metric in ("kl", "top1", "ppl_ratio"):
        assert runtime.metrics[metric].estimate == pytest.approx(live.metrics[metric].estimate, rel=1e-5)
    assert runtime.metrics["kl"].estimate > 1e-4


def test_a_snapshot_baseline_measures_a_runtime(base, probes, tmp_path):
    snap = ph.record_snapshot(base, probes, tmp_path / "base.safetensors")
    report = ph.compare(snap, InProcessRuntime(copy.deepcopy(base)))
    assert report.passed and report.metrics["kl"].estimate == pytest.approx(0.0, abs=1e-5)
    assert any("no hidden states" in note for note in report.notes)


def test_the_runtime_is_loaded_once_per_comparison(base, probes):
    runtime = InProcessRuntime(copy.deepcopy(base))
    ph.compare(base, runtime, probes, batch_size=2)
    assert runtime.loads == 2  # the token check, then the batches


def test_ids_another_tokenizer_made_are_refused_naming_the_first_differing_token(base, probes):
    first = probes.token_ids[0]
    merges = {f"t{first[3]} t{first[4]}": 7}
    with pytest.raises(HemorrhageError) as info:
        ph.compare(base, InProcessRuntime(copy.deepcopy(base), merges=merges), probes)
    message = str(info.value)
    assert "tokenizes probe 0 differently" in message
    assert f"position 3: probe id {first[3]} 't{first[3]}', runtime id 7" in message


def test_a_runtime_with_a_smaller_vocabulary_is_refused_naming_both_sizes(base):
    """A conversion that dropped tokens: refused before any probe runs, whatever ids the probes hold."""
    probes = ph.Probes.from_token_ids([[1, 2, 3], [4, 100, 5]])
    with pytest.raises(HemorrhageError, match=r"has 128 token ids, the candidate \(in-process tiny-model\) 64"):
        ph.compare(base, InProcessRuntime(copy.deepcopy(base), vocab=64), probes)


def test_a_probe_longer_than_the_runtimes_context_is_refused(base, probes):
    with pytest.raises(InvalidArgument, match="probe 1 has 14 tokens, more than the 10 positions"):
        ph.compare(base, InProcessRuntime(copy.deepcopy(base), context=10), probes)


def test_a_failing_runtime_candidate_explains_why_no_mitigation_applies(base, probes):
    broken = copy.deepcopy(base)
    with torch.no_grad():
        broken.model.layers[1].mlp.down_proj.weight.mul_(30)
    report = ph.explain(ph.compare(base, InProcessRuntime(broken), probes), base, InProcessRuntime(broken), probes)
    assert not report.passed
    assert report.suggestion.startswith("no mitigation applies: the candidate runs in in-process tiny-model")
    assert "ph.attribute" in report.suggestion and "ph.localise" in report.suggestion


def test_attention_is_refused_for_a_runtime(base, probes):
    with pytest.raises(InvalidArgument, match="gives no attention probabilities"):
        ph.compare(base, InProcessRuntime(copy.deepcopy(base)), probes, attention=True)


def test_a_missing_runtime_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(HemorrhageError, match=r"pip install 'pytest-hemorrhage\[llamacpp\]'"):
        require("llama_cpp", "llamacpp", "the llama.cpp runtime")
