"""A candidate behind an OpenAI-compatible completions server: prompt in, the top ``k`` log-probabilities of each prompt position out.

Each probe is sent as one completion request with ``echo=true``, ``logprobs=k``,
``max_tokens=1`` and ``temperature=0``: as its token ids where the server takes them (vLLM,
SGLang), else as the text of those ids (llama-cpp-python's server takes text only), and then
every echoed token must be the probe's own, or the check stops naming the first that is not.
The server answers, per position, a dict from token *strings* to log-probabilities; the strings
are mapped back to ids with the baseline's tokenizer. A string that maps to no id is an error
(another vocabulary); one shared by several ids (partial UTF-8 bytes, special tokens) leaves
that entry unidentified, which only loosens the bounds.

Two layouts of the echoed log-probabilities exist, told apart by their count: the standard
one (one entry per prompt token plus the generated one; entry ``j`` is the distribution that
predicts prompt token ``j``, the first is empty) and llama-cpp-python's for a prompt without a
start token (one entry per prompt token; entry ``j`` is the distribution *after* token ``j``, the
first is empty, so the first prediction is missing and the real next token's log-probability
is known only when it is among the top ``k``).

Remote input is checked: the API key comes from an environment variable and is never written
anywhere; timeouts and retries are bounded; malformed or short answers, an unknown model name
and fewer log-probabilities than asked are errors naming the probe and position.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Sequence

import torch

from ..errors import HemorrhageError, InvalidArgument
from ..probes import ProbeBatch, Probes
from .runtime import RuntimeSource, require
from .topk import TopkObservation

__all__ = ["OpenAISource"]

_SNIPPET = 300


class OpenAISource(RuntimeSource):
    """A model behind an OpenAI-compatible ``/v1/completions`` endpoint, compared on its top ``topk`` log-probabilities.

    ``url``: the server's base URL (``http://host:8000/v1``; ``/v1`` is added when missing).
    ``model``: the served model's name (None: the only one ``/v1/models`` lists).
    ``topk``: log-probabilities asked per position (servers often cap it at 20).
    ``tokenizer``: the baseline's tokenizer (a Hugging Face tokenizer or the path of a folder
    holding one), to map returned token strings to ids; default the probes' own.
    ``api_key_env``: the environment variable holding the API key, sent as a bearer token when set.
    ``timeout``: seconds per request; ``retries``: further attempts after a connection error or
    a 5xx answer.
    """

    runtime = "OpenAI-compatible server"

    def __init__(self, url: str, *, model: str | None = None, topk: int = 20, tokenizer: Any = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0, retries: int = 2,
                 role: str = "candidate") -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidArgument(f"url: expected the server's http(s) base URL (http://host:8000/v1), got {url!r}")
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise InvalidArgument(f"topk: the number of log-probabilities per position, a positive integer; got {topk!r}")
        if not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
            raise InvalidArgument(f"timeout: seconds per request, above 0 and at most 3600; got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            raise InvalidArgument(f"retries: a whole number from 0 to 10; got {retries!r}")
        if not isinstance(api_key_env, str) or not api_key_env:
            raise InvalidArgument(f"api_key_env: the name of an environment variable; got {api_key_env!r}")
        super().__init__(url, role)
        base = url.rstrip("/")
        self.base = base if base.endswith("/v1") else base + "/v1"
        self.model_name = model
        self.k = self.topk_limit = topk
        self.tokenizer = tokenizer
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.retries = retries
        self._client: Any = None
        self._vocab: dict[str, list[int]] | None = None
        self._strings: list[str] = []
        self._special: set[int] = set()
        self._send_text: bool | None = None  # found on the first request
        self._model_checked = False
        self.missing_rows = 0  # positions with no usable top log-probabilities
        self.censored_targets = 0  # positions whose real next token's log-probability was not returned
        self.unidentified = 0  # returned top tokens whose string several ids share

    def __repr__(self) -> str:
        return f"OpenAISource({self.base!r}, model={self.model_name!r}, topk={self.k})"

    @property
    def label(self) -> str:
        return f"server {self.base} model {self.model_name or '(the only one)'} (top-{self.k} log-probs)"

    @property
    def metric_bounds(self) -> dict[str, str]:
        """Metrics this side gives only lower bounds of, with the reason (the engine marks them)."""
        k = f"the server returns the top {self.k} log-probabilities per position only (k = {self.k} was the limit)"
        bounds = {"kl": f"{k}; a token outside them may have any smaller probability, so no upper bound exists"}
        if self.missing_rows or self.unidentified:
            why = f"{k}, and {self.missing_rows} positions gave none and {self.unidentified} returned tokens could " \
                  "not be identified (their string is shared by several ids); those count as disagreements"
            bounds["top1"] = bounds["topk"] = why
        if self.missing_rows or self.censored_targets:
            why = f"{k}, and the real next token's log-probability was not returned at " \
                  f"{self.missing_rows + self.censored_targets} positions; there it is bounded by the k-th returned one"
            bounds["ppl_ratio"] = bounds["rms_dp"] = why
        return bounds

    # ------------------------------------------------------------------ the Source protocol
    def paired_with(self, candidate: Any, generation: int) -> Any:
        if self.role == "baseline":
            raise InvalidArgument(f"{self.label} returns only top log-probabilities, so it can be the candidate only; "
                                  "pass the baseline model or a snapshot as the baseline")
        return super().paired_with(candidate, generation)

    def check_vocabulary(self, size: int, baseline: str) -> None:
        """Nothing to check here: a server does not say how many token ids it has. Its vocabulary is
        checked token by token instead, each returned token string against the tokenizer's."""

    def check(self, probes: Probes) -> None:
        if not probes.is_tokens:
            raise InvalidArgument(f"{self.label} scores token ids; these probes are tensors")
        tokenizer = self._tokenizer(probes)
        strings = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=False,
                                         clean_up_tokenization_spaces=False)
        self._strings = [_normal(s) for s in strings]
        vocab: dict[str, list[int]] = {}
        for i, s in enumerate(self._strings):
            vocab.setdefault(s, []).append(i)
        self._special = set(getattr(tokenizer, "all_special_ids", []))
        for i in self._special:
            if self._strings[i]:  # servers that leave special tokens out of text show them as ""
                vocab.setdefault("", []).append(i)
        self._vocab = vocab
        self._tokenizer_obj = tokenizer
        self.missing_rows = self.censored_targets = self.unidentified = 0
        for i, probe in enumerate(probes.token_ids):
            bad = next((t for t in probe if not 0 <= t < len(strings)), None)
            if bad is not None:
                raise HemorrhageError(f"token mismatch: probe {i} holds token id {bad}, outside the {len(strings)} ids "
                                      "of the tokenizer given; pass the tokenizer the probes were made with")
        self._model_checked = False

    def _acquire(self) -> None:
        httpx = require("httpx", "server", "an OpenAI-compatible server candidate")
        self._client = httpx.Client(timeout=self.timeout)

    def _release(self) -> None:
        self._client.close()
        self._client = None

    def observe(self, batch: ProbeBatch, blocks: Sequence[str] = (), attentions: bool = False) -> TopkObservation:
        if self._vocab is None:
            raise HemorrhageError(f"{self.label}: check(probes) must run before observe (compare() does this)")
        if not self._model_checked:
            self._check_model()
            self._model_checked = True
        rows, width = batch.input_ids.shape
        ids = torch.full((rows, width, self.k + 1), -1, dtype=torch.long)
        logp = torch.full((rows, width, self.k + 1), -math.inf, dtype=torch.float64)
        target = torch.full((rows, width), math.nan, dtype=torch.float64)
        loose = torch.zeros((rows, width), dtype=torch.bool)
        for row, n in enumerate(batch.attention_mask.sum(1).tolist()):
            if int(n) > 1:
                self._read_probe(batch.units[row], batch.input_ids[row, : int(n)].tolist(),
                                 ids[row], logp[row], target[row], loose[row])
        return TopkObservation(batch, self.k, ids, logp, target, loose)

    # ------------------------------------------------------------------ requests
    def _tokenizer(self, probes: Probes) -> Any:
        tokenizer = self.tokenizer if self.tokenizer is not None else probes.tokenizer
        if tokenizer is None:
            raise InvalidArgument(
                f"{self.label} returns token strings, which are mapped back to ids with the baseline's tokenizer, "
                "and none is known: pass tokenizer=... (the baseline's tokenizer, or the path of its model folder)"
            )
        if isinstance(tokenizer, (str, os.PathLike)):
            transformers = require("transformers", "server", "loading a tokenizer by path")
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer))
        return tokenizer

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _hide(self, text: str) -> str:
        """``text`` with the API key blanked out: a server may echo what it was sent."""
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "***") if key else text

    def _request(self, method: str, path: str, what: str, body: Any = None) -> Any:
        """``(status, parsed JSON or None, text)`` of one request, retried on connection errors and 5xx."""
        httpx = require("httpx", "server", "an OpenAI-compatible server candidate")
        url = self.base + path
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._client.request(method, url, json=body, headers=self._headers())
            except httpx.TimeoutException:
                raise HemorrhageError(f"{what}: {url} did not answer within {self.timeout:g} s; raise "
                                      "timeout=... or check the server's load") from None
            except httpx.TransportError as exc:
                if last:
                    raise HemorrhageError(
                        f"{what}: cannot reach {url} ({type(exc).__name__}: {self._hide(str(exc))}) after "
                        f"{self.retries + 1} attempts; check that the server runs and the URL is right") from None
                time.sleep(0.5 * 2 ** attempt)
                continue
            if response.status_code >= 500 and not last:
                time.sleep(0.5 * 2 ** attempt)
                continue
            text = response.text
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            return response.status_code, parsed, self._hide(text)
        raise AssertionError("unreachable")

    def _check_model(self) -> None:
        status, data, text = self._request("GET", "/models", "listing the served models")
        names = [m.get("id") for m in data.get("data", []) if isinstance(m, dict)] \
            if status == 200 and isinstance(data, dict) and isinstance(data.get("data"), list) else None
        if names is None:
            if status == 401 or status == 403:
                raise HemorrhageError(f"{self.base}/models refused the request (HTTP {status}: {text[:_SNIPPET]}); "
                                      f"set the API key in the environment variable {self.api_key_env}")
            if self.model_name is None:
                raise InvalidArgument(f"model: {self.base}/models gave no model list (HTTP {status}); pass model=NAME")
            return  # a server without a model list: a wrong name shows in the completion's error
        if self.model_name is None:
            if len(names) != 1:
                raise InvalidArgument(f"model: {self.base} serves {len(names)} models ({', '.join(map(str, names))}); "
                                      "pass model=NAME")
            self.model_name = names[0]
        elif self.model_name not in names:
            raise InvalidArgument(f"model: {self.model_name!r} is not served by {self.base}; it serves "
                                  f"{', '.join(map(repr, names)) or 'no model'}")

    def _complete(self, unit: int, ids: list[int]) -> dict:
        what = f"probe {unit}"
        body = {"model": self.model_name, "echo": True, "logprobs": self.k, "max_tokens": 1, "temperature": 0.0}
        if not self._send_text:
            status, data, text = self._request("POST", "/completions", what, {**body, "prompt": ids})
            # A server that refuses token ids says so about the prompt (llama-cpp-python: a
            # validation error, answered as HTTP 500).
            if self._send_text is None and status >= 400 and "prompt" in text:
                self._send_text = True  # the server takes text prompts only (llama-cpp-python's)
            else:
                self._send_text = False
        if self._send_text:
            prompt = self._tokenizer_obj.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            status, data, text = self._request("POST", "/completions", what, {**body, "prompt": prompt})
        if status == 404 or (status >= 400 and "model" in text.lower()):
            raise HemorrhageError(f"{what}: {self.base}/completions answered HTTP {status} for model "
                                  f"{self.model_name!r}: {text[:_SNIPPET]}")
        if status != 200:
            raise HemorrhageError(f"{what}: {self.base}/completions answered HTTP {status}: {text[:_SNIPPET]}")
        if data is None:
            raise HemorrhageError(f"{what}: the server's answer is not valid JSON (malformed or truncated): "
                                  f"{text[:_SNIPPET]!r}")
        try:
            logprobs = data["choices"][0]["logprobs"]
            parts = {key: logprobs[key] for key in ("tokens", "token_logprobs", "top_logprobs")}
        except (KeyError, IndexError, TypeError):
            raise HemorrhageError(f"{what}: the server's answer has no choices[0].logprobs with tokens, token_logprobs "
                                  f"and top_logprobs (does it support echo with logprobs?): {text[:_SNIPPET]!r}") from None
        if not all(isinstance(v, list) for v in parts.values()) or len({len(v) for v in parts.values()}) != 1:
            raise HemorrhageError(f"{what}: the server's logprobs lists are missing or of different lengths: "
                                  f"{text[:_SNIPPET]!r}")
        return parts

    # ------------------------------------------------------------------ one probe
    def _read_probe(self, unit: int, ids: list[int], out_ids: torch.Tensor, out_logp: torch.Tensor,
                    out_target: torch.Tensor, out_loose: torch.Tensor) -> None:
        """Fill rows ``0 .. len(ids) - 2`` (row t predicts ``ids[t + 1]``) from the server's answer."""
        parts = self._complete(unit, ids)
        tokens, token_logprobs, tops = parts["tokens"], parts["token_logprobs"], parts["top_logprobs"]
        n = len(ids)
        if len(tokens) == n + 1:
            after = False  # entry j predicts prompt token j
        elif len(tokens) == n:
            after = True  # entry j is the distribution after prompt token j (the first prediction is missing)
        else:
            raise HemorrhageError(
                f"probe {unit}: the server returned log-probabilities for {len(tokens)} positions, the probe has "
                f"{n} tokens; it must echo every prompt token (echo=true) with its log-probabilities"
            )
        for j in range(n):
            if not isinstance(tokens[j], str) or (_normal(tokens[j]) != self._strings[ids[j]]
                                                  and not (tokens[j] == "" and ids[j] in self._special)):
                raise HemorrhageError(
                    f"token mismatch: the server echoed probe {unit} position {j} as {tokens[j]!r}, the probe's token "
                    f"is id {ids[j]} {self._strings[ids[j]]!r}; the server tokenized the prompt differently (or runs "
                    "another vocabulary): serve the model the baseline's tokenizer belongs to"
                )
        for j in range(1, n):
            row = j if after else j - 1
            if row > n - 2:
                continue
            self._read_position(unit, j, row, ids, tokens[j], token_logprobs[j], tops[j], after,
                                out_ids[row], out_logp[row], out_target, out_loose)
        if after:
            self.missing_rows += 1  # row 0: the prediction of the second token from the first

    def _read_position(self, unit: int, j: int, row: int, ids: list[int], echoed: str, echoed_logp: Any,
                       top: Any, after: bool, out_ids: torch.Tensor, out_logp: torch.Tensor,
                       out_target: torch.Tensor, out_loose: torch.Tensor) -> None:
        where = f"probe {unit} position {j}"
        if not isinstance(top, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                and not math.isnan(v) and v <= 1e-4 for v in top.values()):
            raise HemorrhageError(f"{where}: expected a dict of token strings to log-probabilities (<= 0), got "
                                  f"{self._hide(repr(top))[:_SNIPPET]}")
        if not isinstance(echoed_logp, (int, float)) or isinstance(echoed_logp, bool):
            raise HemorrhageError(f"{where}: expected the prompt token's log-probability, got {echoed_logp!r}")
        entries: list[tuple[int, float]] = []
        ambiguous = False
        for string, value in sorted(top.items(), key=lambda kv: -kv[1]):
            if string == echoed:
                # The echoed prompt token is known by position: its id needs no string lookup.
                entries.append((ids[j], float(echoed_logp)))
                continue
            found = self._vocab.get(_normal(string), []) if self._vocab is not None else []
            if not found:
                raise HemorrhageError(
                    f"{where}: the server returned the token string {string!r}, which no id of the tokenizer "
                    "decodes to; the server runs another vocabulary than the baseline's tokenizer"
                )
            ambiguous |= len(found) > 1
            entries.append((found[0] if len(found) == 1 else -1, float(value)))
        entries.sort(key=lambda e: -e[1])
        if len(entries) > self.k + 1:
            raise HemorrhageError(f"{where}: the server returned {len(entries)} log-probabilities, {self.k} were "
                                  "asked; it does not honour logprobs=k")
        # The answer is the top k plus the echoed token when it is not among them. Two top tokens
        # of one text collapse into one entry (the dict is keyed by text), so with a text several
        # ids share, k entries may be k - 1 top ones plus the echoed one: then the lost token may
        # have been any of the top ones, and nothing unreturned is known to lie below the k-th.
        echo_lowest = echoed in top and top[echoed] <= min(top.values())
        loose = ambiguous and (len(entries) < self.k or (len(entries) == self.k and echo_lowest))
        if len(entries) < self.k and not ambiguous:
            raise HemorrhageError(
                f"{where}: the server returned {len(entries)} log-probabilities, {self.k} were asked "
                f"(logprobs={self.k}); it caps them lower: open it with topk={len(entries)} or less"
            )
        if loose:
            out_loose[row] = True
            self.unidentified += 1
        self.unidentified += sum(1 for i, _ in entries[: self.k] if i < 0)
        out_ids[: len(entries)] = torch.tensor([i for i, _ in entries])
        out_logp[: len(entries)] = torch.tensor([v for _, v in entries], dtype=torch.float64)
        target = ids[row + 1]
        if not after:
            out_target[row] = float(echoed_logp)  # the echoed token is the one this entry predicts
        else:
            known = [v for i, v in entries if i == target]
            if known:
                out_target[row] = known[0]
            else:
                self.censored_targets += 1


def _normal(text: str) -> str:
    """A token's text as servers and tokenizers agree on it: undecodable bytes dropped (some servers
    replace them with U+FFFD, others drop them)."""
    return text.replace("\ufffd", "")
