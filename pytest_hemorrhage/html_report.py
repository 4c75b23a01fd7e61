"""A self-contained HTML report of hemorrhage checks: one file, no external resources.

It is rendered from the JSON form of each report (``Report.to_dict()``), the machine-readable
truth, so the pytest plugin can render every check of a session, xdist workers' included.
Plots are matplotlib PNGs embedded as ``data:`` URIs; the CSS is inline; every piece of text
goes through :func:`html.escape`.

    render_html([{"nodeid": "test_q.py::test_int4", "report": report.to_dict()}, ...]) -> str
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["render_html", "check_label", "sqnr_series"]

_VERDICTS = ("pass", "fail", "inconclusive")
_BADGE_TEXT = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "info": "info"}
_KL_KEYS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99_9", "p99.9"), ("max", "max"))
_LN2 = math.log(2.0)

# Plot colours (colour-blind safe pair for good / bad, plus neutral greys).
_BLUE, _RED, _ORANGE, _GREY = "#1f77b4", "#d62728", "#ff7f0e", "#7f7f7f"

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
td.num { text-align: right; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
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
"""


# ---------------------------------------------------------------------- values
def _num(value: Any) -> float | None:
    """A number from the JSON form: floats, ints, and the strings "inf", "-inf", "nan"."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _metric_info(name: str) -> tuple[str, str, str]:
    from .report import METRIC_INFO

    return METRIC_INFO.get(name, (name, "", "{:.4g}"))


def _fmt(name: str, value: Any) -> str:
    v = _num(value)
    if v is None:
        return "-"
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return _metric_info(name)[2].format(v)


def _fmt_g(value: Any, digits: int = 3) -> str:
    v = _num(value)
    if v is None:
        return "-"
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.{digits}g}"


def check_label(check: Mapping[str, Any]) -> str:
    """The test id, plus the check's own name when it has one (as in the terminal summary)."""
    report = check.get("report") or {}
    name, nodeid = report.get("name"), check.get("nodeid") or ""
    if not nodeid:
        return name or "hemorrhage check"
    return name if name and name.startswith(nodeid) else (f"{nodeid} ({name})" if name else nodeid)


def _verdict(report: Mapping[str, Any]) -> str:
    v = report.get("verdict")
    return v if v in _VERDICTS else "info"


def _badge(verdict: str) -> str:
    v = verdict if verdict in _BADGE_TEXT else "info"
    return f'<span class="badge {v}">{_esc(_BADGE_TEXT[v])}</span>'


def _describe(m: Mapping[str, Any]) -> str:
    """The metric's sentence, worded as in the text report (MetricResult.describe)."""
    from .report import MetricResult

    def f(key: str) -> float:
        v = _num(m.get(key))
        return math.nan if v is None else v

    try:
        result = MetricResult(
            name=str(m.get("name")), estimate=f("estimate"), ci_low=f("ci_low"), ci_high=f("ci_high"),
            threshold=_num(m.get("threshold")), threshold_key=m.get("threshold_key"),
            direction=m.get("direction"), verdict=str(m.get("verdict", "info")),
            more_probes_needed=m.get("more_probes_needed"), extra=dict(m.get("extra") or {}),
        )
        return result.describe()
    except (TypeError, ValueError):
        return f"{m.get('name')} {_fmt(str(m.get('name')), m.get('estimate'))}"


def _headline(report: Mapping[str, Any]) -> str:
    nonfinite = report.get("nonfinite")
    if nonfinite:
        where = nonfinite.get("layer", "?") if isinstance(nonfinite, Mapping) else nonfinite
        return f"Model hemorrhage: the candidate produced non-finite values (NaN/Inf), first in {where}"
    gated = [m for m in report.get("metrics", []) if m.get("verdict", "info") != "info"]
    failing = ([m for m in gated if m.get("verdict") == "fail"]
               or [m for m in gated if m.get("verdict") == "inconclusive"])
    if failing:
        word = "Model hemorrhage" if failing[0].get("verdict") == "fail" else "Inconclusive"
        return f"{word}: {_describe(failing[0])}"
    if not gated:
        return "No hemorrhage check was gated (every threshold is None)"
    return f"No hemorrhage: {_describe(gated[0])}"


