"""Importance pruning: unstructured pruning by a score that can use calibration data.

Unstructured magnitude pruning throws away small weights that carry large activations or
large loss gradients. This module prunes by a better importance score per weight ``W_ij``
(``i`` output row, ``j`` input feature):

* ``"magnitude"``: ``|W_ij|``;
* ``"wanda"``: ``|W_ij| * ||X_j||`` (Wanda), ``||X_j||`` the l2 norm of input feature ``j`` over
  every non-padding calibration token;
* ``"gradient"``: ``|W_ij| * (||X_j|| + alpha * ||G_ij||)`` (GBLM-Pruner), ``||G_ij||`` the l2 norm
  over calibration probes of the per-probe gradient of the *summed* next-token NLL of that probe.

Why per-probe *summed* losses: ``||X_j||`` sums squares over tokens, so it grows like the square
root of the token count; the gradient of a probe's summed loss is a sum over its tokens, so
``sqrt(sum over probes of g^2)`` grows the same way. The ratio of the two terms, and so the
meaning of ``alpha``, does not depend on how many or how long the calibration probes are.
``DEFAULT_ALPHA = 10`` was chosen by measurement on the default model (SmolLM2-135M, 16
calibration and 16 held-out probes of 64 tokens, ``python -m benchmarks.claims_pruning --alpha``):
mean KL at 50 % / 60 % sparsity was 0.84 / 1.93 for alpha 0 (Wanda), 0.86 / 1.93 for 10,
0.91 / 1.98 for 100 and 1.02 / 2.30 for 1000 (PPL ratio 2.22 / 6.23, 2.26 / 5.89, 2.39 / 6.42,
2.70 / 8.01). Up to about 10 the gradient term costs nothing and lowers the PPL ratio at 60 %;
beyond, it hurts. On this model most of the gain over magnitude pruning comes from the
activation term and per-row ranking, not from the gradient.

Weights are compared within each output row by default (as Wanda does), or across the whole
matrix with ``group="layer"``. The same linears as :func:`pytest_hemorrhage.modify.prune` are
pruned: every ``nn.Linear``/``Conv1D`` except embeddings and the output head (``DEFAULT_SKIP``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..arguments import fraction, must_be, number, one_of, positive_int
from ..capture import adapt
from ..errors import InvalidArgument
from ..probes import Probes, as_probes
from ..sources.module import evaluating
from ._common import (
    DEFAULT_SKIP,
    MODIFICATION_ATTR,
    Modification,
    copy_model,
    linear_modules,
    select_linears,
    weight_out_in,
)
from .prune import importance_mask

__all__ = [
    "DEFAULT_ALPHA",
    "METHODS",
    "GROUPS",
    "ImportancePruning",
    "pruning_scores",
    "prune_by_importance",
    "prunable_linears",
    "calibration_token_probes",
]

#: Weight of the gradient term; measured on the default model (module docs).
DEFAULT_ALPHA = 10.0

METHODS = ("gradient", "wanda", "magnitude")
GROUPS = ("row", "layer")

_FORMULAS = {
    "magnitude": "|W|",
    "wanda": "|W|·‖X‖",
    "gradient": "|W|·(‖X‖ + {alpha}·‖G‖)",
}
_NAMES = {"magnitude": "magnitude", "wanda": "Wanda", "gradient": "gradient-aware"}


# --------------------------------------------------------------------------- the modification record


@dataclass(frozen=True, repr=False)
class ImportancePruning(Modification):
    """Unstructured pruning by an importance score, compared per output row or per layer.

    ``alpha`` is used by ``method="gradient"`` only (it is stored as 0 for the others).
    ``apply(model, calibration=token_ids)`` needs calibration token ids unless ``method="magnitude"``.
    """

    sparsity: float = 0.5
    method: str = "gradient"
    alpha: float = DEFAULT_ALPHA
    group: str = "row"

    kind = "importance_prune"

    def _unused_fields(self) -> frozenset[str]:
        return frozenset() if self.method == "gradient" else frozenset({"alpha"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparsity", fraction("sparsity", self.sparsity, high_open=True))
        one_of("method", self.method, METHODS)
        one_of("group", self.group, GROUPS)
        alpha = number("alpha", self.alpha, 0.0)
        object.__setattr__(self, "alpha", alpha if self.method == "gradient" else 0.0)

    def apply(self, model: nn.Module, inplace: bool = False, calibration: torch.Tensor | None = None) -> nn.Module:
        """Return the pruned model (a copy unless ``inplace``); ``calibration``: 2-D token ids."""
        probes = None if calibration is None else as_probes(calibration)
        return prune_by_importance(
            model, self.sparsity, probes, self.method, alpha=self.alpha, group=self.group, inplace=inplace
        )

    @property
    def method_name(self) -> str:
        """The score's name for people: ``"magnitude"``, ``"Wanda"`` or ``"gradient-aware"``."""
        return _NAMES[self.method]

    @property
    def formula(self) -> str:
        """The score as a formula, e.g. ``"|W|·(‖X‖ + 10·‖G‖)"``."""
        return _FORMULAS[self.method].format(alpha=f"{self.alpha:g}")

    def describe(self) -> str:
        where = "per row" if self.group == "row" else "per layer"
        return f"{self.method_name} pruning {self.sparsity:.0%} ({self.formula}, {where})"

    @property
    def strength(self) -> float:
        """The fraction of weights removed (as unstructured magnitude pruning)."""
        return self.sparsity


