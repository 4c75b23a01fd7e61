"""The OpenAI-compatible server candidate against a small local HTTP server (fast tier).

The local server answers completions from a tiny torch model's own logits, in the standard
layout or in llama-cpp-python's, or answers badly on purpose; the real llama-cpp-python server
is exercised in test_server_llamacpp.py (slow tier). Top-k metrics are checked against the
full-logit comparison of the same two models, computed independently by the engine.
"""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from tiny_models import VOCAB, random_token_ids, tiny_llama

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import HemorrhageError, InvalidArgument
from pytest_hemorrhage.metrics.outputs import kl_from_log_probs
from pytest_hemorrhage.metrics.topk import coarse_kl, topk_token_metrics
from pytest_hemorrhage.probes import Probes

KEY = "sk-test-never-printed-4411"


class WordTokenizer:
    """Token ``i`` is the text ``w{i} ``; with ``ambiguous``, ids 0 and 1 both decode to "" (like partial UTF-8 bytes)."""

    def __init__(self, ambiguous: bool = False) -> None:
        self.ambiguous = ambiguous

    def __len__(self) -> int:
        return VOCAB

    def piece(self, i: int) -> str:
        return "" if i < 2 and self.ambiguous else f"w{i} "

    def decode(self, ids, **_) -> str:
        return "".join(self.piece(i) for i in ids)

    def batch_decode(self, batch, **_) -> list[str]:
        return [self.decode(ids) for ids in batch]