# ---------------------------------------------------------------------- plots
def sqnr_series(layers: Sequence[Mapping[str, Any]], threshold: float | None) -> dict[str, Any]:
    """Per-layer SQNR ready to plot: +inf (identical layers) clipped to a ceiling above the rest.

    Returns ``x`` (layer indices), ``y`` (plotted values, NaN where unknown), ``clipped`` (bools:
    the layer was +inf and is drawn at ``ceiling``), ``floor_clipped`` (-inf drawn at ``floor``),
    ``ceiling`` and ``floor``.
    """
    x = [int(layer.get("index", i)) for i, layer in enumerate(layers)]
    raw = [_num(layer.get("sqnr_db")) for layer in layers]
    raw = [math.nan if v is None else v for v in raw]
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


def _plot_sqnr(report: Mapping[str, Any]) -> str | None:
    layers = report.get("layers") or []
    if not layers:
        return None
    threshold = _num((report.get("thresholds") or {}).get("min_layer_sqnr_db"))
    s = sqnr_series(layers, threshold)
    x, y = s["x"], s["y"]
    first_bad = report.get("first_bad_layer")
    fig = _new_figure()
    ax = fig.add_subplot()
    _style_axes(ax)
    ax.plot(x, y, color=_BLUE, linewidth=1.4, zorder=2)
    plain = [(xi, yi) for xi, yi, c, f in zip(x, y, s["clipped"], s["floor_clipped"]) if not c and not f
             and math.isfinite(yi) and (threshold is None or yi >= threshold)]
    low = [(xi, yi) for xi, yi, c, f in zip(x, y, s["clipped"], s["floor_clipped"]) if not c and not f
           and math.isfinite(yi) and threshold is not None and yi < threshold]
    if plain:
        ax.scatter(*zip(*plain), s=22, color=_BLUE, zorder=3, label="layer SQNR")
    if low:
        ax.scatter(*zip(*low), s=22, color=_RED, zorder=3, label="below threshold")
    inf_pts = [(xi, yi) for xi, yi, c in zip(x, y, s["clipped"]) if c]
    if inf_pts:
        ax.axhline(s["ceiling"], color=_GREY, linewidth=0.8, linestyle=":", zorder=1)
        ax.scatter(*zip(*inf_pts), s=40, marker="^", color=_GREY, zorder=3,
                   label=f"identical (SQNR = ∞, drawn at {s['ceiling']:g} dB)")
    ninf_pts = [(xi, yi) for xi, yi, f in zip(x, y, s["floor_clipped"]) if f]
    if ninf_pts:
        ax.scatter(*zip(*ninf_pts), s=40, marker="v", color=_RED, zorder=3,
                   label=f"SQNR = −∞ (drawn at {s['floor']:g} dB)")
    if threshold is not None and math.isfinite(threshold):
        ax.axhline(threshold, color=_RED, linestyle="--", linewidth=1.1, zorder=1,
                   label=f"min layer SQNR ({threshold:g} dB)")
    if first_bad:
        for layer, xi, yi in zip(layers, x, y):
            if layer.get("name") == first_bad and math.isfinite(yi):
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
    return _png(fig)


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


def _plot_kl(report: Mapping[str, Any]) -> str | None:
    q = report.get("kl_quantiles") or {}
    points = [(label, _num(q.get(key))) for key, label in _KL_KEYS if key in q]
    points = [(label, v) for label, v in points if v is not None and math.isfinite(v)]
    if not points:
        return None
    metrics = {m.get("name"): m for m in report.get("metrics", [])}
    kl = metrics.get("kl", {})
    mean = _num(kl.get("estimate"))
    limit = _num(kl.get("threshold"))
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


