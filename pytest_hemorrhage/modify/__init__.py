"""Model modifications that return a modified copy and describe themselves.

Each modification is a frozen dataclass config with ``apply(model, inplace=False)``,
``describe()``, ``strength`` and ``to_dict()``; the returned model carries the
config as ``model.hemorrhage_modification``. Convenience functions build a
config and apply it in one call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidArgument
from ._common import DEFAULT_SKIP, MODIFICATION_ATTR, Modification, find_decoder_blocks
from .composed import Composed
from .decoding import DecodedModel, DecodingConfig, effective_log_probs, generate_greedy
from .expand import ExpansionConfig, expand
from .importance import ImportancePruning, prune_by_importance
from .lowrank import LowRankConfig, low_rank
from .prune import PruningConfig, prune
from .quantize import QuantizationConfig, quantize

__all__ = [
    "DEFAULT_SKIP",
    "MODIFICATION_ATTR",
    "Modification",
    "QuantizationConfig",
    "PruningConfig",
    "LowRankConfig",
    "ExpansionConfig",
    "ImportancePruning",
    "DecodingConfig",
    "DecodedModel",
    "Composed",
    "quantize",
    "prune",
    "low_rank",
    "expand",
    "prune_by_importance",
    "effective_log_probs",
    "generate_greedy",
    "find_decoder_blocks",
    "modification_from_dict",
]

_KINDS: dict[str, type[Modification]] = {
    cls.kind: cls
    for cls in (
        QuantizationConfig, PruningConfig, ImportancePruning, LowRankConfig, ExpansionConfig, DecodingConfig, Composed
    )
}


def modification_from_dict(data: Mapping[str, Any]) -> Modification:
    """Rebuild a config from :meth:`Modification.to_dict` output (e.g. read back from JSON)."""
    if not isinstance(data, Mapping) or data.get("kind") not in _KINDS:
        kind = data.get("kind") if isinstance(data, Mapping) else None
        raise InvalidArgument(f"data has kind={kind!r}; allowed: a mapping with kind in {sorted(_KINDS)}")
    fields = {k: v for k, v in data.items() if k != "kind"}
    if data["kind"] == "composed":
        return Composed(tuple(modification_from_dict(step) for step in fields.get("steps", ())))
    # JSON turns tuples into lists; the configs normalise sequences back to tuples.
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    try:
        return _KINDS[data["kind"]](**fields)
    except TypeError as exc:
        raise InvalidArgument(f"data={dict(data)!r} does not fit {data['kind']!r}: {exc}") from None
