"""Decoding calibration: refit the candidate's sampling temperature (and optionally top-p) so that
its effective next-token distribution matches the baseline's again.

The measure is the sampling KL along the baseline path: for every scored probe position, the KL
from the distribution the baseline actually samples from (after its temperature / top-k / top-p /
repetition penalty) to the candidate's. A plain ``nn.Module`` side samples at temperature 1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from ..capture import adapt
from ..arguments import flag, must_be, positive_int
from ..errors import HemorrhageError
from ..metrics.generation import sampling_kl
from ..modify.composed import Composed
from ..modify.decoding import DecodedModel, DecodingConfig, apply_repetition_penalty, effective_log_probs
from ..probes import ProbeBatch, Probes, as_probes
from ..sources.module import evaluating
from . import Applies, Mitigation, SimpleMitigator

__all__ = [
    "sampling_kl_on_probes", "calibrate_decoding", "applies", "scored_logits", "DEFAULT_TOP_P_GRID", "MITIGATOR",
]

#: top-p values tried by ``calibrate_decoding(..., fit_top_p=True)`` (the candidate's own is added).
DEFAULT_TOP_P_GRID: tuple[float, ...] = (0.8, 0.9, 0.95, 0.98, 1.0)

# Bounds of the temperature search (on log T): far outside any setting people use.
_T_MIN, _T_MAX = 0.05, 20.0
# Stand-in for an infinite KL inside the optimiser, which needs finite values to bracket.
_INF_PENALTY = 1e9

_PLAIN_SAMPLING = DecodingConfig(do_sample=True)


def _token_probes(probes: Any, baseline: Any) -> Probes:
    module = baseline.model if isinstance(baseline, DecodedModel) else baseline
    probe_set = as_probes(probes, module)
    if not probe_set.is_tokens:
        raise must_be("probes", "token probes (sampling distributions are over a vocabulary)",
                      got="probes of input tensors",
                      fix="pass Probes.builtin(tokenizer), Probes.from_texts(...) or token-id lists")
    return probe_set


def _side(obj: Any, role: str) -> tuple[nn.Module, DecodingConfig]:
    """(module, decoding config) of one side; a plain module samples at temperature 1."""
    if isinstance(obj, DecodedModel):
        if not isinstance(obj.model, nn.Module):
            raise must_be(role, "a DecodedModel of an nn.Module", got=f"a DecodedModel of a {type(obj.model).__name__}")
        return obj.model, obj.config
    if isinstance(obj, nn.Module):
        return obj, _PLAIN_SAMPLING
    raise must_be(role, "an nn.Module (sampled at temperature 1) or a DecodedModel (model plus DecodingConfig)", obj)


def scored_logits(
    model: nn.Module,
    probes: Probes,
    batch_size: int = 8,
    before_forward: Callable[[ProbeBatch], None] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Per probe batch: the float32 logits at every scored position (each non-padding position that
    has a next token), ``[n, vocab]``, and the tokens seen so far at each, ``[n, width]`` (the row of
    position t repeats token t past t, harmless for a repetition penalty).

    Each forward runs in eval mode under ``inference_mode`` (never across a ``yield``); ``before_forward(batch)`` is called before each
    forward pass (e.g. to tell hooks which positions are padding).
    """
    positive_int("batch_size", batch_size)
    adapter = adapt(model, None, "lm")
    with evaluating(model):
        for batch in probes.batches(batch_size):
            if before_forward is not None:
                before_forward(batch)
            with torch.inference_mode():
                logits, _ = adapter.forward(batch)
                ids = batch.input_ids.to(logits.device)
                lengths = batch.attention_mask.sum(1).tolist()
                width = ids.shape[1]
                rows, prev = [], []
                for r, n in enumerate(lengths):
                    if n < 2:
                        continue
                    rows.append(logits[r, : n - 1].float())
                    positions = torch.arange(n - 1, device=ids.device)
                    index = torch.arange(width, device=ids.device).unsqueeze(0).clamp(max=positions.unsqueeze(1))
                    prev.append(ids[r][index])
            if rows:
                yield torch.cat(rows), torch.cat(prev)


def _effective(scores: torch.Tensor, prev: torch.Tensor, config: DecodingConfig) -> torch.Tensor:
    return effective_log_probs(scores, config, prev if config.repetition_penalty != 1.0 else None)


