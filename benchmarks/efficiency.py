"""Statistical efficiency: probe tokens needed until the verdict is right, paired vs unpaired.

Default model, ``n_probes`` built-in probes of ``max_length`` tokens, one forward pass per model;
per probe we keep the per-token quantities (NLL of the real next token for both models, dNLL,
KL, top-1). For growing prefixes of many random probe orders we ask each gate for its verdict
and record the smallest number of scored tokens from which the verdict is right and stays right.

Gates (all against ``max_ppl_ratio`` 1.02, i.e. log(1.02) on the NLL scale, and ``max_kl`` 0.02):

* paired PPL / paired KL: our rule, :func:`ratio_estimate` (per-probe clusters, Student t) + :func:`decide`.
* unpaired PPL: the difference of the two models' mean NLL, each with the standard error that
  lm-evaluation-harness reports for its ``perplexity`` aggregation: a bootstrap over documents
  (here probes). We use the bootstrap's closed form (the delta-method limit of a document
  bootstrap of a token-weighted mean, no Bessel correction), checked against a real bootstrap on
  the full set; SE = sqrt(se_b² + se_m²), normal 95 % interval (lm-eval reports ± stderr).
  A token-level variant (tokens treated as independent: sd/sqrt(N)) is reported beside it.

Both sides use the same decision rules, so only the evidence differs:
``decide`` (pass: upper bound inside; fail: estimate past the threshold) and ``bounds``
(pass: upper bound inside; fail: lower bound past). Under ``decide`` the harmful verdict of the
unpaired gate equals the paired one by construction: mean NLL_m − mean NLL_b over the same tokens
*is* mean dNLL, so only the interval (the pass side) differs.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from pytest_hemorrhage.stats import Estimate, decide, ratio_estimate

Z95 = 1.959963984540054
PPL_THRESHOLD = 1.02
KL_THRESHOLD = 0.02


# --------------------------------------------------------------------------- reusable helpers


def document_stderr(sums: np.ndarray, counts: np.ndarray) -> float:
    """SE of the token-weighted mean ``sum(sums) / sum(counts)`` under a bootstrap over documents.

    Closed form of what resampling documents with replacement converges to (the same
    linearisation as :func:`ratio_estimate`, without its k/(k-1) correction, as a bootstrap has none).
    """
    s, n = np.asarray(sums, float), np.asarray(counts, float)
    r = s.sum() / n.sum()
    return float(math.sqrt(np.square(s - r * n).sum()) / n.sum())


def bootstrap_stderr(sums: np.ndarray, counts: np.ndarray, iters: int = 2000, seed: int = 0) -> float:
    """Document bootstrap (lm-evaluation-harness style) of the token-weighted mean's standard error."""
    rng = np.random.default_rng(seed)
    k = len(sums)
    draws = rng.integers(0, k, size=(iters, k))
    means = np.asarray(sums, float)[draws].sum(1) / np.asarray(counts, float)[draws].sum(1)
    return float(means.std(ddof=1))


