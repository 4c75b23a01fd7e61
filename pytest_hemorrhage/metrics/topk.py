"""Per-token output metrics of a candidate known only through its top log-probabilities.

A completions server returns, per prompt position, the log-probabilities of its ``k`` most
likely tokens and (usually) of the real next token. The baseline side knows its own
log-probability wherever it has one (a live model: every token; a snapshot: its recorded top
tokens and the real next token). Per scored token, with p the baseline's and q the candidate's
distribution, y the real next token:

* **dNLL, dp**: exact whenever the server returned q(y). When it did not (a server that
  returns no log-probability for the prompt's own tokens, or a position it gave nothing for),
  q(y) is at most the k-th returned probability (y is not among the top k), or 1 when the
  position is missing, so ``log p(y) - log(that)`` is a lower bound of dNLL and the squared
  shift is bounded below likewise.
* **same top-1, top-k overlap**: exact from the returned order; a position or a top token
  that could not be identified counts as a disagreement, which bounds the rate from below.
* **KL**: no finite upper bound exists (a token outside the top k may have any probability
  down to 0 under the candidate). A lower bound does, by the data-processing inequality:
  merging tokens into cells never increases KL. The cells are every token whose probability
  both sides know, each on its own, plus one cell for all the rest, whose masses are
  ``1 - sum(known)`` on each side::

      KL(p||q) >= sum_{v in A} p(v) log(p(v)/q(v)) + p_R log(p_R/q_R)

  ``q_R`` is raised by :data:`REST_SLACK` (the rounding of k returned float32 values), which
  only lowers the bound, so rounding can never push it above the true KL.

Every value here is exact or a lower bound of the per-token metric; the mean of lower bounds
is a lower bound of the mean.
"""

from __future__ import annotations

import torch

__all__ = ["coarse_kl", "topk_token_metrics", "REST_SLACK"]

#: Added to the candidate's rest mass: more than the summed rounding of the returned values.
REST_SLACK = 1e-6


def coarse_kl(logp_b: torch.Tensor, logp_m: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``[N]`` KL of the two distributions coarse-grained to the ``known`` cells plus one rest cell.

    ``logp_b``, ``logp_m``: ``[N, m]`` log-probabilities of ``m`` distinct tokens per row;
    ``known``: ``[N, m]`` which of them both sides know (other entries are ignored, whatever
    they hold). A lower bound of the full KL (see the module's docstring).
    """
    lp, lq = logp_b.double(), logp_m.double()
    zero = torch.zeros((), dtype=torch.float64, device=lp.device)
    p = torch.where(known, lp.exp(), zero)
    q = torch.where(known, lq.exp(), zero)
    head = torch.where(known & (p > 0), p * (torch.where(known, lp, zero) - torch.where(known, lq, zero)), zero)
    p_rest = (1.0 - p.sum(-1)).clamp_min(0.0)
    q_rest = (1.0 - q.sum(-1)).clamp_min(0.0) + REST_SLACK
    rest = torch.where(p_rest > 0, p_rest * (p_rest.clamp_min(1e-300).log() - q_rest.log()), zero)
    return (head.sum(-1) + rest).clamp_min(0.0)


def topk_token_metrics(cand_ids: torch.Tensor, cand_logp: torch.Tensor, cand_target: torch.Tensor, k: int,
                       targets: torch.Tensor, base_at_cand: torch.Tensor, base_target: torch.Tensor,
                       base_top: torch.Tensor, k_report: int) -> dict[str, torch.Tensor]:
    """Per-token metrics (keys of :data:`~.outputs.OUTPUT_METRICS`), each exact or a lower bound.

    Candidate, per scored token: ``cand_ids`` ``[N, m]`` the returned tokens, most likely first
    (``-1`` where a token could not be identified or nothing was returned), ``cand_logp`` their
    log-probabilities (``-inf`` where nothing was returned), of which the first ``k`` are the
    server's top ``k``; ``cand_target`` ``[N]`` log q(y), NaN when not returned.
    Baseline: ``base_at_cand`` ``[N, m]`` log p at ``cand_ids`` (NaN where unknown),
    ``base_target`` ``[N]`` log p(y), ``base_top`` ``[N, >= k_report]`` its top ids, largest first.
    """
    ids, lq = cand_ids.long(), cand_logp.double()
    lp_y, lq_y = base_target.double(), cand_target.double()
    y = targets.long().unsqueeze(-1)
    # The cells known to both sides: identified returned tokens other than y, and y itself.
    known = (ids >= 0) & ~torch.isnan(base_at_cand) & (ids != y) & torch.isfinite(lq)
    target_known = ~torch.isnan(lq_y)
    kl = coarse_kl(torch.cat([base_at_cand.double(), lp_y.unsqueeze(-1)], -1),
                   torch.cat([lq, lq_y.unsqueeze(-1)], -1),
                   torch.cat([known, target_known.unsqueeze(-1)], -1))

    answered = torch.isfinite(lq[:, 0])  # the server gave this position's top tokens
    top1 = (answered & (ids[:, 0] >= 0) & (ids[:, 0] == base_top[:, 0])).double()
    mine = torch.where(torch.isfinite(lq[:, :k_report]), ids[:, :k_report], torch.full_like(ids[:, :k_report], -1))
    overlap = ((base_top[:, :k_report].unsqueeze(-1) == mine.unsqueeze(-2)) & (mine.unsqueeze(-2) >= 0)).any(-1)

    # Where q(y) was not returned: y is outside the top k, so q(y) <= the k-th returned
    # probability, or, when a returned token could not be identified (it might be y), <= the
    # largest such; a position with nothing returned only says q(y) <= 1.
    unidentified = torch.where((ids < 0) & torch.isfinite(lq), lq, torch.full_like(lq, -torch.inf)).amax(-1)
    ceiling = torch.where(answered, torch.maximum(lq[:, k - 1], unidentified), torch.zeros_like(lp_y))
    lq_y_high = torch.where(target_known, lq_y, ceiling)
    p_y, q_y_high = lp_y.exp(), lq_y_high.exp()
    shift = torch.where(target_known, q_y_high - p_y, (p_y - q_y_high).clamp_min(0.0))
    return {
        "kl": kl.float(),
        "top1": top1.float(),
        "topk": overlap.double().mean(-1).float(),
        "dnll": (lp_y - lq_y_high).float(),
        "dp2": shift.square().float(),
    }
