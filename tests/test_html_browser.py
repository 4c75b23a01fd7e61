"""The HTML report in a real browser: headless Chromium (the Debian package) driven by Playwright.

Slow tier. A missing browser or Playwright fails the tests with the command that installs it:
CI runs this tier, and a skip there would pass without ever opening the page.
Screenshots are kept in ``$HEMORRHAGE_ARTEFACTS`` (default: ``test-artefacts/`` under the rootdir).
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from model_folders import break_block
from tiny_models import llama_and_probes

import pytest_hemorrhage as ph
from pytest_hemorrhage.files import atomic_write_bytes
from pytest_hemorrhage.render.html import render_html

pytestmark = pytest.mark.slow

DESKTOP = {"width": 1280, "height": 900}
NARROW = {"width": 375, "height": 800}  # a phone held upright
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is not installed, and these tests drive the browser with it: "
                    "install the test extras (pip install -e '.[test]', as scripts/setup.sh does) "
                    "or pip install playwright", pytrace=False)
    return sync_playwright


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("no `chromium` on PATH, and these tests open the report in it: install it with "
                    "apt-get install -y chromium (Debian/Ubuntu; .ci/run does this)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _playwright()
    executable = _chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def checks():
    """One passing and one failing check on a tiny Llama, with per-layer data and attention."""
    model, ids, tagged = llama_and_probes()
    passing = ph.compare(model, break_block(model, 1, scale=0.02), ids, name="test_q.py::test_mild")
    failing = ph.compare(model, break_block(model, 1), tagged, attention=True, name="test_q.py::test_harmful")
    assert passing.verdict == "pass" and failing.verdict == "fail"
    return [(passing.name, passing), (failing.name, failing)]


@pytest.fixture(scope="module")
def artefacts(request) -> Path:
    folder = os.environ.get("HEMORRHAGE_ARTEFACTS")
    return Path(folder) if folder else request.config.rootpath / "test-artefacts"


@dataclass
class Watch:
    """What a page did besides rendering: console errors, uncaught exceptions, and every request."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def external(self) -> list[str]:
        return [u for u in self.requests if u != self.url and not u.startswith(("data:", "blob:"))]


def open_page(browser, path: Path, viewport: dict[str, int]):
    """Open ``path`` in a fresh context; any request other than the page itself is recorded and aborted."""
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    url = path.resolve().as_uri()
    watch = Watch(url)
    context.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
    page = context.new_page()
    page.on("console", lambda msg: msg.type == "error" and watch.console_errors.append(msg.text))
    page.on("pageerror", lambda exc: watch.page_errors.append(str(exc)))
    page.on("request", lambda req: watch.requests.append(req.url))
    page.goto(url, wait_until="load")
    # Collapsed sections (per-layer metrics of a passing check, models and thresholds) opened as a reader would.
    for summary in page.locator("details > summary").all():
        if not summary.evaluate("s => s.parentElement.open"):
            summary.click()
    return page, watch


def _write_report(tmp_path: Path, checks) -> Path:
    path = tmp_path / "report.html"
    path.write_text(render_html(checks), encoding="utf-8")
    return path


def _visible_box(locator) -> dict[str, float]:
    box = locator.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, locator
    return box


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_MAGIC)
    return struct.unpack(">II", data[16:24])


def _screenshot(page, folder: Path, name: str) -> bytes:
    data = page.screenshot(full_page=True)
    atomic_write_bytes(folder / name, data)
    return data


def test_the_watch_sees_errors_and_external_requests(browser, tmp_path):
    """The checks below can fail: a page that logs an error, throws, and loads a remote image is caught."""
    path = tmp_path / "bad.html"
    path.write_text('<!DOCTYPE html><html><body><img src="http://192.0.2.1/x.png">'
                    '<script>console.error("logged"); missing_function();</script></body></html>')
    page, watch = open_page(browser, path, DESKTOP)
    page.context.close()
    assert watch.external == ["http://192.0.2.1/x.png"]
    assert any("logged" in e for e in watch.console_errors)
    assert any("missing_function" in e for e in watch.page_errors)


