"""Dynamic quantization scaling: repair an activation-quantized (or per-tensor weight-quantized)
candidate with per-token dynamic activation scales and/or SmoothQuant-style scale migration.

SmoothQuant moves quantization difficulty from activations to weights per input channel j:
``s_j = max|X_j|**alpha / max|W[:, j]|**(1 - alpha)`` (activation maxima from calibration probes,
padding excluded). The smoothed layer computes ``Q_a(x / s) @ Q_w(W * s)^T``, which equals
``x @ W^T`` without quantization. Here the division by ``s`` is explicit, in the layer's activation
quantizer, so every linear gets its own ``s`` (a deployment folds it into the preceding norm,
which needs one ``s`` per shared input).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Sequence

import torch
from torch import nn

from ..arguments import fraction, must_be
from ..metrics.generation import sampling_kl
from ..modify._common import DEFAULT_SKIP, MODIFICATION_ATTR, select_linears, weight_out_in
from ..modify.quantize import (
    ACTIVATION_QUANT_ATTR,
    ActivationFakeQuant,
    QuantizationConfig,
    _install_activation_quant,
    fake_quantize_weight,
)
from ..packed import cannot_edit
from ..probes import ProbeBatch, Probes, as_probes
from ..thresholds import Thresholds
from . import Applies, Mitigation, SimpleMitigator
from .decoding_calibration import scored_logits

__all__ = [
    "SmoothedActivationQuant",
    "activation_maxima",
    "smooth_quant",
    "dynamic_scaling",
    "applies",
    "DEFAULT_ALPHAS",
    "MITIGATOR",
]

DEFAULT_ALPHAS: tuple[float, ...] = (0.0, 0.25, 0.4, 0.5, 0.6, 0.75, 0.85)

# Floor for the maxima entering s_j, so a dead channel or an all-zero column gives a finite scale.
_EPS = 1e-5

_DYNAMIC = "dynamic_per_token"


class SmoothedActivationQuant(ActivationFakeQuant):
    """Divide the layer input by the per-channel smoothing factors, then fake-quantize it.

    ``mode=None`` divides only (weights-only quantization). ``smoothing`` is a non-persistent
    buffer: the model's state dict keys do not change.
    """

    def __init__(self, mode: str | None, bits: int, scale: float, smoothing: torch.Tensor) -> None:
        super().__init__(mode or "none", bits, scale)
        self.register_buffer("smoothing", smoothing.detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / self.smoothing.to(x.dtype)
        return x if self.mode == "none" else super().forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, smoothing=[{self.smoothing.numel()}]"


def _check_probes(probes: Any, model: nn.Module) -> Probes:
    probe_set = as_probes(probes, model)
    if not probe_set.is_tokens:
        raise must_be("probes", "token probes to calibrate on", got="probes of input tensors",
                      fix="pass Probes.builtin(tokenizer) or token-id lists")
    return probe_set


def _linear_names(model: nn.Module, config: QuantizationConfig | None) -> list[tuple[str, nn.Module]]:
    if config is None:
        return select_linears(model, None, DEFAULT_SKIP, check_skip=False)
    return select_linears(model, config.targets, config.skip, check_skip=config.skip != DEFAULT_SKIP)


class _MaximaHooks:
    """Forward pre-hooks recording per-input-channel max|x| of some modules, padding excluded."""

    def __init__(self, modules: Sequence[tuple[str, nn.Module]]) -> None:
        self.maxima: dict[str, torch.Tensor] = {}
        self.mask: torch.Tensor | None = None
        self.handles = [m.register_forward_pre_hook(self._hook(name)) for name, m in modules]

    def before_forward(self, batch: ProbeBatch) -> None:
        self.mask = batch.attention_mask

    def _hook(self, name: str):
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            if not args or not isinstance(args[0], torch.Tensor):
                return
            x = args[0].detach()
            mask = self.mask
            if mask is not None and x.dim() >= 2 and tuple(x.shape[:-1]) == tuple(mask.shape):
                x = x[mask.to(x.device).bool()]
            x = x.reshape(-1, x.shape[-1])
            if x.shape[0] == 0:
                return
            value = x.abs().amax(dim=0).float()
            seen = self.maxima.get(name)
            self.maxima[name] = value if seen is None else torch.maximum(seen, value)

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _baseline_pass(
    model: nn.Module, modules: Sequence[tuple[str, nn.Module]], probes: Probes, batch_size: int, keep_logits: bool
) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """Activation maxima of ``modules`` and (optionally) the per-batch log-probs, in one pass."""
    hooks = _MaximaHooks(modules)
    logps: list[torch.Tensor] = []
    try:
        for scores, _prev in scored_logits(model, probes, batch_size, before_forward=hooks.before_forward):
            if keep_logits:
                logps.append(torch.log_softmax(scores, dim=-1))
    finally:
        hooks.remove()
    return hooks.maxima, logps


def activation_maxima(
    model: nn.Module, probes: Any, names: Sequence[str] | None = None, *, batch_size: int = 8
) -> dict[str, torch.Tensor]:
    """Per input channel max|x| of each named linear's input over the probes (padding excluded).

    ``names``: module names (default: every linear not in the default skip list). Returns
    ``{name: float32 tensor [in_features]}``; a layer never reached is absent.
    """
    if not isinstance(model, nn.Module):
        raise must_be("model", "a torch.nn.Module", model)
    probe_set = _check_probes(probes, model)
    if names is None:
        modules = _linear_names(model, None)
    else:
        by_name = dict(model.named_modules())
        missing = [n for n in names if n not in by_name]
        if missing:
            raise must_be("names", f"module names of {type(model).__name__} (from model.named_modules())",
                          missing[0])
        modules = [(n, by_name[n]) for n in names]
    return _baseline_pass(model, modules, probe_set, batch_size, keep_logits=False)[0]


def _smoothing(act_max: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    w_max = weight.detach().abs().amax(dim=0).double().clamp(min=_EPS)
    a_max = act_max.double().to(w_max.device).clamp(min=_EPS)
    return a_max.pow(alpha) / w_max.pow(1.0 - alpha)


def _smooth_into(
    work: nn.Module,
    baseline_weights: dict[str, torch.Tensor],
    maxima: dict[str, torch.Tensor],
    config: QuantizationConfig | None,
    activation: str | None,
    alpha: float,
) -> None:
    """Write smoothed, quantized baseline weights and smoothed activation quantizers into ``work``."""
    modules = dict(work.named_modules())
    bits = config.activation_bits if config is not None else 8
    qmax = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for name, w_base in baseline_weights.items():
            module = modules[name]
            act_max = maxima.get(name)
            if act_max is None:  # never reached by the probes: nothing to migrate
                act_max = torch.ones(w_base.shape[1])
                s = torch.ones(w_base.shape[1], dtype=torch.float64)
            else:
                s = _smoothing(act_max, w_base, alpha)
            dtype = torch.promote_types(w_base.dtype, torch.float32)
            s = s.to(dtype=dtype, device=w_base.device)
            w = (w_base.to(dtype) * s.unsqueeze(0))
            if config is not None:
                w = fake_quantize_weight(w, config.bits, config.symmetric, config.granularity, config.group_size)
            weight_out_in(module).copy_(w.to(w_base.dtype))
            bound = float((act_max.to(s.device, dtype) / s).abs().max()) if name in maxima else 0.0
            if bound <= 0.0:
                bound = config.activation_range if config is not None else 1.0
            _install_activation_quant(module, SmoothedActivationQuant(activation, bits, bound / qmax, s))


def _baseline_weights(baseline: nn.Module, config: QuantizationConfig | None) -> dict[str, torch.Tensor]:
    return {name: weight_out_in(m).detach() for name, m in _linear_names(baseline, config)}


def smooth_quant(
    baseline: nn.Module,
    config: QuantizationConfig | None,
    probes: Any,
    *,
    alpha: float = 0.5,
    batch_size: int = 8,
) -> nn.Module:
    """A copy of ``baseline`` quantized by ``config`` with SmoothQuant scale migration.

    Each linear ``config`` selects computes ``Q_a(x / s) @ Q_w(W * s)^T`` with
    ``s_j = max|X_j|**alpha / max|W[:, j]|**(1 - alpha)``; the activation maxima come from the
    baseline on ``probes``. A static per-tensor activation scale is ``max_j(max|X_j| / s_j) / qmax``.
    ``config=None`` migrates without quantizing (the copy then computes what the baseline does).
    """
    if not isinstance(baseline, nn.Module):
        raise must_be("baseline", "a torch.nn.Module", baseline)
    if config is not None and not isinstance(config, QuantizationConfig):
        raise must_be("config", "a QuantizationConfig or None", config)
    alpha = fraction("alpha", alpha)
    probe_set = _check_probes(probes, baseline)
    modules = _linear_names(baseline, config)
    maxima, _ = _baseline_pass(baseline, modules, probe_set, batch_size, keep_logits=False)
    return _build_smoothed(baseline, config, maxima, config.activation if config else None, alpha)


def _build_smoothed(
    baseline: nn.Module,
    config: QuantizationConfig | None,
    maxima: dict[str, torch.Tensor],
    activation: str | None,
    alpha: float,
) -> nn.Module:
    work = copy.deepcopy(baseline)
    _smooth_into(work, _baseline_weights(baseline, config), maxima, config, activation, alpha)
    if config is not None:
        setattr(work, MODIFICATION_ATTR, dataclasses.replace(config, activation=activation))
    return work


def _rescalable(candidate: Any) -> Applies:
    config = getattr(candidate, MODIFICATION_ATTR, None)
    packed = cannot_edit(candidate, "dynamic scaling")
    if packed is not None:
        return Applies.no(packed)
    if not isinstance(candidate, nn.Module) or not isinstance(config, QuantizationConfig):
        return Applies.no("the candidate is not a model from quantize(...)")
    if config.activation is None and config.granularity != "per_tensor":
        return Applies.no(f"the candidate ({config}) has neither quantized activations nor "
                          "per-tensor weight scales: nothing to rescale")
    return Applies.yes()


def applies(candidate: Any) -> bool:
    """True for a model quantized by a :class:`QuantizationConfig` with activation quantization,
    or with per-tensor weights only."""
    return bool(_rescalable(candidate))


def _dynamic_copy(candidate: nn.Module, config: QuantizationConfig) -> nn.Module:
    """The candidate's weights with every activation quantizer switched to per-token dynamic scales."""
    work = copy.deepcopy(candidate)
    for module in work.modules():
        quantizer = module._modules.get(ACTIVATION_QUANT_ATTR)
        if isinstance(quantizer, ActivationFakeQuant):
            quantizer.mode = _DYNAMIC
    setattr(work, MODIFICATION_ATTR, dataclasses.replace(config, activation=_DYNAMIC))
    return work


