"""Pure tensor metrics comparing generated token sequences and sampling distributions."""

from __future__ import annotations

import torch

from ..errors import InvalidArgument

__all__ = ["first_divergence", "token_agreement", "sampling_kl"]


def _check_token_pair(tokens_a: torch.Tensor, tokens_b: torch.Tensor) -> None:
    for name, t in (("tokens_a", tokens_a), ("tokens_b", tokens_b)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise InvalidArgument(f"{name} has shape {shape}; allowed: a 2-D tensor [batch, seq]")
    if tokens_a.shape != tokens_b.shape:
        raise InvalidArgument(
            f"tokens_b has shape {tuple(tokens_b.shape)} but tokens_a {tuple(tokens_a.shape)}; allowed: equal shapes"
        )


def first_divergence(tokens_a: torch.Tensor, tokens_b: torch.Tensor) -> torch.Tensor:
    """Per row, the index of the first position where the sequences differ (``T`` if identical).

    ``tokens_a``, ``tokens_b``: ``[B, T]``. Returns a ``LongTensor[B]``.
    """
    _check_token_pair(tokens_a, tokens_b)
    differ = tokens_a != tokens_b
    length = tokens_a.shape[1]
    if length == 0:
        return torch.zeros(tokens_a.shape[0], dtype=torch.long, device=tokens_a.device)
    first = differ.to(torch.uint8).argmax(dim=1)  # argmax returns the first maximal index
    return torch.where(differ.any(dim=1), first, torch.full_like(first, length)).long()


def token_agreement(tokens_a: torch.Tensor, tokens_b: torch.Tensor) -> torch.Tensor:
    """Per row, the fraction of positions where the tokens are equal (1.0 for empty rows).

    ``tokens_a``, ``tokens_b``: ``[B, T]``. Returns a float32 ``Tensor[B]``.
    """
    _check_token_pair(tokens_a, tokens_b)
    if tokens_a.shape[1] == 0:
        return torch.ones(tokens_a.shape[0], dtype=torch.float32, device=tokens_a.device)
    return (tokens_a == tokens_b).float().mean(dim=1)


def sampling_kl(logp_base: torch.Tensor, logp_cand: torch.Tensor) -> torch.Tensor:
    """KL(base || cand) over the last dimension of two normalised log-distributions.

    ``-inf`` entries are tokens that can never be drawn. Terms where the base
    has no mass contribute 0 (``0 * log 0 = 0``), whatever the candidate holds;
    base mass on a token the candidate can never draw gives ``+inf``. The
    result is computed in float32 (float64 inputs stay float64) and clamped at 0
    against rounding. Returns a tensor of the leading shape ``[...]``.
    """
    for name, t in (("logp_base", logp_base), ("logp_cand", logp_cand)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() < 1:
            raise InvalidArgument(f"{name}={type(t).__name__}; allowed: a floating tensor [..., vocab] of log-probs")
    if logp_base.shape != logp_cand.shape:
        raise InvalidArgument(
            f"logp_cand has shape {tuple(logp_cand.shape)} but logp_base {tuple(logp_base.shape)}; "
            "allowed: equal shapes"
        )
    dtype = torch.promote_types(torch.promote_types(logp_base.dtype, logp_cand.dtype), torch.float32)
    base = logp_base.to(dtype)
    cand = logp_cand.to(dtype)
    p = base.exp()
    support = p > 0
    # Mask before subtracting so -inf - -inf (nan) never enters the sum.
    diff = torch.where(support, base - cand, torch.zeros_like(base))
    terms = torch.where(support, p * diff, torch.zeros_like(base))
    return terms.sum(dim=-1).clamp(min=0.0)
