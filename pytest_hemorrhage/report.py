"""Report: verdicts, per-metric and per-layer tables, and the versioned JSON form.

``to_dict()`` / ``to_json()`` is the machine-readable truth and ``Report.from_dict`` reads it back,
so a report survives a trip through a file or an xdist worker. The renderings (text, Markdown,
HTML) live in :mod:`pytest_hemorrhage.render`; the methods here delegate to it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Sequence

from .errors import InvalidArgument
from .render.html import render_html
from .render.markdown import render_markdown
from .render.text import describe_metric, headline, render_text
from .render.values import METRIC_INFO, metric_label
from .render.values import format_value as _fmt  # noqa: F401  (the name other modules format values with)

__all__ = ["MetricResult", "LayerResult", "Report", "SCHEMA_VERSION", "METRIC_INFO"]

SCHEMA_VERSION = 1

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _clean(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as strings so the file stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


# Entries that hold words, never numbers: read back as written even when they say "nan" or "inf".
_TEXT_KEYS = frozenset({"name", "title", "evidence", "description", "text", "metric", "threshold_key",
                        "direction", "verdict", "decision", "layer", "where", "bound", "bound_reason"})


def _restore(value: Any, key: str | None = None) -> Any:
    """The inverse of :func:`_clean`: ``"nan"`` / ``"inf"`` / ``"-inf"`` become floats, except as words."""
    if isinstance(value, str):
        return value if key in _TEXT_KEYS else _NONFINITE.get(value, value)
    if isinstance(value, dict):
        return {k: _restore(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v, key) for v in value]
    return value


@dataclass
class MetricResult:
    """One metric: estimate, confidence interval, threshold and verdict."""

    name: str
    estimate: float
    ci_low: float
    ci_high: float
    threshold: float | None = None
    threshold_key: str | None = None
    direction: str | None = None  # "max" or "min" when gated
    verdict: str = "info"  # pass | fail | inconclusive | info
    n_units: int = 0
    n_tokens: int = 0
    more_probes_needed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: "lower" when the estimate and interval are of a lower bound of the metric (a candidate that
    #: returns only its top log-probabilities); None when they are of the metric itself.
    bound: str | None = None

    @property
    def label(self) -> str:
        return metric_label(self.name)

    @property
    def unit(self) -> str:
        return METRIC_INFO.get(self.name, ("", ""))[1]

    def describe(self, with_ci: bool = True) -> str:
        """This metric in one sentence: estimate, interval, threshold, and what an inconclusive one needs."""
        return describe_metric(self, with_ci)


@dataclass
class LayerResult:
    """Activation metrics of one layer (decoder block or selected module)."""

    name: str
    index: int
    sqnr_db: float
    rel_error: float
    cosine: float
    n_tokens: int
    attention_js: list[float] | None = None  # per head, nats
    entropy_shift: list[float] | None = None  # per head, nats

    @property
    def attention_js_max(self) -> float | None:
        return max(self.attention_js) if self.attention_js else None


@dataclass
class Report:
    """The outcome of one comparison of a candidate against a baseline."""

    metrics: dict[str, MetricResult]
    layers: list[LayerResult] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)
    kind: str = "lm"
    kl_quantiles: dict[str, float] = field(default_factory=dict)
    by_tag: dict[str, dict[str, float]] = field(default_factory=dict)
    unmatched_layers: dict[str, list[str]] = field(default_factory=dict)
    nonfinite: dict[str, str] | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    suggestion: str | None = None
    name: str | None = None
    generation: dict[str, Any] | None = None  # greedy-continuation divergence, when measured
    sequential: dict[str, Any] | None = None  # early stopping: probes used, decision
    patterns: list[dict[str, Any]] = field(default_factory=list)  # diagnosis (diagnose.Pattern.to_dict)
    suggestions: list[dict[str, Any]] = field(default_factory=list)  # verified mitigations, best first
    # what the mitigation search cost: {"total_seconds": s, "seconds": {mitigation name: s}}, when it ran
    mitigation_time: dict[str, Any] | None = None

    # -------------------------------------------------------------- verdicts
    @property
    def verdicts(self) -> dict[str, str]:
        """Verdict of each gated metric (``pass``, ``fail`` or ``inconclusive``)."""
        out = {name: m.verdict for name, m in self.metrics.items() if m.verdict != "info"}
        if self.nonfinite:
            out["finite"] = "fail"
        return out

    @property
    def inconclusive_fails(self) -> bool:
        return bool(self.thresholds.get("inconclusive_fails", True))

    @property
    def passed(self) -> bool:
        bad = {"fail", "inconclusive"} if self.inconclusive_fails else {"fail"}
        return not any(v in bad for v in self.verdicts.values())

    @property
    def verdict(self) -> str:
        values = set(self.verdicts.values())
        if "fail" in values:
            return "fail"
        if "inconclusive" in values:
            return "inconclusive"
        return "pass"

    @property
    def first_bad_layer(self) -> LayerResult | None:
        """The first layer whose SQNR is below ``min_layer_sqnr_db``."""
        limit = self.thresholds.get("min_layer_sqnr_db")
        if limit is None:
            return None
        for layer in self.layers:
            if layer.sqnr_db < limit:
                return layer
        return None

    # -------------------------------------------------------------- tables
    def to_dataframe(self):
        """One row per metric: estimate, CI, threshold, verdict, units and tokens."""
        import pandas as pd

        rows = [
            {
                "metric": m.name, "estimate": m.estimate, "ci_low": m.ci_low, "ci_high": m.ci_high,
                "threshold": m.threshold, "direction": m.direction, "verdict": m.verdict,
                "n_units": m.n_units, "n_tokens": m.n_tokens,
            }
            for m in self.metrics.values()
        ]
        return pd.DataFrame(rows).set_index("metric")

    def layers_dataframe(self):
        """One row per layer: SQNR, relative error, cosine (and attention metrics when measured)."""
        import pandas as pd

        rows = []
        for layer in self.layers:
            row = {"layer": layer.name, "index": layer.index, "sqnr_db": layer.sqnr_db,
                   "rel_error": layer.rel_error, "cosine": layer.cosine, "n_tokens": layer.n_tokens}
            if layer.attention_js is not None:
                row["attention_js_max"] = max(layer.attention_js)
                row["attention_js_mean"] = sum(layer.attention_js) / len(layer.attention_js)
                row["entropy_shift_mean"] = sum(layer.entropy_shift or [0.0]) / max(1, len(layer.entropy_shift or []))
            rows.append(row)
        columns = ["layer", "index", "sqnr_db", "rel_error", "cosine", "n_tokens"]
        return pd.DataFrame(rows, columns=columns if not rows else None).set_index("layer")

    # -------------------------------------------------------------- renderings
    def to_dict(self) -> dict[str, Any]:
        first = self.first_bad_layer
        return _clean({
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "verdict": self.verdict,
            "passed": self.passed,
            "kind": self.kind,
            "metrics": [
                {
                    "name": m.name, "estimate": m.estimate, "ci_low": m.ci_low, "ci_high": m.ci_high,
                    "threshold": m.threshold, "threshold_key": m.threshold_key, "direction": m.direction,
                    "verdict": m.verdict, "n_units": m.n_units, "n_tokens": m.n_tokens,
                    "more_probes_needed": m.more_probes_needed, **({"extra": m.extra} if m.extra else {}),
                    **({"bound": m.bound} if m.bound else {}),
                }
                for m in self.metrics.values()
            ],
            "kl_quantiles": self.kl_quantiles,
            "layers": [asdict(layer) for layer in self.layers],
            "first_bad_layer": first.name if first else None,
            "unmatched_layers": self.unmatched_layers,
            "nonfinite": self.nonfinite,
            "by_tag": self.by_tag,
            "thresholds": self.thresholds,
            "identity": self.identity,
            "notes": self.notes,
            "suggestion": self.suggestion,
            "generation": self.generation,
            "sequential": self.sequential,
            "patterns": self.patterns,
            "suggestions": self.suggestions,
            "mitigation_time": self.mitigation_time,
        })

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Report":
        """The report that :meth:`to_dict` wrote (``"nan"`` / ``"inf"`` strings become floats again).

        The derived entries (``verdict``, ``passed``, ``first_bad_layer``) are computed again from
        the metrics and thresholds. A newer ``schema_version`` than this package reads is an error
        that names both versions.
        """
        if not isinstance(data, Mapping) or "metrics" not in data:
            raise InvalidArgument(
                f"Report.from_dict: expected the dict of Report.to_dict() (a hemorrhage report's JSON), got "
                f"{type(data).__name__}{' without a metrics entry' if isinstance(data, Mapping) else ''}"
            )
        version = data.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidArgument(f"Report.from_dict: schema_version must be a positive whole number, got {version!r}")
        if version > SCHEMA_VERSION:
            raise InvalidArgument(
                f"Report.from_dict: this report has schema version {version}, newer than the version this "
                f"pytest-hemorrhage reads ({SCHEMA_VERSION}); upgrade it (pip install -U pytest-hemorrhage) "
                "to read the report"
            )
        try:
            metrics = [MetricResult(**_restore(m)) for m in data["metrics"]]
            layers = [LayerResult(**_restore(layer)) for layer in data.get("layers", [])]
            free_form = {f.name for f in fields(cls)} - {"metrics", "layers"}
            kept_as_written = {"kind", "name", "identity", "nonfinite", "notes", "suggestion", "unmatched_layers"}
            rest = {k: data[k] if k in kept_as_written else _restore(data[k]) for k in free_form if k in data}
            return cls(metrics={m.name: m for m in metrics}, layers=layers, **rest)
        except (KeyError, TypeError) as exc:
            raise InvalidArgument(
                f"Report.from_dict: the report is damaged or was not written by Report.to_dict() ({exc}); "
                "write it again with report.to_json()"
            ) from None

    def to_json(self, indent: int | None = 2) -> str:
        """The versioned, machine-readable report (deterministic key order)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False, allow_nan=False)

    def headline(self) -> str:
        """The verdict line."""
        return headline(self)

    def to_text(self, advice: Sequence[str] = ()) -> str:
        """The assertion message: verdict line, other metrics, where the damage starts, the diagnosis.

        ``advice``: ways to accept a failure on purpose that fit the caller (a marker, a flag); the
        last line joins them. Front ends pass their own (see :mod:`pytest_hemorrhage.render.text`).
        """
        return render_text(self, advice)

    def __str__(self) -> str:
        return self.to_text()

    def to_markdown(self) -> str:
        """A Markdown table of the metrics (and the first bad layer)."""
        return render_markdown(self)

    def to_html(self) -> str:
        """A self-contained HTML page of this report (inline CSS, plots embedded as PNG)."""
        title = f"Model hemorrhage report: {self.name}" if self.name else "Model hemorrhage report"
        return render_html([(self.name or "hemorrhage check", self)], title=title)
