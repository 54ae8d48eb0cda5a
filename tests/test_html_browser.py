"""The HTML report in a real browser: headless Chromium driven by Selenium + chromedriver.

Each test opens a generated report from disk with the network switched off, and checks what
the browser actually laid out and drew (element boxes, computed colours, canvas pixels).
Without Chromium these tests skip, except where DEADRELU_REQUIRE_BROWSER=1 (.ci/run sets it
after installing Debian's chromium and chromium-driver): there a missing browser fails.
Screenshots go to $DEADRELU_ARTIFACTS (default build/test-artifacts/).
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deadrelu.diff import diff_results
from deadrelu.report.html import render_html
from deadrelu.report.load import load_report
from tests.conftest import FIXTURES, GENERATED, ROOT
from tests.gate_helpers import cli, data_path, model_args
from tests.html_helpers import synthetic_result

CHROMIUM = os.environ.get("DEADRELU_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DEADRELU_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("DEADRELU_ARTIFACTS", ROOT / "build" / "test-artifacts"))
DEAD_RGB = (214, 39, 40)  # --dead in report.css / the canvas fill


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(path)):
            return f"{path} not found (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing()
    if reason:
        if os.environ.get("DEADRELU_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1400", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager would try to download one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        # No network at all: the report must need none.
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        yield driver
    finally:
        driver.quit()


def open_report(driver: Any, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def js(driver: Any, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def assert_clean_console(driver: Any) -> None:
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    assert js(driver, "return performance.getEntriesByType('resource').length") == 0


def screenshot(driver: Any, name: str) -> Path:
    from PIL import Image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = driver.get_screenshot_as_png()
    path = ARTIFACTS / name
    path.write_bytes(png)
    img = Image.open(io.BytesIO(png)).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20, "a blank screenshot"
    return path


def chart_bars(driver: Any) -> list[dict[str, float]]:
    """Each bar's drawn height as a fraction of the chart's 0-100 % span."""
    return js(driver, """
        const grid = [...document.querySelectorAll('#chart .grid')].map(l => +l.getAttribute('y1'));
        const span = Math.max(...grid) - Math.min(...grid);
        return [...document.querySelectorAll('#chart .bar')].map(b => {
          const r = b.getBoundingClientRect();
          return {site: +b.dataset.site, frac: r.height / span, width: r.width};
        });""")


def click_site(driver: Any, index: int) -> None:
    from selenium.webdriver.common.by import By

    row = driver.find_element(By.CSS_SELECTOR, f'#sites tbody tr[data-site="{index}"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
    row.click()


def strip_state(driver: Any) -> dict[str, Any]:
    return js(driver, """
        const s = document.getElementById('strip');
        const cells = s.querySelectorAll('.cell');
        const dead = [...s.querySelectorAll('.cell.dead')];
        const box = s.getBoundingClientRect();
        return {tag: s.tagName, neurons: +s.dataset.neurons, cells: cells.length,
                dead: dead.map(c => +c.dataset.n),
                deadColour: dead.length ? getComputedStyle(dead[0]).backgroundColor : null,
                height: box.height, width: box.width,
                died: [...s.querySelectorAll('.cell.died')].map(c => +c.dataset.n),
                revived: [...s.querySelectorAll('.cell.revived')].map(c => +c.dataset.n)};""")


def histogram_counts(driver: Any, hist_id: str) -> tuple[int, int]:
    """(dead, all) neurons the histogram's drawn bars add up to."""
    parts = js(driver, f"""return [...document.querySelectorAll('#{hist_id} .hbar')]
        .filter(r => r.getBoundingClientRect().height > 0)
        .map(r => [+r.dataset.stack, +r.dataset.count]);""")
    return sum(c for k, c in parts if k == 0), sum(c for _, c in parts)


