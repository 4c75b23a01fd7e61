"""Mitigations: each takes a baseline and a damaged candidate and returns a new, repaired model.

Every mitigation works on copies (baseline and candidate are never touched) and returns a
:class:`Mitigation`: the new model plus a sentence and the numbers that say what it changed.
:func:`suggest` tries the ones that apply to a failing comparison and re-measures each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Mitigation"]


@dataclass
class Mitigation:
    """The outcome of one mitigation: a new model and what was changed to get it.

    ``name``: short identifier (``"gradient_pruning"``, ``"dynamic_scaling"``,
    ``"decoding_calibration"``, ``"fallback"``). ``model``: the repaired model (an
    ``nn.Module``, or a ``DecodedModel`` for decoding changes). ``description``: one
    sentence for people. ``details``: JSON-able numbers behind the description.
    """

    name: str
    model: Any
    description: str
    details: dict[str, Any] = field(default_factory=dict)
