"""Report: verdicts, per-metric and per-layer tables, and renderings (text, JSON, Markdown, HTML).

``to_json()`` is the machine-readable truth; every other rendering derives from the same data,
and ``Report.from_dict`` reads it back.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from .errors import InvalidArgument

__all__ = ["MetricResult", "LayerResult", "Report", "SCHEMA_VERSION", "METRIC_INFO"]

SCHEMA_VERSION = 1

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

# metric name -> (human label, unit, format)
METRIC_INFO: dict[str, tuple[str, str, str]] = {
    "kl": ("mean KL", "nats/token", "{:.4g}"),
    "top1": ("same top-1", "", "{:.2%}"),
    "topk": ("top-k overlap", "", "{:.2%}"),
    "ppl_ratio": ("PPL ratio", "", "{:.4f}"),
    "dnll": ("mean dNLL", "nats/token", "{:.4g}"),
    "rms_dp": ("RMS dp", "", "{:.4g}"),
    "output_sqnr_db": ("output SQNR", "dB", "{:.1f}"),
    "output_rel_error": ("output relative error", "", "{:.4g}"),
    "output_cosine": ("output cosine", "", "{:.5f}"),
    "label_agreement": ("label agreement", "", "{:.2%}"),
    "flip_rate": ("flip rate", "", "{:.2%}"),
}


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return METRIC_INFO.get(name, (name, "", "{:.4g}"))[2].format(value)


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
                        "direction", "verdict", "decision", "layer", "where"})


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

    @property
    def label(self) -> str:
        return METRIC_INFO.get(self.name, (self.name,))[0]

    @property
    def unit(self) -> str:
        return METRIC_INFO.get(self.name, ("", ""))[1]

    def describe(self, with_ci: bool = True) -> str:
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.label} {_fmt(self.name, self.estimate)}{unit}"
        if with_ci and math.isfinite(self.ci_low) and math.isfinite(self.ci_high) and self.ci_low != self.ci_high:
            level = self.extra.get("confidence", 0.95)
            text += f" ({level:.0%} CI {_fmt(self.name, self.ci_low)}-{_fmt(self.name, self.ci_high)})"
        if self.threshold is not None:
            if self.verdict == "fail":
                op = ">" if self.direction == "max" else "<"
                text += f" {op} {_fmt(self.name, self.threshold)} {'allowed' if self.direction == 'max' else 'required'}"
            else:
                word = "up to" if self.direction == "max" else "at least"
                text += f" ({word} {_fmt(self.name, self.threshold)} {'allowed' if self.direction == 'max' else 'required'})"
        if self.verdict == "inconclusive":
            text += " — inconclusive"
            if self.more_probes_needed:
                text += f": about {self.more_probes_needed} more probes would decide"
        return text


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
        if self.nonfinite:
            return (
                f"Model hemorrhage: the candidate produced non-finite values (NaN/Inf), first in "
                f"{self.nonfinite['layer']}"
            )
        gated = [m for m in self.metrics.values() if m.verdict != "info"]
        failing = [m for m in gated if m.verdict == "fail"] or [m for m in gated if m.verdict == "inconclusive"]
        if failing:
            word = "Model hemorrhage" if failing[0].verdict == "fail" else "Inconclusive"
            return f"{word}: {failing[0].describe()}"
        if not gated:
            return "No hemorrhage check was gated (every threshold is None)"
        main = gated[0]
        return f"No hemorrhage: {main.describe()}"

    def to_text(self) -> str:
        """The assertion message: verdict line, other metrics, where the damage starts, how to accept."""
        lines = [self.headline()]
        head_metric = None
        for m in self.metrics.values():
            if m.verdict in ("fail", "inconclusive"):
                head_metric = m.name
                break
        for m in self.metrics.values():
            if m.name == head_metric and not self.nonfinite:
                continue
            lines.append(f"  {m.describe()}" + (f"  [{m.verdict}]" if m.verdict != "info" else ""))
        if self.kl_quantiles and not self.nonfinite:
            q = self.kl_quantiles
            lines.append(
                "  KL per token: p50 {p50:.3g}, p90 {p90:.3g}, p99 {p99:.3g}, p99.9 {p99_9:.3g}, max {max:.3g}".format(**q)
            )
        first = self.first_bad_layer
        if first is not None:
            lines.append(f"first layer past threshold: {first.name} (SQNR {first.sqnr_db:.1f} dB)")
        elif self.layers and not self.passed and not self.nonfinite:
            worst = min(self.layers, key=lambda layer: layer.sqnr_db)
            lines.append(f"no layer below {self.thresholds.get('min_layer_sqnr_db')} dB SQNR; lowest: "
                         f"{worst.name} ({worst.sqnr_db:.1f} dB)")
        for side, names in self.unmatched_layers.items():
            if names:
                lines.append(f"layers only in the {side}: {', '.join(names)}")
        if self.generation:
            g = self.generation
            lines.append(
                f"  greedy continuations ({g['new_tokens']} tokens): first divergence at token "
                f"{g['first_divergence_mean']:.1f} on average, token agreement {g['token_agreement']:.1%}"
            )
        if self.sequential:
            q = self.sequential
            how = {"pass": "every gated metric clearly passes", "fail": "a metric clearly fails",
                   "continue": "no early decision"}[q["decision"]]
            lines.append(f"  sequential check: {q['probes_used']} of {q['probes_total']} probes used "
                         f"({q['fraction_used']:.0%}); {how}")
        for pattern in self.patterns:
            lines.append(f"pattern: {pattern['description']}")
        for note in self.notes:
            lines.append(f"note: {note}")
        if self.suggestion:
            lines.append(self.suggestion)
        if not self.passed:
            lines.append(
                "to accept this on purpose: loosen the threshold in @pytest.mark.hemorrhage(...), "
                "or rerun with --hemorrhage-update to re-record the snapshot"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def to_markdown(self) -> str:
        """A Markdown table of the metrics (and the worst layers)."""
        icon = {"pass": "✅ pass", "fail": "❌ fail", "inconclusive": "⚠️ inconclusive", "info": "ℹ️ info"}
        title = self.name or "hemorrhage check"
        out = [f"### {title}: {icon[self.verdict]}", "", "| metric | estimate | 95% CI | threshold | verdict |",
               "|---|---|---|---|---|"]
        for m in self.metrics.values():
            thr = "-" if m.threshold is None else ("≤ " if m.direction == "max" else "≥ ") + _fmt(m.name, m.threshold)
            out.append(
                f"| {m.label} | {_fmt(m.name, m.estimate)} | {_fmt(m.name, m.ci_low)} – {_fmt(m.name, m.ci_high)} "
                f"| {thr} | {icon[m.verdict]} |"
            )
        first = self.first_bad_layer
        if first is not None:
            out += ["", f"First layer past threshold: `{first.name}` (SQNR {first.sqnr_db:.1f} dB)"]
        if self.nonfinite:
            out += ["", f"Non-finite values first in `{self.nonfinite['layer']}`"]
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        """A self-contained HTML page of this report (inline CSS, plots embedded as PNG)."""
        from .html_report import render_html

        title = f"Model hemorrhage report: {self.name}" if self.name else "Model hemorrhage report"
        return render_html([{"nodeid": "", "report": self.to_dict()}], title=title)

    def summary_line(self) -> str:
        """A one-line summary for terminal tables."""
        parts = [f"{m.label} {_fmt(m.name, m.estimate)}" for m in self.metrics.values() if m.verdict != "info"][:3]
        return f"{self.verdict.upper():<12} " + ", ".join(parts)