@pytest.mark.parametrize("fixture, fmt", [("digits_cnn", "state_dict"), ("functional", "onnx")])
def test_fixture_report_renders(browser: Any, tmp_path: Path, fixture: str, fmt: str) -> None:
    html, scan_json = tmp_path / "report.html", tmp_path / "scan.json"
    if fmt == "onnx":
        model: list[object] = [GENERATED / FIXTURES[fixture]["files"]["onnx"]]
    else:
        model = list(model_args(fixture))
    res = cli("scan", *model, "--data", data_path(fixture), "--html", html, "--format", "json",
              "-o", scan_json)
    assert res.exit_code == 0, res.stderr
    result = load_report(scan_json)
    open_report(browser, html)

    # The chart: one bar per site, as tall as its dead rate, in execution order.
    bars = chart_bars(browser)
    assert [b["site"] for b in bars] == list(range(len(result.sites)))
    for b, site in zip(bars, result.sites, strict=True):
        assert b["frac"] == pytest.approx(site.dead_rate, abs=0.01), site.name
        assert b["width"] > 0
    # The table: one row per site, names as text.
    names = js(browser, "return [...document.querySelectorAll('#sites tbody td.name')]"
                        ".map(td => td.textContent)")
    assert names == [s.name for s in result.sites]
    hit = js(browser, """const r = document.querySelector('#chart .hit[data-site="0"]')
                         .getBoundingClientRect();
                         return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2)
                         .getAttribute('data-site');""")
    assert hit == "0"  # laid out where a click lands

    # Click the deadest site: its neuron strip, one cell per neuron, the dead ones red.
    worst = max(range(len(result.sites)), key=lambda i: result.sites[i].dead_rate)
    site = result.sites[worst]
    click_site(browser, worst)
    strip = strip_state(browser)
    assert strip["neurons"] == strip["cells"] == site.info.neurons
    assert strip["dead"] == site.dead_indices() and site.dead_count > 0
    assert strip["deadColour"] == "rgb({}, {}, {})".format(*DEAD_RGB)
    assert strip["height"] > 0 and strip["width"] > 0
    assert js(browser, "return document.getElementById('detail-title').textContent") == \
        site.name
    observed = int((~site.figures.unobserved).sum())
    assert histogram_counts(browser, "hist-activity") == (site.dead_count, observed)
    dead_m, all_m = histogram_counts(browser, "hist-margin")
    assert (dead_m, all_m) == (site.dead_count, int(np.isfinite(
        site.stats.arrays["max_pre"]).sum()))
    assert_clean_console(browser)
    shot = screenshot(browser, f"report-{fixture}-{fmt}.png")
    assert shot.stat().st_size > 10_000


