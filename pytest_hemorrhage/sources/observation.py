"""An observation holding whole output tensors: every logit, block outputs, attention probabilities.

A live model gives one (:mod:`.module`); so would any runtime that hands over all logits. As a
baseline it measures a candidate that carries every logit too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..capture import host_to
from ..errors import HemorrhageError
from ..metrics.activations import activation_sums, layer_activation_sums
from ..metrics.attention import attention_sums
from ..metrics.outputs import token_output_metrics, topk_ids
from .topk import BASELINE_TOP, is_topk, measure_topk

__all__ = ["TensorObservation"]


@dataclass
class TensorObservation:
    """One batch as seen by a side that has its whole output tensor (see :class:`~.Observation`)."""

    batch: Any
    kind: str
    outputs: torch.Tensor
    blocks: dict[str, torch.Tensor] = field(default_factory=dict)
    attentions: tuple | None = None
    decoding: Any = None

    @property
    def block_names(self) -> list[str]:
        return list(self.blocks)

    def _candidate_outputs(self, candidate: Any, device: torch.device) -> torch.Tensor:
        out_b, out_m = self.outputs, candidate.outputs
        if out_m is None:
            raise HemorrhageError(
                f"the candidate gives no full outputs for this batch, and a {self.kind} baseline with full outputs "
                "is compared on all of them; compare against a candidate that returns every logit"
            )
        if out_b.shape != out_m.shape:
            what = "vocabulary" if self.kind == "lm" and out_b.shape[:-1] == out_m.shape[:-1] else "output shape"
            raise HemorrhageError(
                f"{what} mismatch: baseline output has shape {tuple(out_b.shape)}, candidate "
                f"{tuple(out_m.shape)}. Compare models with the same vocabulary and output head "
                "(and the same tokenizer)."
            )
        return out_m.to(device)

    def token_metrics(self, candidate: Any, topk: int,
                      device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        """Per scored token: its probe index and the metrics of :mod:`~pytest_hemorrhage.metrics.outputs`
        (of :mod:`~pytest_hemorrhage.metrics.topk` for a candidate that returns top log-probabilities only)."""
        if is_topk(candidate):
            return measure_topk(candidate, topk, device, self._known_at)
        out_b, out_m = self.outputs, self._candidate_outputs(candidate, device)
        batch = self.batch
        units = host_to(torch.tensor(batch.units), device)
        ids = host_to(batch.input_ids, device)
        # The mask is still on the host here: reading lengths from it costs no device sync.
        scored = [(r, int(n) - 1) for r, n in enumerate(batch.attention_mask.sum(1).tolist()) if n > 1]
        if not scored:
            return None
        decoding = (self.decoding, candidate.decoding)
        if out_b.device.type == "cpu" or decoding != (None, None):
            # Right padding: each row's scored positions are one contiguous slice, so the logits are
            # read through views instead of being gathered into a copy (host memory is the limit).
            parts = [_token_metrics(out_b[r, :n], out_m[r, :n], ids[r, : n + 1], decoding, topk) for r, n in scored]
            values = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        else:
            # On an accelerator, one gathered batch means a few large kernels instead of many per row.
            width = out_b.shape[1]
            flat = host_to(torch.cat([torch.arange(n) + r * width for r, n in scored]), device)
            values = token_output_metrics(out_b.flatten(0, 1), out_m.flatten(0, 1),
                                          ids.flatten().index_select(0, flat + 1), topk=topk, rows=flat)
        rows = host_to(torch.cat([torch.full((n,), r) for r, n in scored]), device)
        return units[rows], values

    def _known_at(self, scored: list[tuple[int, int]], ids: torch.Tensor, targets: torch.Tensor,
                  k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """This side's log-probabilities at ``ids`` (NaN at ``-1``) and at ``targets``, and its
        :data:`~.topk.BASELINE_TOP` (at least ``k``) most likely ids with their log-probabilities."""
        logits = torch.cat([self.outputs[r, :n] for r, n in scored]).to(ids.device)
        logp = torch.log_softmax(logits.double(), dim=-1)
        at = logp.gather(-1, ids.clamp_min(0))
        at = torch.where(ids >= 0, at, torch.full_like(at, torch.nan))
        top = topk_ids(logits, min(max(k, BASELINE_TOP), logits.shape[-1]))
        return at, logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1), top, logp.gather(-1, top)

    def output_sums(self, candidate: Any, mask: torch.Tensor | None,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
        """One unit per probe row (encoders, classifiers, vision): ``(probe indices, [n, 4] sums, labels)``.

        ``labels``, for a classifier: baseline and candidate argmax labels and the true ones (or None).
        """
        out_b, out_m = self.outputs, self._candidate_outputs(candidate, device)
        units = host_to(torch.tensor(self.batch.units), device)
        token_mask = mask if (mask is not None and out_b.dim() == 3) else None
        sums = activation_sums(out_b, out_m, token_mask).to(torch.float64)
        labels = None
        if self.kind == "classifier":
            true = self.batch.labels
            labels = (out_b.argmax(-1).to(device), out_m.argmax(-1).to(device),
                      host_to(true, device).long().view(-1) if true is not None else None)
        return units, sums, labels

    def layer_sums(self, names: Sequence[str], candidate: Any, mask: torch.Tensor | None,
                   device: torch.device) -> torch.Tensor:
        """``[len(names), 4]`` sums of the blocks ``names`` (one output shape), reduced together."""
        pairs = []
        for name in names:
            b, m = self.blocks[name], candidate.blocks[name]
            if b.shape != m.shape:
                raise HemorrhageError(
                    f"layer {name}: baseline output shape {tuple(b.shape)} differs from candidate "
                    f"{tuple(m.shape)}; exclude the layer with layers=[...] or compare outputs only (layers=None)"
                )
            pairs.append((b.to(device), m.to(device)))
        return layer_activation_sums(pairs, mask).to(torch.float64)

    def attention_sums(self, candidate: Any, mask: torch.Tensor | None,
                       device: torch.device) -> dict[int, torch.Tensor]:
        """Per attention layer both sides returned with one shape: per-head float64 sums."""
        if self.attentions is None or candidate.attentions is None:
            return {}
        sums = {}
        for i, (a_b, a_m) in enumerate(zip(self.attentions, candidate.attentions)):
            if a_b is None or a_m is None or a_b.shape != a_m.shape:
                continue
            sums[i] = attention_sums(a_b, a_m.to(device), mask).sum(0).to(torch.float64)
        return sums


def _token_metrics(logits_b: torch.Tensor, logits_m: torch.Tensor, ids: torch.Tensor, decoding: tuple[Any, Any],
                   topk: int) -> dict[str, torch.Tensor]:
    """Per-token output metrics of one probe; ``ids`` holds the probe's tokens (targets are ``ids[1:]``)."""
    targets = ids[1:]
    if decoding == (None, None):
        return token_output_metrics(logits_b, logits_m, targets, topk=topk)
    # Decoding comparison: KL, top-1 and top-k of the distributions tokens are actually drawn from;
    # dNLL and dp of the models' own (repetition-penalised) distributions, since perplexity is a
    # property of the model and a truncated sampler would make it infinite.
    raw_b, raw_m = (logits.float() if config is None else config.model_scores(logits, ids[:-1])
                    for logits, config in ((logits_b, decoding[0]), (logits_m, decoding[1])))
    drawn_b, drawn_m = (scores if config is None else config.drawn_from(scores)
                        for scores, config in ((raw_b, decoding[0]), (raw_m, decoding[1])))
    effective = token_output_metrics(drawn_b, drawn_m, targets, topk=topk)
    raw = token_output_metrics(raw_b, raw_m, targets, topk=topk)
    return {**effective, "dnll": raw["dnll"], "dp2": raw["dp2"]}
