"""A recorded baseline (:mod:`pytest_hemorrhage.snapshot`) as the baseline side of a comparison.

The snapshot holds, per scored token, the baseline's top-k log-probabilities, importance samples
of the tail and the real next token's log-probability, and per block a sketch of every hidden
state. Its observation measures a candidate that carries every logit: KL from the top-k plus an
unbiased tail estimate, and SQNR and cosine per block from the sketches.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from ..capture import host_to
from ..errors import HemorrhageError, InvalidArgument, SnapshotError
from ..metrics import fused
from ..metrics.outputs import OUTPUT_METRICS, logits_at, top_ids, topk_ids
from ..probes import ProbeBatch, Probes, as_probes
from ..snapshot import UPDATE_HINT, Snapshot, sign_keys, sketch_projection, sketch_signs, sketch_tokens
from ..validate import vocabulary_mismatch
from .topk import is_topk, measure_topk

__all__ = ["SnapshotSource", "SnapshotObservation", "output_metrics", "layer_sums"]


class SnapshotSource:
    """A :class:`~pytest_hemorrhage.snapshot.Snapshot` standing in for the baseline model."""

    role = "baseline"
    model = None
    decoding = None
    attentions = False
    parameters = None
    modification = None
    device = None
    kind = "lm"
    pad_id = None

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = self.origin = snapshot

    @property
    def label(self) -> str:
        return f"snapshot {self.snapshot.path or '(in memory)'}"

    @property
    def layer_names(self) -> list[str]:
        return self.snapshot.layer_names

    @property
    def topk_limit(self) -> int | None:
        return self.snapshot.meta.get("topk")

    def paired_with(self, candidate: Any, generation: int) -> Any:
        if self.decoding is not None or candidate.decoding is not None or generation:
            raise InvalidArgument(
                "decoding settings and generation=... need the live baseline model: a snapshot holds "
                "only the baseline's top log-probabilities. Pass the baseline model instead."
            )
        recorded = self.snapshot.meta.get("vocab_size")
        different = vocabulary_mismatch(None, candidate.model, int(recorded)) if recorded is not None and \
            candidate.model is not None else None
        if different:
            raise SnapshotError(f"{different}; if the baseline's vocabulary changed on purpose, {UPDATE_HINT}")
        return candidate

    def probes_for(self, probes: Any) -> Probes:
        """The recorded probes when none are given; given ones must be those the snapshot was recorded on,
        or the first of them (``Probes.builtin(tokenizer, n=32)`` against a 64-probe recording)."""
        if probes is None:
            return self.snapshot.probes
        probe_set = as_probes(probes)
        recorded = self.snapshot.probes
        if probe_set.is_tokens and len(probe_set) < len(recorded) and \
                recorded.subset(range(len(probe_set))).fingerprint() == probe_set.fingerprint():
            return probe_set  # probe i is recorded probe i: each batch reads the rows recorded for it
        self.snapshot.check_identity(probes=probe_set)
        return probe_set

    def check(self, probes: Probes) -> None:
        """Nothing to check: the snapshot was recorded on these probes (:meth:`probes_for`)."""

    @contextlib.contextmanager
    def opened(self, device: Any, attention: bool) -> Iterator[None]:
        yield

    def observe(self, batch: ProbeBatch, blocks: Sequence[str] = (),
                attentions: bool = False) -> "SnapshotObservation":
        recorded = set(self.snapshot.layer_names)
        return SnapshotObservation(self.snapshot, batch, [name for name in blocks if name in recorded])


@dataclass
class SnapshotObservation:
    """The recorded baseline's view of one batch; it measures a candidate that carries every logit."""

    snapshot: Snapshot
    batch: Any
    block_names: list[str]
    kind: str = "lm"
    outputs: None = None
    blocks: dict = field(default_factory=dict)
    attentions: None = None
    decoding: None = None

    def _logits(self, candidate: Any) -> torch.Tensor:
        if candidate.outputs is None:
            raise HemorrhageError(
                "the candidate gives no full logits for this batch; a snapshot baseline measures the "
                "candidate's whole next-token distribution. Compare a candidate that returns every logit."
            )
        return candidate.outputs

    def token_metrics(self, candidate: Any, topk: int,
                      device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        if is_topk(candidate):
            return measure_topk(candidate, topk, device, self._known_at)
        return output_metrics(self.snapshot, self.batch, self._logits(candidate).to(device), topk)

    def _known_at(self, scored: list[tuple[int, int]], ids: torch.Tensor, targets: torch.Tensor,
                  k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nothing at ``ids`` beyond what the recorded top tokens say (NaN), the recorded
        log-probabilities at ``targets``, and the recorded top ids (at least ``k``) with theirs."""
        lengths = [0] * len(self.batch.units)
        for r, n in scored:
            lengths[r] = n
        store = self.snapshot.token_rows(self.batch.units, lengths, "scored")
        t = _stored_rows(self.snapshot, ("top_ids", "top_logp", "target_logp"), store, ids.device)
        top = t["top_ids"].long()
        if k > top.shape[1]:
            raise InvalidArgument(f"topk: {k} asked for, but the snapshot holds the top {top.shape[1]} tokens only")
        at = torch.full(ids.shape, torch.nan, dtype=torch.float64, device=ids.device)  # read from the top tokens
        return at, t["target_logp"].double(), top, t["top_logp"].double()

    def output_sums(self, candidate: Any, mask: torch.Tensor | None, device: torch.device) -> tuple:
        raise HemorrhageError(
            f"the snapshot records next-token distributions; the candidate's outputs are {candidate.kind}. "
            "Compare a causal language model against it."
        )

    def layer_sums(self, names: Sequence[str], candidate: Any, mask: torch.Tensor | None,
                   device: torch.device) -> torch.Tensor:
        return layer_sums(self.snapshot, names, self.batch, [candidate.blocks[n] for n in names]).to(device)

    def attention_sums(self, candidate: Any, mask: torch.Tensor | None, device: torch.device) -> dict:
        return {}


def output_metrics(snapshot: Snapshot, batch: Any, logits_m: torch.Tensor,
                   topk: int) -> tuple[torch.Tensor, dict]:
    """Per-token metrics of the candidate against the recorded baseline for one batch."""
    lengths = [int(n) - 1 for n in batch.attention_mask.sum(1).tolist()]  # host copy: no device sync
    store = snapshot.token_rows(batch.units, lengths, "scored")
    vocab = logits_m.shape[-1]
    if vocab != int(snapshot.meta["vocab_size"]):
        raise SnapshotError(
            f"vocabulary mismatch: the snapshot was recorded with vocabulary {snapshot.meta['vocab_size']}, "
            f"the candidate outputs {vocab}; use a candidate with the baseline's vocabulary or {UPDATE_HINT}"
        )
    device = logits_m.device
    width = logits_m.shape[1]
    scored = [(r, n) for r, n in enumerate(lengths) if n > 0]
    flat = host_to(torch.cat([torch.arange(n) + r * width for r, n in scored]), device)
    rows = host_to(torch.cat([torch.full((n,), r) for r, n in scored]), device)
    targets = host_to(batch.input_ids, device).flatten().index_select(0, flat + 1)
    logits_flat = logits_m.flatten(0, 1)
    t = _stored_rows(snapshot, ("top_ids", "top_logp", "tail_ids", "tail_logp", "tail_mass", "target_logp"), store,
                     device)
    t["targets"] = targets
    k_report = min(topk, t["top_ids"].shape[1])
    if fused.enabled(logits_flat):
        in_kernel = k_report <= fused.MAX_FUSED_TOPK
        stats = fused.logit_stats(logits_flat, flat, topk=k_report if in_kernel else 0)
        values = _metrics_against_snapshot(logits_flat, flat, stats["lse_m"], t, k_report,
                                           mine=stats["top_m"] if in_kernel else None)
    else:
        # Probe by probe through views of its scored rows (right padding: one contiguous slice
        # each), so no copy of the batch's logits is made; log-probabilities as the live
        # comparison computes them, so stored exact quantities (top-1, the target's
        # log-probability) give identical numbers either way.
        # Here the work per logit is light (one log-softmax, a few gathers): chunks of about 32 MiB
        # of float32 measured faster than cache-sized ones, whose per-call overhead then dominates.
        chunk = max(16, (2**23 if device.type == "cpu" else 2**28) // max(vocab, 1))
        parts, at = [], 0
        for r, n in scored:
            for start in range(0, n, chunk):
                z = logits_m[r, start: min(start + chunk, n)]
                lm = torch.log_softmax(z.float(), dim=-1)
                part = {k: v[at: at + len(z)] for k, v in t.items()}
                at += len(z)
                rows_z = torch.arange(len(z), device=device)
                parts.append(_metrics_against_snapshot(lm, rows_z, lm.new_zeros(len(z)), part, k_report,
                                                       mine=topk_ids(z, k_report)))
        values = {name: torch.cat([p[name] for p in parts]) for name in OUTPUT_METRICS}
    return batch_units(batch, rows), values


def _stored_rows(snapshot: Snapshot, keys: tuple[str, ...], store: torch.Tensor, device: torch.device,
                 layers: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The stored rows ``store`` of tensors ``keys`` (per-layer ones restricted to ``layers``) on ``device``.

    On an accelerator a snapshot of up to 512 MiB is copied over once and indexed there; a larger
    one is indexed on the host batch by batch.
    """
    if device.type != "cpu" and sum(snapshot.tensors[k].nbytes for k in keys) <= 512 * 2**20:
        cached = {k: snapshot.stored_on(k, device) for k in keys}
        index = host_to(store, device)
        if layers is None:
            return {k: v.index_select(0, index) for k, v in cached.items()}
        lay = host_to(layers, device)
        # Tokens first: selecting the layers first would copy every recorded token of them per batch.
        return {k: v.index_select(1, index).index_select(0, lay) for k, v in cached.items()}
    if layers is None:
        return {k: host_to(snapshot.tensors[k][store], device) for k in keys}
    return {k: host_to(snapshot.tensors[k][layers][:, store], device) for k in keys}


def layer_sums(snapshot: Snapshot, names: Sequence[str], batch: Any,
               hidden: Sequence[torch.Tensor]) -> torch.Tensor:
    """[L, 4] sums (signal, estimated error, estimated cosine sum, tokens) for the blocks ``names``.

    ``hidden``: the candidate's outputs of those blocks, one [B, T, D] tensor each (same shape).
    """
    index = torch.tensor([snapshot.meta["layers"].index(n) for n in names])
    lengths = batch.attention_mask.sum(1).tolist()  # the host copy: no device sync
    store = snapshot.token_rows(batch.units, lengths, "tokens")
    device = hidden[0].device
    width = hidden[0].shape[1]
    flat = host_to(torch.cat([torch.arange(n) + r * width for r, n in enumerate(lengths)]), device)
    size = hidden[0].shape[-1]
    seed = int(snapshot.meta["sketch"]["seed"])
    scheme = snapshot.meta["sketch"].get("signs", "generator")
    dim = int(snapshot.meta["sketch"]["dim"])
    proj = sketch_projection(seed, dim, size, device)
    if scheme == "hash" and fused.enabled(hidden[0]):
        keys = sign_keys(seed, batch.units, lengths, device)
        # Each block's output is read where it lies: stacking them would copy every hidden state once more.
        y_m, norm_m = fused.sketch_rows([h.flatten(0, 1) for h in hidden], flat, keys, proj)
        y_m = y_m / math.sqrt(dim)
    else:
        signs = torch.cat([sketch_signs(seed, u, n, size, device, scheme) for u, n in zip(batch.units, lengths)])
        sketches, norms = [], []
        for t in hidden:  # layer by layer: the temporaries stay small enough for the CPU's caches
            h = t.flatten(0, 1).index_select(0, flat).float()  # [n, D], right padding dropped
            sketches.append(sketch_tokens(h, signs, proj))
            norms.append(torch.linalg.vector_norm(h, dim=-1))
        y_m, norm_m = torch.stack(sketches), torch.stack(norms)
    stored = _stored_rows(snapshot, ("norms", "sketches"), store, device, layers=index)
    norm_b = stored["norms"].float()
    y_b = stored["sketches"].float() * norm_b.unsqueeze(-1)
    diff = y_b - y_m
    err_t = torch.linalg.vecdot(diff, diff)
    # cos = (|b|² + |m|² − |b−m|²) / (2|b||m|): exact norms, only the (small) difference is estimated,
    # so the estimate is as tight as the SQNR one. Per-token values are not clipped: that would bias the mean.
    cos = (norm_b.square() + norm_m.square() - err_t) / (2 * norm_b * norm_m).clamp_min(1e-12)
    tokens = torch.full((y_m.shape[0],), float(y_m.shape[1]), device=y_m.device)
    return torch.stack([norm_b.square().sum(-1), err_t.sum(-1), cos.sum(-1), tokens], dim=-1).double()


def _metrics_against_snapshot(logits: torch.Tensor, rows: torch.Tensor, lse: torch.Tensor,
                              stored: dict[str, torch.Tensor], k_report: int,
                              mine: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-token output metrics of candidate ``logits`` rows ``rows`` (log-normalisers ``lse``, top
    ``k_report`` ids ``mine`` when already known) against the baseline's recorded ``stored`` rows
    (plus ``"targets"``, the real next tokens)."""
    lse = lse.unsqueeze(-1)
    top_lp, top = stored["top_logp"].float(), stored["top_ids"].long()
    lm_top = logits_at(logits, rows, top) - lse
    head = (top_lp.exp() * (top_lp - lm_top)).sum(-1)
    # Tail: sum_tail p_b log(p_b/p_m) = T_b E_tail[r - 1 - log r] + T_b - T_m, r = p_m/p_b, with
    # T_m the candidate's exact mass outside the baseline's top-k. The summand r - 1 - log r >= 0
    # shrinks quadratically with the divergence, so the estimate stays tight for small KL.
    log_r = logits_at(logits, rows, stored["tail_ids"]) - lse - stored["tail_logp"].float()
    mass_b = stored["tail_mass"].float()
    mass_m = (1.0 - lm_top.exp().sum(-1)).clamp_min(0.0)
    tail = mass_b * (log_r.exp() - 1.0 - log_r).mean(-1) + mass_b - mass_m
    if mine is None:
        mine = top_ids(logits, rows, k_report)
    ym = (logits_at(logits, rows, stored["targets"].unsqueeze(-1)) - lse).squeeze(-1)
    yb = stored["target_logp"].float()
    return {
        "kl": head + tail,
        "top1": (mine[:, 0] == top[:, 0]).float(),
        "topk": (top[:, :k_report].unsqueeze(-1) == mine.unsqueeze(-2)).any(-1).float().mean(-1),
        "dnll": yb - ym,
        "dp2": (ym.exp() - yb.exp()).square(),
    }


def batch_units(batch: Any, rows: torch.Tensor) -> torch.Tensor:
    return host_to(torch.tensor(batch.units), rows.device)[rows]
