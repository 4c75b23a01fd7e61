"""The one-line summary of a check in pytest's terminal summary."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report

__all__ = ["SummaryLine", "summary_line"]

# The metrics a summary line shows, when measured: (metric, short label, format).
_SHOWN = (("kl", "KL", "{:.4g}"), ("top1", "top-1", "{:.2%}"), ("ppl_ratio", "PPL ratio", "{:.4f}"),
          ("output_sqnr_db", "SQNR dB", "{:.1f}"), ("label_agreement", "labels", "{:.2%}"))
_COLOUR = {"pass": "green", "fail": "red"}


class SummaryLine(NamedTuple):
    """``verdict`` (upper case, padded to one column), its ``colour``, then the rest of the line."""

    verdict: str
    colour: str
    text: str


def summary_line(label: str, report: "Report", expected: str | None = None) -> SummaryLine:
    """``PASS         test_q.py::test_int8  KL 0.0032, top-1 97.20%, PPL ratio 1.0001``.

    ``expected``: why a failing check was expected (see ``expected_failure_note``); the verdict then
    reads e.g. ``FAIL (xfail, expected)`` in yellow instead of red.
    """
    parts = [f"{short} {fmt.format(report.metrics[name].estimate)}"
             for name, short, fmt in _SHOWN if name in report.metrics]
    first = report.first_bad_layer
    if first is not None:
        parts.append(f"first bad layer {first.name}")
    word, colour = report.verdict.upper(), _COLOUR.get(report.verdict, "yellow")
    if expected:
        word, colour = f"{word} ({expected})", "yellow"
    return SummaryLine(f"{word:<12} ", colour, f"{label}  " + ", ".join(parts))
