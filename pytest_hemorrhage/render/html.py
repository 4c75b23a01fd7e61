"""A self-contained HTML report of hemorrhage checks: one file, no external resources.

Rendered from :class:`~pytest_hemorrhage.report.Report` objects (the pytest plugin turns each
recorded check's JSON form back into one, xdist workers' included). Plots are matplotlib PNGs
embedded as ``data:`` URIs; the CSS is inline; every piece of text goes through :func:`html.escape`.

    render_html([("test_q.py::test_int4", report), ...]) -> str
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .text import headline, mitigation_cost
from .values import METRIC_INFO

if TYPE_CHECKING:  # pragma: no cover
    from ..report import LayerResult, MetricResult, Report

__all__ = ["NEAR_THRESHOLD_DB", "render_html", "sqnr_figure", "sqnr_series"]

_VERDICTS = ("pass", "fail", "inconclusive")
_BADGE_TEXT = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "info": "info"}
_KL_KEYS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99_9", "p99.9"), ("max", "max"))
_LN2 = math.log(2.0)

# Plot colours (colour-blind safe pair for good / bad, plus neutral greys).
_BLUE, _RED, _ORANGE, _GREY = "#1f77b4", "#d62728", "#ff7f0e", "#7f7f7f"

#: Layers whose SQNR lies within this many dB of ``min_layer_sqnr_db`` get their value written on the
#: plot (at most ``_MAX_NEAR_LABELS`` of them, the closest): there the side of the line is hard to see.
NEAR_THRESHOLD_DB = 2.0
_MAX_NEAR_LABELS = 8

_CSS = """
:root { --pass: #1a7f37; --fail: #cf222e; --inc: #9a6700; --info: #57606a; --line: #d0d7de;
        --bg-soft: #f6f8fa; --text: #1f2328; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--text);
       margin: 0 auto; padding: 24px 32px 48px; max-width: 1400px; line-height: 1.45; font-size: 14px; }
h1 { font-size: 24px; margin: 0 0 12px; }
h2 { font-size: 18px; margin: 0; word-break: break-all; }
h3 { font-size: 14px; margin: 18px 0 6px; color: #424a53; text-transform: uppercase; letter-spacing: .04em; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
       background: var(--bg-soft); padding: 1px 4px; border-radius: 4px; }
table { border-collapse: collapse; margin: 4px 0 8px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--bg-soft); font-weight: 600; }
td.num { text-align: right; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
         white-space: nowrap; }
