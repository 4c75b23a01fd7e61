"""Several modifications applied in order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..arguments import must_be
from ._common import MODIFICATION_ATTR, Modification, copy_model
from .decoding import DecodedModel, DecodingConfig

__all__ = ["Composed"]


@dataclass(frozen=True)
class Composed(Modification):
    """Apply ``steps`` in order; a :class:`DecodingConfig`, if any, must be the single last step."""

    steps: tuple[Modification, ...]

    kind = "composed"

    def __post_init__(self) -> None:
        what = "a non-empty sequence of modification configs (QuantizationConfig, PruningConfig, ...)"
        try:
            steps = tuple(self.steps)
        except TypeError:
            raise must_be("steps", what, self.steps) from None
        if not steps or not all(isinstance(step, Modification) for step in steps):
            raise must_be("steps", what, self.steps)
        decoding = [i for i, s in enumerate(steps) if _has_decoding(s)]
        if decoding and decoding != [len(steps) - 1]:
            raise must_be("steps", "configs with at most one DecodingConfig, as the last step", self.steps,
                          f"move the DecodingConfig at position(s) {decoding} to the end")
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
