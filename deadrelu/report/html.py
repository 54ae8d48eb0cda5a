"""A self-contained HTML report of a scan: one file, no network, data inlined as JSON.

The page is static HTML + inline CSS + inline JavaScript (deadrelu/report/static/). The scan
goes in as one ``<script type="application/json">`` block; the script builds the chart, the
table and, on click, a site's per-neuron detail with DOM methods that set text, never markup,
so names from model files (untrusted) cannot inject anything.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from typing import Any

import numpy as np

from deadrelu import __version__
from deadrelu.diff import ScanDiff, SiteDiff, diff_results
from deadrelu.report.model import ScanResult, Site
from deadrelu.report.render import activity_range, summary_lines

# One character per neuron in the payload: the neuron's status (render.neuron_status).
STATUS_CODES = {"alive": "a", "dead": "d", "saturated": "s", "dead-low": "l",
                "dead-high": "h", "negative-only": "n", "rarely-active": "r",
                "dormant": "o", "unobserved": "u"}


def neuron_status_codes(site: Site) -> str:
    """render.neuron_status for every neuron of ``site`` at once, as one code per neuron."""
    f = site.figures
    dead_code = STATUS_CODES[site.dead_word]
    codes = np.select(
        [f.unobserved, f.dead & f.dead_low, f.dead & f.dead_high, f.dead, f.negative_only,
         f.rarely_active, f.dormant],
        ["u", "l", "h", dead_code, "n", "r", "o"], default="a")
    return "".join(codes.tolist())


def _round(values: np.ndarray, digits: int = 4) -> list[float | None]:
    """Floats to ``digits`` significant digits (the page shows three); non-finite -> null."""
    return [float(f"{v:.{digits}g}") if np.isfinite(v) else None for v in values.tolist()]


def _site_payload(site: Site, order: int) -> dict[str, Any]:
    return {
        **site.figures_dict(),  # the JSON report's entry, less the accumulators
        "order": order,
        "dead_word": site.dead_word,
        "activity": activity_range(site),
        # Per neuron: activity fraction in 1/10,000 steps, largest pre-activation, status.
        "act": np.rint(site.figures.active_fraction * 10_000).astype(np.int64).tolist(),
        "pre": _round(site.stats.arrays["max_pre"]),
        "status": neuron_status_codes(site),
    }


def _baseline_payload(d: SiteDiff) -> dict[str, Any]:
    return {"status": d.status, "neurons": d.neurons_before, "dead": d.dead_before,
            "dead_rate": d.dead_rate_before, "saturation": d.saturation_before,
            "died": d.died, "revived": d.revived}


def report_payload(result: ScanResult, diff: ScanDiff | None = None) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-able data."""
    sites = [_site_payload(s, i) for i, s in enumerate(result.sites)]
    doc: dict[str, Any] = {
        "deadrelu_version": __version__,
        "model": {"path": result.model.path, "format": result.model.format,
                  "sha256": result.model.sha256},
        "data": {"source": result.data.source, "samples": result.data.samples,
                 "synthetic": result.data.synthetic},
        "settings": {**result.settings.to_dict(), **result.extra_settings},
        "summary": result.summary(),
        "summary_lines": summary_lines(result),
        "notes": result.notes,
        "sites": sites,
    }
    if diff is not None:
        by_name = {d.name: d for d in diff.sites}
        for payload in sites:
            payload["before"] = _baseline_payload(by_name[payload["name"]])
        doc["baseline"] = {
            "path": diff.before_path, "model": diff.before.model.path,
            "samples": diff.before.data.samples, "dead": diff.before.dead,
            "neurons": diff.before.neurons, "dead_rate": diff.before.dead_rate,
            "died": diff.died, "revived": diff.revived,
            "removed": [{"name": d.name, "kind": d.kind, "neurons": d.neurons_before,
                         "dead": d.dead_before} for d in diff.sites if d.status == "removed"],
        }
    return doc


def _script_json(data: Any) -> str:
    """JSON safe inside <script>: no '</script>', no '<!--', no line separators that end a
    JavaScript string in old engines."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _static(name: str) -> str:
    return resources.files("deadrelu.report").joinpath("static", name).read_text("utf-8")


def render_html(result: ScanResult, baseline: ScanResult | None = None,
                baseline_path: str = "baseline", result_path: str = "scan") -> str:
    """The whole report page. With ``baseline``, sites are compared by name (deadrelu.diff)."""
    diff = (diff_results(baseline, result, baseline_path, result_path)
            if baseline is not None else None)
    payload = report_payload(result, diff)
    parts = {"TITLE": html.escape(f"deadrelu report: {result.model.path}"),
             "CSS": _static("report.css"), "DATA": _script_json(payload),
             "JS": _static("report.js")}
    # One pass, so a placeholder spelled inside the data (a site name) is never expanded.
    return re.sub(r"\{\{(TITLE|CSS|DATA|JS)\}\}", lambda m: parts[m.group(1)],
                  _static("report.html"))
