"""Plain tables for results that are not one report (attribution, localisation): text and Markdown."""

from __future__ import annotations

from typing import Any, Sequence

from .values import format_value

__all__ = ["text_table", "markdown_table", "metric_cell"]


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` under ``headers``, each column as wide as its widest cell, left-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` under ``headers`` as a GitHub Markdown table (``|`` in a cell is escaped)."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(headers), line(["---"] * len(headers)), *(line(row) for row in rows)])


def metric_cell(metric: Any) -> str:
    """A :class:`~pytest_hemorrhage.report.MetricResult`'s estimate and interval in one cell,
    ``0.0123 (0.0101-0.0148)``; ``-`` when absent."""
    if metric is None:
        return "-"
    mark = "≥ " if getattr(metric, "bound", None) == "lower" else ""
    low, high = format_value(metric.name, metric.ci_low), format_value(metric.name, metric.ci_high)
    return f"{mark}{format_value(metric.name, metric.estimate)} ({low}-{high})"