def _plot_attention(report: Mapping[str, Any]) -> str | None:
    layers = [layer for layer in report.get("layers") or [] if layer.get("attention_js")]
    if not layers:
        return None
    x = [int(layer.get("index", i)) for i, layer in enumerate(layers)]
    per_head = [[_num(v) for v in layer["attention_js"]] for layer in layers]
    per_head = [[v for v in heads if v is not None and math.isfinite(v)] for heads in per_head]
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
def _metrics_table(report: Mapping[str, Any]) -> str:
    rows = []
    for m in report.get("metrics", []):
        name = str(m.get("name"))
        label, unit, _ = _metric_info(name)
        level = (m.get("extra") or {}).get("confidence", 0.95)
        lo, hi = _num(m.get("ci_low")), _num(m.get("ci_high"))
        ci = "-" if lo is None or hi is None else f"{_fmt(name, lo)} – {_fmt(name, hi)}"
        threshold = m.get("threshold")
        if _num(threshold) is None:
            thr = "-"
        else:
            thr = ("≤ " if m.get("direction") == "max" else "≥ ") + _fmt(name, threshold)
        verdict = str(m.get("verdict", "info"))
        extra = ""
        if verdict == "inconclusive" and m.get("more_probes_needed"):
            extra = f' <span class="muted">(~{_esc(m["more_probes_needed"])} more probes would decide)</span>'
        n = f"{_esc(m.get('n_units', '-'))} / {_esc(m.get('n_tokens', '-'))}"
        cls = ' class="bad"' if verdict == "fail" else ""
        unit_html = f' <span class="muted">({_esc(unit)})</span>' if unit else ""
        ci_title = f"{level:.0%} CI" if isinstance(level, (int, float)) else f"{level} CI"
        rows.append(
            f"<tr{cls}><td>{_esc(label)}{unit_html}</td>"
            f'<td class="num">{_esc(_fmt(name, m.get("estimate")))}</td>'
            f'<td class="num">{_esc(ci)}</td><td class="num">{_esc(thr)}</td>'
            f"<td>{_badge(verdict)}{extra}</td>"
            f'<td class="num" title="{_esc(ci_title)}">{n}</td></tr>'
        )
    if not rows:
        return '<p class="muted">No metrics.</p>'
    level = next(((m.get("extra") or {}).get("confidence") for m in report.get("metrics", [])
                  if (m.get("extra") or {}).get("confidence")), 0.95)
    head = (f"<tr><th>metric</th><th>estimate</th><th>{_esc(f'{level:.0%}')} CI</th><th>threshold</th>"
            "<th>verdict</th><th>probes / tokens</th></tr>")
    return f"<table class=\"metrics\"><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _kl_table(report: Mapping[str, Any]) -> str:
    q = report.get("kl_quantiles") or {}
    if not q:
        return ""
    head = "".join(f"<th>{_esc(label)}</th>" for key, label in _KL_KEYS if key in q)
    cells = "".join(f'<td class="num">{_esc(_fmt_g(q[key], 4))}</td>' for key, _ in _KL_KEYS if key in q)
    return ("<h3>KL per token (nats)</h3>"
            f"<table class=\"kl\"><thead><tr>{head}</tr></thead><tbody><tr>{cells}</tr></tbody></table>")


