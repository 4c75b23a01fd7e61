"""Several modifications applied in order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InvalidArgument
from ._common import MODIFICATION_ATTR, Modification, copy_model
from .decoding import DecodedModel, DecodingConfig

__all__ = ["Composed"]


@dataclass(frozen=True)
class Composed(Modification):
    """Apply ``steps`` in order; a :class:`DecodingConfig`, if any, must be the single last step."""

    steps: tuple[Modification, ...]

    kind = "composed"

    def __post_init__(self) -> None:
        try:
            steps = tuple(self.steps)
        except TypeError:
            raise InvalidArgument(f"steps={self.steps!r} is not a sequence; allowed: modification configs") from None
        if not steps:
            raise InvalidArgument("steps=() is empty; allowed: at least one modification config")
        for step in steps:
            if not isinstance(step, Modification):
                raise InvalidArgument(
                    f"steps contains {step!r}; allowed: modification configs (QuantizationConfig, PruningConfig, ...)"
                )
        decoding = [i for i, s in enumerate(steps) if _has_decoding(s)]
        if decoding and decoding != [len(steps) - 1]:
            raise InvalidArgument(
                f"steps has a DecodingConfig at position(s) {decoding} of {len(steps)}; "
                "allowed: at most one, as the last step"
            )
        object.__setattr__(self, "steps", steps)

    def apply(self, model: nn.Module, inplace: bool = False, calibration: torch.Tensor | None = None) -> Any:
        """Copy once (unless ``inplace``), then apply every step in place; ``calibration`` goes to each step."""
        current: Any = copy_model(model, inplace)
        for step in self.steps:
            current = step.apply(current, inplace=True, calibration=calibration)
        if isinstance(current, DecodedModel):
            weight_steps = self._weight_steps()
            if weight_steps:
                record = weight_steps[0] if len(weight_steps) == 1 else Composed(weight_steps)
                setattr(current.model, MODIFICATION_ATTR, record)
            current.modification = self
        else:
            setattr(current, MODIFICATION_ATTR, self)
        return current

    def _weight_steps(self) -> tuple[Modification, ...]:
        last = self.steps[-1]
        if isinstance(last, DecodingConfig):
            return self.steps[:-1]
        if isinstance(last, Composed):
            return self.steps[:-1] + last._weight_steps()
        return self.steps

    def describe(self) -> str:
        return " + ".join(step.describe() for step in self.steps)

    @property
    def strength(self) -> float:
        """Sum of the steps' strengths."""
        return float(sum(step.strength for step in self.steps))


def _has_decoding(step: Modification) -> bool:
    return isinstance(step, DecodingConfig) or (
        isinstance(step, Composed) and any(_has_decoding(s) for s in step.steps)
    )