def test_report_renders_cleanly_and_self_contained(browser, checks, tmp_path, artefacts):
    page, watch = open_page(browser, _write_report(tmp_path, checks), DESKTOP)
    try:
        assert watch.console_errors == [] and watch.page_errors == []
        assert watch.requests and watch.external == []
        # every plot decoded and shown: 2 for the passing check (SQNR, KL), 3 for the failing one (+ attention)
        images = page.locator("img")
        assert images.count() == 5
        assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        for img in images.all():
            box = _visible_box(img)
            assert box["x"] >= 0 and box["x"] + box["width"] <= DESKTOP["width"]
        # every table, the ones in opened <details> included
        tables = page.locator("table")
        assert tables.count() >= 8
        for table in tables.all():
            _visible_box(table)
        # the SQNR plot's key, in the page's own text beside the image
        captions = page.locator("figcaption", has_text="a layer below it")
        assert captions.count() == 2
        for caption in captions.all():
            assert caption.is_visible()
            assert "✕: a layer below it; ●: at or above it" in caption.inner_text()
        data = _screenshot(page, artefacts, "html-report-desktop.png")
        assert _png_size(data)[0] == DESKTOP["width"]
    finally:
        page.context.close()


def test_failing_rows_are_marked(browser, checks, tmp_path):
    (_, passing), (_, failing) = checks
    threshold = failing.thresholds["min_layer_sqnr_db"]
    page, _ = open_page(browser, _write_report(tmp_path, checks), DESKTOP)
    try:
        ok, bad = page.locator("section.check.pass"), page.locator("section.check.fail")
        assert ok.count() == 1 and bad.count() == 1
        assert ok.locator(".check-head .badge").inner_text() == "PASS"
        assert bad.locator(".check-head .badge").inner_text() == "FAIL"
        assert ok.locator("tr.bad").count() == 0
        # metrics: exactly the failed gates, by their labels
        failed = {m.label for m in failing.metrics.values() if m.verdict == "fail"}
        rows = bad.locator("table.metrics tr.bad")
        assert {row.locator("td").first.inner_text().split(" (")[0] for row in rows.all()} == failed
        # layers: exactly those under the threshold, each row visible and tinted unlike a good row
        below = {layer.index for layer in failing.layers if layer.sqnr_db < threshold}
        assert below and len(below) < len(failing.layers)
        rows = bad.locator("table.layers tr.bad")
        assert {int(row.locator("td").first.inner_text()) for row in rows.all()} == below
        tint = "el => getComputedStyle(el.querySelector('td')).backgroundColor"
        good_row = bad.locator("table.layers tbody tr:not(.bad)").first
        for row in rows.all():
            _visible_box(row)
            assert row.evaluate(tint) != good_row.evaluate(tint)
        first = bad.locator("table.layers .badge.fail", has_text="first bad")
        assert first.count() == 1 and first.is_visible()
        assert failing.first_bad_layer.name in first.locator("xpath=..").inner_text()
        assert bad.locator(".callout.bad", has_text="First layer past threshold").is_visible()
    finally:
        page.context.close()


def test_narrow_viewport_has_no_horizontal_overflow(browser, checks, tmp_path, artefacts):
    page, watch = open_page(browser, _write_report(tmp_path, checks), NARROW)
    try:
        assert watch.console_errors == [] and watch.page_errors == []
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1] == NARROW["width"], widths
        for img in page.locator("img").all():
            box = _visible_box(img)
            assert box["x"] >= 0 and box["x"] + box["width"] <= NARROW["width"]
        # a table wider than the screen scrolls inside its own box, not the page
        for table in page.locator("table").all():
            _visible_box(table)
            holder = table.locator("xpath=..")
            assert holder.evaluate("el => getComputedStyle(el).overflowX") == "auto"
            box = _visible_box(holder)
            assert box["x"] >= 0 and box["x"] + box["width"] <= NARROW["width"]
        data = _screenshot(page, artefacts, "html-report-narrow.png")
        assert _png_size(data)[0] == NARROW["width"]  # a full-page shot is as wide as the page's content
    finally:
        page.context.close()

