"""Activation metrics between baseline and candidate hidden states.

Per layer l: SQNR dB = 20 log10(||h_b|| / ||h_b - h_m||) = 10 log10(sum h_b^2 / sum (h_b-h_m)^2),
relative error ||h_b - h_m|| / ||h_b||, and the mean per-token cosine similarity.
Functions return per-unit sums so that results pool exactly over batches.
"""

from __future__ import annotations

import math

import torch

__all__ = ["activation_sums", "sqnr_db", "relative_error", "ACTIVATION_SUMS"]

ACTIVATION_SUMS = ("signal", "error", "cosine", "tokens")


def activation_sums(h_b: torch.Tensor, h_m: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row sums ``[B, 4]``: (sum h_b^2, sum (h_b-h_m)^2, sum of per-token cosines, tokens).

    ``h_b``/``h_m``: ``[B, T, D]`` or ``[B, D]``; ``mask``: ``[B, T]`` of valid tokens.
    """
    b = h_b.float()
    m = h_m.to(b.device).float()
    if b.dim() == 2:
        b, m = b.unsqueeze(1), m.unsqueeze(1)
    elif b.dim() > 3:
        b, m = b.flatten(2), m.flatten(2)
    if mask is None:
        w = torch.ones(b.shape[:2], device=b.device)
    else:
        w = mask.to(b.device).float()
    # Fused reductions (no full-size temporaries except the difference, which SQNR needs exactly:
    # |b|² + |m|² − 2 b·m would cancel catastrophically for nearly identical activations).
    b2 = torch.linalg.vecdot(b, b)
    m2 = torch.linalg.vecdot(m, m)
    bm = torch.linalg.vecdot(b, m)
    diff = b - m
    e2 = torch.linalg.vecdot(diff, diff)
    cos = bm / (b2 * m2).sqrt().clamp_min(1e-12)
    signal = (b2 * w).sum(-1)
    error = (e2 * w).sum(-1)
    cosine = (cos * w).sum(-1)
    return torch.stack([signal, error, cosine, w.sum(-1)], dim=-1)


def sqnr_db(signal: float, error: float) -> float:
    """10·log10(signal / error) in dB; +inf for an exact match."""
    if error <= 0.0:
        return math.inf
    if signal <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / error)


def relative_error(signal: float, error: float) -> float:
    """sqrt(error / signal): ||h_b - h_m|| / ||h_b||."""
    if signal <= 0.0:
        return math.inf if error > 0 else 0.0
    return math.sqrt(error / signal)