def _by_tag_table(report: Mapping[str, Any]) -> str:
    by_tag = report.get("by_tag") or {}
    if not by_tag:
        return ""
    gates = {m.get("name"): m for m in report.get("metrics", []) if m.get("verdict", "info") != "info"}
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
            gate = gates.get(c)
            bad = False
            if gate is not None and _num(v) is not None and _num(gate.get("threshold")) is not None:
                t, x = _num(gate["threshold"]), _num(v)
                bad = x > t if gate.get("direction") == "max" else x < t
            text = str(v) if c in ("n_units", "n_tokens") else _fmt(c, v)
            style = ' style="color: var(--fail); font-weight: 600"' if bad else ""
            cells.append(f'<td class="num"{style}>{_esc(text)}</td>')
        rows.append(f"<tr><td>{_esc(tag)}</td>{''.join(cells)}</tr>")
    return ("<h3>By probe tag</h3><p class=\"muted\">Values past the check's thresholds are in red "
            "(point estimates per tag, no confidence interval).</p>"
            f"<table class=\"by-tag\"><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _layers_table(report: Mapping[str, Any]) -> str:
    """Per-layer metrics, open by default unless the check passed or the model is deep."""
    layers = report.get("layers") or []
    if not layers:
        return ""
    first_bad = report.get("first_bad_layer")
    threshold = _num((report.get("thresholds") or {}).get("min_layer_sqnr_db"))
    with_attn = any(layer.get("attention_js") for layer in layers)
    head = ("<tr><th>#</th><th>layer</th><th>SQNR (dB)</th><th>relative error</th><th>cosine</th>"
            + ("<th>attention JS max</th><th>entropy shift mean</th>" if with_attn else "") + "</tr>")
    rows = []
    for layer in layers:
        sqnr = _num(layer.get("sqnr_db"))
        bad = sqnr is not None and threshold is not None and sqnr < threshold
        name = str(layer.get("name"))
        marker = ' <span class="badge fail">first bad</span>' if name == first_bad else ""
        cells = [f'<td class="num">{_esc(layer.get("index", ""))}</td>', f"<td><code>{_esc(name)}</code>{marker}</td>",
                 f'<td class="num">{_esc(_fmt("output_sqnr_db", sqnr))}</td>',
                 f'<td class="num">{_esc(_fmt_g(layer.get("rel_error"), 4))}</td>',
                 f'<td class="num">{_esc(_fmt("output_cosine", layer.get("cosine")))}</td>']
        if with_attn:
            js = [v for v in (_num(x) for x in layer.get("attention_js") or []) if v is not None]
            es = [v for v in (_num(x) for x in layer.get("entropy_shift") or []) if v is not None]
            cells.append(f'<td class="num">{_esc(_fmt_g(max(js), 4) if js else "-")}</td>')
            cells.append(f'<td class="num">{_esc(_fmt_g(sum(es) / len(es), 4) if es else "-")}</td>')
        cls = ' class="bad"' if bad else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    opened = " open" if len(layers) <= 16 and _verdict(report) != "pass" else ""
    return (f"<details{opened}><summary>Per-layer metrics ({len(layers)} layers)</summary>"
            f"<table class=\"layers\"><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></details>")


def _where_it_starts(report: Mapping[str, Any]) -> str:
    parts = []
    nonfinite = report.get("nonfinite")
    if nonfinite:
        where = nonfinite.get("layer", "?") if isinstance(nonfinite, Mapping) else nonfinite
        parts.append(f'<div class="callout bad">Non-finite values (NaN/Inf) first in <code>{_esc(where)}</code></div>')
    first_bad = report.get("first_bad_layer")
    threshold = (report.get("thresholds") or {}).get("min_layer_sqnr_db")
    layers = report.get("layers") or []
    if first_bad:
        sqnr = next((layer.get("sqnr_db") for layer in layers if layer.get("name") == first_bad), None)
        parts.append(
            f'<div class="callout bad">First layer past threshold: <code>{_esc(first_bad)}</code> '
            f"(SQNR {_esc(_fmt('output_sqnr_db', sqnr))} dB &lt; {_esc(_fmt_g(threshold))} dB)</div>"
        )
    elif layers:
        values = [(_num(layer.get("sqnr_db")), layer.get("name")) for layer in layers]
        values = [(v, n) for v, n in values if v is not None and not math.isnan(v)]
        if values and all(v == math.inf for v, _ in values):
            parts.append('<div class="callout">Every layer is identical to the baseline (SQNR = ∞).</div>')
        elif values:
            worst = min(values, key=lambda t: t[0])
            parts.append(
                f'<div class="callout">No layer below {_esc(_fmt_g(threshold))} dB SQNR; lowest: '
                f"<code>{_esc(worst[1])}</code> ({_esc(_fmt('output_sqnr_db', worst[0]))} dB)</div>"
            )
    for side, names in (report.get("unmatched_layers") or {}).items():
        if names:
            parts.append(f'<div class="callout">Layers only in the {_esc(side)}: '
                         + ", ".join(f"<code>{_esc(n)}</code>" for n in names) + "</div>")
    return "".join(parts)


def _notes(report: Mapping[str, Any]) -> str:
    items = [f"<li>{_esc(n)}</li>" for n in report.get("notes") or []]
    out = ""
    if items:
        out += f"<h3>Notes</h3><ul class=\"notes\">{''.join(items)}</ul>"
    if report.get("suggestion"):
        out += f"<h3>Suggestion</h3><div class=\"callout\">{_esc(report['suggestion'])}</div>"
    return out


def _identity(report: Mapping[str, Any]) -> str:
    identity = report.get("identity") or {}
    thresholds = report.get("thresholds") or {}
    if not identity and not thresholds:
        return ""
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc('-' if v is None else v)}</td></tr>" for k, v in identity.items())
    trows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc('not gated' if v is None else v)}</td></tr>"
                    for k, v in thresholds.items())
    out = "<details><summary>Models, probes and thresholds</summary>"
    if rows:
        out += f"<table class=\"identity\"><tbody>{rows}</tbody></table>"
    if trows:
        out += f"<table class=\"thresholds\"><tbody>{trows}</tbody></table>"
    return out + "</details>"


