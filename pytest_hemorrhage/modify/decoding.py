"""Decoding-time modifications: sampling settings that change the effective next-token distribution.

The order follows Hugging Face ``generate``: repetition penalty (also under
greedy decoding), then, only when sampling, temperature, top-k, top-p.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import nn

from ..arguments import flag, integer, must_be, number
from ._common import Modification, logits_of

__all__ = ["DecodingConfig", "DecodedModel", "effective_log_probs", "generate_greedy", "apply_repetition_penalty",
           "penalise_seen", "seen_tokens", "unwrap_decoding"]


@dataclass(frozen=True, repr=False)
class DecodingConfig(Modification):
    """Sampling settings; ``do_sample=False`` is greedy (only ``repetition_penalty`` then matters)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    kind = "decoding"

    def __post_init__(self) -> None:
        flag("do_sample", self.do_sample)
        object.__setattr__(self, "temperature", number("temperature", self.temperature, 0.0, low_open=True))
        integer("top_k", self.top_k, 0)
        object.__setattr__(self, "top_p", number("top_p", self.top_p, 0.0, 1.0, low_open=True))
        object.__setattr__(
            self, "repetition_penalty", number("repetition_penalty", self.repetition_penalty, 0.0, low_open=True)
        )

    def apply(self, model: Any, inplace: bool = False, calibration: torch.Tensor | None = None) -> "DecodedModel":
        """Pair ``model`` (left untouched, not copied) with this config."""
        if isinstance(model, DecodedModel):
            raise must_be("model", "a torch.nn.Module, not a DecodedModel", model,
                          "apply at most one DecodingConfig to a model")
        if not isinstance(model, nn.Module):
            raise must_be("model", "a torch.nn.Module", model)
        return DecodedModel(model, self)

    def describe(self) -> str:
        if not self.do_sample:
            text = "greedy decoding"
        else:
            parts = [f"T={self.temperature:g}"]
            if self.top_k:
                parts.append(f"top-k {self.top_k}")
            if self.top_p < 1.0:
                parts.append(f"top-p {self.top_p:g}")
            text = "sampling " + ", ".join(parts)
        if self.repetition_penalty != 1.0:
            text += f", repetition penalty {self.repetition_penalty:g}"
        return text

    @property
    def strength(self) -> float:
        """``|log T| + (1 - top_p) + 1/top_k + |log repetition_penalty|`` (sampling terms only when sampling)."""
        value = abs(math.log(self.repetition_penalty))
        if self.do_sample:
            value += abs(math.log(self.temperature)) + (1.0 - self.top_p)
            if self.top_k:
                value += 1.0 / self.top_k
        return value

    def model_scores(self, logits: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Float32 scores of the model's own next-token distribution under this config's repetition penalty.

        ``logits``: ``[T, V]`` along one sequence whose position ``t`` has seen ``prefix[: t + 1]``.
        """
        scores = logits.float()
        if self.repetition_penalty == 1.0:
            return scores
        return penalise_seen(scores, seen_tokens(prefix, scores.shape[-1]), self.repetition_penalty)

    def drawn_from(self, scores: torch.Tensor) -> torch.Tensor:
        """The distribution the next token is drawn from, given :meth:`model_scores`.

        Sampling draws from the sampler's distribution (temperature, top-k, top-p). Greedy decoding
        draws from a one-hot, whose KL is infinite for every changed argmax: greedy sides are compared
        on the model's distribution (``scores`` as they are) and judged by top-1 agreement.
        """
        if not self.do_sample:
            return scores
        return effective_log_probs(scores, replace(self, repetition_penalty=1.0))


def seen_tokens(prefix: torch.Tensor, vocab: int) -> torch.Tensor:
    """``[T, V]`` booleans: whether token ``v`` occurs in ``prefix[: t + 1]`` (what a repetition penalty sees)."""
    onehot = torch.zeros(prefix.shape[0], vocab, dtype=torch.bool, device=prefix.device)
    onehot[torch.arange(prefix.shape[0], device=prefix.device), prefix.clamp(0, vocab - 1)] = True
    return onehot.cummax(dim=0).values


def penalise_seen(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """The repetition penalty, Hugging Face convention: where ``seen``, positive scores are divided by
    ``penalty`` and negative ones multiplied by it."""
    if penalty == 1.0:
        return scores
    return torch.where(seen, torch.where(scores > 0, scores / penalty, scores * penalty), scores)


def apply_repetition_penalty(logits: torch.Tensor, prev_tokens: torch.Tensor, penalty: float) -> torch.Tensor:
    """:func:`penalise_seen` on the tokens of ``prev_tokens`` ``[..., T]`` (``logits``: ``[..., V]``)."""
    if penalty == 1.0 or prev_tokens.shape[-1] == 0:
        return logits
    seen = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
    return penalise_seen(logits, seen.scatter_(-1, prev_tokens.long(), True), penalty)


def _check_inputs(logits: Any, config: Any, prev_tokens: Any) -> None:
    if not isinstance(config, DecodingConfig):
        raise must_be("config", "a DecodingConfig", config)
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() < 1:
        raise must_be("logits", "a floating tensor [..., vocab]", logits)
    if prev_tokens is not None:
        if not isinstance(prev_tokens, torch.Tensor) or prev_tokens.is_floating_point():
            raise must_be("prev_tokens", "an integer tensor [..., T]", prev_tokens)
        if prev_tokens.shape[:-1] != logits.shape[:-1]:
            raise must_be("prev_tokens", f"[..., T] with the leading dimensions of logits {tuple(logits.shape)}",
                          prev_tokens)
        if prev_tokens.numel() and (prev_tokens.min() < 0 or prev_tokens.max() >= logits.shape[-1]):
            raise must_be("prev_tokens", f"vocabulary ids in [0, {logits.shape[-1] - 1}]",
                          got=f"ids from {int(prev_tokens.min())} to {int(prev_tokens.max())}")


def effective_log_probs(
    logits: torch.Tensor, config: DecodingConfig, prev_tokens: torch.Tensor | None = None
) -> torch.Tensor:
    """Log of the distribution the next token is actually drawn from (float32, ``-inf`` = never).

    Greedy: 0 at the argmax (first one on ties), ``-inf`` elsewhere. Sampling:
    ``log_softmax`` after temperature, top-k (ties with the k-th value kept)
    and top-p (the smallest top set whose mass reaches ``top_p``; a token is
    kept when the mass strictly above it is below ``top_p``).
    """
    _check_inputs(logits, config, prev_tokens)
    scores = logits.float()
    if prev_tokens is not None:
        scores = apply_repetition_penalty(scores, prev_tokens, config.repetition_penalty)
    if not config.do_sample:
        out = torch.full_like(scores, -math.inf)
        return out.scatter_(-1, scores.argmax(dim=-1, keepdim=True), 0.0)
    scores = scores / config.temperature
    vocab = scores.shape[-1]
    if 0 < config.top_k < vocab:
        kth = torch.topk(scores, config.top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, -math.inf)
    if config.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
        probs = torch.softmax(sorted_scores, dim=-1)
        mass_above = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = mass_above >= config.top_p
        drop_sorted[..., 0] = False  # always keep the most likely token
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, -math.inf)
    return torch.log_softmax(scores, dim=-1)


def _decode(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    choose: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Autoregressive loop; ``choose(last_logits [B, V], tokens so far [B, T]) -> [B]``.

    Uses the KV cache for Hugging Face generation models, full recomputation otherwise.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        raise must_be("input_ids", "an integer tensor [batch, seq]", input_ids)
    integer("max_new_tokens", max_new_tokens, 0)
    tokens = input_ids
    use_cache = hasattr(model, "prepare_inputs_for_generation")
    # transformers >= 5.2x calls the KV cache ``cache``; older releases ``past_key_values``.
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    past = None
    with torch.no_grad():
        for _ in range(max_new_tokens):
            if use_cache:
                feed = tokens if past is None else tokens[:, -1:]
                output = model(input_ids=feed, use_cache=True, **{cache_arg: past})
                past = output.get(cache_arg) if isinstance(output, Mapping) else None
                use_cache = past is not None
            else:
                output = model(tokens)
            nxt = choose(logits_of(output)[:, -1, :], tokens)
            tokens = torch.cat([tokens, nxt.to(tokens.dtype).unsqueeze(-1)], dim=-1)
    return tokens


def generate_greedy(
    model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int, config: DecodingConfig | None = None
) -> torch.Tensor:
    """Greedy continuation; returns ``[B, T + max_new_tokens]`` (prompt included, like HF ``generate``).

    No early stop at EOS. Only ``config.repetition_penalty`` is used; sampling settings are ignored.
    """
    if config is not None and not isinstance(config, DecodingConfig):
        raise must_be("config", "None or a DecodingConfig", config)
    penalty = 1.0 if config is None else config.repetition_penalty

    def choose(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return apply_repetition_penalty(logits.float(), tokens, penalty).argmax(dim=-1)

    return _decode(model, input_ids, max_new_tokens, choose)


@dataclass
class DecodedModel:
    """A model paired with the decoding settings it is to be used with (not an ``nn.Module``)."""

    model: nn.Module
    config: DecodingConfig
    modification: Modification | None = None

    @property
    def hemorrhage_modification(self) -> Modification:
        """The full modification: ``modification`` when set (e.g. a Composed), else ``config``."""
        return self.modification if self.modification is not None else self.config

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Forward to the wrapped model."""
        return self.model(*args, **kwargs)

    def generate(
        self, input_ids: torch.Tensor, max_new_tokens: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Decode with this config (greedy or sampled); returns prompt + new tokens."""

        def choose(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
            logp = effective_log_probs(logits, self.config, tokens)
            if not self.config.do_sample:
                return logp.argmax(dim=-1)
            return torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)

        return _decode(self.model, input_ids, max_new_tokens, choose)


def unwrap_decoding(model: Any) -> tuple[Any, DecodingConfig | None]:
    """``(model, DecodingConfig)`` for a :class:`DecodedModel`, ``(model, None)`` otherwise."""
    if isinstance(model, DecodedModel):
        return model.model, model.config
    return model, None
