"""An observation holding only each position's top log-probabilities, as a completions server returns them.

Either kind of baseline measures it (a live model's :class:`~.observation.TensorObservation`
or a snapshot's :class:`~.snapshot.SnapshotObservation`): each says what it knows of its own
distribution at the candidate's returned tokens, and :func:`~pytest_hemorrhage.metrics.topk.topk_token_metrics`
does the rest. KL from such a candidate is a lower bound (see that module); the source says
which metrics are bounds through its ``metric_bounds``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..capture import host_to
from ..errors import HemorrhageError
from ..metrics.topk import topk_token_metrics

__all__ = ["TopkObservation", "is_topk", "measure_topk", "BASELINE_TOP"]

#: How many of its most likely tokens a live baseline contributes to the KL bound's capped cells
#: (a snapshot gives those it recorded); more would only matter where their mass is not negligible.
BASELINE_TOP = 64


@dataclass
class TopkObservation:
    """One batch as seen by a side that returns the top ``k`` log-probabilities per position.

    ``top_ids`` ``[B, T, m]``: row ``t`` holds the tokens returned for the distribution that
    predicts token ``t + 1`` of the probe, most likely first, ``-1`` where a token could not be
    identified or nothing was returned; ``top_logp`` their log-probabilities (``-inf`` where
    nothing was returned); the first ``k`` are the server's top ``k``. ``target_logp`` ``[B, T]``:
    the log-probability of token ``t + 1``, NaN where the server did not return it. ``loose``
    ``[B, T]``: rows where a returned top token may have been lost (two of one text), so neither
    the order nor the k-th probability is known.
    """

    batch: Any
    k: int
    top_ids: torch.Tensor
    top_logp: torch.Tensor
    target_logp: torch.Tensor
    loose: torch.Tensor | None = None
    kind: str = "lm"
    outputs: None = None
    blocks: dict = field(default_factory=dict)
    attentions: None = None
    decoding: None = None

    @property
    def block_names(self) -> list[str]:
        return []

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise HemorrhageError("a side that returns only top log-probabilities can be the candidate only; "
                              "pass the baseline model or a snapshot as the baseline")

    token_metrics = output_sums = layer_sums = attention_sums = _refuse


def is_topk(observation: Any) -> bool:
    """Whether ``observation`` carries top log-probabilities instead of every logit."""
    return isinstance(observation, TopkObservation)


def measure_topk(candidate: TopkObservation, topk: int, device: torch.device,
                 baseline: Callable[[list[tuple[int, int]], torch.Tensor, torch.Tensor, int],
                                    tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
    """Per scored token of ``candidate``'s batch: probe index and metrics (exact or lower bounds).

    ``baseline(scored, cand_ids, targets, k_report)`` gives the baseline's side for the scored
    tokens (``scored``: ``(row, count)`` per probe row; ``cand_ids`` ``[N, m]``, ``targets``
    ``[N]``): log p at ``cand_ids`` (NaN where unknown), log p of the targets, and its most
    likely ids (at least ``k_report``, largest first) with their log-probabilities.
    """
    batch = candidate.batch
    scored = [(r, int(n) - 1) for r, n in enumerate(batch.attention_mask.sum(1).tolist()) if n > 1]
    if not scored:
        return None
    k_report = min(topk, candidate.k)

    def flat(t: torch.Tensor) -> torch.Tensor:
        return host_to(torch.cat([t[r, :n] for r, n in scored]), device)

    ids, logp, target_logp = flat(candidate.top_ids), flat(candidate.top_logp), flat(candidate.target_logp)
    loose = flat(candidate.loose) if candidate.loose is not None else None
    targets = host_to(torch.cat([batch.input_ids[r, 1: n + 1] for r, n in scored]), device)
    base_at, base_target, base_ids, base_logp = baseline(scored, ids, targets, k_report)
    values = topk_token_metrics(ids, logp, target_logp, candidate.k, targets, base_at, base_target,
                                base_ids, base_logp, k_report, loose)
    units = torch.tensor(batch.units)[torch.cat([torch.full((n,), r) for r, n in scored])]
    return host_to(units, device), values