# --------------------------------------------------------------------------- scores


def prunable_linears(model: Any) -> list[tuple[str, nn.Module]]:
    """The linears importance pruning prunes (those :func:`~pytest_hemorrhage.modify.prune` would)."""
    if not isinstance(model, nn.Module):
        raise must_be("model", "a torch.nn.Module", model)
    if not linear_modules(model):
        raise InvalidArgument(
            f"model={type(model).__name__} has no nn.Linear/Conv1D layer to prune; "
            "allowed: a model built from linear layers (e.g. a Hugging Face transformer)"
        )
    return select_linears(model, None, DEFAULT_SKIP, check_skip=False)


def calibration_token_probes(probes: Any, method: str) -> Probes:
    """``probes`` as token probes to calibrate ``method`` on; an error naming the fix otherwise."""
    if probes is None:
        raise InvalidArgument(
            f"probes=None, but method={method!r} needs calibration probes; pass "
            "probes=Probes.builtin(tokenizer, n=16) (disjoint from your evaluation probes), "
            "or method='magnitude', which needs none"
        )
    probe_set = as_probes(probes)
    if not probe_set.is_tokens:
        raise InvalidArgument(
            f"probes hold input tensors, but method={method!r} needs token-id probes of a language "
            "model; pass Probes.builtin(tokenizer) or Probes.from_texts(tokenizer, texts)"
        )
    return probe_set


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``x`` as float32 with padding positions zeroed (when its leading dims are (batch, tokens))."""
    x = x.detach().float()
    if mask is not None and x.dim() >= 3 and tuple(x.shape[:2]) == tuple(mask.shape):
        x = x * mask.to(device=x.device, dtype=x.dtype).unsqueeze(-1)
    return x


@contextmanager
def _input_norms(
    modules: list[tuple[str, nn.Module]], sums: dict[str, torch.Tensor], mask: list[torch.Tensor | None]
) -> Iterator[None]:
    """Add each module's squared inputs per input feature into ``sums`` while the block runs.

    ``mask[0]`` is the current batch's attention mask: padding positions are left out. An input
    whose leading dimensions are not (batch, tokens) counts whole.
    """
    handles = []

    def hook_for(name: str) -> Any:
        def hook(_module: nn.Module, args: tuple) -> None:
            x = _masked(args[0], mask[0])
            sums[name] += x.pow(2).reshape(-1, x.shape[-1]).sum(dim=0)

        return hook

    try:
        for name, module in modules:
            w = weight_out_in(module)
            sums[name] = torch.zeros(w.shape[1], dtype=torch.float32, device=w.device)
            handles.append(module.register_forward_pre_hook(hook_for(name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _activation_sums(model: nn.Module, probes: Probes, batch_size: int) -> dict[str, torch.Tensor]:
    """Squared input norms per feature over all non-padding tokens, in eval mode without grad."""
    modules = prunable_linears(model)
    sums: dict[str, torch.Tensor] = {}
    mask: list[torch.Tensor | None] = [None]
    adapter = adapt(model, layers=None)
    with evaluating(model), torch.no_grad(), _input_norms(modules, sums, mask):
        for batch in probes.batches(batch_size):
            mask[0] = batch.attention_mask
            adapter.forward(batch)
    return sums


@contextmanager
def _stash_calls(
    modules: list[tuple[str, nn.Module]], calls: dict[str, list[tuple[torch.Tensor, torch.Tensor]]]
) -> Iterator[None]:
    """Record ``(input, output)`` of every call of each module into ``calls[name]``."""
    handles = []
    try:
        for name, module in modules:
            def hook(_module: nn.Module, args: tuple, output: torch.Tensor, _name: str = name) -> None:
                calls[_name].append((args[0].detach(), output))

            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _summed_nll(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Next-token NLL summed over every real (non-padding) target token of the batch."""
    targets = input_ids[:, 1:].to(logits.device)
    valid = mask[:, 1:].to(logits.device).bool()
    nll = nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
    )
    return (nll * valid.reshape(-1)).sum()