def sampling_kl_on_probes(baseline: Any, candidate: Any, probes: Any, *, batch_size: int = 8) -> float:
    """Mean over scored probe tokens of KL(baseline's effective sampling distribution || candidate's).

    Each side is an ``nn.Module`` (plain sampling at temperature 1) or a :class:`DecodedModel`.
    Both are fed the probe tokens (the baseline path). ``inf`` when the baseline can draw a token the
    candidate never can (e.g. a tighter top-k), as in :func:`~pytest_hemorrhage.metrics.generation.sampling_kl`.
    When both sides wrap the same module, it runs once.
    """
    base_model, base_config = _side(baseline, "baseline")
    cand_model, cand_config = _side(candidate, "candidate")
    probe_set = _token_probes(probes, baseline)
    total, count = 0.0, 0
    base_iter = scored_logits(base_model, probe_set, batch_size)
    cand_iter = None if cand_model is base_model else scored_logits(cand_model, probe_set, batch_size)
    for base_scores, prev in base_iter:
        cand_scores = base_scores if cand_iter is None else next(cand_iter)[0].to(base_scores.device)
        kl = sampling_kl(_effective(base_scores, prev, base_config), _effective(cand_scores, prev, cand_config))
        total += float(kl.double().sum())
        count += kl.numel()
    return total / count


def applies(candidate: Any) -> bool:
    """True for a sampling :class:`DecodedModel` or an ``nn.Module`` (sampled at temperature 1)."""
    if isinstance(candidate, DecodedModel):
        return isinstance(candidate.model, nn.Module) and candidate.config.do_sample
    return isinstance(candidate, nn.Module)


def _decoding_change(candidate: Any) -> Applies:
    """Whether ``suggest`` should refit: only a decoding change, since a temperature cannot undo
    damage to the weights (:func:`calibrate_decoding` itself also takes a plain module)."""
    if not isinstance(candidate, DecodedModel):
        return Applies.no("the candidate is no decoding change (DecodedModel): a refit temperature "
                          "cannot undo changed weights")
    if not isinstance(candidate.model, nn.Module):
        return Applies.no(f"the candidate wraps a {type(candidate.model).__name__}, not an nn.Module")
    if not candidate.config.do_sample:
        return Applies.no("the candidate decodes greedily: there is no temperature to refit")
    return Applies.yes()


@dataclasses.dataclass
class _Cache:
    """Baseline effective log-probs and candidate scores (repetition penalty applied) per batch."""

    base: list[torch.Tensor]
    cand: list[torch.Tensor]
    n_tokens: int

    def mean_kl(self, config: DecodingConfig) -> float:
        total = 0.0
        for logp_base, scores in zip(self.base, self.cand):
            total += float(sampling_kl(logp_base, effective_log_probs(scores, config)).double().sum())
        return total / self.n_tokens


def _build_cache(baseline: Any, candidate: Any, probes: Probes, cand_config: DecodingConfig,
                 batch_size: int) -> _Cache:
    base_model, base_config = _side(baseline, "baseline")
    cand_model = candidate.model if isinstance(candidate, DecodedModel) else candidate
    base_list, cand_list, n = [], [], 0
    cand_iter = None if cand_model is base_model else scored_logits(cand_model, probes, batch_size)
    for base_scores, prev in scored_logits(base_model, probes, batch_size):
        cand_scores = base_scores if cand_iter is None else next(cand_iter)[0].to(base_scores.device)
        base_list.append(_effective(base_scores, prev, base_config))
        cand_list.append(apply_repetition_penalty(cand_scores, prev, cand_config.repetition_penalty))
        n += base_scores.shape[0]
    return _Cache(base_list, cand_list, n)


def _fit_temperature(cache: _Cache, config: DecodingConfig) -> float:
    """The temperature minimising the cached KL over log T with everything else in ``config`` fixed."""
    from scipy.optimize import minimize_scalar

    def objective(log_t: float) -> float:
        kl = cache.mean_kl(dataclasses.replace(config, temperature=math.exp(log_t), repetition_penalty=1.0))
        return kl if math.isfinite(kl) else _INF_PENALTY

    result = minimize_scalar(objective, bounds=(math.log(_T_MIN), math.log(_T_MAX)), method="bounded",
                             options={"xatol": 1e-3})
    return math.exp(float(result.x))


def _check_top_p_grid(grid: Sequence[float]) -> tuple[float, ...]:
    what = "a non-empty sequence of numbers in (0, 1]"
    try:
        values = tuple(float(v) for v in grid)
    except (TypeError, ValueError):
        raise must_be("top_p_grid", what, grid) from None
    if not values or any(not 0.0 < v <= 1.0 for v in values):
        raise must_be("top_p_grid", what, grid)
    return values


def _replaced(candidate: Any, config: DecodingConfig) -> DecodedModel:
    if not isinstance(candidate, DecodedModel):
        return DecodedModel(candidate, config)
    modification = candidate.modification
    if isinstance(modification, Composed) and isinstance(modification.steps[-1], DecodingConfig):
        modification = Composed(modification.steps[:-1] + (config,))
    return DecodedModel(candidate.model, config, modification)


