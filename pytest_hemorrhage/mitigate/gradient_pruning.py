"""Gradient-aware pruning: repair a magnitude-pruned candidate by re-pruning the baseline.

Unstructured magnitude pruning throws away small weights that carry large activations or
large loss gradients. This mitigation re-prunes the *baseline* to the candidate's sparsity with
a better importance score (:mod:`pytest_hemorrhage.modify.importance`: magnitude, Wanda or the
gradient-aware ``|W|·(‖X‖ + alpha·‖G‖)``, with the measurement behind ``DEFAULT_ALPHA``).
``prune_by_importance`` and ``pruning_scores`` are importance pruning itself, re-exported here.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..arguments import must_be, number, one_of
from ..errors import InvalidArgument
from ..modify import Composed, PruningConfig
from ..modify._common import DEFAULT_SKIP, MODIFICATION_ATTR, Modification, weight_out_in
from ..modify.importance import (
    DEFAULT_ALPHA,
    METHODS,
    ImportancePruning,
    calibration_token_probes,
    prunable_linears,
    prune_by_importance,
    pruning_scores,
)
from ..packed import cannot_edit
from . import Applies, Mitigation, SimpleMitigator

__all__ = [
    "DEFAULT_ALPHA",
    "pruning_scores",
    "prune_by_importance",
    "gradient_aware_pruning",
    "applies",
    "candidate_sparsity",
    "measured_sparsity",
    "MITIGATOR",
]


# The zero fraction from which an unrecorded candidate counts as pruned.
_MIN_SPARSITY = 0.01


def _unstructured_steps(record: Any) -> list[Modification]:
    steps = record.steps if isinstance(record, Composed) else (record,)
    return [
        s
        for s in steps
        if isinstance(s, ImportancePruning) or (isinstance(s, PruningConfig) and s.method == "magnitude")
    ]


def measured_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights over the linears that ``modify.prune`` would prune."""
    zeros = total = 0
    for _, module in prunable_linears(model):
        w = weight_out_in(module)
        zeros += int((w == 0).sum().item())
        total += w.numel()
    return zeros / total


def candidate_sparsity(candidate: nn.Module) -> tuple[float, str]:
    """(sparsity, where it came from: ``"config"`` or ``"measured"``) of a pruned candidate.

    The config's sparsity is used when it is one uniform unstructured sparsity over the
    default selection of linears; otherwise the zero fraction is measured.
    """
    record = getattr(candidate, MODIFICATION_ATTR, None)
    if isinstance(record, ImportancePruning):
        return record.sparsity, "config"
    if (
        isinstance(record, PruningConfig)
        and record.method == "magnitude"
        and record.per_layer is None
        and record.targets is None
        and record.skip == DEFAULT_SKIP
    ):
        return record.sparsity, "config"
    return measured_sparsity(candidate), "measured"


def _unstructured_pruning(candidate: Any) -> Applies:
    if not isinstance(candidate, nn.Module):
        return Applies.no(f"the candidate is a {type(candidate).__name__}, not a pruned nn.Module")
    record = getattr(candidate, MODIFICATION_ATTR, None)
    if record is not None:
        if _unstructured_steps(record):
            return Applies.yes()
        return Applies.no(f"the candidate's modification ({record}) is not unstructured pruning")
    packed = cannot_edit(candidate, "gradient pruning")
    if packed is not None:
        return Applies.no(packed)
    try:
        sparsity = measured_sparsity(candidate)
    except InvalidArgument as exc:
        return Applies.no(str(exc))
    if sparsity >= _MIN_SPARSITY:
        return Applies.yes()
    return Applies.no(f"{sparsity:.1%} of the candidate's prunable weights are zero, "
                      f"less than the {_MIN_SPARSITY:.0%} of a pruned model")


def applies(candidate: Any) -> bool:
    """True for unstructured pruning candidates.

    That is: the recorded modification (or a step of a composed one) is unstructured magnitude
    or importance pruning; or, with no record, at least 1 % of the prunable weights are exactly 0.
    """
    return bool(_unstructured_pruning(candidate))


def gradient_aware_pruning(
    baseline: nn.Module,
    candidate: nn.Module,
    probes: Any,
    *,
    alpha: float = DEFAULT_ALPHA,
    method: str = "gradient",
    group: str = "row",
    batch_size: int = 8,
) -> Mitigation:
    """Re-prune ``baseline`` to ``candidate``'s sparsity with a better importance score.

    ``probes``: calibration token probes (keep them apart from the probes that judge the
    result). Neither model is modified. Returns a :class:`Mitigation` named
    ``"gradient_pruning"`` whose details hold sparsity, its source, method, alpha, group and n_probes.
    """
    one_of("method", method, METHODS)
    alpha = number("alpha", alpha, 0.0)
    prunable_linears(baseline)
    if not isinstance(candidate, nn.Module):
        raise must_be("candidate", "a torch.nn.Module", candidate)
    probe_set = calibration_token_probes(probes, method) if method != "magnitude" else None
    sparsity, source = candidate_sparsity(candidate)
    if sparsity == 0.0:
        raise InvalidArgument(
            "candidate has no zero weight in its linear layers, so it is not a pruned model; "
            "gradient_aware_pruning repairs unstructured pruning (e.g. modify.prune(model, sparsity=0.5))"
        )
    repaired = prune_by_importance(
        baseline, sparsity, probe_set, method, alpha=alpha, group=group, batch_size=batch_size
    )
    config: ImportancePruning = getattr(repaired, MODIFICATION_ATTR)
    n_probes = len(probe_set) if probe_set is not None else 0
    text = (
        f"re-pruned the baseline to {100 * config.sparsity:.1f} % sparsity with {config.method_name} "
        f"scores ({config.formula})"
    )
    if probe_set is not None:
        text += f" on {n_probes} calibration probes"
    if group == "layer":
        text += ", ranked per layer"
    return Mitigation(
        name="gradient_pruning",
        model=repaired,
        description=text,
        details={
            "sparsity": config.sparsity,
            "sparsity_source": source,
            "method": method,
            "alpha": config.alpha,
            "group": group,
            "n_probes": n_probes,
        },
    )


def _mitigate(baseline: nn.Module, candidate: nn.Module, calibration: Any, thresholds: Any, *,
              probes: Any = None, **options: Any) -> Mitigation:
    return gradient_aware_pruning(baseline, candidate, calibration, **options)


#: :func:`gradient_aware_pruning` as a :class:`~pytest_hemorrhage.mitigate.Mitigator`.
MITIGATOR = SimpleMitigator(
    "gradient_pruning", lambda baseline, candidate: _unstructured_pruning(candidate), _mitigate
)