def _gradient_and_activation_sums(
    model: nn.Module, probes: Probes, batch_size: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(per-probe weight gradients squared and summed over probes, squared input norms).

    Runs on an eval-mode copy of ``model``. The loss of a probe is its summed next-token NLL. A
    batch is one forward and one backward to the linears' outputs ``dY``; the gradient of probe
    ``s`` is then ``dY_s^T X_s`` (probes do not interact in a forward pass, and padding positions
    are masked out of ``X`` and carry no loss).
    """
    work = copy.deepcopy(model).eval()
    modules = prunable_linears(work)
    for p in work.parameters():
        p.requires_grad_(False)
    for _, module in modules:
        module.weight.requires_grad_(True)
    grad_sums = {name: torch.zeros_like(weight_out_in(m), dtype=torch.float32) for name, m in modules}
    act_sums = {name: torch.zeros(g.shape[1], dtype=torch.float32, device=g.device) for name, g in grad_sums.items()}
    adapter = adapt(work, layers=None)
    calls: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name, _ in modules}
    with torch.enable_grad(), _stash_calls(modules, calls):
        for batch in probes.batches(batch_size):
            logits, _ = adapter.forward(batch)
            if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(batch.input_ids.shape):
                raise InvalidArgument(
                    f"method='gradient' needs a causal language model returning logits "
                    f"[batch, tokens, vocab]; {type(model).__name__} returned shape "
                    f"{tuple(logits.shape)}; use method='wanda' or 'magnitude'"
                )
            loss = _summed_nll(logits, batch.input_ids, batch.attention_mask)
            flat = [(name, x, y) for name, stash in calls.items() for x, y in stash]
            dys = torch.autograd.grad(loss, [y for _, _, y in flat], allow_unused=True)
            del logits, loss
            dy_by_name: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
            for (name, x, _), dy in zip(flat, dys):
                if dy is not None:
                    dy_by_name.setdefault(name, []).append((x, dy))
            del flat, dys
            for stash in calls.values():
                stash.clear()
            for name, pairs in dy_by_name.items():
                # One module at a time: [batch, out, in] per-probe gradients of every module at
                # once would take batch_size times the model's size.
                per_probe = None
                for x, dy in pairs:
                    if x.dim() != 3 or tuple(x.shape[:2]) != tuple(batch.input_ids.shape):
                        raise InvalidArgument(
                            f"method='gradient': {name} sees inputs of shape {tuple(x.shape)}, not "
                            "(batch, tokens, features), so per-probe gradients cannot be formed; "
                            "use method='wanda' or 'magnitude'"
                        )
                    xm = _masked(x, batch.attention_mask)
                    act_sums[name] += xm.pow(2).sum(dim=(0, 1))
                    g = torch.einsum("bto,bti->boi", dy.float(), xm)
                    per_probe = g if per_probe is None else per_probe + g
                grad_sums[name] += per_probe.pow(2).sum(dim=0)
                del per_probe
    return grad_sums, act_sums


def pruning_scores(
    model: nn.Module,
    probes: Any = None,
    method: str = "gradient",
    *,
    alpha: float = DEFAULT_ALPHA,
    batch_size: int = 8,
) -> dict[str, torch.Tensor]:
    """Importance of every weight of every linear that ``modify.prune`` would prune.

    Returns ``{module name: float32 tensor [out_features, in_features]}`` (``Conv1D`` weights
    transposed to that orientation); larger means more important. ``method``: ``"magnitude"``
    (``|W|``, needs no probes), ``"wanda"`` (``|W|·‖X‖``) or ``"gradient"``
    (``|W|·(‖X‖ + alpha·‖G‖)``), see the module docs. ``model`` is not modified.
    """
    one_of("method", method, METHODS)
    alpha = number("alpha", alpha, 0.0)
    positive_int("batch_size", batch_size)
    modules = prunable_linears(model)
    magnitudes = {name: weight_out_in(m).detach().abs().float() for name, m in modules}
    if method == "magnitude":
        return magnitudes
    probe_set = calibration_token_probes(probes, method)
    if method == "wanda":
        act = _activation_sums(model, probe_set, batch_size)
        return {name: mag * act[name].sqrt() for name, mag in magnitudes.items()}
    grads, act = _gradient_and_activation_sums(model, probe_set, batch_size)
    # In place, one module at a time: magnitudes, gradient sums and scores are each the size of every
    # prunable weight in float32, and three of them at once were the peak of the example suites.
    # (|W| * (sqrt(A) + alpha * sqrt(G)), the same operations as written out.)
    for name, mag in magnitudes.items():
        mag.mul_(grads.pop(name).sqrt_().mul_(alpha).add_(act[name].sqrt()))
    return magnitudes


# --------------------------------------------------------------------------- pruning


def prune_by_importance(
    model: nn.Module,
    sparsity: float,
    probes: Any = None,
    method: str = "gradient",
    *,
    alpha: float = DEFAULT_ALPHA,
    group: str = "row",
    batch_size: int = 8,
    scores: Mapping[str, torch.Tensor] | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Return a copy of ``model`` pruned to ``sparsity`` by the ``method`` importance score.

    ``group="row"`` prunes the same number of weights in every output row (as Wanda does);
    ``"layer"`` ranks the whole matrix. ``scores``: the output of :func:`pruning_scores` for
    this model, method and alpha, to reuse one computation across several sparsities. The copy
    carries an :class:`ImportancePruning` as ``hemorrhage_modification``.
    """
    config = ImportancePruning(sparsity=sparsity, method=method, alpha=alpha, group=group)
    positive_int("batch_size", batch_size)
    if scores is None:
        scores = pruning_scores(model, probes, method, alpha=config.alpha, batch_size=batch_size)
    target = copy_model(model, inplace)
    modules = prunable_linears(target)
    missing = sorted({name for name, _ in modules} - set(scores))
    if missing:
        raise InvalidArgument(
            f"scores has no entry for {missing[:3]}{' ...' if len(missing) > 3 else ''}; "
            "allowed: the output of pruning_scores() for this very model"
        )
    with torch.no_grad():
        for name, module in modules:
            w = weight_out_in(module)
            score = scores[name]
            if tuple(score.shape) != tuple(w.shape):
                raise InvalidArgument(
                    f"scores[{name!r}] has shape {tuple(score.shape)}, the weight {tuple(w.shape)}; "
                    "allowed: the output of pruning_scores() for this very model"
                )
            w.mul_(importance_mask(score.to(w.device), config.sparsity, config.group).to(w.dtype))
    setattr(target, MODIFICATION_ATTR, config)
    return target