def _mean_kl(model: nn.Module, base_logps: list[torch.Tensor], probes: Probes, batch_size: int) -> float:
    total, count = 0.0, 0
    for logp_base, (scores, _prev) in zip(base_logps, scored_logits(model, probes, batch_size)):
        kl = sampling_kl(logp_base, torch.log_softmax(scores.to(logp_base.device), dim=-1))
        total += float(kl.double().sum())
        count += kl.numel()
    return total / count


def _variant_name(dynamic: bool, alpha: float | None) -> str:
    parts = ["dynamic_per_token"] if dynamic else []
    if alpha is not None:
        parts.append(f"smoothquant(alpha={alpha:g})")
    return "+".join(parts)


def _max_kl(thresholds: Any) -> float | None:
    if thresholds is None:
        return Thresholds().max_kl
    if isinstance(thresholds, Thresholds):
        return thresholds.max_kl
    if isinstance(thresholds, Mapping):
        return Thresholds().merged(thresholds, source="thresholds").max_kl
    raise must_be("thresholds", "a Thresholds, a dict or None", thresholds)


def dynamic_scaling(
    baseline: nn.Module,
    candidate: nn.Module,
    probes: Any,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    thresholds: Any = None,
    batch_size: int = 8,
) -> Mitigation:
    """Try (a) per-token dynamic activation scales with the candidate's weights, (b) SmoothQuant
    with the candidate's activation mode and (c) both, choosing alpha from ``alphas`` by mean KL
    against the baseline on the calibration ``probes``; return the variant with the lowest KL.

    ``candidate`` must carry a :class:`QuantizationConfig` (see :func:`applies`); ``baseline`` is the
    unquantized model the smoothed weights are built from. ``details["kl"]`` holds the KL of the
    candidate and of every variant tried; ``details["within_max_kl"]`` says whether the chosen
    one's calibration KL is inside ``thresholds``' ``max_kl`` (a ``Thresholds``, a dict or None for
    the defaults). The check on evaluation probes is :func:`~pytest_hemorrhage.engine.compare`'s job.
    """
    if not isinstance(baseline, nn.Module):
        raise must_be("baseline", "a torch.nn.Module", baseline)
    if not applies(candidate):
        config = getattr(candidate, MODIFICATION_ATTR, None)
        raise must_be(
            "candidate", "a model from quantize(...) with activation quantization (activation='static_per_tensor' "
            "or 'dynamic_per_token') or per-tensor weights (granularity='per_tensor')",
            got=type(candidate).__name__ if config is None else f"a model modified by {config}",
            fix="dynamic scaling has nothing to rescale otherwise",
        )
    alpha_list = [fraction("alphas", a) for a in alphas]
    if not alpha_list:
        raise must_be("alphas", "a non-empty sequence of numbers in [0, 1]", alphas)
    max_kl = _max_kl(thresholds)
    config: QuantizationConfig = getattr(candidate, MODIFICATION_ATTR)
    probe_set = _check_probes(probes, baseline)
    modules = _linear_names(baseline, config)
    maxima, base_logps = _baseline_pass(baseline, modules, probe_set, batch_size, keep_logits=True)
    kls: dict[str, float] = {"candidate": _mean_kl(candidate, base_logps, probe_set, batch_size)}
    options: list[tuple[float, bool, float | None]] = []  # (kl, dynamic, alpha)

    if config.activation == "static_per_tensor":
        dyn = _dynamic_copy(candidate, config)
        kls[_variant_name(True, None)] = kl = _mean_kl(dyn, base_logps, probe_set, batch_size)
        options.append((kl, True, None))
        del dyn
    modes = [(config.activation, config.activation == _DYNAMIC)]
    if config.activation == "static_per_tensor":
        modes.append((_DYNAMIC, True))
    weights = _baseline_weights(baseline, config)
    for activation, dynamic in modes:
        work = copy.deepcopy(baseline)
        for alpha in alpha_list:
            _smooth_into(work, weights, maxima, config, activation, alpha)
            kls[_variant_name(dynamic, alpha)] = kl = _mean_kl(work, base_logps, probe_set, batch_size)
            options.append((kl, dynamic, alpha))
        del work
    kl, dynamic, alpha = min(options, key=lambda o: o[0] if math.isfinite(o[0]) else math.inf)
    if alpha is None:
        model = _dynamic_copy(candidate, config)
    else:
        model = _build_smoothed(baseline, config, maxima, _DYNAMIC if dynamic else config.activation, alpha)
    changes = (["per-token dynamic activation scales"] if dynamic and config.activation != _DYNAMIC else [])
    changes += [f"SmoothQuant alpha={alpha:g}"] if alpha is not None else []
    description = (
        f"{' + '.join(changes)} on {len(modules)} linears "
        f"(KL {kls['candidate']:.3g} -> {kl:.3g} on {len(probe_set)} calibration probes)"
    )
    details = {
        "kl": kls,
        "chosen": _variant_name(dynamic, alpha),
        "alpha": alpha,
        "dynamic_per_token": dynamic,
        "max_kl": max_kl,
        "within_max_kl": None if max_kl is None else kl <= max_kl,
        "n_linears": len(modules),
        "n_probes": len(probe_set),
        "n_tokens": sum(t.shape[0] for t in base_logps),
    }
    return Mitigation("dynamic_scaling", model, description, details)


def _mitigate(baseline: nn.Module, candidate: nn.Module, calibration: Any, thresholds: Any, *,
              probes: Any = None, **options: Any) -> Mitigation:
    return dynamic_scaling(baseline, candidate, calibration, thresholds=thresholds, **options)


#: :func:`dynamic_scaling` as a :class:`~pytest_hemorrhage.mitigate.Mitigator`.
MITIGATOR = SimpleMitigator("dynamic_scaling", lambda baseline, candidate: _rescalable(candidate), _mitigate)
