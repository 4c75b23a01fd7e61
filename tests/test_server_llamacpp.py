"""The server candidate against a real llama-cpp-python server on the default model's Q4_1 GGUF (slow tier).

Reference numbers come from llama.cpp itself, run in this process on the same file with every
logit (``llama_cpp.Llama(logits_all=True)``): what the server returns must be those numbers,
and every bound must hold against them.
"""

from __future__ import annotations

import math

import pytest
import torch

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import HemorrhageError, InvalidArgument
from pytest_hemorrhage.llama_server import serve_gguf
from pytest_hemorrhage.models import default_model, default_model_path
from pytest_hemorrhage.sources.runtime import RuntimeSource

pytestmark = pytest.mark.slow

KEY = "sk-slow-test-key-9931"
KEY_ENV = "HEMORRHAGE_TEST_SERVER_KEY"


class DirectLlama(RuntimeSource):
    """Every logit of the GGUF file from llama.cpp in this process: the independent reference."""

    runtime = "llama.cpp in process"

    def __init__(self, llama) -> None:
        super().__init__("Q4_1 GGUF")
        self.llama = llama

    @property
    def vocab_size(self) -> int:
        return self.llama.n_vocab()

    def score(self, ids):
        self.llama.reset()
        self.llama.eval(ids)
        return torch.from_numpy(self.llama.scores[: len(ids)].copy()).float()


@pytest.fixture(scope="module")
def setup():
    import llama_cpp

    model, tokenizer = default_model()
    probes = ph.Probes.builtin(tokenizer, n=6, max_length=40)
    snapshot = ph.record_snapshot(model, probes, tokenizer=tokenizer, layers=None)
    llama = llama_cpp.Llama(str(default_model_path()), n_ctx=512, logits_all=True, n_threads=1, verbose=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, KEY)
        with serve_gguf(default_model_path(), alias="smol", api_key=KEY) as url:
            yield {"model": model, "tokenizer": tokenizer, "probes": probes, "snapshot": snapshot,
                   "direct": DirectLlama(llama), "url": url}


def server(setup, topk: int):
    return ph.openai_server(setup["url"], model="smol", topk=topk, tokenizer=setup["tokenizer"], api_key_env=KEY_ENV)


def test_returned_log_probabilities_are_llama_cpp_s(setup):
    """Per position: the top tokens, their log-probabilities and the real token's are llama.cpp's own."""
    source = server(setup, 5)
    probes = setup["probes"]
    source.check(probes)
    batch = next(iter(probes.batches(3, pad_id=0)))
    with source.loaded():
        seen = source.observe(batch)
    compared = 0
    for row, n in enumerate(batch.attention_mask.sum(1).tolist()):
        ids = batch.input_ids[row, :n].tolist()
        logp = torch.log_softmax(setup["direct"].score(ids).double(), -1)
        # llama-cpp-python's layout for a prompt without a start token: the first prediction is missing.
        assert seen.top_logp[row, 0, 0] == -math.inf
        for t in range(1, n - 1):
            values, top = logp[t].topk(5)
            got = seen.top_ids[row, t, :5]
            known = got >= 0
            assert torch.equal(got[known], top[known]), (row, t)
            assert torch.allclose(seen.top_logp[row, t, :5], values, atol=2e-3), (row, t)
            target = seen.target_logp[row, t]
            if not math.isnan(target):
                assert target == pytest.approx(float(logp[t, ids[t + 1]]), abs=2e-3)
            compared += 1
    assert compared > 50


def test_bounds_hold_against_every_logit(setup):
    snapshot, model = setup["snapshot"], setup["model"]
    exact_live = ph.compare(model, setup["direct"], setup["probes"], layers=None)
    exact_snap = ph.compare(snapshot, setup["direct"], layers=None)
    sources = [server(setup, 5), server(setup, 20), server(setup, 20)]
    k5 = ph.compare(snapshot, sources[0], layers=None)
    k20 = ph.compare(snapshot, sources[1], layers=None)
    live20 = ph.compare(model, sources[2], setup["probes"], layers=None)
    tokens = exact_snap.metrics["kl"].n_tokens
    for bounded, source in zip((k5, k20, live20), sources):
        assert bounded.metrics["kl"].bound == "lower" and bounded.metrics["kl"].verdict != "pass"
        assert bounded.metrics["kl"].estimate <= exact_live.metrics["kl"].estimate * (1 + 1e-3) + 1e-6
        assert bounded.metrics["ppl_ratio"].estimate <= exact_snap.metrics["ppl_ratio"].estimate * (1 + 1e-3)
        gap = exact_snap.metrics["top1"].estimate - bounded.metrics["top1"].estimate
        # Only positions the server gave no answer for (the first of each probe) or whose top
        # token's text several ids share may count against it.
        assert source.missing_rows >= len(setup["probes"])
        assert -1e-9 <= gap <= (source.missing_rows + source.unidentified) / tokens + 1e-9
        assert "k = " in bounded.to_text() and "was the limit" in bounded.to_text()
    assert k20.metrics["kl"].estimate >= k5.metrics["kl"].estimate - 1e-9
    assert live20.metrics["kl"].estimate >= k20.metrics["kl"].estimate - 1e-9  # a live baseline knows more
    for text in (k5.to_json(), k5.to_text(), k5.to_markdown(), k5.to_html(), repr(server(setup, 5))):
        assert KEY not in text


def test_wrong_model_and_missing_key(setup, monkeypatch):
    with pytest.raises(InvalidArgument, match="'nope' is not served by .*; it serves 'smol'"):
        ph.compare(setup["snapshot"], ph.openai_server(setup["url"], model="nope", tokenizer=setup["tokenizer"],
                                                       api_key_env=KEY_ENV), layers=None)
    with pytest.raises(HemorrhageError, match="HTTP 401.*set the API key in the environment variable NO_SUCH_KEY"):
        ph.compare(setup["snapshot"], ph.openai_server(setup["url"], model="smol", tokenizer=setup["tokenizer"],
                                                       api_key_env="NO_SUCH_KEY"), layers=None)


def test_the_command_line_gates_a_server_against_a_snapshot(setup, tmp_path, capsys, monkeypatch):
    """`hemorrhage compare SNAPSHOT --runtime openai URL`: a bound cannot pass, so the gate exits 1, and the
    JSON says which metrics are bounds; the key is read from the named variable and written nowhere."""
    import json

    from pytest_hemorrhage.cli import main

    snapshot_path = tmp_path / "base.safetensors"
    ph.record_snapshot(setup["model"], setup["probes"], snapshot_path, tokenizer=setup["tokenizer"], layers=None)
    setup["tokenizer"].save_pretrained(tmp_path / "tokenizer")
    monkeypatch.setenv(KEY_ENV, KEY)
    code = main(["compare", str(snapshot_path), "--runtime", "openai", setup["url"], "--model", "smol",
                 "--topk", "5", "--tokenizer", str(tmp_path / "tokenizer"), "--api-key-env", KEY_ENV,
                 "--json", str(tmp_path / "report.json"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    report = json.loads((tmp_path / "report.json").read_text())
    kl = next(m for m in report["metrics"] if m["name"] == "kl")
    assert kl["bound"] == "lower" and kl["verdict"] in ("inconclusive", "fail")
    assert "k = 5 was the limit" in captured.out
    assert KEY not in captured.out + captured.err + (tmp_path / "report.json").read_text()