tr.bad td { background: #ffebe9; }
.badge { display: inline-block; padding: 2px 9px; border-radius: 12px; font-size: 12px; font-weight: 700;
         color: #fff; letter-spacing: .03em; white-space: nowrap; }
.badge.pass { background: var(--pass); } .badge.fail { background: var(--fail); }
.badge.inconclusive { background: var(--inc); } .badge.info { background: var(--info); font-weight: 500; }
.summary { display: flex; gap: 12px; flex-wrap: wrap; margin: 8px 0 16px; }
.stat { border: 1px solid var(--line); border-radius: 8px; padding: 10px 18px; min-width: 120px; background: #fff; }
.stat .n { font-size: 26px; font-weight: 700; display: block; }
.stat.pass .n { color: var(--pass); } .stat.fail .n { color: var(--fail); } .stat.inconclusive .n { color: var(--inc); }
.toc { margin: 0 0 24px; padding: 0; list-style: none; }
.toc li { margin: 3px 0; } .toc a { color: var(--text); text-decoration: none; word-break: break-all; }
.toc a:hover { text-decoration: underline; }
section.check { border: 1px solid var(--line); border-left: 6px solid var(--info); border-radius: 8px;
                padding: 16px 20px; margin: 0 0 24px; }
section.check.pass { border-left-color: var(--pass); } section.check.fail { border-left-color: var(--fail); }
section.check.inconclusive { border-left-color: var(--inc); }
.check-head { display: flex; gap: 12px; align-items: center; }
.headline { margin: 8px 0 0; font-weight: 600; }
.callout { border-radius: 6px; padding: 8px 12px; margin: 10px 0; background: var(--bg-soft);
           border: 1px solid var(--line); }
.callout.bad { background: #ffebe9; border-color: #ffcecb; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 540px), 1fr)); gap: 12px;
         margin-top: 8px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 6px; background: #fff; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 12px; color: #57606a; padding: 4px 4px 0; }
ul.notes { margin: 4px 0; padding-left: 20px; }
details > summary { cursor: pointer; color: #424a53; margin: 14px 0 4px; font-weight: 600; }
.muted { color: #57606a; }
.table-scroll { overflow-x: auto; max-width: 100%; }
@media (max-width: 600px) {
  body { padding: 12px 10px 32px; }
  section.check { padding: 12px 10px; }
  .stat { min-width: 0; padding: 8px 12px; }
}
"""


# ---------------------------------------------------------------------- values
def _num(value: Any) -> float | None:
    """A number to show or plot: None for anything that is not one (None, a bool, a string)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _metric_info(name: str) -> tuple[str, str, str]:
    return METRIC_INFO.get(name, (name, "", "{:.4g}"))


def _nonfinite(v: float) -> str | None:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return None


def _fmt(name: str, value: Any) -> str:
    v = _num(value)
    if v is None:
        return "-"
    return _nonfinite(v) or _metric_info(name)[2].format(v)


def _fmt_g(value: Any, digits: int = 3) -> str:
    v = _num(value)
    if v is None:
        return "-"
    return _nonfinite(v) or f"{v:.{digits}g}"


def _badge(verdict: str) -> str:
    v = verdict if verdict in _BADGE_TEXT else "info"
    return f'<span class="badge {v}">{_esc(_BADGE_TEXT[v])}</span>'


def _sqnr_threshold(report: "Report") -> float | None:
    return _num(report.thresholds.get("min_layer_sqnr_db"))


def _first_bad_name(report: "Report") -> str | None:
    first = report.first_bad_layer
    return first.name if first is not None else None


# ---------------------------------------------------------------------- plots
def sqnr_series(layers: Sequence["LayerResult"], threshold: float | None) -> dict[str, Any]:
    """Per-layer SQNR ready to plot: +inf (identical layers) clipped to a ceiling above the rest.

    Returns ``x`` (layer indices), ``y`` (plotted values, NaN where unknown), ``clipped`` (bools:
    the layer was +inf and is drawn at ``ceiling``), ``floor_clipped`` (-inf drawn at ``floor``),
    ``ceiling`` and ``floor``.
    """
    x = [layer.index for layer in layers]
    raw = [float(layer.sqnr_db) for layer in layers]
    finite = [v for v in raw if math.isfinite(v)]
    refs = finite + ([threshold] if threshold is not None and math.isfinite(threshold) else [])
    top = max(refs) if refs else 0.0
    bottom = min(refs) if refs else 0.0
    ceiling = 10.0 * math.ceil((top + 15.0) / 10.0)
    floor = 10.0 * math.floor((bottom - 15.0) / 10.0)
    y, clipped, floor_clipped = [], [], []
    for v in raw:
        clipped.append(v == math.inf)
        floor_clipped.append(v == -math.inf)
        y.append(ceiling if v == math.inf else floor if v == -math.inf else v)
    return {"x": x, "y": y, "clipped": clipped, "floor_clipped": floor_clipped, "ceiling": ceiling, "floor": floor}


def _new_figure(width: float = 6.4, height: float = 3.4):
    # A bare Figure with an explicit Agg canvas: no pyplot, no global backend state touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110, metadata={"Software": None}, facecolor="white")
    finally:
        fig.clear()
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _style_axes(ax) -> None:
    ax.grid(True, color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8.5)


def _layer_ticks(ax, x: Sequence[int]) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(12, max(1, len(x)))))
    if x:
        ax.set_xlim(min(x) - 0.5, max(x) + 0.5)


def sqnr_figure(report: "Report"):
    """The per-layer SQNR plot of ``report`` as a matplotlib Figure (None without layer data).

    Layers below ``min_layer_sqnr_db`` are drawn as crosses (gid ``sqnr-below``), the others as
    dots (gid ``sqnr-pass``): the shape tells them apart, not the colour alone. Finite values
    within :data:`NEAR_THRESHOLD_DB` of the threshold carry their value as a label.
    """
    layers = report.layers
    if not layers:
        return None
    threshold = _sqnr_threshold(report)
    gated = threshold is not None and math.isfinite(threshold)
    s = sqnr_series(layers, threshold)
    x, y = s["x"], s["y"]
    first_bad = _first_bad_name(report)
    fig = _new_figure()
    ax = fig.add_subplot()
    _style_axes(ax)
    ax.plot(x, y, color=_BLUE, linewidth=1.4, zorder=2)
    finite = [(xi, yi) for xi, yi, c, f in zip(x, y, s["clipped"], s["floor_clipped"])
              if not c and not f and math.isfinite(yi)]
    plain = [(xi, yi) for xi, yi in finite if not gated or yi >= threshold]
    low = [(xi, yi) for xi, yi in finite if gated and yi < threshold]
    if plain:
        ax.scatter(*zip(*plain), s=22, marker="o", color=_BLUE, zorder=3, gid="sqnr-pass",
                   label="layer SQNR" + (" (at or above threshold)" if gated else ""))
    if low:
        ax.scatter(*zip(*low), s=60, marker="X", color=_RED, edgecolors="white", linewidths=0.6, zorder=4,
                   gid="sqnr-below", label=f"below threshold ({len(low)} layer{'s' if len(low) != 1 else ''})")
    if gated:
        _label_near_threshold(ax, finite, threshold)
    inf_pts = [(xi, yi) for xi, yi, c in zip(x, y, s["clipped"]) if c]
    if inf_pts:
        ax.axhline(s["ceiling"], color=_GREY, linewidth=0.8, linestyle=":", zorder=1)
        ax.scatter(*zip(*inf_pts), s=40, marker="^", color=_GREY, zorder=3,
                   label=f"identical (SQNR = ∞, drawn at {s['ceiling']:g} dB)")
    ninf_pts = [(xi, yi) for xi, yi, f in zip(x, y, s["floor_clipped"]) if f]
    if ninf_pts:
        ax.scatter(*zip(*ninf_pts), s=40, marker="v", color=_RED, zorder=3,
                   label=f"SQNR = −∞ (drawn at {s['floor']:g} dB)")
    if gated:
        ax.axhline(threshold, color=_RED, linestyle="--", linewidth=1.1, zorder=1,
                   label=f"min layer SQNR ({threshold:g} dB)")
    if first_bad:
        for layer, xi, yi in zip(layers, x, y):
            if layer.name == first_bad and math.isfinite(yi):
                ax.scatter([xi], [yi], s=150, facecolors="none", edgecolors=_RED, linewidths=1.8, zorder=4,
                           label=f"first bad layer: {_short(first_bad)}")
                ax.axvline(xi, color=_RED, linewidth=0.8, alpha=0.35, zorder=1)
                break
    _layer_ticks(ax, x)
    finite_y = [v for v in y if math.isfinite(v)]
    if finite_y:
        lo, hi = min(finite_y + [threshold or finite_y[0]]), max(finite_y + [threshold or finite_y[0]])
        pad = max(5.0, 0.08 * (hi - lo))
        ax.set_ylim(lo - pad, hi + pad)
    if inf_pts:
        _label_ceiling_tick(ax, s["ceiling"])
    ax.set_xlabel("layer index (depth)", fontsize=9)
    ax.set_ylabel("SQNR (dB, higher is better)", fontsize=9)
    ax.set_title("Per-layer SQNR through depth", fontsize=10.5)
    _legend(fig, ax)
    return fig


def _label_near_threshold(ax, points: Sequence[tuple[int, float]], threshold: float) -> None:
    """Write the value beside the points closest to the threshold line, where the eye cannot tell
    on which side they lie: above the point when it passes, below it when it fails."""
    near = sorted((p for p in points if abs(p[1] - threshold) <= NEAR_THRESHOLD_DB),
                  key=lambda p: abs(p[1] - threshold))[:_MAX_NEAR_LABELS]
    for xi, yi in near:
        below = yi < threshold
        ax.annotate(f"{yi:.1f}", (xi, yi), xytext=(0, -9 if below else 6), textcoords="offset points",
                    ha="center", va="top" if below else "bottom", fontsize=7.5,
                    color=_RED if below else _BLUE, gid="sqnr-near-label")


def _plot_sqnr(report: "Report") -> str | None:
    fig = sqnr_figure(report)
    return None if fig is None else _png(fig)


def _label_ceiling_tick(ax, ceiling: float) -> None:
    """Replace the tick nearest the ceiling by '∞' so the clipped level reads as infinity."""
    from matplotlib.ticker import FixedLocator

    lo, hi = ax.get_ylim()
    ticks = [t for t in ax.get_yticks() if lo <= t < ceiling - 0.06 * (hi - lo)]
    ticks = sorted(ticks + [ceiling])
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.set_yticks(ticks, ["∞" if t == ceiling else f"{t:g}" for t in ticks])


def _legend(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        # Below the axes, so it never hides data points.
        fig.legend(handles, labels, loc="outside lower center", ncols=2 if len(handles) > 1 else 1,
                   fontsize=8, frameon=False)


def _short(name: str, limit: int = 40) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def _plot_kl(report: "Report") -> str | None:
    q = report.kl_quantiles
    points = [(label, _num(q.get(key))) for key, label in _KL_KEYS if key in q]
    points = [(label, v) for label, v in points if v is not None and math.isfinite(v)]
    if not points:
        return None
    kl = report.metrics.get("kl")
    mean = kl.estimate if kl is not None else None
    limit = kl.threshold if kl is not None else None
    labels = [label for label, _ in points]
    values = [v for _, v in points]
    fig = _new_figure()
    ax = fig.add_subplot()
    _style_axes(ax)
    ax.grid(False, axis="x")
    positive = [v for v in values if v > 0]
    refs = positive + [v for v in (mean, limit) if v is not None and math.isfinite(v) and v > 0]
    use_log = bool(positive) and len(positive) == len(values) and max(refs) / min(refs) > 30
    colours = [_ORANGE if label == "max" else _BLUE for label in labels]
    bars = ax.bar(range(len(values)), values, color=colours, width=0.6, zorder=2)
    if use_log:
        ax.set_yscale("log")
    for bar, v in zip(bars, values):
        ax.annotate(_fmt_g(v), (bar.get_x() + bar.get_width() / 2, bar.get_height() if v > 0 else 0),
                    xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=8)
    if mean is not None and math.isfinite(mean) and (mean > 0 or not use_log):
        ax.axhline(mean, color=_GREY, linestyle=":", linewidth=1.2, label=f"mean KL ({_fmt_g(mean)})")
    if limit is not None and math.isfinite(limit) and (limit > 0 or not use_log):
        ax.axhline(limit, color=_RED, linestyle="--", linewidth=1.1, label=f"max_kl, on the mean ({_fmt_g(limit)})")
    ax.set_xticks(range(len(values)), labels)
    ax.set_xlabel("per-token quantile", fontsize=9)
    ax.set_ylabel("KL (nats/token)" + (", log scale" if use_log else ""), fontsize=9)
    if not positive:
        ax.set_ylim(0, max([1e-3] + [v for v in (limit,) if v is not None and math.isfinite(v)]) * 1.25)
        ax.text(0.5, 0.55, "every token: KL = 0 (identical outputs)", transform=ax.transAxes, ha="center",
                fontsize=9, color=_GREY)
    elif use_log:
        # A decade of room below the smallest value, so the bars read as bars; room above for labels.
        ax.set_ylim(min(refs) / 10.0, max(refs) * 3.0)
    else:
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * 1.15)  # room for the value labels
    ax.set_title("Per-token KL distribution (quantiles)", fontsize=10.5)
    _legend(fig, ax)
    return _png(fig)


def _plot_attention(report: "Report") -> str | None:
    layers = [layer for layer in report.layers if layer.attention_js]
    if not layers:
        return None
    x = [layer.index for layer in layers]
    per_head = [[v for v in layer.attention_js or [] if math.isfinite(v)] for layer in layers]
    ymax = [max(h) if h else math.nan for h in per_head]
    ymean = [sum(h) / len(h) if h else math.nan for h in per_head]
    fig = _new_figure()
    ax = fig.add_subplot()
    _style_axes(ax)
    ax.plot(x, ymax, color=_RED, marker="o", markersize=4, linewidth=1.4, label="max over heads")
    ax.plot(x, ymean, color=_BLUE, marker="s", markersize=3, linewidth=1.0, alpha=0.8, label="mean over heads")
    top = max([v for v in ymax if math.isfinite(v)] or [0.0])
    if top > 0.5 * _LN2:
        ax.axhline(_LN2, color=_GREY, linestyle=":", linewidth=1.0, label="upper bound (ln 2)")
    if top <= 0:
        ax.set_ylim(0, 1e-3)
        ax.text(0.5, 0.55, "attention unchanged in every layer (JS = 0)", transform=ax.transAxes, ha="center",
                fontsize=9, color=_GREY)
    else:
        ax.set_ylim(0, top * 1.15 if top <= 0.5 * _LN2 else _LN2 * 1.08)
    _layer_ticks(ax, x)
    ax.set_xlabel("layer index (depth)", fontsize=9)
    ax.set_ylabel("attention JS divergence (nats)", fontsize=9)
    ax.set_title("Attention divergence per layer", fontsize=10.5)
    _legend(fig, ax)
    return _png(fig)


def _figure(src: str | None, alt: str, caption: str) -> str:
    if src is None:
        return ""
    return (f'<figure><img src="{src}" alt="{_esc(alt)}"><figcaption>{_esc(caption)}</figcaption></figure>')


# ---------------------------------------------------------------------- sections
def _table(cls: str, inner: str) -> str:
    """A table in its own horizontal scroller: on a narrow screen it scrolls, not the page."""
    return f'<div class="table-scroll"><table class="{cls}">{inner}</table></div>'


def _metric_row(m: "MetricResult") -> str:
    label, unit, _ = _metric_info(m.name)
    level = m.extra.get("confidence", 0.95)
    ci = f"{_fmt(m.name, m.ci_low)} – {_fmt(m.name, m.ci_high)}"
    limit = "-" if m.threshold is None else ("≤ " if m.direction == "max" else "≥ ") + _fmt(m.name, m.threshold)
    extra = ""
    if m.verdict == "inconclusive" and m.extra.get("bound_reason"):
        extra = f' <span class="muted">(only a lower bound is known: {_esc(m.extra["bound_reason"])})</span>'
    elif m.verdict == "inconclusive" and m.more_probes_needed:
        extra = f' <span class="muted">(~{_esc(m.more_probes_needed)} more probes would decide)</span>'
    at_least = "≥ " if m.bound == "lower" else ""
    cls = ' class="bad"' if m.verdict == "fail" else ""
    unit_html = f' <span class="muted">({_esc(unit)})</span>' if unit else ""
    ci_title = f"{level:.0%} CI" if isinstance(level, (int, float)) else f"{level} CI"
    return (
        f"<tr{cls}><td>{_esc(label)}{unit_html}</td>"
        f'<td class="num">{_esc(at_least + _fmt(m.name, m.estimate))}</td>'
        f'<td class="num">{_esc(ci)}</td><td class="num">{_esc(limit)}</td>'
        f"<td>{_badge(m.verdict)}{extra}</td>"
        f'<td class="num" title="{_esc(ci_title)}">{_esc(m.n_units)} / {_esc(m.n_tokens)}</td></tr>'
    )


def _metrics_table(report: "Report") -> str:
    rows = [_metric_row(m) for m in report.metrics.values()]
    if not rows:
        return '<p class="muted">No metrics.</p>'
    level = next((m.extra["confidence"] for m in report.metrics.values() if m.extra.get("confidence")), 0.95)
    head = (f"<tr><th>metric</th><th>estimate</th><th>{_esc(f'{level:.0%}')} CI</th><th>threshold</th>"
            "<th>verdict</th><th>probes / tokens</th></tr>")
    return _table("metrics", f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody>")


def _kl_table(report: "Report") -> str:
    q = report.kl_quantiles
    if not q:
        return ""
    head = "".join(f"<th>{_esc(label)}</th>" for key, label in _KL_KEYS if key in q)
    cells = "".join(f'<td class="num">{_esc(_fmt_g(q[key], 4))}</td>' for key, _ in _KL_KEYS if key in q)
    return ("<h3>KL per token (nats)</h3>"
            + _table("kl", f"<thead><tr>{head}</tr></thead><tbody><tr>{cells}</tr></tbody>"))


def _past(gate: "MetricResult | None", value: Any) -> bool:
    """Whether a per-tag point estimate lies past the check's threshold for that metric."""
    x = _num(value)
    if gate is None or gate.threshold is None or x is None:
        return False
    return x > gate.threshold if gate.direction == "max" else x < gate.threshold


def _by_tag_table(report: "Report") -> str:
    by_tag = report.by_tag
    if not by_tag:
        return ""
    gates = {name: m for name, m in report.metrics.items() if m.verdict != "info"}
    columns: list[str] = []
    for values in by_tag.values():
        for key in values:
            if key not in columns:
                columns.append(key)
    head = "<th>tag</th>" + "".join(f"<th>{_esc(_metric_info(c)[0])}</th>" for c in columns)
    rows = []
    for tag, values in by_tag.items():
        cells = []
        for c in columns:
            v = values.get(c)
            text = str(v) if c in ("n_units", "n_tokens") else _fmt(c, v)
            style = ' style="color: var(--fail); font-weight: 600"' if _past(gates.get(c), v) else ""
            cells.append(f'<td class="num"{style}>{_esc(text)}</td>')
        rows.append(f"<tr><td>{_esc(tag)}</td>{''.join(cells)}</tr>")
    return ("<h3>By probe tag</h3><p class=\"muted\">Values past the check's thresholds are in red "
            "(point estimates per tag, no confidence interval).</p>"
            + _table("by-tag", f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"))


def _layer_row(layer: "LayerResult", first_bad: str | None, threshold: float | None, with_attn: bool) -> str:
    bad = threshold is not None and layer.sqnr_db < threshold
    marker = ' <span class="badge fail">first bad</span>' if layer.name == first_bad else ""
    cells = [f'<td class="num">{_esc(layer.index)}</td>', f"<td><code>{_esc(layer.name)}</code>{marker}</td>",
             f'<td class="num">{_esc(_fmt("output_sqnr_db", layer.sqnr_db))}</td>',
             f'<td class="num">{_esc(_fmt_g(layer.rel_error, 4))}</td>',
             f'<td class="num">{_esc(_fmt("output_cosine", layer.cosine))}</td>']
    if with_attn:
        js, es = layer.attention_js or [], layer.entropy_shift or []
        cells.append(f'<td class="num">{_esc(_fmt_g(max(js), 4) if js else "-")}</td>')
        cells.append(f'<td class="num">{_esc(_fmt_g(sum(es) / len(es), 4) if es else "-")}</td>')
    cls = ' class="bad"' if bad else ""
    return f"<tr{cls}>{''.join(cells)}</tr>"


def _layers_table(report: "Report") -> str:
    """Per-layer metrics, open by default unless the check passed or the model is deep."""
    layers = report.layers
    if not layers:
        return ""
    first_bad, threshold = _first_bad_name(report), _sqnr_threshold(report)
    with_attn = any(layer.attention_js for layer in layers)
    head = ("<tr><th>#</th><th>layer</th><th>SQNR (dB)</th><th>relative error</th><th>cosine</th>"
            + ("<th>attention JS max</th><th>entropy shift mean</th>" if with_attn else "") + "</tr>")
    rows = [_layer_row(layer, first_bad, threshold, with_attn) for layer in layers]
    opened = " open" if len(layers) <= 16 and report.verdict != "pass" else ""
    return (f"<details{opened}><summary>Per-layer metrics ({len(layers)} layers)</summary>"
            + _table("layers", f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody>") + "</details>")


def _where_it_starts(report: "Report") -> str:
    parts = []
    if report.nonfinite:
        where = report.nonfinite.get("layer", "?")
        parts.append(f'<div class="callout bad">Non-finite values (NaN/Inf) first in <code>{_esc(where)}</code></div>')
    first = report.first_bad_layer
    threshold = report.thresholds.get("min_layer_sqnr_db")
    if first is not None:
        parts.append(
            f'<div class="callout bad">First layer past threshold: <code>{_esc(first.name)}</code> '
            f"(SQNR {_esc(_fmt('output_sqnr_db', first.sqnr_db))} dB &lt; {_esc(_fmt_g(threshold))} dB)</div>"
        )
    else:
        values = [(layer.sqnr_db, layer.name) for layer in report.layers if not math.isnan(layer.sqnr_db)]
        if values and all(v == math.inf for v, _ in values):
            parts.append('<div class="callout">Every layer is identical to the baseline (SQNR = ∞).</div>')
        elif values:
            worst = min(values, key=lambda t: t[0])
            parts.append(
                f'<div class="callout">No layer below {_esc(_fmt_g(threshold))} dB SQNR; lowest: '
                f"<code>{_esc(worst[1])}</code> ({_esc(_fmt('output_sqnr_db', worst[0]))} dB)</div>"
            )
    for side, names in report.unmatched_layers.items():
        if names:
            parts.append(f'<div class="callout">Layers only in the {_esc(side)}: '
                         + ", ".join(f"<code>{_esc(n)}</code>" for n in names) + "</div>")
    return "".join(parts)


def _notes(report: "Report") -> str:
    items = [f"<li>{_esc(n)}</li>" for n in report.notes]
    out = ""
    if items:
        out += f"<h3>Notes</h3><ul class=\"notes\">{''.join(items)}</ul>"
    if report.suggestion:
        out += f"<h3>Suggestion</h3><div class=\"callout\">{_esc(report.suggestion)}</div>"
    cost = mitigation_cost(report)
    if cost:
        out += f"<p>{_esc(cost[0].upper() + cost[1:])}</p>"
    return out


def _identity(report: "Report") -> str:
    identity, thresholds = report.identity, report.thresholds
    if not identity and not thresholds:
        return ""
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc('-' if v is None else v)}</td></tr>" for k, v in identity.items())
    trows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc('not gated' if v is None else v)}</td></tr>"
                    for k, v in thresholds.items())
    out = "<details><summary>Models, probes and thresholds</summary>"
    if rows:
        out += _table("identity", f"<tbody>{rows}</tbody>")
    if trows:
        out += _table("thresholds", f"<tbody>{trows}</tbody>")
    return out + "</details>"


def _check_section(index: int, label: str, report: "Report", plots: bool) -> str:
    verdict = report.verdict
    body = [
        f'<section class="check {verdict}" id="check-{index}">',
        f'<div class="check-head">{_badge(verdict)}<h2>{_esc(label)}</h2></div>',
        f'<p class="headline">{_esc(headline(report))}</p>',
        _where_it_starts(report),
        "<h3>Metrics</h3>",
        _metrics_table(report),
        _kl_table(report),
        _by_tag_table(report),
    ]
    if plots:
        figures = [
            _figure(_plot_sqnr(report), f"per-layer SQNR of {label}",
                    "SQNR of each layer's output against the baseline; the dashed line is min_layer_sqnr_db. "
                    "✕: a layer below it; ●: at or above it; values within "
                    f"{NEAR_THRESHOLD_DB:g} dB of the line are written beside their point."),
            _figure(_plot_kl(report), f"per-token KL quantiles of {label}",
                    "Quantiles of the per-token KL(baseline ‖ candidate); max_kl gates the mean."),
            _figure(_plot_attention(report), f"per-layer attention JS divergence of {label}",
                    "Jensen–Shannon divergence of attention rows, per layer (max and mean over heads)."),
        ]
        figures = [f for f in figures if f]
        if figures:
            body += ["<h3>Plots</h3>", f'<div class="plots">{"".join(figures)}</div>']
    else:
        body.append('<p class="muted">Plots need matplotlib (pip install matplotlib).</p>')
    body += [_layers_table(report), _notes(report), _identity(report), "</section>"]
    return "\n".join(part for part in body if part)


def _summary(checks: Sequence[tuple[str, "Report"]]) -> str:
    counts = {v: 0 for v in _VERDICTS}
    for _, report in checks:
        counts[report.verdict] += 1
    stats = [f'<div class="stat"><span class="n">{len(checks)}</span>check{"s" if len(checks) != 1 else ""}</div>']
    words = {"pass": "passed", "fail": "failed", "inconclusive": "inconclusive"}
    for v in _VERDICTS:
        stats.append(f'<div class="stat {v}"><span class="n">{counts[v]}</span>{words[v]}</div>')
    toc = "".join(f'<li>{_badge(report.verdict)} <a href="#check-{i}">{_esc(label)}</a></li>'
                  for i, (label, report) in enumerate(checks, 1))
    return (f'<div class="summary" id="summary">{"".join(stats)}</div>'
            + (f'<ul class="toc">{toc}</ul>' if toc else ""))


def render_html(checks: Iterable[tuple[str, "Report"]], title: str = "Model hemorrhage report") -> str:
    """One self-contained HTML page for ``checks``: ``(label, report)`` pairs, one section each.

    No external resources: inline CSS, plots as base64 PNG ``data:`` URIs, all text escaped.
    """
    checks = list(checks)
    try:
        import matplotlib  # noqa: F401

        plots = True
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        plots = False
    sections = [_check_section(i, label, report, plots) for i, (label, report) in enumerate(checks, 1)]
    body = "\n".join(sections) if sections else '<p class="muted">No hemorrhage checks ran.</p>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_esc(title)}</h1>\n{_summary(checks)}\n{body}\n</body>\n</html>\n"
    )
