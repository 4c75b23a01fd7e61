"""The self-contained HTML report: structure, embedded plots, escaping, summary, plugin and CLI."""

from __future__ import annotations

import base64
import copy
import math
import re
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import hypothesis  # noqa: F401  (imported here so in-process pytester runs find it loaded)
import numpy as np
import pytest
from matplotlib.markers import MarkerStyle
from model_folders import break_block, save_model_folder
from tiny_models import llama_and_probes, tiny_llama

import pytest_hemorrhage as ph
from pytest_hemorrhage.cli import main
from pytest_hemorrhage.render.html import NEAR_THRESHOLD_DB, render_html, sqnr_figure, sqnr_series
from pytest_hemorrhage.render.text import check_label
from pytest_hemorrhage.report import LayerResult, Report

TESTS_DIR = Path(__file__).resolve().parent
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Parses a page, checking that every element is closed in order; collects elements and text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.decl: list[str] = []
        self.text_parts: list[str] = []
        self._stat: list[str] | None = None
        self._stat_depth = 0
        self.stats: dict[str, str] = {}
        self.headings: list[str] = []  # the text of every <h2>: one per check
        self._h2: list[str] | None = None
        self.feed(text)
        self.close()
        if self.stack:
            self.errors.append(f"unclosed elements at the end: {self.stack}")

    def handle_decl(self, decl: str) -> None:
        self.decl.append(decl)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if tag in VOID:
            return
        self.stack.append(tag)
        if tag == "h2":
            self._h2 = []
        if tag == "div" and "stat" in (attrs.get("class") or "").split():
            self._stat = [attrs["class"]]
            self._stat_depth = len(self.stack)

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in VOID:
            self.errors.append(f"end tag for void element <{tag}>")
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> does not close the open <{self.stack[-1] if self.stack else None}>")
            return
        if tag == "h2" and self._h2 is not None:
            self.headings.append("".join(self._h2))
            self._h2 = None
        if self._stat is not None and len(self.stack) == self._stat_depth:
            cls, *words = self._stat
            self.stats[cls] = " ".join("".join(words).split())
            self._stat = None
        self.stack.pop()

    def handle_data(self, data):
        self.text_parts.append(data)
        if self._h2 is not None:
            self._h2.append(data)
        if self._stat is not None:
            self._stat.append(data + " ")

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if t == tag and (cls is None or cls in (a.get("class") or "").split())]


def parse(text: str) -> Page:
    page = Page(text)
    assert page.errors == []
    assert page.decl and page.decl[0].lower() == "doctype html"
    for tag in ("html", "head", "meta", "title", "style", "body", "h1"):
        assert page.find(tag), f"no <{tag}>"
    return page


@pytest.fixture(scope="module")
def reports():
    model, ids, tagged = llama_and_probes()
    harmful = break_block(model, 1)
    return {
        "pass": ph.compare(model, copy.deepcopy(model), ids, name="test_q.py::test_identity"),
        "fail": ph.compare(model, harmful, tagged, name="test_q.py::test_harmful"),
        "attention": ph.compare(model, break_block(model, 2, scale=3.0), ids, attention=True,
                                name="test_q.py::test_attention"),
    }


def _check(report, nodeid=None):
    """A ``(label, report)`` pair as the plugin renders it: the label from the test id and the report's name."""
    return check_label(nodeid if nodeid is not None else report.name, report.name), report


def _images(page: Page) -> list[bytes]:
    out = []
    for attrs in page.find("img"):
        src = attrs.get("src") or ""
        assert src.startswith("data:image/png;base64,"), src[:60]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG_MAGIC)
        out.append(data)
    return out


def test_one_failing_check_has_every_part(reports):
    report = reports["fail"]
    assert report.verdict == "fail" and report.first_bad_layer.name == "model.layers.1"
    text = render_html([_check(report)])
    page = parse(text)
    (section,) = page.find("section", "check")
    assert section["id"] == "check-1" and "fail" in section["class"].split()
    assert page.find("span", "badge")
    body = page.text
    assert "test_q.py::test_harmful" in body
    assert report.headline() in body  # the same verdict line as the assertion message
    assert "First layer past threshold" in body and "model.layers.1" in body
    # metrics table: every metric, with CI, threshold and verdict columns
    assert page.find("table", "metrics")
    for header in ("metric", "estimate", "95% CI", "threshold", "verdict"):
        assert header in body
    for metric in report.metrics.values():
        assert metric.label in body
    assert "≥ 93.00%" in body and "≤ 0.02" in body
    # KL quantiles, per-tag table, per-layer table with the first bad layer marked
    assert page.find("table", "kl") and "p99.9" in body
    assert page.find("table", "by-tag") and "code" in body and "prose" in body
    assert page.find("table", "layers") and "first bad" in body
    # SQNR and KL plots (no attention measured)
    assert len(_images(page)) == 2
    assert {a["alt"] for a in page.find("img")} == {
        "per-layer SQNR of test_q.py::test_harmful", "per-token KL quantiles of test_q.py::test_harmful"}


