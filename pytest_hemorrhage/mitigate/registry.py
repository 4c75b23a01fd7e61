"""The mitigations :func:`~pytest_hemorrhage.mitigate.suggest.suggest` tries, by name, in order.

The four built-in ones are registered when this module is imported; :func:`register` adds a
user's own (any :class:`~pytest_hemorrhage.mitigate.Mitigator`), :func:`unregister` removes one.
"""

from __future__ import annotations

from ..arguments import must_be
from . import Mitigator
from . import decoding_calibration, dynamic_scaling, fallback, gradient_pruning

__all__ = ["MITIGATIONS", "register", "unregister"]

#: name -> mitigation, in the order ``suggest`` tries them.
MITIGATIONS: dict[str, Mitigator] = {}


def register(mitigator: Mitigator, *, replace: bool = False) -> Mitigator:
    """Add ``mitigator`` to the ones ``suggest`` tries (last); returns it.

    ``replace=True`` puts it in the place of a registered one of the same name.
    """
    name = getattr(mitigator, "name", None)
    methods = (getattr(mitigator, method, None) for method in ("applies", "mitigate"))
    if not isinstance(name, str) or not name or not all(callable(m) for m in methods):
        raise must_be("mitigator", "an object with a name (a non-empty str), applies(baseline, candidate) and "
                      "mitigate(baseline, candidate, calibration, thresholds, *, probes, **options)", mitigator,
                      "see pytest_hemorrhage.mitigate for an example")
    if name in MITIGATIONS and not replace:
        raise must_be("mitigator", "named unlike the registered ones", got=repr(name),
                      fix="pass replace=True to replace the registered one, or choose another name")
    MITIGATIONS[name] = mitigator
    return mitigator


def unregister(name: str) -> Mitigator:
    """Remove the mitigation called ``name``; returns it."""
    if name not in MITIGATIONS:
        raise must_be("name", f"a registered mitigation ({', '.join(MITIGATIONS)})", name)
    return MITIGATIONS.pop(name)


for _module in (gradient_pruning, dynamic_scaling, decoding_calibration, fallback):
    register(_module.MITIGATOR)