def _check_section(index: int, check: Mapping[str, Any], plots: bool) -> str:
    report = check.get("report") or {}
    verdict = _verdict(report)
    label = check_label(check)
    body = [
        f'<section class="check {verdict}" id="check-{index}">',
        f'<div class="check-head">{_badge(verdict)}<h2>{_esc(label)}</h2></div>',
        f'<p class="headline">{_esc(_headline(report))}</p>',
        _where_it_starts(report),
        "<h3>Metrics</h3>",
        _metrics_table(report),
        _kl_table(report),
        _by_tag_table(report),
    ]
    if plots:
        figures = [
            _figure(_plot_sqnr(report), f"per-layer SQNR of {label}",
                    "SQNR of each layer's output against the baseline; the dashed line is min_layer_sqnr_db."),
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


def _summary(checks: Sequence[Mapping[str, Any]]) -> str:
    counts = {v: 0 for v in _VERDICTS}
    for check in checks:
        v = _verdict(check.get("report") or {})
        if v in counts:
            counts[v] += 1
    stats = [f'<div class="stat"><span class="n">{len(checks)}</span>check{"s" if len(checks) != 1 else ""}</div>']
    words = {"pass": "passed", "fail": "failed", "inconclusive": "inconclusive"}
    for v in _VERDICTS:
        stats.append(f'<div class="stat {v}"><span class="n">{counts[v]}</span>{words[v]}</div>')
    toc = "".join(
        f'<li>{_badge(_verdict(c.get("report") or {}))} <a href="#check-{i}">{_esc(check_label(c))}</a></li>'
        for i, c in enumerate(checks, 1)
    )
    return (f'<div class="summary" id="summary">{"".join(stats)}</div>'
            + (f'<ul class="toc">{toc}</ul>' if toc else ""))


def render_html(checks: Iterable[Mapping[str, Any]], title: str = "Model hemorrhage report") -> str:
    """One self-contained HTML page for ``checks``: ``[{"nodeid": ..., "report": Report.to_dict()}]``.

    No external resources: inline CSS, plots as base64 PNG ``data:`` URIs, all text escaped.
    """
    checks = list(checks)
    try:
        import matplotlib  # noqa: F401

        plots = True
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        plots = False
    sections = [_check_section(i, c, plots) for i, c in enumerate(checks, 1)]
    body = "\n".join(sections) if sections else '<p class="muted">No hemorrhage checks ran.</p>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_esc(title)}</h1>\n{_summary(checks)}\n{body}\n</body>\n</html>\n"
    )
