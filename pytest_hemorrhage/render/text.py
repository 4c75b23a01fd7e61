"""The text of a report: one sentence per metric, the verdict line, the assertion message.

The message ends with how to accept the change on purpose. That advice depends on where the
check ran (a pytest marker, a command-line flag, a keyword argument), so each front end passes
its own ``advice``; the report itself never guesses.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from ..progress import format_seconds
from .values import format_value as _fmt

if TYPE_CHECKING:  # pragma: no cover
    from ..report import MetricResult, Report

__all__ = ["describe_metric", "headline", "render_text", "thresholds_to_loosen", "check_label", "mitigation_cost"]


def describe_metric(m: "MetricResult", with_ci: bool = True) -> str:
    """``mean KL 0.084 nats/token (95% CI 0.071-0.098) > 0.02 allowed`` and the like."""
    unit = f" {m.unit}" if m.unit else ""
    at_least = "≥ " if m.bound == "lower" else ""
    text = f"{m.label} {at_least}{_fmt(m.name, m.estimate)}{unit}"
    if with_ci and math.isfinite(m.ci_low) and math.isfinite(m.ci_high) and m.ci_low != m.ci_high:
        level = m.extra.get("confidence", 0.95)
        what = "of the lower bound " if m.bound == "lower" else ""
        text += f" ({level:.0%} CI {what}{_fmt(m.name, m.ci_low)}-{_fmt(m.name, m.ci_high)})"
    if m.threshold is not None:
        limit = f"{_fmt(m.name, m.threshold)} {'allowed' if m.direction == 'max' else 'required'}"
        if m.verdict == "fail":
            text += f" {'>' if m.direction == 'max' else '<'} {limit}"
        else:
            text += f" ({'up to' if m.direction == 'max' else 'at least'} {limit})"
    if m.verdict == "inconclusive":
        text += " — inconclusive"
        if m.extra.get("bound_reason"):
            text += f": only a lower bound is known ({m.extra['bound_reason']})"
        elif m.more_probes_needed:
            text += f": about {m.more_probes_needed} more probes would decide"
    return text


def _deciding_metric(report: "Report") -> "MetricResult | None":
    """The metric the verdict line names: the first failing one, else the first inconclusive one."""
    gated = [m for m in report.metrics.values() if m.verdict != "info"]
    failing = [m for m in gated if m.verdict == "fail"] or [m for m in gated if m.verdict == "inconclusive"]
    return failing[0] if failing else None


def headline(report: "Report") -> str:
    """The verdict line."""
    if report.nonfinite:
        return ("Model hemorrhage: the candidate produced non-finite values (NaN/Inf), first in "
                f"{report.nonfinite['layer']}")
    deciding = _deciding_metric(report)
    if deciding is not None:
        word = "Model hemorrhage" if deciding.verdict == "fail" else "Inconclusive"
        return f"{word}: {describe_metric(deciding)}"
    gated = [m for m in report.metrics.values() if m.verdict != "info"]
    if not gated:
        return "No hemorrhage check was gated (every threshold is None)"
    return f"No hemorrhage: {describe_metric(gated[0])}"


def thresholds_to_loosen(report: "Report") -> list[str]:
    """Threshold keys of the metrics that fail or are inconclusive, in report order."""
    return [m.threshold_key for m in report.metrics.values()
            if m.verdict in ("fail", "inconclusive") and m.threshold_key]


def render_text(report: "Report", advice: Sequence[str] = ()) -> str:
    """The assertion message: verdict line, other metrics, where the damage starts, the diagnosis.

    ``advice``: the ways to accept a failing result on purpose that fit the caller, e.g.
    ``["loosen the threshold in @pytest.mark.hemorrhage(max_kl=...)"]``; joined into one last line.
    """
    lines = [headline(report)]
    deciding = _deciding_metric(report)
    for m in report.metrics.values():
        if m is deciding and not report.nonfinite:
            continue  # already the verdict line
        lines.append(f"  {describe_metric(m)}" + (f"  [{m.verdict}]" if m.verdict != "info" else ""))
    if report.kl_quantiles and not report.nonfinite:
        lines.append("  KL per token: p50 {p50:.3g}, p90 {p90:.3g}, p99 {p99:.3g}, p99.9 {p99_9:.3g}, "
                     "max {max:.3g}".format(**report.kl_quantiles))
    lines += _where_it_starts(report)
    if report.generation:
        g = report.generation
        lines.append(f"  greedy continuations ({g['new_tokens']} tokens): first divergence at token "
                     f"{g['first_divergence_mean']:.1f} on average, token agreement {g['token_agreement']:.1%}")
    if report.sequential:
        q = report.sequential
        how = {"pass": "every gated metric clearly passes", "fail": "a metric clearly fails",
               "continue": "no early decision"}[q["decision"]]
        lines.append(f"  sequential check: {q['probes_used']} of {q['probes_total']} probes used "
                     f"({q['fraction_used']:.0%}); {how}")
    lines += [f"pattern: {pattern['description']}" for pattern in report.patterns]
    lines += [f"note: {note}" for note in report.notes]
    if report.suggestion:
        lines.append(report.suggestion)
    cost = mitigation_cost(report)
    if cost:
        lines.append(cost)
    if advice and not report.passed:
        lines.append("to accept this on purpose: " + ", or ".join(advice))
    return "\n".join(lines)


def mitigation_cost(report: "Report") -> str | None:
    """``mitigations tried in 6 min 12 s (fallback 4 min 48 s, gradient_pruning 83 s)``; None when none was tried."""
    timing = report.mitigation_time
    if not timing or not timing.get("seconds"):
        return None
    each = ", ".join(f"{name} {format_seconds(seconds)}" for name, seconds in timing["seconds"].items())
    return f"mitigations tried in {format_seconds(timing['total_seconds'])} ({each})"


def _where_it_starts(report: "Report") -> list[str]:
    lines = []
    first = report.first_bad_layer
    if first is not None:
        lines.append(f"first layer past threshold: {first.name} (SQNR {first.sqnr_db:.1f} dB)")
    elif report.layers and not report.passed and not report.nonfinite:
        worst = min(report.layers, key=lambda layer: layer.sqnr_db)
        lines.append(f"no layer below {report.thresholds.get('min_layer_sqnr_db')} dB SQNR; lowest: "
                     f"{worst.name} ({worst.sqnr_db:.1f} dB)")
    for side, names in report.unmatched_layers.items():
        if names:
            lines.append(f"layers only in the {side}: {', '.join(names)}")
    return lines


def check_label(nodeid: str, name: str | None) -> str:
    """A check's label in a session: the test id, plus the check's own name when it has one."""
    if not nodeid:
        return name or "hemorrhage check"
    return name if name and name.startswith(nodeid) else (f"{nodeid} ({name})" if name else nodeid)


def expected_failure_note(verdict: str, test_outcome: str | None) -> str | None:
    """Why a failing check is no alarm, from its test's outcome; None when it is one (or did not fail).

    ``test_outcome`` is the test's own result: ``passed``, ``failed``, ``xfailed`` or ``xpassed``.
    A test that passed around a failing check expected it (``pytest.raises``, ``assert not report.passed``).
    """
    if verdict != "fail":
        return None
    if test_outcome == "xfailed":
        return "xfail, expected"
    if test_outcome in ("passed", "xpassed"):
        return "expected by the test, which passed"
    return None
