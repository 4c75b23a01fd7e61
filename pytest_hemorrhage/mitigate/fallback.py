"""Layer fallback: restore the fewest, most sensitive modules of a candidate to the baseline's weights.

Modules (linear layers) whose weights differ from the baseline's, or whose input the candidate
fake-quantizes, are ranked in one pass by the relative output error each adds on its own baseline
inputs. The number restored, in that order, is then searched for the smallest count that passes the
gate (``compare(...).passed``): doubling 1, 2, 4, ... until a count passes, then bisection below it.
That assumes the gate is monotone in the count: restoring one more module to exact baseline weights
almost never makes the outputs worse; where it does, the count found still passes (it was checked),
it may only not be the smallest.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..arguments import positive_int
from ..engine import compare
from ..errors import HemorrhageError, InvalidArgument
from ..modify._common import is_linear_like, model_device
from ..modify.quantize import ACTIVATION_QUANT_ATTR
from ..packed import module_tree_copy, packed_modules, without_autograd
from ..probes import as_probes
from ..sources.module import evaluating, pad_id
from . import Applies, Mitigation, SimpleMitigator

__all__ = ["fallback", "applies", "modified_linears", "sensitivity", "MITIGATOR"]

# How many restored names the description lists before "…".
_NAMES_SHOWN = 6


def _same_structure(baseline: Any, candidate: Any) -> Applies:
    for role, model in (("baseline", baseline), ("candidate", candidate)):
        if not isinstance(model, nn.Module):
            return Applies.no(f"the {role} is a {type(model).__name__}, not an nn.Module with weights to restore")
    packed = packed_modules(candidate)
    if packed:
        return _packed_counterparts(baseline, candidate, packed)
    shapes_b = {n: tuple(p.shape) for n, p in baseline.named_parameters()}
    shapes_c = {n: tuple(p.shape) for n, p in candidate.named_parameters()}
    if shapes_b != shapes_c:
        return Applies.no("baseline and candidate differ in parameter names or shapes: no module to restore one by one")
    return Applies.yes()


def _packed_counterparts(baseline: nn.Module, candidate: nn.Module, packed: dict[str, str]) -> Applies:
    """Whether every module whose weights another quantizer packed has a baseline linear to swap in,
    and the candidate's other (float) parameters match the baseline's."""
    base = dict(baseline.named_modules())
    lacking = [name for name in packed if name not in base or not is_linear_like(base[name])]
    if lacking:
        return Applies.no(f"layer fallback cannot restore {lacking[0]}: its weights are packed by {packed[lacking[0]]} "
                          "and the baseline has no linear layer of that name to put in its place")

    def plain_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
        return {n: tuple(p.shape) for n, p in model.named_parameters()
                if not any(n.startswith(name + ".") for name in packed)}

    if plain_shapes(baseline) != plain_shapes(candidate):
        return Applies.no("baseline and candidate differ in the names or shapes of their unpacked parameters: "
                          "no module to restore one by one")
    return Applies.yes()


def applies(baseline: Any, candidate: Any) -> bool:
    """True when both are ``nn.Module``s with the same parameter names and shapes.

    Anything else (dropped or inserted blocks, low-rank factors that replace a linear) has no
    module-by-module counterpart to restore.
    """
    return bool(_same_structure(baseline, candidate))


def _differs(base: nn.Module, cand: nn.Module) -> bool:
    if ACTIVATION_QUANT_ATTR in cand._modules:
        return True
    for attr in ("weight", "bias"):
        b, c = getattr(base, attr, None), getattr(cand, attr, None)
        if (b is None) != (c is None):
            return True
        if isinstance(b, torch.Tensor) and not torch.equal(b.detach(), c.detach().to(b.device)):
            return True
    return False


def modified_linears(baseline: nn.Module, candidate: nn.Module) -> list[str]:
    """Names of the candidate's linear layers that differ from the baseline's (weights, bias or input
    quantizer), those whose weights another quantizer packed included."""
    base = dict(baseline.named_modules())
    packed = packed_modules(candidate)
    return [name for name, module in candidate.named_modules()
            if name and name in base and (name in packed or (is_linear_like(module) and _differs(base[name], module)))]


def sensitivity(baseline: nn.Module, candidate: nn.Module, names: list[str], probes: Any,
                batch_size: int = 8) -> dict[str, float]:
    """Relative output error ``||f_c(x) - f_b(x)|| / ||f_b(x)||`` of each named module on its baseline inputs.

    One pass of the baseline over ``probes``; each module's candidate counterpart runs on the very
    input the baseline module received (its activation quantizer included), padding excluded.
    """
    probe_set = as_probes(probes, baseline)
    cand = dict(candidate.named_modules())
    sums = {name: torch.zeros(2, dtype=torch.float64) for name in names}
    state: dict[str, torch.Tensor | None] = {"mask": None}

    def hook_for(name: str):
        def hook(_m: nn.Module, args: tuple, out: Any) -> None:
            if not args or not isinstance(args[0], torch.Tensor) or not isinstance(out, torch.Tensor):
                return
            x = args[0]
            ref = out.float()
            got = cand[name](x.to(model_device(cand[name]))).float().to(ref.device)
            sig, err = ref.square().sum(-1), (got - ref).square().sum(-1)
            mask = state["mask"]
            if mask is not None and mask.shape == sig.shape:
                w = mask.to(sig.device).float()
                sig, err = sig * w, err * w
            sums[name] += torch.stack([sig.sum(), err.sum()]).double().cpu()
        return hook

    base = dict(baseline.named_modules())
    handles = [base[name].register_forward_hook(hook_for(name)) for name in names]
    try:
        with evaluating(roles={"baseline": baseline, "candidate": candidate}), without_autograd(candidate):
            device = model_device(baseline)
            for batch in probe_set.batches(batch_size, pad_id=pad_id(baseline)):
                if batch.input_ids is not None:
                    state["mask"] = batch.attention_mask
                    baseline(batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device))
                else:
                    state["mask"] = None
                    baseline(batch.inputs.to(device))
    finally:
        for h in handles:
            h.remove()
    out = {}
    for name, (signal, error) in ((n, s.tolist()) for n, s in sums.items()):
        out[name] = (error / signal) ** 0.5 if signal > 0 else (float("inf") if error > 0 else 0.0)
    return out


class _Restorer:
    """A working copy of the candidate whose first ``k`` ranked modules can be set to baseline weights.

    Plain weights are copied in place. Modules whose weights another quantizer packed are swapped
    whole instead, a copy of the baseline's module in place of the candidate's, in a copy of the
    candidate's module tree (packed weights can neither be written nor, for some, deep-copied).
    """

    def __init__(self, baseline: nn.Module, candidate: nn.Module, ranked: list[str]) -> None:
        self.swapping = bool(packed_modules(candidate))
        self.model = module_tree_copy(candidate) if self.swapping else copy.deepcopy(candidate)
        self.ranked = ranked
        base, cand, work = (dict(m.named_modules()) for m in (baseline, candidate, self.model))
        self.base = [copy.deepcopy(base[n]) if self.swapping else base[n] for n in ranked]
        self.cand = [work[n] if self.swapping else cand[n] for n in ranked]
        self.work = [work[n] for n in ranked]
        self.quantizers = [w._modules.get(ACTIVATION_QUANT_ATTR) for w in self.work]

    def set(self, k: int) -> nn.Module:
        if self.swapping:
            for i, name in enumerate(self.ranked):
                parent, _, child = name.rpartition(".")
                setattr(self.model.get_submodule(parent), child, self.base[i] if i < k else self.cand[i])
            return self.model
        with torch.no_grad():
            for i, work in enumerate(self.work):
                src = self.base[i] if i < k else self.cand[i]
                for attr in ("weight", "bias"):
                    target = getattr(work, attr, None)
                    if isinstance(target, torch.Tensor):
                        target.copy_(getattr(src, attr))
                quantizer = self.quantizers[i]
                if i < k:
                    work._modules.pop(ACTIVATION_QUANT_ATTR, None)  # the pre-hook is a no-op without it
                elif quantizer is not None:
                    work._modules[ACTIVATION_QUANT_ATTR] = quantizer
        return self.model


def _kl(report: Any) -> float | None:
    metric = report.metrics.get("kl")
    return float(metric.estimate) if metric is not None else None


def _shown(names: list[str]) -> str:
    head = ", ".join(names[:_NAMES_SHOWN])
    return head + (f", … ({len(names) - _NAMES_SHOWN} more)" if len(names) > _NAMES_SHOWN else "")


def fallback(
    baseline: nn.Module,
    candidate: nn.Module,
    probes: Any,
    thresholds: Any = None,
    *,
    max_layers: int | None = None,
    batch_size: int = 8,
) -> Mitigation:
    """Restore the fewest most-sensitive modified linears to the baseline's weights so the gate passes.

    ``thresholds``: as for :func:`~pytest_hemorrhage.engine.compare` (None: the defaults).
    ``max_layers``: the most modules that may be restored. Works on a copy: ``baseline`` and
    ``candidate`` are untouched. ``details`` holds ``restored`` (names, in rank order), ``n_modified``,
    ``kl_before``, ``kl_after``, ``compares`` (gate evaluations run, the first included),
    ``sensitivity`` (rank order, relative output error) and ``searched`` (count -> passed).
    Raises :class:`InvalidArgument` when the structures differ (see :func:`applies`) and
    :class:`HemorrhageError` when restoring every modified linear (or ``max_layers`` of them) still fails.
    """
    if not applies(baseline, candidate):
        raise InvalidArgument(
            "fallback: baseline and candidate differ in structure (parameter names or shapes: dropped or "
            "inserted blocks, replaced layers), so there is no module to restore one by one; allowed: a "
            "candidate with the baseline's modules and shapes (quantized or pruned weights)"
        )
    if max_layers is not None:
        positive_int("max_layers", max_layers, fix="or None to allow restoring every modified linear")

    def gate(model: nn.Module) -> Any:
        return compare(baseline, model, probes, thresholds, layers=None, batch_size=batch_size)

    before = gate(candidate)
    compares = 1
    names = modified_linears(baseline, candidate)
    details: dict[str, Any] = {"n_modified": len(names), "kl_before": _kl(before)}
    if before.passed:
        details.update(restored=[], kl_after=_kl(before), compares=compares, sensitivity={}, searched={0: True})
        return Mitigation("fallback", _Restorer(baseline, candidate, []).model,
                          f"nothing to restore: the candidate already passes (KL {_kl_text(before)})", details)
    if not names:
        raise HemorrhageError(
            "fallback: no linear layer of the candidate differs from the baseline, so restoring cannot help; "
            "the damage is elsewhere (normalisation or embedding weights, buffers, decoding settings)"
        )
    scores = sensitivity(baseline, candidate, names, probes, batch_size)
    ranked = sorted(names, key=lambda n: -scores[n])
    limit = len(ranked) if max_layers is None else min(max_layers, len(ranked))
    restorer = _Restorer(baseline, candidate, ranked)
    searched: dict[int, bool] = {0: False}
    reports: dict[int, Any] = {}

    def passes(k: int) -> bool:
        nonlocal compares
        reports[k] = gate(restorer.set(k))
        compares += 1
        searched[k] = reports[k].passed
        return searched[k]

    # Doubling finds a passing count in O(log k) compares; bisection then finds the smallest below it.
    low, k = 0, 1
    while not passes(min(k, limit)):
        low = min(k, limit)
        if low >= limit:
            what = "every modified linear" if limit == len(ranked) else f"the {limit} most sensitive (max_layers)"
            raise HemorrhageError(
                f"fallback: restoring {what} of {len(ranked)} to baseline weights still fails the gate "
                f"(KL {_kl_text(before)} -> {_kl_text(reports[low])}); "
                + ("raise max_layers, or " if limit < len(ranked) else "")
                + "the damage is outside the linear layers (normalisation, embeddings, structure or decoding): "
                "fallback cannot repair it"
            )
        k *= 2
    high = min(k, limit)
    while high - low > 1:
        mid = (low + high) // 2
        if passes(mid):
            high = mid
        else:
            low = mid
    model = restorer.set(high)
    restored = ranked[:high]
    after = reports[high]
    details.update(
        restored=restored, kl_after=_kl(after), compares=compares,
        sensitivity={n: scores[n] for n in ranked}, searched=dict(sorted(searched.items())),
    )
    description = (
        f"restored {high} of {len(ranked)} modified linears to baseline weights: {_shown(restored)} "
        f"(KL {_kl_text(before)} -> {_kl_text(after)})"
    )
    return Mitigation("fallback", model, description, details)


def _kl_text(report: Any) -> str:
    kl = _kl(report)
    return "n/a" if kl is None else f"{kl:.3g}"


def _mitigate(baseline: nn.Module, candidate: nn.Module, calibration: Any, thresholds: Any, *,
              probes: Any = None, **options: Any) -> Mitigation:
    # The search is against the check itself, so it runs on the probes that judge the result
    # (None: the built-in set, as for compare).
    return fallback(baseline, candidate, probes, thresholds, **options)


#: :func:`fallback` as a :class:`~pytest_hemorrhage.mitigate.Mitigator`.
MITIGATOR = SimpleMitigator("fallback", _same_structure, _mitigate)