def test_attention_metrics_add_a_plot_and_columns(reports):
    page = parse(render_html([_check(reports["attention"])]))
    assert len(_images(page)) == 3
    assert any("attention JS divergence" in (a.get("alt") or "") for a in page.find("img"))
    assert "attention JS max" in page.text


def test_self_contained_no_network_references(reports):
    text = render_html([_check(r) for r in reports.values()])
    page = parse(text)
    assert not page.find("script") and not page.find("link") and not page.find("iframe")
    for tag, attrs in page.elements:
        for key in ("src", "href", "srcset", "action", "data"):
            value = attrs.get(key)
            if value is not None:
                assert not re.match(r"\s*(https?:)?//", value, re.I), (tag, key, value[:80])
                assert value.startswith(("data:image/png;base64,", "#")), (tag, key, value[:80])
    assert "http://" not in text and "https://" not in text
    assert "@import" not in text and "url(" not in text
    assert len(_images(page)) == 7  # 2 + 2 + 3


def test_text_is_escaped(reports):
    report = copy.deepcopy(reports["fail"])
    report.name = 'evil "<img src=x onerror=alert(1)>" & co'
    report.notes = ["<b>not bold</b>"]
    report.suggestion = "restore <layers> 1 & 2"
    report.by_tag = {"<tag>": {"n_units": 1, "n_tokens": 5, "kl": 0.1}}
    check = _check(report, nodeid="test_x.py::test_<script>alert('x')</script>")
    text = render_html([check], title="<title> & more")
    page = parse(text)
    assert not page.find("script") and not page.find("b")
    assert [a["src"][:5] for a in page.find("img")] == ["data:", "data:"]  # only the plots
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "&amp; co" in text
    # the parsed text reads as the original characters
    assert page.headings == ["test_x.py::test_<script>alert('x')</script> (evil \"<img src=x onerror=alert(1)>\" & co)"]
    assert "<b>not bold</b>" in page.text and "restore <layers> 1 & 2" in page.text and "<tag>" in page.text
    assert page.find("title") and "<title> & more" in page.text


def test_inf_sqnr_of_identical_layers_is_clipped_and_labelled(reports):
    report = reports["pass"]
    assert all(layer.sqnr_db == math.inf for layer in report.layers)
    data = report.to_dict()
    assert {layer["sqnr_db"] for layer in data["layers"]} == {"inf"}
    series = sqnr_series(report.layers, 15.0)
    assert all(series["clipped"]) and all(v == series["ceiling"] for v in series["y"])
    assert series["ceiling"] > 15.0 and math.isfinite(series["ceiling"])
    page = parse(render_html([_check(report)]))
    assert "Every layer is identical to the baseline (SQNR = ∞)" in page.text
    assert "∞" in page.text and len(_images(page)) == 2


def test_sqnr_series_mixes_finite_infinite_and_missing_values():
    layers = [LayerResult(f"block{i}", i, sqnr, rel_error=math.nan, cosine=0.5, n_tokens=3)
              for i, sqnr in enumerate([math.inf, 42.0, math.nan, -math.inf, -3.5])]
    s = sqnr_series(layers, 15.0)
    assert s["x"] == [0, 1, 2, 3, 4]
    assert s["clipped"] == [True, False, False, False, False]
    assert s["floor_clipped"] == [False, False, False, True, False]
    assert s["ceiling"] > 42.0 and s["floor"] < -3.5
    assert s["y"][0] == s["ceiling"] and s["y"][1] == 42.0 and math.isnan(s["y"][2]) and s["y"][3] == s["floor"]
    # and a report made of such values renders
    report = Report(metrics={}, layers=layers, thresholds={"min_layer_sqnr_db": 15.0}, name="odd",
                    kl_quantiles={"p50": 0.0, "p90": 0.1, "p99": math.inf, "p99_9": math.nan, "max": 2.0},
                    nonfinite={"layer": "block3", "where": "output"})
    assert report.verdict == "fail" and report.first_bad_layer.name == "block3"
    page = parse(render_html([_check(report, nodeid="t.py::odd")]))
    assert "Non-finite values" in page.text and "NaN" in page.text and len(_images(page)) == 2


