"""Generation metrics: continue every probe greedily with both models; where do the continuations part?"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .errors import InvalidArgument
from .metrics.generation import first_divergence, token_agreement
from .modify.decoding import generate_greedy
from .probes import Probes

__all__ = ["generation_metrics"]


def generation_metrics(baseline: nn.Module, candidate: nn.Module, probes: Probes, new_tokens: int, *,
                       batch_size: int = 8, prompt_tokens: int = 32,
                       decoding: tuple[Any, Any] = (None, None)) -> dict[str, Any]:
    """Greedy continuations of each probe's first tokens by both models: where do they first differ?

    The prompt is the first ``min(prompt_tokens, shortest probe - 1)`` tokens of every probe (one
    length, so no padding). Each side uses its own repetition penalty. Returns the mean and
    minimum first-divergence position, the mean token agreement and the fraction of probes whose
    continuations differ at all.
    """
    if not probes.is_tokens:
        raise InvalidArgument("generation: needs token probes (a language model); got tensor probes")
    length = max(1, min(prompt_tokens, min(len(ids) for ids in probes.token_ids) - 1))
    prompts = torch.tensor([ids[:length] for ids in probes.token_ids], dtype=torch.long)
    firsts, agreements = [], []
    for chunk in prompts.split(batch_size):
        outs = []
        for model, config in ((baseline, decoding[0]), (candidate, decoding[1])):
            device = next(iter(model.parameters())).device
            outs.append(generate_greedy(model, chunk.to(device), new_tokens, config)[:, length:].cpu())
        firsts.append(first_divergence(outs[0], outs[1]))
        agreements.append(token_agreement(outs[0], outs[1]))
    first = torch.cat(firsts).double()
    return {
        "new_tokens": new_tokens,
        "prompt_tokens": length,
        "n_units": len(probes),
        "first_divergence_mean": float(first.mean()),
        "first_divergence_min": int(first.min()),
        "token_agreement": float(torch.cat(agreements).double().mean()),
        "diverged_fraction": float((first < new_tokens).double().mean()),
    }
