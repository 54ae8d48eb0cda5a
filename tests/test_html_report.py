"""The HTML report's page and data (no browser), `deadrelu report`, `scan --html/--plot`, and
the terminal bars. The browser renders it in tests/test_html_browser.py."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from deadrelu.diff import diff_results
from deadrelu.report.html import STATUS_CODES, render_html, report_payload
from deadrelu.report.load import load_report
from deadrelu.report.plot import bar, spark
from deadrelu.report.render import neuron_status
from tests.gate_helpers import cli, data_path, model_args, report
from tests.html_helpers import embedded_data, synthetic_result

HOSTILE = ['<script>alert(1)</script>', '</script><script>alert(2)</script>',
           '<img src=x onerror="alert(3)">', '{{JS}}', "a\u2028b & <!-- c"]


def test_payload_matches_the_report_neuron_by_neuron(tmp_path: Path) -> None:
    result = load_report(report("functional", tmp_path))
    data = report_payload(result)
    assert [s["name"] for s in data["sites"]] == [s.name for s in result.sites]
    codes = {v: k for k, v in STATUS_CODES.items()}
    for site, payload in zip(result.sites, data["sites"], strict=True):
        assert payload["neurons"] == site.info.neurons == len(payload["status"])
        assert payload["dead"] == site.dead_count
        statuses = [codes[c] for c in payload["status"]]
        assert statuses == [neuron_status(site, i) for i in range(site.info.neurons)]
        np.testing.assert_allclose(np.array(payload["act"]) / 10_000,
                                   site.figures.active_fraction, atol=0.5e-4)
        pre = site.stats.arrays["max_pre"]
        for got, want in zip(payload["pre"], pre, strict=True):
            assert (got is None) == (not np.isfinite(want))
            if got is not None:
                assert got == pytest.approx(want, rel=1e-3, abs=1e-12)


def test_payload_of_a_planted_synthetic_scan() -> None:
    result, planted = synthetic_result([50, 7, 300], [0.2, 0.0, 0.5])
    data = report_payload(result)
    for payload, dead in zip(data["sites"], planted, strict=True):
        got = [i for i, c in enumerate(payload["status"]) if c == "d"]
        assert got == dead.tolist()


def test_hostile_names_stay_data(tmp_path: Path) -> None:
    result, _ = synthetic_result([4] * len(HOSTILE), [0.5] * len(HOSTILE), names=HOSTILE)
    result.model.path = "</script><script>alert('model')</script>.onnx"
    page = render_html(result)
    # The only script tags are the page's own two, and nothing names a placeholder.
    assert len(re.findall(r"<script", page, re.I)) == 2
    assert len(re.findall(r"</script", page, re.I)) == 2
    assert "{{" not in page.replace("{{JS}}", "")  # the site named {{JS}} is data, escaped
    data = embedded_data(page)
    assert [s["name"] for s in data["sites"]] == HOSTILE
    assert data["model"]["path"] == result.model.path
    assert "<title>deadrelu report: &lt;/script&gt;" in page


def test_the_page_loads_nothing_from_anywhere() -> None:
    result, _ = synthetic_result([8, 8], [0.25, 0.5])
    page = render_html(result)
    assert "default-src 'none'" in page  # the Content-Security-Policy forbids any fetch
    no_ns = page.replace('"http://www.w3.org/2000/svg"', "")  # an SVG namespace, not a URL
    assert not re.search(r"https?://", no_ns)
    assert not re.search(r"""\b(src|href)\s*=\s*["'][^"'#]""", no_ns)
    assert "@import" not in page and "url(" not in page


def test_baseline_payload_is_the_diff(tmp_path: Path) -> None:
    before, _ = synthetic_result([40, 40, 10], [0.3, 0.1, 0.5], seed=1)
    after, _ = synthetic_result([40, 40, 12], [0.2, 0.3, 0.5], seed=2)
    data = report_payload(after, diff_results(before, after, "old.json", "new.json"))
    d = diff_results(before, after)
    for payload, sd in zip(data["sites"], d.sites, strict=False):
        assert payload["before"]["died"] == sd.died
        assert payload["before"]["revived"] == sd.revived
        assert payload["before"]["dead"] == sd.dead_before
    assert data["sites"][2]["before"]["status"] == "resized"
    assert data["baseline"]["died"] == d.died and data["baseline"]["revived"] == d.revived
    assert data["baseline"]["path"] == "old.json"


def test_report_command_writes_html_and_says_where(tmp_path: Path) -> None:
    scan = report("digits_cnn", tmp_path)
    out = tmp_path / "report.html"
    res = cli("report", scan, "--html", out)
    assert res.exit_code == 0, res.stderr
    assert res.stdout == ""
    assert f"HTML report: {out}" in res.stderr
    page = out.read_text()
    data = embedded_data(page)
    assert data["summary"] == load_report(scan).summary()
    assert stat.S_IMODE(out.stat().st_mode) & 0o044  # readable by others, not mkstemp's 0600


def test_report_command_with_baseline(tmp_path: Path) -> None:
    before, _ = synthetic_result([30, 30], [0.5, 0.0], seed=3)
    after, _ = synthetic_result([30, 30], [0.1, 0.4], seed=4)
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(before.to_json())
    new.write_text(after.to_json())
    out = tmp_path / "diff.html"
    res = cli("report", new, "--html", out, "--baseline", old)
    assert res.exit_code == 0, res.stderr
    data = embedded_data(out.read_text())
    d = diff_results(before, after)
    assert data["baseline"]["died"] == d.died > 0
    assert data["baseline"]["revived"] == d.revived > 0
    # Without --html, the comparison is the diff table.
    res = cli("report", new, "--baseline", old, "--format", "json")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["died"] == d.died


@pytest.mark.parametrize("case", ["missing", "not-json", "future", "no-dir", "is-input",
                                  "is-dir", "bad-baseline"])
def test_report_bad_input_is_one_line_exit_2(tmp_path: Path, case: str) -> None:
    scan = report("digits_cnn", tmp_path)
    original = scan.read_text()
    out = tmp_path / "r.html"
    args: list[object] = ["report", scan, "--html", out]
    if case == "missing":
        args[1] = tmp_path / "nope.json"
    elif case == "not-json":
        bad = tmp_path / "bad.json"
        bad.write_text("{not json")
        args[1] = bad
    elif case == "future":
        fut = tmp_path / "future.json"
        fut.write_text(json.dumps({**json.loads(original), "schema_version": 99}))
        args[1] = fut
    elif case == "no-dir":
        args[3] = tmp_path / "missing" / "r.html"
    elif case == "is-input":
        args[3] = scan
    elif case == "is-dir":
        args[3] = tmp_path
    else:
        other = tmp_path / "other.txt"
        other.write_text("hello")
        args += ["--baseline", other]
    res = cli(*args)
    assert res.exit_code == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deadrelu: error:"), res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()
    assert scan.read_text() == original
    assert not list(tmp_path.glob(".r.html.*"))  # no temp file left behind


def test_scan_html_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "scan.html"
    res = cli("scan", *model_args("digits_cnn"), "--data", data_path("digits_cnn"),
              "--html", out, "--plot", "--format", "json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)  # the chart went to stderr: stdout is still JSON
    assert "dead rate per site" in res.stderr
    data = embedded_data(out.read_text())
    assert [s["dead"] for s in data["sites"]] == [s["dead"] for s in doc["sites"]]


def test_scan_html_into_a_missing_folder_fails_before_scanning(tmp_path: Path) -> None:
    res = cli("scan", *model_args("digits_cnn"), "--data", data_path("digits_cnn"),
              "--html", tmp_path / "no" / "r.html")
    assert res.exit_code == 2
    assert res.stdout == ""  # no table: the scan never ran
    assert "directory does not exist" in res.stderr


def test_plot_lines_follow_the_sites(tmp_path: Path) -> None:
    scan = report("functional", tmp_path)
    result = load_report(scan)
    res = cli("report", scan, "--plot", "--format", "markdown")
    assert res.exit_code == 0
    assert res.stdout.startswith("## deadrelu scan")  # markdown on stdout, the chart apart
    lines = [ln for ln in res.stderr.splitlines() if "%" in ln]
    assert len(lines) == len(result.sites)
    for line, site in zip(lines, result.sites, strict=True):
        filled, _ = bar(site.dead_rate, 40)
        assert f"{site.dead_count}/{site.info.neurons}" in line
        assert (filled + "░" * (40 - len(filled))) in line
    res = cli("report", scan, "--plot")  # with the table: both on stdout
    assert res.stdout.index("deadrelu scan") < res.stdout.index("dead rate per site")


def test_table_has_a_dead_rate_bar_per_site(tmp_path: Path) -> None:
    scan = report("digits_cnn", tmp_path)
    result = load_report(scan)
    res = cli("report", scan)
    for site in result.sites:
        row = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith(site.name))
        cells = row.split()
        rate = cells.index(f"{100 * site.dead_rate:.1f}%")
        if site.dead_count:
            assert cells[rate + 1] == spark(site.dead_rate)
        else:  # a blank bar: the next cell is the dormant count
            assert cells[rate + 1] == str(int(site.figures.dormant.sum()))
    assert max(len(ln.rstrip()) for ln in res.stdout.splitlines()) <= 80


def test_bar_and_spark_glyphs() -> None:
    assert bar(0.5, 8) == ("████", "░░░░")
    assert bar(0.0, 4) == ("", "░░░░")
    assert bar(1.0, 4) == ("████", "")
    assert bar(1 / 8, 1) == ("▏", "") and bar(5 / 8, 1) == ("▋", "")
    assert bar(0.3, 10) == ("███", "░░░░░░░")
    assert spark(0.0) == " "
    assert spark(1e-9) == "▁"  # one dead neuron in a million is not "no dead"
    assert spark(0.5) == "▄" and spark(1.0) == "█"
    assert [spark(k / 8) for k in range(1, 9)] == list("▁▂▃▄▅▆▇█")
