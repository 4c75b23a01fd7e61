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
  both sides know (set A), each on its own, plus the rest R, whose masses are
  ``1 - sum(known)`` on each side::

      KL(p||q) >= sum_{v in A} p(v) log(p(v)/q(v)) + p_R log(p_R/q_R)

  Tighter: a token the baseline knows (set B: its top tokens and y) that is not among the
  candidate's top k has q(v) <= c, the k-th returned probability. Keeping B's tokens as cells
  of their own with unknown q(v) in [0, c], the rest R' as one cell, and minimising the
  coarse-grained KL over every q consistent with the data (sum over B and R' fixed to q_R)
  is still a lower bound, since the true q is one of them. The minimiser is
  q(v) = min(p(v)/lam, c), q(R') = p(R')/lam (water-filling; :func:`capped_rest_kl`).
  It matters exactly when harm is large: a baseline token of probability 0.5 that the
  candidate ranks below its top k contributes at least 0.5 log(0.5 / c).

  ``q_R`` is raised by :data:`REST_SLACK` and ``c`` by a relative :data:`CAP_SLACK` (the
  rounding of the returned float32 values), which only lowers the bound, so rounding can never
  push it above the true KL.
"""

from __future__ import annotations

import torch

__all__ = ["coarse_kl", "capped_rest_kl", "topk_token_metrics", "REST_SLACK", "CAP_SLACK"]

#: Added to the candidate's rest mass: more than the summed rounding of the returned values.
REST_SLACK = 1e-6
#: Relative margin on the cap ``c``: more than the rounding of one returned float32 value.
CAP_SLACK = 1e-5


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


def capped_rest_kl(p_capped: torch.Tensor, p_free: torch.Tensor, q_rest: torch.Tensor,
                   cap: torch.Tensor) -> torch.Tensor:
    """``[N]`` least KL contribution of the cells outside the known ones, given what bounds them.

    The cells: tokens of baseline probability ``p_capped`` ``[N, M]`` (zeros for none) whose
    candidate probability is at most ``cap`` ``[N]``, and one cell of baseline mass ``p_free``
    ``[N]`` with no such limit; together the candidate gives them mass ``q_rest`` ``[N]``. The
    minimum of ``sum p log(p/q)`` over those q is reached at q = min(p/lam, cap) for the capped
    cells and p_free/lam for the free one (the KKT conditions of a convex problem): with the
    ``j`` largest capped cells at the cap, lam = U_j / (q_rest - j cap), U_j the baseline mass
    of the others. The ``j`` whose capped cells are exactly those with p/lam >= cap is the one.
    """
    p = p_capped.double().clamp_min(0.0).sort(-1, descending=True).values
    n, m = p.shape
    c = cap.double().unsqueeze(-1)
    q = q_rest.double().unsqueeze(-1)
    j = torch.arange(m + 1, dtype=torch.float64, device=p.device)
    zero = torch.zeros((n, 1), dtype=torch.float64, device=p.device)
    taken = torch.cat([zero, p.cumsum(-1)], -1)  # S_j: mass of the j largest capped cells
    free = (p.sum(-1, keepdim=True) - taken).clamp_min(0.0) + p_free.double().clamp_min(0.0).unsqueeze(-1)  # U_j
    room = q - j * c  # what the uncapped cells share
    lam = free / room.clamp_min(1e-300)
    below = torch.cat([p, zero], -1)  # p_{j+1}: the largest uncapped
    above = torch.cat([torch.full((n, 1), torch.inf, dtype=torch.float64, device=p.device), p], -1)  # p_j
    kkt = (room > 0) & (below <= c * lam * (1 + 1e-9)) & (above >= c * lam * (1 - 1e-9))
    at_cap = torch.where(p > 0, p * (p.clamp_min(1e-300).log() - c.log()), torch.zeros_like(p))
    capped_part = torch.cat([zero, at_cap.cumsum(-1)], -1)
    free_part = torch.where(free > 0, free * (free.clamp_min(1e-300).log() - room.clamp_min(1e-300).log()),
                            torch.zeros_like(free))
    objective = torch.where(kkt, capped_part + free_part, torch.full_like(free, torch.inf))
    # j = 0 (no cell at its cap) is the plain merged rest cell: a lower bound whatever the cap.
    merged = free_part[:, 0]
    best = objective.amin(-1)
    return torch.where(torch.isfinite(best), best, merged)


def topk_token_metrics(cand_ids: torch.Tensor, cand_logp: torch.Tensor, cand_target: torch.Tensor, k: int,
                       targets: torch.Tensor, base_at_cand: torch.Tensor, base_target: torch.Tensor,
                       base_top_ids: torch.Tensor, base_top_logp: torch.Tensor,
                       k_report: int, loose: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-token metrics (keys of :data:`~.outputs.OUTPUT_METRICS`), each exact or a lower bound.

    Candidate, per scored token: ``cand_ids`` ``[N, m]`` the returned tokens, most likely first
    (``-1`` where a token could not be identified or nothing was returned), ``cand_logp`` their
    log-probabilities (``-inf`` where nothing was returned), of which the first ``k`` are the
    server's top ``k``; ``cand_target`` ``[N]`` log q(y), NaN when not returned.
    Baseline: ``base_at_cand`` ``[N, m]`` log p at ``cand_ids`` (NaN where unknown; filled in
    here from its top tokens),
    ``base_target`` ``[N]`` log p(y), ``base_top_ids`` ``[N, M >= k_report]`` its most likely ids,
    largest first, and ``base_top_logp`` their log-probabilities. ``loose`` ``[N]``: rows where a
    top token may be missing from what was returned (its order and the k-th probability unknown):
    there nothing caps the unreturned ones, and top-1 and top-k count as disagreements.
    """
    ids, lq = cand_ids.long(), cand_logp.double()
    lp_y, lq_y = base_target.double(), cand_target.double()
    y = targets.long().unsqueeze(-1)
    # The baseline knows p at a returned token also when it is among its own top tokens.
    same = (ids.unsqueeze(-1) == base_top_ids.long().unsqueeze(-2)) & (ids.unsqueeze(-1) >= 0)
    from_top = torch.where(same, base_top_logp.double().unsqueeze(-2), torch.zeros((), dtype=torch.float64,
                                                                                   device=lq.device)).sum(-1)
    base_at_cand = torch.where(torch.isnan(base_at_cand) & same.any(-1), from_top, base_at_cand.double())
    # The cells known to both sides (A): identified returned tokens other than y, and y itself.
    known = (ids >= 0) & ~torch.isnan(base_at_cand) & (ids != y) & torch.isfinite(lq)
    target_known = ~torch.isnan(lq_y)
    zero = torch.zeros((), dtype=torch.float64, device=lq.device)
    lp_a = torch.cat([torch.where(known, base_at_cand.double(), zero), lp_y.unsqueeze(-1)], -1)
    lq_a = torch.cat([torch.where(known, lq, zero), lq_y.unsqueeze(-1)], -1)
    in_a = torch.cat([known, target_known.unsqueeze(-1)], -1)
    p_a, q_a = torch.where(in_a, lp_a.exp(), zero), torch.where(in_a, lq_a.exp(), zero)
    head = torch.where(in_a & (p_a > 0), p_a * (lp_a - lq_a), zero).sum(-1)
    # B: tokens the baseline knows that the candidate did not return (y too, when censored).
    b_ids = torch.cat([base_top_ids.long(), torch.where(target_known, -1, y[:, 0]).unsqueeze(-1)], -1)
    b_logp = torch.cat([base_top_logp.double(), lp_y.unsqueeze(-1)], -1)
    returned = (b_ids.unsqueeze(-1) == torch.where(torch.isfinite(lq), ids, -2).unsqueeze(-2)).any(-1)
    duplicate = torch.zeros_like(returned)
    duplicate[:, -1] = (b_ids[:, :-1] == b_ids[:, -1:]).any(-1)
    in_b = (b_ids >= 0) & ~returned & ~duplicate & ~((b_ids == y) & target_known.unsqueeze(-1))
    p_b = torch.where(in_b, b_logp.exp(), zero)
    p_free = 1.0 - p_a.sum(-1) - p_b.sum(-1)
    q_rest = (1.0 - q_a.sum(-1)).clamp_min(0.0) + REST_SLACK
    answered = torch.isfinite(lq[:, 0])  # the server gave this position's top tokens
    ordered = answered & ~loose if loose is not None else answered
    # Unreturned tokens have q <= the k-th returned probability, or <= that of an unidentified
    # returned token (which might be any of them); a position with nothing returned says nothing.
    unidentified = torch.where((ids < 0) & torch.isfinite(lq), lq, torch.full_like(lq, -torch.inf)).amax(-1)
    ceiling = torch.where(answered, torch.maximum(lq[:, k - 1], unidentified), torch.zeros_like(lp_y))
    # Where a top token may have been lost, it may have been the largest: nothing caps it.
    ceiling = torch.where(answered & ~ordered, torch.zeros_like(ceiling), ceiling)
    cap = torch.where(answered, ceiling.exp() * (1 + CAP_SLACK), torch.ones_like(lp_y))
    kl = (head + capped_rest_kl(p_b, p_free, q_rest, cap)).clamp_min(0.0)

    top1 = (ordered & (ids[:, 0] >= 0) & (ids[:, 0] == base_top_ids[:, 0])).double()
    mine = torch.where(torch.isfinite(lq[:, :k_report]) & ordered.unsqueeze(-1), ids[:, :k_report],
                       torch.full_like(ids[:, :k_report], -1))
    overlap = ((base_top_ids[:, :k_report].unsqueeze(-1) == mine.unsqueeze(-2)) & (mine.unsqueeze(-2) >= 0)).any(-1)

    # Where q(y) was not returned: y is outside the top k, so q(y) <= the ceiling above.
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