def token_stderr(sq_sums: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> float:
    """SE of the mean when every token counts as an independent draw: sd / sqrt(N)."""
    n = float(np.sum(counts))
    mean = float(np.sum(sums)) / n
    var = (float(np.sum(sq_sums)) - n * mean * mean) / (n - 1)
    return math.sqrt(max(var, 0.0) / n)


def unpaired_estimate(nll_b: tuple[np.ndarray, np.ndarray], nll_m: tuple[np.ndarray, np.ndarray],
                      counts: np.ndarray, stderr: Callable[..., float] | None = None) -> Estimate:
    """Difference of mean NLL (candidate − baseline) with SE sqrt(se_b² + se_m²), normal 95 % interval.

    ``nll_b`` / ``nll_m``: per-probe (sum, sum of squares) of the per-token NLL. ``stderr``:
    ``None`` for the document-level SE, or :func:`token_stderr`.
    """
    means, ses = [], []
    for s, sq in (nll_b, nll_m):
        means.append(float(np.sum(s)) / float(np.sum(counts)))
        ses.append(document_stderr(s, counts) if stderr is None else stderr(sq, s, counts))
    diff, se = means[1] - means[0], math.hypot(ses[0], ses[1])
    return Estimate(diff, diff - Z95 * se, diff + Z95 * se, se, len(counts))


def bounds_rule(est: Estimate, threshold: float) -> str:
    """Symmetric interval rule for a ``max`` threshold: pass below, fail above, else inconclusive."""
    if est.high <= threshold:
        return "pass"
    if est.low > threshold:
        return "fail"
    return "inconclusive"


def decide_rule(est: Estimate, threshold: float) -> str:
    """Our rule (:func:`pytest_hemorrhage.stats.decide`) for a ``max`` threshold."""
    return decide(est, threshold, "max")[0]


def tokens_until_right(verdicts: list[str], tokens: np.ndarray, truth: str) -> float:
    """Smallest token count from which every later verdict equals ``truth``; inf if the last is wrong."""
    needed = math.inf
    for verdict, n in zip(reversed(verdicts), reversed(tokens)):
        if verdict != truth:
            break
        needed = float(n)
    return needed


def projected_tokens(est: Estimate, threshold: float, n_tokens: float, side: str) -> float:
    """Tokens at which the interval would clear ``threshold`` on ``side`` ("pass": upper bound
    below, "fail": lower bound above), if the SE keeps shrinking as 1/sqrt(tokens); inf if the
    estimate is on the wrong side."""
    margin = threshold - est.value if side == "pass" else est.value - threshold
    half = est.high - est.value
    if margin <= 0 or not math.isfinite(half):
        return math.inf
    return n_tokens * (half / margin) ** 2


# --------------------------------------------------------------------------- measurement


def per_probe_quantities(model, candidates: dict, probes, batch_size: int = 8) -> dict:
    """One forward pass per model. Per probe: token count; baseline NLL sum and sum of squares; per
    candidate the same for its NLL, and sums of dNLL, KL and top-1."""
    from pytest_hemorrhage.metrics.outputs import token_output_metrics

    n = len(probes)
    counts = np.zeros(n)
    base = {"nll": np.zeros(n), "nll_sq": np.zeros(n)}
    cand = {name: {k: np.zeros(n) for k in ("nll", "nll_sq", "dnll", "kl", "top1")} for name in candidates}
    with torch.inference_mode():
        for batch in probes.batches(batch_size):
            mask = batch.attention_mask
            logits_b = model(batch.input_ids, attention_mask=mask, use_cache=False).logits
            outs = {name: m(batch.input_ids, attention_mask=mask, use_cache=False).logits
                    for name, m in candidates.items()}
            for row, unit in enumerate(batch.units):
                length = int(mask[row].sum())
                targets = batch.input_ids[row, 1:length]
                lb = logits_b[row, : length - 1]
                nll_b = torch.nn.functional.cross_entropy(lb.float(), targets, reduction="none").double()
                counts[unit] = length - 1
                base["nll"][unit] = float(nll_b.sum())
                base["nll_sq"][unit] = float(nll_b.square().sum())
                for name, logits_m in outs.items():
                    tm = token_output_metrics(lb, logits_m[row, : length - 1], targets)
                    nll_m = nll_b + tm["dnll"].double()
                    c = cand[name]
                    c["nll"][unit], c["nll_sq"][unit] = float(nll_m.sum()), float(nll_m.square().sum())
                    for key in ("dnll", "kl", "top1"):
                        c[key][unit] = float(tm[key].double().sum())
    return {"counts": counts, "base": base, "cand": cand}


def _gate_estimates(q: dict, name: str, idx: np.ndarray) -> dict[str, Estimate]:
    counts = q["counts"][idx]
    b, c = q["base"], q["cand"][name]
    nll_b, nll_m = (b["nll"][idx], b["nll_sq"][idx]), (c["nll"][idx], c["nll_sq"][idx])
    return {
        "paired_ppl": ratio_estimate(c["dnll"][idx], counts),
        "paired_kl": ratio_estimate(c["kl"][idx], counts),
        "unpaired_doc": unpaired_estimate(nll_b, nll_m, counts),
        "unpaired_token": unpaired_estimate(nll_b, nll_m, counts, stderr=token_stderr),
    }


def _threshold(gate: str) -> float:
    return KL_THRESHOLD if gate == "paired_kl" else math.log(PPL_THRESHOLD)


def efficiency(q: dict, name: str, truth: str, permutations: int = 50, seed: int = 0) -> dict:
    """Median tokens until the verdict is right and stays right, per gate and rule, over random orders."""
    rng = np.random.default_rng(seed)
    n = len(q["counts"])
    gates = ("paired_ppl", "paired_kl", "unpaired_doc", "unpaired_token")
    rules = {"decide": decide_rule, "bounds": bounds_rule}
    needed = {(g, r): [] for g in gates for r in rules}
    for _ in range(permutations):
        order = rng.permutation(n)
        tokens = np.cumsum(q["counts"][order])[1:]  # prefixes of 2..n probes: one shows no spread
        verdicts = {key: [] for key in needed}
        for k in range(2, n + 1):
            est = _gate_estimates(q, name, order[:k])
            for g in gates:
                for r, rule in rules.items():
                    verdicts[(g, r)].append(rule(est[g], _threshold(g)))
        for key, v in verdicts.items():
            needed[key].append(tokens_until_right(v, tokens, truth))
    full = _gate_estimates(q, name, np.arange(n))
    total = float(q["counts"].sum())
    out: dict[str, float] = {}
    for (g, r), values in needed.items():
        arr = np.asarray(values)
        out[f"{g}/{r}/median_tokens"] = float(np.median(arr))
        out[f"{g}/{r}/never_right_fraction"] = float(np.mean(~np.isfinite(arr)))
        side = "pass" if truth == "pass" else "fail"
        if r == "bounds" or truth == "pass":
            out[f"{g}/{r}/projected_tokens"] = projected_tokens(full[g], _threshold(g), total, side)
    out["full/ppl_ratio"] = math.exp(full["paired_ppl"].value)
    out["full/ppl_ratio_ci_high"] = math.exp(full["paired_ppl"].high)
    out["full/ppl_ratio_ci_low"] = math.exp(full["paired_ppl"].low)
    out["full/kl"] = full["paired_kl"].value
    out["full/top1"] = float(q["cand"][name]["top1"].sum() / total)
    out["full/se_paired_dnll"] = full["paired_ppl"].se
    out["full/se_unpaired_doc"] = full["unpaired_doc"].se
    out["full/se_unpaired_token"] = full["unpaired_token"].se
    return out


def _factor(result: dict, case: str, rule: str, key: str) -> float:
    """Unpaired (document SE) over paired-PPL tokens, from medians or, when never right, projections."""
    def tokens(gate: str) -> float:
        median = result[f"{case}/{gate}/{rule}/median_tokens"]
        return median if math.isfinite(median) else result.get(f"{case}/{gate}/{rule}/{key}", math.inf)

    return tokens("unpaired_doc") / tokens("paired_ppl")


def run(n_probes: int = 128, max_length: int = 64, permutations: int = 50) -> dict:
    from pytest_hemorrhage.modify import quantize

    from .common import default_model_and_probes

    torch.set_num_threads(1)  # no timing here; one thread wastes least on a loaded machine
    model, _, probes = default_model_and_probes(n_probes, max_length)
    candidates = {"harmless": quantize(model, bits=8), "harmful": quantize(model, bits=6)}
    q = per_probe_quantities(model, candidates, probes)
    result: dict = {"probes": n_probes, "max_length": max_length, "scored_tokens": int(q["counts"].sum()),
                    "permutations": permutations,
                    "harmless_modification": "quantize(bits=8) per-channel RTN",
                    "harmful_modification": "quantize(bits=6) per-channel RTN"}
    base_sums = q["base"]["nll"]
    result["check_doc_se_closed_form"] = document_stderr(base_sums, q["counts"])
    result["check_doc_se_bootstrap_2000"] = bootstrap_stderr(base_sums, q["counts"])
    for case, truth in (("harmless", "pass"), ("harmful", "fail")):
        for key, value in efficiency(q, case, truth, permutations).items():
            result[f"{case}/{key}"] = value
    for case in ("harmless", "harmful"):
        for rule in ("decide", "bounds"):
            result[f"factor_{case}_{rule}_unpaired_over_paired"] = _factor(result, case, rule, "projected_tokens")
    return result
