"""Mitigations: each takes a baseline and a damaged candidate and returns a new, repaired model.

Every mitigation works on copies (baseline and candidate are never touched) and returns a
:class:`Mitigation`: the new model plus a sentence and the numbers that say what it changed.
:func:`~pytest_hemorrhage.mitigate.suggest.suggest` tries the ones that apply to a failing
comparison and re-measures each.

All mitigations share one protocol, :class:`Mitigator`: a ``name``, ``applies(baseline,
candidate)`` (an :class:`Applies`, false with the reason when the mitigation cannot repair this
pair) and ``mitigate(baseline, candidate, calibration, thresholds, *, probes, **options)``.
``suggest`` tries every registered one the same way. To add your own, write an object with
those three members and register it::

    import copy

    from pytest_hemorrhage.mitigate import Applies, Mitigation
    from pytest_hemorrhage.mitigate.registry import register

    class RestoreHead:
        name = "restore_head"

        def applies(self, baseline, candidate):
            if not hasattr(candidate, "lm_head"):
                return Applies.no("the candidate has no lm_head")
            return Applies.yes()

        def mitigate(self, baseline, candidate, calibration, thresholds, *, probes=None, **options):
            model = copy.deepcopy(candidate)
            model.lm_head.load_state_dict(baseline.lm_head.state_dict())
            return Mitigation(self.name, model, "restored the output head to the baseline's weights")

    register(RestoreHead())

``calibration`` holds probes to fit on, kept apart from the evaluation ``probes`` that judge
the result (a mitigation that searches against the check itself, like ``fallback``, uses
``probes``); ``thresholds`` are the failing check's. ``SimpleMitigator(name, applies, mitigate)``
builds one from two functions. ``unregister(name)`` removes one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

__all__ = ["Mitigation", "Applies", "Mitigator", "SimpleMitigator"]


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


@dataclass(frozen=True)
class Applies:
    """Whether a mitigation can repair a pair; true when it can, else ``reason`` says why not."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok

    @classmethod
    def yes(cls) -> "Applies":
        """The mitigation applies."""
        return cls(True)

    @classmethod
    def no(cls, reason: str) -> "Applies":
        """The mitigation does not apply, because ``reason`` (a clause for people)."""
        return cls(False, reason)


@runtime_checkable
class Mitigator(Protocol):
    """What :func:`~pytest_hemorrhage.mitigate.suggest.suggest` needs of a mitigation.

    ``applies`` may return a plain bool (no reason is then shown) or an :class:`Applies`.
    ``mitigate`` works on copies and returns a :class:`Mitigation` named ``name``; it raises
    ``InvalidArgument`` or ``HemorrhageError`` when it cannot repair the pair after all.
    """

    name: str

    def applies(self, baseline: Any, candidate: Any) -> Applies | bool: ...

    def mitigate(self, baseline: Any, candidate: Any, calibration: Any, thresholds: Any, *,
                 probes: Any = None, **options: Any) -> Mitigation: ...


@dataclass(frozen=True)
class SimpleMitigator:
    """A :class:`Mitigator` made of two functions with the protocol's signatures."""

    name: str
    applies: Callable[[Any, Any], Applies | bool]
    mitigate: Callable[..., Mitigation]
