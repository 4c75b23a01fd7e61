"""Activation metrics between baseline and candidate hidden states.

Per layer l: SQNR dB = 20 log10(||h_b|| / ||h_b - h_m||) = 10 log10(sum h_b^2 / sum (h_b-h_m)^2),
relative error ||h_b - h_m|| / ||h_b||, and the mean per-token cosine similarity.
Functions return per-unit sums so that results pool exactly over batches.
"""

from __future__ import annotations

import math

import torch

from . import fused

__all__ = ["activation_sums", "layer_activation_sums", "row_products", "sqnr_db", "relative_error", "ACTIVATION_SUMS"]

ACTIVATION_SUMS = ("signal", "error", "cosine", "tokens")


def _token_rows(h_b: torch.Tensor, h_m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as ``[B, T, D]``: a ``[B, D]`` output is one token per row; extra dimensions are flattened."""
    if h_b.dim() == 2:
        h_b, h_m = h_b.unsqueeze(1), h_m.unsqueeze(1)
    elif h_b.dim() > 3:
        h_b, h_m = h_b.flatten(2), h_m.flatten(2)
    return h_b, h_m.to(h_b.device)


def _sums_from_products(products: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``[..., B, T, 4]`` row products to ``[..., B, 4]`` sums (see :func:`activation_sums`)."""
    b2, m2, bm, e2 = products.unbind(-1)
    w = torch.ones_like(b2) if mask is None else mask.to(b2.device, b2.dtype).expand_as(b2)
    cos = bm / (b2 * m2).sqrt().clamp_min(1e-12)
    return torch.stack([(b2 * w).sum(-1), (e2 * w).sum(-1), (cos * w).sum(-1), w.sum(-1)], dim=-1)


def activation_sums(h_b: torch.Tensor, h_m: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row sums ``[B, 4]``: (sum h_b^2, sum (h_b-h_m)^2, sum of per-token cosines, tokens).

    ``h_b``/``h_m``: ``[B, T, D]`` or ``[B, D]``; ``mask``: ``[B, T]`` of valid tokens.
    """
    h_b, h_m = _token_rows(h_b, h_m)
    return _sums_from_products(row_products(h_b, h_m), mask)


def layer_activation_sums(pairs: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor | None = None,
                          ) -> torch.Tensor:
    """:func:`activation_sums` of several same-shape layers at once, summed over rows: ``[L, 4]``.

    Each layer's row products are taken where its outputs lie (no stacked copy: on the CPU one
    layer's temporaries stay in cache, which measured 2.6 times faster than on a stack of all
    layers); the small per-row products of all layers are then reduced together.
    """
    if pairs[0][0].dim() != 3:
        mask = None  # the mask marks tokens of [B, T, D] outputs; other shapes count every row
    products = torch.stack([row_products(*_token_rows(b, m)) for b, m in pairs])
    return _sums_from_products(products, mask).sum(1)


def row_products(h_b: torch.Tensor, h_m: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` float32 over the last dimension: (Σb², Σm², Σb·m, Σ(b−m)²).

    The difference is summed directly, which SQNR needs: |b|² + |m|² − 2 b·m would cancel
    catastrophically for nearly identical activations. On a GPU with Triton one fused kernel reads
    each input once; otherwise float32 copies feed fused PyTorch reductions.
    """
    if fused.enabled(h_b, h_m):
        shape = h_b.shape[:-1]
        return fused.row_products(h_b.reshape(-1, h_b.shape[-1]), h_m.reshape(-1, h_m.shape[-1])).view(*shape, 4)
    b, m = h_b.float(), h_m.float()
    diff = b - m
    return torch.stack([torch.linalg.vecdot(b, b), torch.linalg.vecdot(m, m), torch.linalg.vecdot(b, m),
                        torch.linalg.vecdot(diff, diff)], dim=-1)


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
