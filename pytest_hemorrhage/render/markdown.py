"""Markdown: a table of a check's metrics, and the session file of many checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from .text import mitigation_cost
from .values import format_value as _fmt

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report

__all__ = ["render_markdown", "render_checks_markdown"]

_ICON = {"pass": "✅ pass", "fail": "❌ fail", "inconclusive": "⚠️ inconclusive", "info": "ℹ️ info"}


def render_markdown(report: "Report", title: str | None = None) -> str:
    """A Markdown section: verdict heading, one table row per metric, where the damage starts."""
    heading = title or report.name or "hemorrhage check"
    out = [f"### {heading}: {_ICON[report.verdict]}", "", "| metric | estimate | 95% CI | threshold | verdict |",
           "|---|---|---|---|---|"]
    for m in report.metrics.values():
        limit = "-" if m.threshold is None else ("≤ " if m.direction == "max" else "≥ ") + _fmt(m.name, m.threshold)
        at_least = "≥ " if m.bound == "lower" else ""
        out.append(f"| {m.label} | {at_least}{_fmt(m.name, m.estimate)} | {_fmt(m.name, m.ci_low)} – "
                   f"{_fmt(m.name, m.ci_high)} | {limit} | {_ICON[m.verdict]} |")
    first = report.first_bad_layer
    if first is not None:
        out += ["", f"First layer past threshold: `{first.name}` (SQNR {first.sqnr_db:.1f} dB)"]
    if report.nonfinite:
        out += ["", f"Non-finite values first in `{report.nonfinite['layer']}`"]
    cost = mitigation_cost(report)
    if cost:
        out += ["", cost[0].upper() + cost[1:]]
    return "\n".join(out) + "\n"


def render_checks_markdown(checks: Iterable[tuple[str, "Report"]]) -> str:
    """Every ``(label, report)`` of a session, one section each."""
    return "\n".join(render_markdown(report, title=label) for label, report in checks) or "No hemorrhage checks ran.\n"