def test_sort_and_filter(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    result, _ = synthetic_result([10, 20, 30, 40], [0.1, 0.5, 0.0, 0.25],
                                 names=["enc.0", "enc.1", "dec.0", "dec.1"])
    page = tmp_path / "r.html"
    page.write_text(render_html(result))
    open_report(browser, page)

    def visible() -> list[str]:
        return js(browser, "return [...document.querySelectorAll('#sites tbody tr')]"
                           ".filter(r => !r.hidden).map(r => r.cells[1].textContent)")

    browser.find_element(By.CSS_SELECTOR, '#sites th[data-key="dead_rate"]').click()
    assert visible() == ["enc.1", "dec.1", "enc.0", "dec.0"]  # highest dead rate first
    browser.find_element(By.CSS_SELECTOR, '#sites th[data-key="dead_rate"]').click()
    assert visible() == ["dec.0", "enc.0", "dec.1", "enc.1"]
    browser.find_element(By.ID, "filter").send_keys("dec")
    assert visible() == ["dec.0", "dec.1"]
    browser.find_element(By.ID, "dead-only").click()
    assert visible() == ["dec.1"]
    assert browser.find_element(By.ID, "shown").text == "1 of 4 sites shown"


def test_hostile_site_names_render_as_text(browser: Any, tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    names = ["<script>alert(1)</script>", '<img src=x onerror="window.__pwned=1">',
             "</script><script>window.__pwned=2</script>", "{{JS}}"]
    result, _ = synthetic_result([6] * len(names), [0.5] * len(names), names=names)
    result.model.path = "<script>window.__pwned=3</script>"
    page = tmp_path / "hostile.html"
    page.write_text(render_html(result))
    open_report(browser, page)
    click_site(browser, 1)
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    assert js(browser, "return window.__pwned === undefined")
    got = js(browser, "return [...document.querySelectorAll('#sites tbody td.name')]"
                      ".map(td => td.textContent)")
    assert got == names
    assert js(browser, "return document.getElementById('detail-title').textContent") == names[1]
    assert js(browser, "return document.querySelectorAll('img, iframe, object').length") == 0
    assert js(browser, "return document.scripts.length") == 2  # the page's own


def test_large_report_is_lazy_and_draws_huge_sites_on_a_canvas(browser: Any,
                                                               tmp_path: Path) -> None:
    widths = [400] * 200
    widths[120] = 25_000  # 104,600 neurons in 200 sites
    rates = [0.05 * (i % 7) for i in range(200)]
    result, planted = synthetic_result(widths, rates, seed=7)
    page = tmp_path / "large.html"
    page.write_text(render_html(result))
    open_report(browser, page)
    assert len(chart_bars(browser)) == 200
    assert js(browser, "return document.querySelectorAll('#sites tbody tr').length") == 200
    assert js(browser, "return document.querySelectorAll('.cell').length") == 0  # lazy

    click_site(browser, 120)
    state = js(browser, """const c = document.getElementById('strip');
        return {tag: c.tagName, neurons: +c.dataset.neurons, cell: +c.dataset.cell,
                cols: +c.dataset.cols, cells: document.querySelectorAll('.cell').length};""")
    assert state["tag"] == "CANVAS" and state["neurons"] == 25_000 and state["cells"] == 0
    dead = planted[120]
    alive = np.setdiff1d(np.arange(25_000), dead)
    probe = [int(i) for i in (*dead[:5], *dead[-5:], *alive[:5], *alive[-5:])]
    pixels = js(browser, """const c = document.getElementById('strip');
        const ctx = c.getContext('2d'), cell = +c.dataset.cell, cols = +c.dataset.cols;
        return arguments[0].map(j => Array.from(ctx.getImageData(
            (j % cols) * cell + 1, Math.floor(j / cols) * cell + 1, 1, 1).data.slice(0, 3)));""",
                probe)
    for j, rgb in zip(probe, pixels, strict=True):
        assert (tuple(rgb) == DEAD_RGB) == (j in set(dead.tolist())), j
    screenshot(browser, "report-large.png")

    click_site(browser, 3)  # a narrow site: one element per neuron again
    assert strip_state(browser)["cells"] == 400


def test_baseline_report_marks_died_and_revived(browser: Any, tmp_path: Path) -> None:
    before, _ = synthetic_result([48, 48], [0.5, 0.1], seed=11)
    after, _ = synthetic_result([48, 48], [0.25, 0.3], seed=12)
    page = tmp_path / "diff.html"
    page.write_text(render_html(after, before, "old.json", "new.json"))
    open_report(browser, page)
    d = diff_results(before, after)
    cols = js(browser, "return [...document.querySelectorAll('#sites th')].map(t => t.textContent)")
    assert cols[-3:] == ["dead before", "died", "revived"]
    assert js(browser, "return document.querySelectorAll('#chart .before').length") == 2
    for i, sd in enumerate(d.sites):
        click_site(browser, i)
        strip = strip_state(browser)
        assert strip["died"] == sd.died and strip["revived"] == sd.revived
        assert strip["dead"] == after.sites[i].dead_indices()
    summary = js(browser, "return document.getElementById('summary').textContent")
    assert f"{d.died} neurons died, {d.revived} revived" in summary
    assert_clean_console(browser)
    screenshot(browser, "report-baseline.png")