def _settings(config: DecodingConfig, fitted: DecodingConfig, fit_top_p: bool) -> str:
    text = f"temperature {config.temperature:g} -> {fitted.temperature:.3g}"
    if fit_top_p:
        text += f", top-p {config.top_p:g} -> {fitted.top_p:g}"
    return text


def calibrate_decoding(
    baseline: Any,
    candidate: Any,
    probes: Any,
    *,
    fit_top_p: bool = False,
    top_p_grid: Sequence[float] = DEFAULT_TOP_P_GRID,
    batch_size: int = 8,
) -> Mitigation:
    """Refit the candidate's temperature (and top-p, from ``top_p_grid``, when ``fit_top_p``) to
    minimise :func:`sampling_kl_on_probes` on the calibration ``probes``.

    ``candidate``: a sampling :class:`DecodedModel`, or an ``nn.Module`` (e.g. a quantized copy whose
    logits got sharper or flatter) assumed sampled at temperature 1. ``baseline``: an ``nn.Module``
    or a ``DecodedModel``. Logits are computed once (memory: two float32 ``[tokens, vocab]`` caches)
    and the temperature is found by bounded 1-D minimisation on log T. Returns a ``DecodedModel`` of
    the same (not copied, untouched) candidate module with the fitted config; the original config
    is kept when no fit beats it.
    """
    if not applies(candidate):
        what = "a sampling DecodedModel or an nn.Module (sampled at temperature 1)"
        if isinstance(candidate, DecodedModel) and not candidate.config.do_sample:
            raise must_be("candidate", what, got="a DecodedModel that decodes greedily (do_sample=False)",
                          fix="there is no sampling temperature to calibrate; pass DecodingConfig(do_sample=True, ...)")
        raise must_be("candidate", what, candidate)
    flag("fit_top_p", fit_top_p)
    _side(baseline, "baseline")
    grid = _check_top_p_grid(top_p_grid) if fit_top_p else ()
    probe_set = _token_probes(probes, baseline)
    config = candidate.config if isinstance(candidate, DecodedModel) else _PLAIN_SAMPLING
    cache = _build_cache(baseline, candidate, probe_set, config, batch_size)
    unpenalised = dataclasses.replace(config, repetition_penalty=1.0)  # the cache holds penalised scores
    kl_before = cache.mean_kl(unpenalised)
    tried: list[dict[str, float]] = []
    best = (kl_before, config.temperature, config.top_p)
    for top_p in sorted(set(grid) | {config.top_p}) if fit_top_p else [config.top_p]:
        temperature = _fit_temperature(cache, dataclasses.replace(unpenalised, top_p=top_p))
        kl = cache.mean_kl(dataclasses.replace(unpenalised, top_p=top_p, temperature=temperature))
        tried.append({"top_p": top_p, "temperature": temperature, "kl": kl})
        if kl < best[0]:
            best = (kl, temperature, top_p)
    kl_after, temperature, top_p = best
    if not math.isfinite(kl_after):
        raise HemorrhageError(
            f"sampling KL stays infinite for every temperature{' and top-p' if fit_top_p else ''}: the baseline "
            f"samples tokens the candidate can never draw (candidate: {config.describe()}). Loosen the "
            "candidate's top-k/top-p (or try fit_top_p=True), or compare against a baseline with the same truncation."
        )
    fitted = dataclasses.replace(config, temperature=temperature, top_p=top_p)
    n_probes = len(probe_set)
    description = (
        f"{_settings(config, fitted, fit_top_p)} (sampling KL {kl_before:.3g} -> {kl_after:.3g} "
        f"on {n_probes} calibration probes)"
    )
    details = {
        "temperature_before": config.temperature,
        "temperature_after": temperature,
        "top_p_before": config.top_p,
        "top_p_after": top_p,
        "kl_before": kl_before,
        "kl_after": kl_after,
        "n_probes": n_probes,
        "n_tokens": cache.n_tokens,
        "tried": tried,
    }
    return Mitigation("decoding_calibration", _replaced(candidate, fitted), description, details)


def _mitigate(baseline: Any, candidate: Any, calibration: Any, thresholds: Any, *,
              probes: Any = None, **options: Any) -> Mitigation:
    return calibrate_decoding(baseline, candidate, calibration, **options)


#: :func:`calibrate_decoding` as a :class:`~pytest_hemorrhage.mitigate.Mitigator`.
MITIGATOR = SimpleMitigator(
    "decoding_calibration", lambda baseline, candidate: _decoding_change(candidate), _mitigate
)