def test_summary_counts_every_verdict(reports):
    maybe = copy.deepcopy(reports["pass"])
    maybe.name = "test_q.py::test_maybe"
    maybe.metrics["kl"].verdict = "inconclusive"
    assert maybe.verdict == "inconclusive"
    checks = [_check(reports["pass"]), _check(reports["fail"]), _check(maybe), _check(reports["attention"])]
    page = parse(render_html(checks))
    assert page.stats == {"stat": "4 checks", "stat pass": "1 passed", "stat fail": "2 failed",
                          "stat inconclusive": "1 inconclusive"}
    sections = page.find("section", "check")
    assert [s["id"] for s in sections] == ["check-1", "check-2", "check-3", "check-4"]
    assert [s["class"].split()[-1] for s in sections] == ["pass", "fail", "inconclusive", "fail"]
    # a table of contents links to every section
    assert [a["href"] for a in page.find("a")] == ["#check-1", "#check-2", "#check-3", "#check-4"]


def test_no_checks():
    page = parse(render_html([]))
    assert "No hemorrhage checks ran." in page.text
    assert page.stats["stat"] == "0 checks" and not page.find("img")


def test_check_label_matches_the_terminal_summary():
    assert check_label("t.py::a", "t.py::a[1]") == "t.py::a[1]"
    assert check_label("t.py::a", "mild") == "t.py::a (mild)"
    assert check_label("t.py::a", None) == "t.py::a"
    assert check_label("", None) == "hemorrhage check"


def test_report_to_html_renders_one_report(reports):
    report = reports["fail"]
    page = parse(report.to_html())
    assert len(page.find("section", "check")) == 1
    assert "Model hemorrhage report: test_q.py::test_harmful" in page.text
    assert page.stats["stat fail"] == "1 failed"


def test_rendering_leaves_pyplot_and_the_backend_alone(reports):
    import matplotlib

    had_pyplot = "matplotlib.pyplot" in sys.modules
    # The raw setting: matplotlib.get_backend() would itself import pyplot to resolve "auto".
    backend = dict.__getitem__(matplotlib.rcParams, "backend")
    render_html([_check(reports["attention"])])
    assert dict.__getitem__(matplotlib.rcParams, "backend") == backend
    if not had_pyplot:
        assert "matplotlib.pyplot" not in sys.modules
    else:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []


# ---------------------------------------------------------------------- plugin
PREAMBLE = """\
import copy
import sys

sys.path.insert(0, TESTS_DIR_LITERAL)

import torch

from tiny_models import random_token_ids, tiny_llama

torch.set_num_threads(1)
MODEL = tiny_llama()
PROBES = random_token_ids(8, 20)


def harmful():
    c = copy.deepcopy(MODEL)
    with torch.no_grad():
        c.model.layers[1].mlp.down_proj.weight.mul_(20.0)
    return c

""".replace("TESTS_DIR_LITERAL", repr(str(TESTS_DIR)))


def test_plugin_writes_html_report(pytester: pytest.Pytester, reports) -> None:
    render_html([_check(reports["pass"])])  # matplotlib loaded before the in-process run
    pytester.makepyfile(test_inner=PREAMBLE + textwrap.dedent(
        """
        def test_pass(hemorrhage):
            hemorrhage.check(MODEL, copy.deepcopy(MODEL), PROBES)

        def test_fail(hemorrhage):
            hemorrhage.check(MODEL, harmful(), PROBES)

        def test_two(hemorrhage):
            hemorrhage.compare(MODEL, copy.deepcopy(MODEL), PROBES)
            hemorrhage.compare(MODEL, copy.deepcopy(MODEL), PROBES, name="<named>")

        def test_none():
            pass
        """
    ))
    result = pytester.runpytest("--hemorrhage-report=out/report.html")
    result.assert_outcomes(passed=3, failed=1)
    text = (pytester.path / "out" / "report.html").read_text(encoding="utf-8")
    page = parse(text)
    sections = page.find("section", "check")
    assert [s["class"].split()[-1] for s in sections] == ["pass", "fail", "pass", "pass"]
    assert page.stats == {"stat": "4 checks", "stat pass": "3 passed", "stat fail": "1 failed",
                          "stat inconclusive": "0 inconclusive"}
    headings = [a["href"] for a in page.find("a")]
    assert headings == ["#check-1", "#check-2", "#check-3", "#check-4"]
    assert page.headings == ["test_inner.py::test_pass", "test_inner.py::test_fail", "test_inner.py::test_two",
                             "test_inner.py::test_two (<named>)"]
    assert "model.layers.1" in page.text and len(_images(page)) == 8
    assert not list((pytester.path / "out").glob(".*.tmp"))  # written atomically


