"""Fused Triton kernels for the memory-bound parts of a comparison on a GPU.

Each kernel reads its inputs once, in their own dtype, and keeps float32 accumulators in
registers, so no float32 copy of a logit or hidden-state tensor is ever written:

* :func:`logit_stats`: per scored row, the log-normaliser and top-k token ids of the candidate's
  logits and, given the baseline's, its log-normaliser, top-k ids and KL(p_b || p_m), in one
  pass over both rows (sums of e^(z − shift) and of e^(z_b − shift)·(z_b − z_m), the shift being the
  row's first-chunk maximum, summed again in the rare row whose maximum lies far above it; top-k
  from per-lane maxima, then the k lanes with the largest maxima read again, which is exact).
* :func:`row_products`: per hidden-state row, (Σb², Σm², Σb·m, Σ(b−m)²).
* :func:`sketch_rows`: the snapshot's signed random projection and norm of hidden-state rows,
  with the ±1 signs hashed inside the kernel instead of being built as a tensor.

They run when Triton is importable and the tensors are on a CUDA device (or under
``TRITON_INTERPRET=1``, which runs them on the CPU for tests); ``HEMORRHAGE_FUSED=0`` turns them
off. Otherwise the callers use their plain PyTorch formulas, which define the same numbers.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from ..capture import host_to

__all__ = ["enabled", "logit_stats", "row_products", "sketch_rows"]

try:  # pragma: no cover - depends on the installation
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None
    tl = None



def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def enabled(*tensors: torch.Tensor) -> bool:
    """Whether the fused kernels serve these tensors."""
    if triton is None or os.environ.get("HEMORRHAGE_FUSED", "1") == "0":
        return False
    return all(t.is_cuda or (_interpreting() and t.device.type == "cpu") for t in tensors)


if triton is not None:

    @triton.jit
    def _chunk(row_ptr, offs, V):
        """One chunk of a row as float32; entries past the row's end read as −inf."""
        return tl.load(row_ptr + offs, mask=offs < V, other=float("-inf")).to(tl.float32)

    @triton.jit
    def _first_chunk_max(row_ptr, V, BLOCK: tl.constexpr):
        """The largest value among a row's first BLOCK entries (0 when all are −inf): the row's exponent shift."""
        top = tl.max(_chunk(row_ptr, tl.arange(0, BLOCK), V), axis=0)
        return tl.where(top == float("-inf"), 0.0, top)

    @triton.jit
    def _exp_step(zm, zb, ref_m, ref_b, s_m, s_b, t_b, PAIR: tl.constexpr):
        """One chunk into the per-lane Σe^(z_m−ref_m) and, with PAIR, Σe^(z_b−ref_b), Σe^(z_b−ref_b)(z_b−z_m)."""
        s_m += tl.exp(zm - ref_m)
        if PAIR:
            e = tl.exp(zb - ref_b)
            s_b += e
            # p_b = 0 contributes 0 even where z_m = -inf; p_b > 0 against z_m = -inf gives +inf.
            t_b += tl.where(e > 0, e * (zb - zm), 0.0)
        return s_m, s_b, t_b

    @triton.jit
    def _exp_sums(zm_row, zb_row, ref_m, ref_b, V, PAIR: tl.constexpr, BLOCK: tl.constexpr):
        """:func:`_exp_step` over whole rows (the second pass of a row whose maximum lies far above its shift)."""
        lanes = tl.arange(0, BLOCK)
        s_m = tl.zeros([BLOCK], tl.float32)
        s_b = tl.zeros([BLOCK], tl.float32)
        t_b = tl.zeros([BLOCK], tl.float32)
        for start in range(0, V, BLOCK):
            offs = start + lanes
            zm = _chunk(zm_row, offs, V)
            zb = _chunk(zb_row, offs, V) if PAIR else zm
            s_m, s_b, t_b = _exp_step(zm, zb, ref_m, ref_b, s_m, s_b, t_b, PAIR)
        return s_m, s_b, t_b

    @triton.jit
    def _order_keys(values, index):
        """int64 keys that sort like (value descending, then index ascending)."""
        bits = values.to(tl.int32, bitcast=True)
        ordered = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # float order as signed-int order
        return (ordered.to(tl.int64) << 32) | (0x7FFFFFFF - index).to(tl.int64)

    @triton.jit
    def _track(best, at, z, offs):
        """Per lane: the largest value and its index (the first on ties: indices only grow)."""
        up = z > best
        return tl.where(up, z, best), tl.where(up, offs, at)

    @triton.jit
    def _store_top(row_ptr, best, at, V, out_ptr, k, KP: tl.constexpr, BLOCK: tl.constexpr, CH: tl.constexpr):
        """Store the ids of the row's k largest values, ordered by (value, then the lower id).

        Lane ``l`` holds entries ``l, l + BLOCK, l + 2·BLOCK, ...``. Each of the row's top k outranks
        every entry outside the top k, and its lane's maximum outranks (or is) it, so every top-k
        entry lies in a lane whose maximum is among the k largest lane maxima: those k lanes alone
        are read again, whole (k·V/BLOCK entries, in cache), and their top k is the row's.
        """
        lowest = -9223372036854775808
        lanes = tl.topk(tl.where(at < V, _order_keys(best, at), lowest), KP)
        chosen = lanes != lowest
        lane = (0x7FFFFFFF - (lanes & 0xFFFFFFFF)) % BLOCK
        steps = tl.cdiv(V, BLOCK)
        top = tl.full([KP], lowest, tl.int64)
        for first in range(0, steps, CH):
            offs = lane[:, None] + (first + tl.arange(0, CH))[None, :].to(tl.int64) * BLOCK
            ok = chosen[:, None] & (offs < V)
            z = tl.load(row_ptr + offs, mask=ok, other=float("-inf")).to(tl.float32)
            chunk = tl.topk(tl.reshape(tl.where(ok, _order_keys(z, offs), lowest), [KP * CH]), KP)
            top = tl.topk(tl.reshape(tl.join(top, chunk), [2 * KP]), KP)
        j = tl.arange(0, KP)
        tl.store(out_ptr + tl.program_id(0).to(tl.int64) * k + j, 0x7FFFFFFF - (top & 0xFFFFFFFF), mask=j < k)

    @triton.jit
    def _logit_stats_kernel(zm_ptr, zb_ptr, rows_ptr, lse_m_ptr, lse_b_ptr, kl_ptr, top_m_ptr, top_b_ptr,
                            stride_m, stride_b, V, k, PAIR: tl.constexpr, KP: tl.constexpr, BLOCK: tl.constexpr,
                            FAR: tl.constexpr, CH: tl.constexpr):
        pid = tl.program_id(0)
        row = tl.load(rows_ptr + pid).to(tl.int64)
        zm_row = zm_ptr + row * stride_m
        zb_row = zb_ptr + row * stride_b
        lanes = tl.arange(0, BLOCK)
        neg = tl.full([BLOCK], float("-inf"), tl.float32)
        # Exponentials are taken against a fixed shift per row, the first chunk's maximum, instead of a
        # running maximum: that saves rescaling every lane's sums at every step. A row whose maximum
        # lies more than FAR above the shift is summed once more against its maximum (see below).
        ref_m = _first_chunk_max(zm_row, V, BLOCK)
        ref_b = 0.0
        if PAIR:
            ref_b = _first_chunk_max(zb_row, V, BLOCK)
        s_m = tl.zeros([BLOCK], tl.float32)
        s_b = tl.zeros([BLOCK], tl.float32)
        t_b = tl.zeros([BLOCK], tl.float32)
        # A lane of −inf entries keeps its first index: ties (even at −inf) go to the lower id.
        best_m, at_m, best_b, at_b = neg, lanes, neg, lanes
        for start in range(0, V, BLOCK):
            offs = start + lanes
            zm = _chunk(zm_row, offs, V)
            zb = _chunk(zb_row, offs, V) if PAIR else zm
            s_m, s_b, t_b = _exp_step(zm, zb, ref_m, ref_b, s_m, s_b, t_b, PAIR)
            if KP > 0:
                best_m, at_m = _track(best_m, at_m, zm, offs)
            else:
                best_m = tl.maximum(best_m, zm)
            if PAIR:
                if KP > 0:
                    best_b, at_b = _track(best_b, at_b, zb, offs)
                else:
                    best_b = tl.maximum(best_b, zb)
        max_m = tl.max(best_m, axis=0)
        far = max_m > ref_m + FAR
        if PAIR:
            max_b = tl.max(best_b, axis=0)
            far = far | (max_b > ref_b + FAR)
        if far:  # e^(z−shift) could overflow float32 here: sum again against the true maxima
            ref_m = tl.where(max_m == float("-inf"), 0.0, max_m)
            if PAIR:
                ref_b = tl.where(max_b == float("-inf"), 0.0, max_b)
            s_m, s_b, t_b = _exp_sums(zm_row, zb_row, ref_m, ref_b, V, PAIR, BLOCK)
        sum_m = tl.sum(s_m, axis=0)
        lse_m = ref_m + tl.log(sum_m)
        tl.store(lse_m_ptr + pid, lse_m)
        if KP > 0:
            _store_top(zm_row, best_m, at_m, V, top_m_ptr, k, KP, BLOCK, CH)
        if PAIR:
            sum_b = tl.sum(s_b, axis=0)
            lse_b = ref_b + tl.log(sum_b)
            tl.store(lse_b_ptr + pid, lse_b)
            # sum p_b (log p_b - log p_m) = sum p_b (z_b - z_m) - lse_b + lse_m
            tl.store(kl_ptr + pid, tl.maximum(tl.sum(t_b, axis=0) / sum_b - lse_b + lse_m, 0.0))
            if KP > 0:
                _store_top(zb_row, best_b, at_b, V, top_b_ptr, k, KP, BLOCK, CH)

    @triton.jit
    def _row_products_kernel(b_ptr, m_ptr, out_ptr, n, D, stride_b, stride_m, ROWS: tl.constexpr,
                             BLOCK: tl.constexpr):
        r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        live = r < n
        r = r.to(tl.int64)
        bb = tl.zeros([ROWS, BLOCK], tl.float32)
        mm = tl.zeros([ROWS, BLOCK], tl.float32)
        bm = tl.zeros([ROWS, BLOCK], tl.float32)
        ee = tl.zeros([ROWS, BLOCK], tl.float32)
        for start in range(0, D, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            where = live[:, None] & (offs[None, :] < D)
            b = tl.load(b_ptr + r[:, None] * stride_b + offs[None, :], mask=where, other=0.0).to(tl.float32)
            m = tl.load(m_ptr + r[:, None] * stride_m + offs[None, :], mask=where, other=0.0).to(tl.float32)
            d = b - m
            bb += b * b
            mm += m * m
            bm += b * m
            ee += d * d
        out = out_ptr + r * 4
        tl.store(out, tl.sum(bb, axis=1), mask=live)
        tl.store(out + 1, tl.sum(mm, axis=1), mask=live)
        tl.store(out + 2, tl.sum(bm, axis=1), mask=live)
        tl.store(out + 3, tl.sum(ee, axis=1), mask=live)

    @triton.jit
    def _mix31(x):
        x = ((x ^ (x >> 15)) * 0x2C1B3C6D) & 0x7FFFFFFF
        x = ((x ^ (x >> 12)) * 0x297A2D39) & 0x7FFFFFFF
        return x ^ (x >> 15)

    @triton.jit
    def _sketch_kernel(h_ptr, table_ptr, rows_ptr, keys_ptr, proj_ptr, y_ptr, norm_ptr, n, D, d, stride_layer,
                       stride_row, IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
                       BLOCK_N: tl.constexpr, TABLE: tl.constexpr, ALIGN: tl.constexpr):
        pid = tl.program_id(0)
        layer = tl.program_id(1).to(tl.int64)
        i = pid * BLOCK_M + tl.arange(0, BLOCK_M)
        live = i < n
        rows = tl.load(rows_ptr + i, mask=live, other=0).to(tl.int64)
        keys = tl.load(keys_ptr + i, mask=live, other=0).to(tl.int64)
        cols_n = tl.arange(0, BLOCK_N)
        acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
        sq = tl.zeros([BLOCK_M], tl.float32)
        if TABLE:
            # Each layer's offset in elements from h_ptr (its output is read where it lies). Telling the
            # compiler that offsets keep 16-byte alignment lets it vectorise the loads, as for one tensor.
            base = h_ptr + tl.multiple_of(tl.load(table_ptr + layer), ALIGN) + rows[:, None] * stride_row
        else:
            base = h_ptr + layer * stride_layer + rows[:, None] * stride_row
        for start in range(0, D, BLOCK_K):
            k = start + tl.arange(0, BLOCK_K)
            kvalid = k < D
            hf = tl.load(base + k[None, :], mask=live[:, None] & kvalid[None, :], other=0.0).to(tl.float32)
            sq += tl.sum(hf * hf, axis=1)
            colhash = (k.to(tl.int64) * 0x5BD1E995) & 0x7FFFFFFF
            bits = (_mix31(keys[:, None] ^ colhash[None, :]) >> 16) & 1
            p = tl.load(proj_ptr + cols_n[None, :] * D + k[:, None], mask=kvalid[:, None] & (cols_n[None, :] < d),
                        other=0.0)
            signed = tl.where(bits == 1, -hf, hf)
            if IEEE:
                acc += tl.dot(signed, p, input_precision="ieee")
            else:
                # bf16 and fp16 values (and ±1) are exact in tf32, so the tensor cores' products are
                # exact here; the sums stay in float32.
                acc += tl.dot(signed, p, input_precision="tf32")
        out = layer * n + i
        tl.store(y_ptr + out[:, None] * d + cols_n[None, :], acc, mask=live[:, None] & (cols_n[None, :] < d))
        tl.store(norm_ptr + out, tl.sqrt(sq), mask=live)


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


# Above this k the kernel's re-read of k lanes grows large; PyTorch's top-k is used instead.
MAX_FUSED_TOPK = 16
DEFAULT_BLOCK, DEFAULT_WARPS = 1024, 4
# A row is summed a second time when its maximum exceeds its first chunk's by more than this (in
# nats): e^40 times a vocabulary of millions, or times a logit difference of 1e6, still fits float32.
FAR_SHIFT = 40.0


def logit_stats(logits_m: torch.Tensor, rows: torch.Tensor, logits_b: torch.Tensor | None = None,
                topk: int = 0, block: int | None = None, num_warps: int | None = None) -> dict[str, torch.Tensor]:
    """Per selected row, in one pass over the logits: log-sum-exps, KL and top-k token ids.

    ``logits_*``: ``[M, V]`` (rows of a flattened ``[B, T, V]`` view, any float dtype);
    ``rows``: ``[N]`` indices of the rows to score. Returns ``lse_m`` and, given ``logits_b``,
    ``lse_b`` and ``kl`` = KL(softmax b || softmax m), all float32 ``[N]``; with ``topk`` > 0
    (at most :data:`MAX_FUSED_TOPK`) also ``top_m`` (and ``top_b``): int64 ``[N, topk]`` ids of the
    largest logits, largest first, the lower id first on ties. ``block`` (lanes per program) and
    ``num_warps`` default to what measured fastest on an H200 (see benchmarks/gpu.py).
    """
    if topk > MAX_FUSED_TOPK:
        raise ValueError(f"topk: at most {MAX_FUSED_TOPK} in the fused kernel, got {topk}")
    zm = _last_dim_contiguous(logits_m)
    pair = logits_b is not None
    zb = _last_dim_contiguous(logits_b) if pair else zm
    n, vocab = rows.numel(), zm.shape[-1]
    k = min(topk, vocab)
    out = {"lse_m": torch.empty(n, dtype=torch.float32, device=zm.device)}
    if pair:
        out["lse_b"], out["kl"] = torch.empty_like(out["lse_m"]), torch.empty_like(out["lse_m"])
    if k:
        out["top_m"] = torch.empty(n, k, dtype=torch.int64, device=zm.device)
        if pair:
            out["top_b"] = torch.empty_like(out["top_m"])
    if n:
        spare = out["lse_m"]  # pointer arguments the kernel does not touch in this configuration
        _logit_stats_kernel[(n,)](
            zm, zb, rows, out["lse_m"], out.get("lse_b", spare), out.get("kl", spare),
            out.get("top_m", spare), out.get("top_b", spare), zm.stride(0), zb.stride(0), vocab, k,
            PAIR=pair, KP=max(2, triton.next_power_of_2(k)) if k else 0,
            BLOCK=min(block or DEFAULT_BLOCK, triton.next_power_of_2(vocab)), FAR=FAR_SHIFT, CH=32,
            num_warps=num_warps or DEFAULT_WARPS)
    return out


def row_products(b: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``[N, 4]`` float32 per row of ``[N, D]`` inputs: (Σb², Σm², Σb·m, Σ(b−m)²)."""
    b, m = _last_dim_contiguous(b), _last_dim_contiguous(m)
    n, dim = b.shape
    out = torch.empty(n, 4, dtype=torch.float32, device=b.device)
    if n:
        rows = 4
        _row_products_kernel[(triton.cdiv(n, rows),)](b, m, out, n, dim, b.stride(0), m.stride(0), ROWS=rows,
                                                      BLOCK=min(512, triton.next_power_of_2(dim)), num_warps=4)
    return out


def sketch_rows(h: torch.Tensor | Sequence[torch.Tensor], rows: torch.Tensor, keys: torch.Tensor,
                proj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sketches ``[L, N, d]`` (unscaled: divide by sqrt(d)) and norms ``[L, N]`` of rows of ``h``.

    ``h``: ``[L, M, D]`` hidden states (``M`` rows per layer), or a sequence of ``L`` ``[M, D]``
    tensors of one shape and dtype, one per layer, each read where it lies (no stacked copy: the
    kernel gets a table of their offsets from the first); ``rows``: ``[N]`` rows to sketch; ``keys``: ``[N]``
    sign keys (``snapshot.sign_keys``); ``proj``: the ``[d, D]`` ±1 projection.
    """
    table = None
    if not isinstance(h, torch.Tensor):
        parts = [_last_dim_contiguous(t) for t in h]
        size = parts[0].element_size()
        offsets = [t.data_ptr() - parts[0].data_ptr() for t in parts]
        if (len({(t.shape, t.stride(), t.dtype, t.device) for t in parts}) > 1 or parts[0].data_ptr() % 16
                or any(o % 16 for o in offsets)):
            h = torch.stack(parts)  # mixed or unaligned layouts: one copy instead of one slow launch per layer
        else:
            table = host_to(torch.tensor([o // size for o in offsets], dtype=torch.int64), parts[0].device)
            h = parts[0].unsqueeze(0).expand(len(parts), *parts[0].shape)  # h_ptr, dtype and strides
    h = _last_dim_contiguous(h)
    layers, _, dim = h.shape
    n, d = rows.numel(), proj.shape[0]
    y = torch.empty(layers, n, d, dtype=torch.float32, device=h.device)
    norms = torch.empty(layers, n, dtype=torch.float32, device=h.device)
    if n and layers:
        ieee = h.dtype not in (torch.bfloat16, torch.float16)
        p = proj.to(torch.float32).contiguous()
        block_n = max(16, triton.next_power_of_2(d))
        grid = (triton.cdiv(n, 64), layers)
        _sketch_kernel[grid](h, rows if table is None else table, rows, keys, p, y, norms, n, dim, d, h.stride(0),
                             h.stride(1), IEEE=ieee, BLOCK_M=64, BLOCK_K=64, BLOCK_N=block_n,
                             TABLE=table is not None, ALIGN=max(1, 16 // h.element_size()), num_warps=4)
    return y, norms
