"""Round-to-nearest (RTN) fake quantization of weights and, optionally, activations.

Conventions (fake quantization: values are replaced by their dequantized
counterparts, dtype and shapes unchanged; the arithmetic runs in float32, float64 for float64 weights):

* Symmetric, ``b`` bits: restricted signed range. ``qmax = 2**(b-1) - 1``,
  ``scale = max|w| / qmax``, ``q = clamp(round(w / scale), -qmax, qmax)``,
  so ``2**b - 1`` levels with zero exactly representable (e.g. int4 -> -7..7).
* Asymmetric, ``b`` bits: min/max affine with ``2**b`` levels. The range is
  widened to include 0 (as PyTorch observers and GPTQ do) so the integer zero
  point is exact: ``scale = (max - min) / (2**b - 1)``,
  ``zp = round(-min / scale)``, ``q = clamp(round(w / scale) + zp, 0, 2**b - 1)``.
* Granularity: ``per_tensor`` one scale per matrix; ``per_channel`` one per
  output row; ``per_group`` one per ``group_size`` consecutive input weights of
  each output row (a shorter last group when the input size is not divisible).
* Activations (input of each quantized layer) are always symmetric signed
  ``activation_bits``. ``dynamic_per_token`` takes the scale of each token row
  from its own max|x|. ``static_per_tensor`` uses one fixed scale per layer:
  max|x| seen during a forward pass over ``calibration`` token ids when given
  to ``apply``, otherwise (and for layers the pass never reached) the assumed
  range ``[-activation_range, activation_range]`` (default 8: a typical
  post-normalisation range; larger values are clipped).
* Weight quantization happens first; calibration then runs on the
  weight-quantized model with activations still in full precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..arguments import flag, integer, must_be, number, one_of, positive_int
from ._common import (
    DEFAULT_SKIP,
    WeightModification,
    check_patterns,
    model_device,
    select_linears,
    weight_out_in,
)

__all__ = [
    "QuantizationConfig",
    "ActivationFakeQuant",
    "quantize",
    "fake_quantize_weight",
    "ACTIVATION_QUANT_ATTR",
]

GRANULARITIES = ("per_channel", "per_tensor", "per_group")
ACTIVATION_MODES = (None, "static_per_tensor", "dynamic_per_token")

#: Name of the child module holding the activation quantizer of a quantized layer.
ACTIVATION_QUANT_ATTR = "hemorrhage_act_quant"

_CALIBRATION_BATCH = 8


def _fake_quant_rows(x: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    """Fake-quantize each row of a 2-D float tensor with its own scale."""
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = x.abs().amax(dim=1, keepdim=True) / qmax
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return torch.clamp(torch.round(x / scale), -qmax, qmax) * scale
    levels = 2**bits - 1
    lo = x.amin(dim=1, keepdim=True).clamp(max=0)
    hi = x.amax(dim=1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.clamp(torch.round(-lo / scale), 0, levels)
    q = torch.clamp(torch.round(x / scale) + zero_point, 0, levels)
    return (q - zero_point) * scale


def fake_quantize_weight(
    weight: torch.Tensor,
    bits: int,
    symmetric: bool = True,
    granularity: str = "per_channel",
    group_size: int = 128,
) -> torch.Tensor:
    """RTN fake-quantize an ``[out, in]`` weight; returns a new tensor of the same dtype."""
    if weight.dim() != 2:
        raise must_be("weight", "a 2-D [out, in] matrix", weight)
    integer("bits", bits, 2, 8)
    one_of("granularity", granularity, GRANULARITIES)
    x = weight.detach().to(torch.promote_types(weight.dtype, torch.float32))
    rows, cols = x.shape
    if granularity == "per_tensor":
        deq = _fake_quant_rows(x.reshape(1, -1), bits, symmetric).reshape(rows, cols)
    elif granularity == "per_channel":
        deq = _fake_quant_rows(x, bits, symmetric)
    else:
        positive_int("group_size", group_size)
        n_groups = math.ceil(cols / group_size)
        padded = n_groups * group_size
        if padded != cols:
            # Pad the short last group by repeating its last column: min/max unchanged.
            index = torch.arange(padded, device=x.device).clamp(max=cols - 1)
            x = x[:, index]
        deq = _fake_quant_rows(x.reshape(rows * n_groups, group_size), bits, symmetric)
        deq = deq.reshape(rows, padded)[:, :cols]
    return deq.to(weight.dtype)


class ActivationFakeQuant(nn.Module):
    """Symmetric fake quantizer for a layer input (run by a forward pre-hook).

    Lives as a child module of the quantized layer so it follows ``deepcopy``,
    ``.to()`` and pickling; the static scale is a non-persistent buffer, so the
    state dict keys of the model do not change.
    """

    def __init__(self, mode: str, bits: int, scale: float = 1.0) -> None:
        super().__init__()
        self.mode = mode
        self.bits = bits
        self.register_buffer("scale", torch.tensor(float(scale)), persistent=False)

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        if self.mode == "dynamic_per_token":
            scale = xf.abs().amax(dim=-1, keepdim=True) / self.qmax
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        else:
            scale = self.scale.float()
        return (torch.clamp(torch.round(xf / scale), -self.qmax, self.qmax) * scale).to(x.dtype)

    def extra_repr(self) -> str:
        extra = f", scale={self.scale.item():.4g}" if self.mode == "static_per_tensor" else ""
        return f"mode={self.mode}, bits={self.bits}{extra}"


def _activation_pre_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    # Module-level (stateless) so deep copies of the model share it harmlessly;
    # the state lives in the per-layer child quantizer.
    quantizer = module._modules.get(ACTIVATION_QUANT_ATTR)
    if quantizer is None or not args or not isinstance(args[0], torch.Tensor):
        return None
    return (quantizer(args[0]),) + tuple(args[1:])


def _install_activation_quant(module: nn.Module, quantizer: ActivationFakeQuant) -> None:
    already = ACTIVATION_QUANT_ATTR in module._modules
    setattr(module, ACTIVATION_QUANT_ATTR, quantizer)
    if not already:
        module.register_forward_pre_hook(_activation_pre_hook)


def _calibrate_absmax(
    model: nn.Module, modules: list[tuple[str, nn.Module]], calibration: torch.Tensor
) -> dict[str, float]:
    """max|input| of each module over a forward pass on ``calibration``."""
    seen: dict[str, float] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            if args and isinstance(args[0], torch.Tensor) and args[0].numel():
                value = float(args[0].detach().abs().max())
                seen[name] = max(seen.get(name, 0.0), value)

        return hook

    for name, module in modules:
        handles.append(module.register_forward_pre_hook(make_hook(name)))
    try:
        device = model_device(model)
        for chunk in calibration.split(_CALIBRATION_BATCH):
            model(chunk.to(device))
    finally:
        for h in handles:
            h.remove()
    return seen


@dataclass(frozen=True, repr=False)
class QuantizationConfig(WeightModification):
    """RTN fake quantization of every ``nn.Linear``/``Conv1D`` not skipped (see module docs)."""

    bits: int = 4
    symmetric: bool = True
    granularity: Literal["per_channel", "per_tensor", "per_group"] = "per_channel"
    group_size: int = 128
    activation: Literal["static_per_tensor", "dynamic_per_token"] | None = None
    activation_bits: int = 8
    skip: tuple[str, ...] = DEFAULT_SKIP
    targets: tuple[str, ...] | None = None
    activation_range: float = 8.0

    kind = "quantize"

    def _unused_fields(self) -> frozenset[str]:
        unused = set() if self.granularity == "per_group" else {"group_size"}
        if self.activation is None:
            unused |= {"activation_bits", "activation_range"}
        return frozenset(unused)

    def __post_init__(self) -> None:
        integer("bits", self.bits, 2, 8)
        flag("symmetric", self.symmetric)
        one_of("granularity", self.granularity, GRANULARITIES)
        positive_int("group_size", self.group_size)
        one_of("activation", self.activation, ACTIVATION_MODES)
        integer("activation_bits", self.activation_bits, 2, 16)
        object.__setattr__(self, "activation_range", number("activation_range", self.activation_range, 0.0, low_open=True))
        object.__setattr__(self, "skip", check_patterns(self.skip, "skip"))
        object.__setattr__(self, "targets", check_patterns(self.targets, "targets", allow_none=True))

    def _modify(self, model: nn.Module, calibration: torch.Tensor | None) -> None:
        modules = select_linears(model, self.targets, self.skip, check_skip=self.skip != DEFAULT_SKIP)
        for _name, module in modules:
            w = weight_out_in(module)
            w.copy_(fake_quantize_weight(w, self.bits, self.symmetric, self.granularity, self.group_size))
        if self.activation is None:
            return
        qmax = 2 ** (self.activation_bits - 1) - 1
        absmax: dict[str, float] = {}
        if self.activation == "static_per_tensor" and calibration is not None:
            if not isinstance(calibration, torch.Tensor) or calibration.dim() not in (1, 2):
                raise must_be("calibration", "a [batch, seq] tensor of token ids", calibration)
            if calibration.dim() == 1:
                calibration = calibration.unsqueeze(0)
            absmax = _calibrate_absmax(model, modules, calibration)
        for name, module in modules:
            bound = absmax.get(name) or self.activation_range
            _install_activation_quant(
                module, ActivationFakeQuant(self.activation, self.activation_bits, bound / qmax)
            )

    def describe(self) -> str:
        gran = {
            "per_tensor": "per-tensor",
            "per_channel": "per-channel",
            "per_group": f"per-group({self.group_size})",
        }[self.granularity]
        text = f"RTN int{self.bits} {'symmetric' if self.symmetric else 'asymmetric'} {gran} weights"
        if self.targets is not None:
            text += f", targets {','.join(self.targets)}"
        if self.skip:
            text += f", skip {','.join(self.skip)}"
        if self.activation is not None:
            mode = "static per-tensor" if self.activation == "static_per_tensor" else "dynamic per-token"
            text += f", int{self.activation_bits} {mode} activations"
        return text

    @property
    def strength(self) -> float:
        """``9 - bits`` plus small penalties for coarser scales, the symmetric grid and activation quant."""
        value = float(9 - self.bits)
        if self.granularity == "per_tensor":
            value += 0.5
        elif self.granularity == "per_channel":
            value += 0.25
        else:
            value += 0.25 * min(1.0, math.log2(self.group_size) / 10)
        if self.symmetric:
            value += 0.1
        if self.activation is not None:
            act = max(0.1, 9.0 - self.activation_bits)
            value += act if self.activation == "static_per_tensor" else act / 2
        return value


def quantize(
    model: nn.Module,
    bits: int = 4,
    symmetric: bool = True,
    granularity: str = "per_channel",
    group_size: int = 128,
    activation: str | None = None,
    activation_bits: int = 8,
    skip: tuple[str, ...] = DEFAULT_SKIP,
    targets: tuple[str, ...] | None = None,
    activation_range: float = 8.0,
    *,
    inplace: bool = False,
    calibration: torch.Tensor | None = None,
) -> nn.Module:
    """Return a copy of ``model`` with RTN fake-quantized weights (see :class:`QuantizationConfig`)."""
    # The arguments are the config's fields, in the same order.
    config = QuantizationConfig(bits, symmetric, granularity, group_size, activation,  # type: ignore[arg-type]
                                activation_bits, skip, targets, activation_range)
    return config.apply(model, inplace=inplace, calibration=calibration)