def test_plugin_html_report_without_checks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    pytester.runpytest("--hemorrhage-report=empty.html").assert_outcomes(passed=1)
    page = parse((pytester.path / "empty.html").read_text(encoding="utf-8"))
    assert "No hemorrhage checks ran." in page.text


def test_plugin_help_mentions_html(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert ".html" in result.stdout.str()


# ---------------------------------------------------------------------- cli
def test_cli_compare_writes_html(tmp_path, capsys):
    base = tiny_llama()
    for name, model in (("base", base), ("broken", break_block(base, 1))):
        save_model_folder(model, tmp_path / name)
    out = tmp_path / "reports" / "r.html"
    # --no-suggest: the page is the subject here, not the mitigations a failure now tries.
    code = main(["compare", str(tmp_path / "base"), str(tmp_path / "broken"), "--probes", "6",
                 "--max-length", "24", "--no-progress", "--no-suggest", "--html", str(out)])
    assert code == 1
    page = parse(out.read_text(encoding="utf-8"))
    (section,) = page.find("section", "check")
    assert "fail" in section["class"].split()
    assert "model.layers.1" in page.text and len(_images(page)) == 2
    assert "Model hemorrhage" in capsys.readouterr().out


# ---------------------------------------------------------------------- the SQNR plot's markers
def _offsets(fig, gid: str) -> list[tuple[float, float]]:
    (ax,) = fig.axes
    found = [c for c in ax.collections if c.get_gid() == gid]
    return [tuple(map(float, xy)) for c in found for xy in c.get_offsets()]


def _marker_path(fig, gid: str):
    (ax,) = fig.axes
    (collection,) = [c for c in ax.collections if c.get_gid() == gid]
    return collection.get_paths()[0].vertices


def test_sqnr_plot_tells_layers_below_the_threshold_by_shape():
    threshold = 15.0
    values = [30.0, 16.2, 14.7, 15.5, 12.0, 25.0, 14.1, 40.0]
    layers = [LayerResult(f"model.layers.{i}", i, v, rel_error=0.1, cosine=0.99, n_tokens=3)
              for i, v in enumerate(values)]
    report = Report(metrics={}, layers=layers, thresholds={"min_layer_sqnr_db": threshold}, name="near")
    fig = sqnr_figure(report)
    below = [(float(i), v) for i, v in enumerate(values) if v < threshold]
    assert sorted(_offsets(fig, "sqnr-below")) == below
    assert sorted(_offsets(fig, "sqnr-pass")) == [(float(i), v) for i, v in enumerate(values) if v >= threshold]
    # not by colour alone: the two markers are different shapes (a cross has more corners than a dot's curve)
    cross, dot = _marker_path(fig, "sqnr-below"), _marker_path(fig, "sqnr-pass")
    assert cross.shape != dot.shape or not np.allclose(cross, dot)
    cross_style = MarkerStyle("X")
    assert np.allclose(cross, cross_style.get_path().transformed(cross_style.get_transform()).vertices)
    # each in the legend
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert "below threshold (3 layers)" in texts and "layer SQNR (at or above threshold)" in texts
    # the values within NEAR_THRESHOLD_DB of the line are written out, on either side of it
    (ax,) = fig.axes
    labels = sorted(t.get_text() for t in ax.texts if t.get_gid() == "sqnr-near-label")
    assert labels == sorted(f"{v:.1f}" for v in values if abs(v - threshold) <= NEAR_THRESHOLD_DB)
    assert labels == ["14.1", "14.7", "15.5", "16.2"]


def test_sqnr_plot_crosses_exactly_the_layers_below(reports):
    fig = sqnr_figure(reports["attention"])  # a harmful break of block 2: some layers below, some not
    threshold = reports["attention"].thresholds["min_layer_sqnr_db"]
    below = {float(layer.index) for layer in reports["attention"].layers if layer.sqnr_db < threshold}
    assert below and {x for x, _ in _offsets(fig, "sqnr-below")} == below
    report = copy.deepcopy(reports["attention"])
    for layer in report.layers:
        layer.sqnr_db = threshold + 10.0 + layer.index
    fig = sqnr_figure(report)
    assert _offsets(fig, "sqnr-below") == [] and len(_offsets(fig, "sqnr-pass")) == len(report.layers)
    assert not any(t.get_text().startswith("below threshold") for t in fig.legends[0].get_texts())
    assert not [t for t in fig.axes[0].texts if t.get_gid() == "sqnr-near-label"]