class FakeServer:
    """Completions from ``model``'s logits; ``mode`` picks the layout or a fault."""

    def __init__(self, model: torch.nn.Module, mode: str = "standard", model_name: str = "tiny",
                 tokenizer: WordTokenizer | None = None) -> None:
        self.model, self.mode, self.model_name = model, mode, model_name
        self.tok = tokenizer or WordTokenizer()
        self.seen_keys: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):
                outer.seen_keys.append(self.headers.get("Authorization", ""))
                self._send(200, json.dumps({"object": "list", "data": [{"id": outer.model_name}]}))

            def do_POST(self):
                outer.seen_keys.append(self.headers.get("Authorization", ""))
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, text = outer.answer(body)
                self._send(status, text)

            def _send(self, status: int, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, body: dict) -> tuple[int, str]:
        if self.mode == "error":
            return 500, json.dumps({"error": {"message": f"internal failure, key {KEY}"}})
        ids = body["prompt"]
        if self.mode == "text_only":  # as llama-cpp-python's server: text prompts only
            if not isinstance(ids, str):
                return 500, json.dumps({"error": {"message": "validation error: ('body', 'prompt', 'str')"}})
            ids = [int(word[1:]) for word in ids.split()]
        k = body["logprobs"]
        with torch.no_grad():
            logp = torch.log_softmax(self.model(torch.tensor([ids])).logits[0].double(), -1)
        pieces = [self.tok.piece(i) for i in ids]
        n = len(ids)
        after = self.mode == "after"
        entries_tokens, token_lp, tops = [], [], []
        for j in range(n):
            row = j if after else j - 1  # the distribution this entry shows
            entries_tokens.append(pieces[j])
            if j == 0:
                token_lp.append(None)
                tops.append(None)
                continue
            values, top = logp[row].topk(k)
            asked = k - 1 if self.mode == "short" else k
            # Keyed by text, as servers key them: tokens of one text collide, the last one stays.
            d = {self.tok.piece(int(i)): float(v) for v, i in zip(values[:asked], top[:asked])}
            if self.mode != "short":
                d[pieces[j]] = float(logp[row, ids[j]])
            token_lp.append(float(logp[row, ids[j]]))
            tops.append(d)
        if not after:  # the generated token's entry
            entries_tokens.append("w5 ")
            token_lp.append(-0.1)
            tops.append({"w5 ": -0.1})
        answer = {"choices": [{"text": "", "logprobs": {"tokens": entries_tokens, "token_logprobs": token_lp,
                                                        "top_logprobs": tops, "text_offset": [0] * len(tops)}}]}
        text = json.dumps(answer)
        if self.mode == "truncated":
            text = text[: len(text) // 2]
        if self.mode == "fewer_positions":
            answer["choices"][0]["logprobs"] = {key: v[:-3] for key, v in answer["choices"][0]["logprobs"].items()}
            text = json.dumps(answer)
        if self.mode == "foreign":
            text = text.replace('"w7 "', '"zz "')
        return 200, text


@pytest.fixture(scope="module")
def models():
    base = tiny_llama(seed=0, init_std=0.2)
    cand = tiny_llama(seed=0, init_std=0.2)
    with torch.no_grad():
        for p in cand.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    probes = Probes.from_token_ids((random_token_ids(n=6, length=16, seed=3) % (VOCAB - 2) + 2).tolist())
    return base, cand, probes


def test_topk_candidate_matches_full_logits_where_exact(models, one_thread):
    base, cand, probes = models
    full = ph.compare(base, cand, probes, layers=None, topk=5)
    with FakeServer(cand) as server:
        source = ph.openai_server(server.url, model="tiny", topk=5, tokenizer=WordTokenizer())
        bounded = ph.compare(base, source, probes, layers=None, topk=5)
    for name in ("top1", "topk", "ppl_ratio", "rms_dp"):
        assert bounded.metrics[name].estimate == pytest.approx(full.metrics[name].estimate, rel=1e-5, abs=1e-7), name
        assert bounded.metrics[name].bound is None
    kl = bounded.metrics["kl"]
    assert kl.bound == "lower" and 0 < kl.estimate <= full.metrics["kl"].estimate + 1e-6
    assert kl.verdict != "pass"
    assert "k = 5 was the limit" in bounded.to_text() and "≥" in bounded.to_text()
    assert json.loads(bounded.to_json())["metrics"][0]["bound"] == "lower"
    assert ph.Report.from_dict(bounded.to_dict()).metrics["kl"].bound == "lower"


def test_a_server_that_takes_text_only_gets_the_probes_text(models, one_thread):
    base, cand, probes = models
    full = ph.compare(base, cand, probes, layers=None, topk=5)
    with FakeServer(cand, mode="text_only") as server:
        source = ph.openai_server(server.url, model="tiny", topk=5, tokenizer=WordTokenizer(), retries=0)
        bounded = ph.compare(base, source, probes, layers=None, topk=5)
    assert bounded.metrics["ppl_ratio"].estimate == pytest.approx(full.metrics["ppl_ratio"].estimate, rel=1e-6)


@pytest.mark.parametrize("mode, ambiguous", [("after", False), ("standard", True)])
def test_missing_answers_give_lower_bounds(models, mode, ambiguous, one_thread):
    """llama-cpp-python's layout (entry j after token j: the first prediction is missing, a target
    outside the top k is censored), or top tokens whose text several ids share."""
    base, cand, probes = models
    full = ph.compare(base, cand, probes, layers=None, topk=5)
    tokenizer = WordTokenizer(ambiguous)
    with FakeServer(cand, mode=mode, tokenizer=tokenizer) as server:
        bounded = ph.compare(base, ph.openai_server(server.url, model="tiny", topk=5, tokenizer=tokenizer),
                             probes, layers=None, topk=5)
    for name in ("kl", "top1") + (("ppl_ratio",) if mode == "after" else ()):
        m = bounded.metrics[name]
        assert m.bound == "lower", name
        assert m.estimate <= full.metrics[name].estimate + 1e-6, name
    assert bounded.metrics["kl"].verdict != "pass" and bounded.metrics["ppl_ratio"].verdict != "pass"


@pytest.mark.parametrize("baseline_top", [0, 8, 50])
def test_bound_never_exceeds_true_kl_and_tightens_with_k(baseline_top):
    """``baseline_top``: how many of its top tokens the baseline knows besides the target (a
    snapshot records some, a live model all)."""
    g = torch.Generator().manual_seed(0)
    logits_b = torch.randn(400, 50, generator=g, dtype=torch.float64) * 3
    logits_m = logits_b + torch.randn(400, 50, generator=g, dtype=torch.float64) * 2
    lb, lm = torch.log_softmax(logits_b, -1), torch.log_softmax(logits_m, -1)
    true = kl_from_log_probs(lb, lm)
    targets = torch.randint(0, 50, (400,), generator=g)
    base_lp, base_ids = lb.topk(max(baseline_top, 1))
    base_lp, base_ids = base_lp[:, :baseline_top], base_ids[:, :baseline_top]
    previous = torch.zeros(400)
    for k in (1, 5, 20, 50):
        lq, ids = lm.topk(k)
        # Where the baseline does not know a returned token: NaN, as a snapshot gives it.
        at = torch.where((ids.unsqueeze(-1) == base_ids.unsqueeze(-2)).any(-1) | (ids == targets[:, None]),
                         lb.gather(-1, ids), torch.full(ids.shape, math.nan, dtype=torch.float64))
        values = topk_token_metrics(ids, lq, lm.gather(-1, targets[:, None])[:, 0], k, targets, at,
                                    lb.gather(-1, targets[:, None])[:, 0], lb.topk(max(k, baseline_top)).indices
                                    if baseline_top else lb.topk(1).indices,
                                    lb.topk(max(k, baseline_top)).values if baseline_top else lb.topk(1).values, 1)
        assert (values["kl"].double() <= true * (1 + 1e-6) + 1e-9).all()  # float32 results
        assert (values["kl"] >= previous - 1e-6).all()  # more known: a smaller set of consistent q
        previous = values["kl"]
        assert torch.allclose(values["dnll"].double(), (lb - lm).gather(-1, targets[:, None])[:, 0], atol=1e-6)
    if baseline_top == 50:
        assert torch.allclose(previous.double(), true, atol=1e-5)  # every token known: the KL itself


def test_the_cap_tightens_the_bound_where_harm_is_large():
    """A baseline token of probability 0.9 that the candidate ranks below its top 2 (so q <= 0.25 there)."""
    lb = torch.tensor([[0.9, 0.04, 0.03, 0.02, 0.01]], dtype=torch.float64).log()
    lm = torch.tensor([[0.01, 0.3, 0.2, 0.25, 0.24]], dtype=torch.float64).log()
    true = float(kl_from_log_probs(lb, lm))
    lq, ids = lm.topk(2)  # ids 1 and 3
    target = torch.tensor([1])
    capped = float(topk_token_metrics(ids, lq, lm[:, 1], 2, target, lb.gather(-1, ids), lb[:, 1],
                                      lb.topk(3).indices, lb.topk(3).values, 1)["kl"])
    merged = float(coarse_kl(lb.gather(-1, ids), lq, torch.ones(1, 2, dtype=torch.bool)))
    assert merged + 0.3 < capped <= true
    # Water-filling by hand: token 0 at its cap 0.25, token 2 (p 0.03) and the rest (p 0.01) share 0.2 in proportion.
    head = float((lb.exp() * (lb - lm))[0, [1, 3]].sum())
    by_hand = head + 0.9 * math.log(0.9 / 0.25) + 0.04 * math.log(0.04 / 0.2)
    assert capped == pytest.approx(by_hand, abs=1e-4)


def test_coarse_kl_of_identical_distributions_is_zero():
    lp = torch.log_softmax(torch.randn(3, 10, dtype=torch.float64), -1)
    assert torch.all(coarse_kl(lp[:, :4], lp[:, :4], torch.ones(3, 4, dtype=torch.bool)) == 0)


def test_api_key_is_sent_but_never_shown(models, monkeypatch, one_thread):
    base, cand, probes = models
    monkeypatch.setenv("MY_KEY", KEY)
    with FakeServer(cand) as server:
        source = ph.openai_server(server.url, model="tiny", topk=5, tokenizer=WordTokenizer(), api_key_env="MY_KEY")
        report = ph.compare(base, source, probes, layers=None, topk=5)
        assert f"Bearer {KEY}" in server.seen_keys
    for text in (report.to_json(), report.to_text(), report.to_markdown(), report.to_html(), repr(source), source.label):
        assert KEY not in text
    with FakeServer(cand, mode="error") as server:
        source = ph.openai_server(server.url, model="tiny", topk=5, tokenizer=WordTokenizer(), api_key_env="MY_KEY",
                                  retries=1)
        with pytest.raises(HemorrhageError) as err:
            ph.compare(base, source, probes, layers=None, topk=5)
    assert "HTTP 500" in str(err.value) and KEY not in str(err.value) and "***" in str(err.value)


@pytest.mark.parametrize("mode, message", [
    ("truncated", "not valid JSON (malformed or truncated)"),
    ("short", "log-probabilities, 5 were asked"),
    ("fewer_positions", "log-probabilities for 14 positions, the probe has 16 tokens"),
    ("foreign", "'zz ', which no id of the tokenizer decodes to"),
])
def test_bad_answers_are_errors(models, mode, message, one_thread):
    base, cand, probes = models
    with FakeServer(cand, mode=mode) as server:
        source = ph.openai_server(server.url, model="tiny", topk=5, tokenizer=WordTokenizer())
        with pytest.raises(HemorrhageError, match=r"probe \d+"):
            try:
                ph.compare(base, source, probes, layers=None, topk=5)
            except HemorrhageError as exc:
                assert message in str(exc)
                raise


def test_wrong_model_name_lists_the_served_ones(models, one_thread):
    base, cand, probes = models
    with FakeServer(cand) as server:
        with pytest.raises(InvalidArgument, match=r"'other' is not served by .*; it serves 'tiny'"):
            ph.compare(base, ph.openai_server(server.url, model="other", tokenizer=WordTokenizer()), probes,
                       layers=None)


def test_unreachable_server_and_bad_options():
    source = ph.openai_server("http://127.0.0.1:9/v1", model="m", tokenizer=WordTokenizer(), retries=0, timeout=2)
    with pytest.raises(HemorrhageError, match="cannot reach .* after 1 attempts"):
        ph.compare(tiny_llama(), source, Probes.from_token_ids([[2, 3, 4]]), layers=None)
    with pytest.raises(InvalidArgument, match="topk"):
        ph.openai_server("http://x/v1", topk=0)
    with pytest.raises(InvalidArgument, match="url"):
        ph.openai_server("x:8000")
    with pytest.raises(InvalidArgument, match="tokenizer"):
        ph.openai_server("http://x/v1", model="m").check(Probes.from_token_ids([[2, 3, 4]]))


def test_topk_above_the_server_k_is_refused(models):
    base, cand, probes = models
    with pytest.raises(InvalidArgument, match="topk: 8 asked for"):
        ph.compare(base, ph.openai_server("http://127.0.0.1:9/v1", topk=5, tokenizer=WordTokenizer()), probes,
                   layers=None, topk=8)


def test_bound_judgement():
    """A lower bound fails a max-metric only when it is past the limit; it never passes one."""
    from pytest_hemorrhage.engine import _bounded
    from pytest_hemorrhage.report import MetricResult

    def metric(verdict, direction):
        return {"kl": MetricResult("kl", 0.1, 0.05, 0.2, 0.02, "max_kl", direction, verdict, more_probes_needed=3)}

    assert _bounded({"kl": "k"}, metric("pass", "max"))["kl"].verdict == "inconclusive"
    assert _bounded({"kl": "k"}, metric("fail", "max"))["kl"].verdict == "fail"
    assert _bounded({"kl": "k"}, metric("inconclusive", "max"))["kl"].more_probes_needed is None
    assert _bounded({"kl": "k"}, metric("pass", "min"))["kl"].verdict == "pass"
    assert _bounded({"kl": "k"}, metric("fail", "min"))["kl"].verdict == "inconclusive"
    assert math.isclose(_bounded({}, metric("pass", "max"))["kl"].estimate, 0.1)


def test_a_top_token_lost_to_a_shared_text_is_not_capped():
    """Tokens 0 and 4 share a text; the answer keeps one entry of it (token 4's value), so the
    true top token 0 (q = 0.6) is missing. Marked loose, the position must not cap it."""
    lb = torch.tensor([[0.7, 0.1, 0.1, 0.05, 0.05]], dtype=torch.float64).log()
    lm = torch.tensor([[0.6, 0.2, 0.15, 0.04, 0.01]], dtype=torch.float64).log()
    true = float(kl_from_log_probs(lb, lm))
    ids = torch.tensor([[1, 2, -1]])
    lq = lm[:, [1, 2, 4]]
    target = torch.tensor([1])
    args = (ids, lq, lm[:, 1], 3, target, torch.full((1, 3), math.nan, dtype=torch.float64), lb[:, 1],
            lb.topk(5).indices, lb.topk(5).values, 1)
    assert float(topk_token_metrics(*args, loose=torch.tensor([True]))["kl"]) <= true
    assert float(topk_token_metrics(*args, loose=torch.tensor([True]))["top1"]) == 0
