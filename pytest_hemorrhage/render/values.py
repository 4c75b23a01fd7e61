"""How a metric's value reads: its label, unit and number format."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["METRIC_INFO", "format_value", "metric_label"]

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


def metric_label(name: str) -> str:
    """The human label of metric ``name`` (the name itself for a metric without one)."""
    return METRIC_INFO.get(name, (name,))[0]


def format_value(name: str, value: Any) -> str:
    """``value`` of metric ``name`` in the metric's own format; ``-`` for None, ``nan`` / ``inf`` as such."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return METRIC_INFO.get(name, (name, "", "{:.4g}"))[2].format(value)
