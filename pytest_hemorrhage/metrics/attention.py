"""Attention metrics: per-head Jensen-Shannon divergence of attention rows and entropy shift."""

from __future__ import annotations

import torch

__all__ = ["attention_sums"]


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(torch.where(p > 0, p * p.clamp_min(1e-30).log(), torch.zeros_like(p))).sum(-1)


def attention_sums(a_b: torch.Tensor, a_m: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row, per-head sums ``[B, H, 3]``: (sum of JS divergences, sum of entropy shifts, rows).

    ``a_b``/``a_m``: attention probabilities ``[B, H, T, T]``; ``mask``: ``[B, T]`` valid queries.
    JS(p, q) = ½ KL(p‖m) + ½ KL(q‖m), m = ½(p + q), in nats (bounded by ln 2).
    Entropy shift = H(q) − H(p) per query row.
    """
    p = a_b.float()
    q = a_m.to(p.device).float()
    mid = 0.5 * (p + q)
    h_mid = _entropy(mid)
    h_p = _entropy(p)
    h_q = _entropy(q)
    js = (h_mid - 0.5 * (h_p + h_q)).clamp_min(0.0)
    shift = h_q - h_p
    if mask is None:
        w = torch.ones(p.shape[0], p.shape[2], device=p.device)
    else:
        w = mask.to(p.device).float()
    w = w.unsqueeze(1)  # [B, 1, T]
    rows = w.expand(-1, p.shape[1], -1).sum(-1)
    return torch.stack([(js * w).sum(-1), (shift * w).sum(-1), rows], dim=-1)
