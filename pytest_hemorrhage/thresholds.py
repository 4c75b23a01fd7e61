"""Thresholds: what a candidate must stay within, with validation and precedence.

Precedence when several sources set the same key: marker > command line > ini > defaults,
implemented once in :meth:`Thresholds.resolve` (the pytest plugin and the ``hemorrhage`` command
only gather the raw values). Every error names where the bad value came from
(``hemorrhage_max_kl in pytest.ini``, ``command line option --hemorrhage-max-kl``,
``@pytest.mark.hemorrhage``) and the bad key or value.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from .errors import InvalidArgument

__all__ = ["Thresholds", "THRESHOLD_SPECS", "MARKER", "option_name"]

MARKER = "@pytest.mark.hemorrhage"
"""How errors name a value that came from the marker."""


@dataclass(frozen=True)
class _Spec:
    metric: str  # the metric the threshold applies to
    direction: str  # "max": harm is a high value; "min": harm is a low value
    low: float  # allowed range of the threshold value itself
    high: float
    help: str


THRESHOLD_SPECS: dict[str, _Spec] = {
    "max_kl": _Spec("kl", "max", 0.0, math.inf, "mean KL(baseline || candidate) in nats per token"),
    "min_top1_agreement": _Spec("top1", "min", 0.0, 1.0, "fraction of tokens with the same top-1 prediction"),
    "min_topk_overlap": _Spec("topk", "min", 0.0, 1.0, "mean overlap of the top-k predictions"),
    "max_ppl_ratio": _Spec("ppl_ratio", "max", 1.0, math.inf, "perplexity ratio candidate / baseline"),
    "max_rms_dp": _Spec("rms_dp", "max", 0.0, 1.0, "RMS change of the real next token's probability"),
    "min_output_sqnr_db": _Spec("output_sqnr_db", "min", -math.inf, math.inf,
                                "SQNR of the output tensor (models without a next-token distribution)"),
    "min_output_cosine": _Spec("output_cosine", "min", -1.0, 1.0, "mean cosine similarity of output rows"),
    "min_label_agreement": _Spec("label_agreement", "min", 0.0, 1.0, "classifiers: fraction of equal labels"),
    "max_flip_rate": _Spec("flip_rate", "max", 0.0, 1.0, "labelled classifiers: (correct→wrong + wrong→correct) / n"),
}

# Non-gating settings that live beside the thresholds.
_SETTINGS = {
    "min_layer_sqnr_db": "layer SQNR below which a decoder block is reported as where the damage starts",
    "confidence": "two-sided confidence level of the intervals (0.5-0.999)",
    "inconclusive_fails": "whether an inconclusive verdict fails the check",
}


@dataclass(frozen=True)
class Thresholds:
    """Limits a candidate must stay within. ``None`` means "measured and reported, not gated".

    Defaults were chosen from measurements on SmolLM2-135M with 32 built-in probes (see the
    README): 8-bit per-channel weights measure KL 0.0032, top-1 97.2 %, PPL ratio 1.0001 and
    stay well inside them; 6-bit per-channel (KL 0.054), 4-bit and 30 % pruning fall outside.
    """

    max_kl: float | None = 0.02
    min_top1_agreement: float | None = 0.93
    min_topk_overlap: float | None = None
    max_ppl_ratio: float | None = 1.02
    max_rms_dp: float | None = None
    min_output_sqnr_db: float | None = 20.0
    min_output_cosine: float | None = None
    min_label_agreement: float | None = 0.98
    max_flip_rate: float | None = None
    min_layer_sqnr_db: float = 15.0
    confidence: float = 0.95
    inconclusive_fails: bool = True

    def __post_init__(self) -> None:
        for name, spec in THRESHOLD_SPECS.items():
            value = getattr(self, name)
            if value is None:
                continue
            _check_number(name, value, spec.low, spec.high, "Thresholds")
        _check_number("min_layer_sqnr_db", self.min_layer_sqnr_db, -math.inf, math.inf, "Thresholds")
        _check_number("confidence", self.confidence, 0.5, 0.999, "Thresholds")
        if not isinstance(self.inconclusive_fails, bool):
            raise InvalidArgument(
                f"Thresholds: inconclusive_fails must be True or False, got {self.inconclusive_fails!r}"
            )

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> "Thresholds":
        """A copy with ``changes`` applied (validated, unknown keys rejected)."""
        return self.merged(changes, source="Thresholds.replace")

    def merged(self, values: Mapping[str, Any], source: str) -> "Thresholds":
        """Apply ``values`` from ``source`` (named in any error) over these thresholds."""
        known = set(self.keys())
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidArgument(
                f"{source}: unknown threshold key{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(with_suggestion(key, known) for key in unknown)}; known keys: {', '.join(sorted(known))}"
            )
        parsed = {k: _parse_value(k, v, source) for k, v in values.items()}
        try:
            return dataclasses.replace(self, **parsed)
        except InvalidArgument as exc:
            raise InvalidArgument(str(exc).replace("Thresholds:", f"{source}:", 1)) from None

    def gated(self) -> dict[str, float]:
        """Thresholds that take part in the verdict, keyed by threshold name."""
        return {k: getattr(self, k) for k in THRESHOLD_SPECS if getattr(self, k) is not None}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def resolve(
        cls,
        marker: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        cli: Mapping[str, Any] | None = None,
        ini: Mapping[str, Any] | None = None,
        base: "Thresholds | None" = None,
        *,
        option_prefix: str = "--hemorrhage-",
        ini_file: str = "the ini file",
    ) -> "Thresholds":
        """Combine sources with precedence marker > command line > ini > ``base`` (defaults).

        ``ini`` and ``cli`` hold only the keys that were set (strings such as ``"0.02"`` or
        ``"none"`` are parsed). ``marker`` is one mapping, or several from the farthest marker to
        the closest (a class's, then the function's): the closest wins per key, and each is checked
        on its own, so a bad value is named even where a closer marker overrides it. Errors name the
        source: ``hemorrhage_<key> in <ini_file>``, ``command line option <option_prefix><key>``
        (underscores as dashes), or ``@pytest.mark.hemorrhage``.
        """
        result = base or cls()
        for key, value in (ini or {}).items():
            result = result.merged({key: value}, source=f"hemorrhage_{key} in {ini_file}")
        for key, value in (cli or {}).items():
            result = result.merged({key: value}, source=f"command line option {option_name(key, option_prefix)}")
        markers = [marker] if isinstance(marker, Mapping) else list(marker or ())
        closest: dict[str, Any] = {}
        for values in markers:
            cls().merged(values, source=MARKER)
            closest.update(values)
        return result.merged(closest, source=MARKER)


def option_name(key: str, prefix: str = "--hemorrhage-") -> str:
    """The command-line option of threshold ``key``: ``max_kl`` -> ``--hemorrhage-max-kl``."""
    return prefix + key.replace("_", "-")


def with_suggestion(key: str, known: Iterable[str]) -> str:
    """``key``, followed by the closest known key when one is close: a typo names its fix."""
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"{key} (did you mean {close[0]}?)" if close else key


def _check_number(name: str, value: Any, low: float, high: float, source: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidArgument(f"{source}: {name} must be a number, got {value!r}")
    if not (low <= value <= high):
        # A fraction written as a percentage (95 for 0.95) is the likely slip on a [0, 1] key.
        hint = f" (did you mean {value / 100:g}?)" if (low, high) == (0.0, 1.0) and 1 < value <= 100 else ""
        raise InvalidArgument(f"{source}: {name}={value!r} is outside the allowed range [{low}, {high}]{hint}")


def _parse_value(key: str, value: Any, source: str) -> Any:
    """Accept strings from ini / command line ("0.02", "none", "true")."""
    if isinstance(value, str):
        text = value.strip().lower()
        if key == "inconclusive_fails":
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise InvalidArgument(f"{source}: {key} must be true or false, got {value!r}")
        if text in ("none", "off", "") and key in THRESHOLD_SPECS:
            return None
        if text.endswith("%"):
            try:
                fraction = float(text[:-1]) / 100
            except ValueError:
                fraction = None
            if fraction is not None:
                raise InvalidArgument(f"{source}: {key} must be a number, not a percentage: {fraction:g}")
        try:
            return float(text)
        except ValueError:
            raise InvalidArgument(f"{source}: {key} must be a number (or 'none' to stop gating it), got {value!r}") from None
    return value

