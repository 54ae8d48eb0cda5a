"""Render a ScanResult: rich table, markdown, JSON, and the per-neuron view of one site."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deadrelu.errors import plural
from deadrelu.report.fit import dropped_note, fitting_columns
from deadrelu.report.model import ScanResult, Site
from deadrelu.report.plot import spark


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


def activity_range(site: Site) -> str:
    """Min–max over live neurons of the fraction of elements that are active."""
    f = site.figures
    live = ~f.dead & ~f.unobserved
    if not live.any():
        return "–"
    a = f.active_fraction[live]
    return f"{_whole_percent(float(a.min()))}–{_whole_percent(float(a.max()))}%"


def _whole_percent(x: float) -> str:
    """A share in whole percent that never rounds a live neuron's activity to 0 or a
    partial one to 100: 0.12 % is "<1", 99.85 % is ">99"."""
    text = f"{100 * x:.0f}"
    if text == "0" and x > 0:  # rounding, half to even: 0.5 % reads "0" too
        return "<1"
    if text == "100" and x < 1:
        return ">99"
    return text


def _dead_cell(site: Site) -> str:
    d = site.dead_count
    text = str(d)
    if site.info.kind in ("relu6", "hardtanh") and d:
        text += f" ({int(site.figures.dead_low.sum())}↓ {int(site.figures.dead_high.sum())}↑)"
    if site.dead_word == "saturated" and d:
        text += " sat"
    neg = int(site.figures.negative_only.sum())
    if neg:
        text = f"{text} ({neg} neg-only)"
    return text


COLUMNS = ("site", "kind", "neurons", "dead", "dead%", "dormant", "satur.", "margin", "active")


def site_row(site: Site) -> list[str]:
    return [site.name, site.info.kind, str(site.info.neurons), _dead_cell(site),
            _pct(site.dead_rate), str(int(site.figures.dormant.sum())),
            _pct(site.figures.saturation), _num(site.figures.margin), activity_range(site)]


def summary_lines(result: ScanResult) -> list[str]:
    s = result.summary()
    lines = [
        f"model: {result.model.path} ({result.model.format})",
        f"data: {result.data.source}; {plural(result.data.samples, 'sample')} scanned"
        + (" — SYNTHETIC inputs, not your data" if result.data.synthetic else ""),
        f"dead: {s['dead']} of {plural(s['neurons'], 'neuron')} ({_pct(s['dead_rate'], 2)}) "
        f"in {s['sites_with_dead']} of {plural(s['sites'], 'site')}; dormant "
        f"(tau={result.settings.tau}): "
        f"{s['dormant']}; negative-only: {s['negative_only']}; rarely active "
        f"(<{_pct(result.settings.min_active, 0)} of samples): {s['rarely_active']}",
    ]
    worst = result.worst_sites()
    if worst:
        lines.append("worst sites: " + ", ".join(
            f"{w.name} {w.dead_count}/{w.info.neurons} ({_pct(w.dead_rate)})" for w in worst))
    bound, n = result.rule_of_three(), result.bound_samples()
    fewest = " (the fewest a site with dead neurons saw)" if n < result.data.samples else ""
    if bound is not None and bound >= 1:
        lines.append(f"confidence: {plural(n, 'sample')}{fewest} {'is' if n == 1 else 'are'} "
                     "too few to bound how often a neuron with no activation fires (the rule of "
                     "three needs more than 3)")
    elif bound is not None:
        lines.append(
            f"confidence: a neuron with no activation on {n} samples{fewest} fires on fewer "
            f"than {_pct(bound, 2)} of such inputs (95 %, rule of three: 3/N)")
    if s["nan"]:
        lines.append(f"NaN/Inf: {s['nan']} non-finite pre-activation elements, counted apart"
                     + (f"; {s['unobserved']} neuron{'s' if s['unobserved'] != 1 else ''} "
                        "saw nothing else (unobserved)"
                        if s["unobserved"] else ""))
    return lines


def render_table(result: ScanResult, console: Console) -> None:
    table = Table(title="deadrelu scan", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
    # The dead rate also as a one-character bar after dead%: read down, the column is a
    # sparkline of where the network dies.
    bar = COLUMNS.index("dead%") + 1
    headers = [*COLUMNS[:bar], "", *COLUMNS[bar:]]
    rows = [[*site_row(s)[:bar], spark(s.dead_rate), *site_row(s)[bar:]] for s in result.sites]
    keep = fitting_columns(headers, rows, console.width,
                           droppable=("active", "margin", "satur.", "", "dormant"))
    for i in keep:
        col = headers[i]
        table.add_column(col, justify="left" if col in ("site", "kind") else "right",
                         no_wrap=True)
    for site, row in zip(result.sites, rows, strict=True):
        cells: list[str | Text] = [Text(row[i], style="red") if i == bar else row[i]
                                   for i in keep]
        table.add_row(*cells, style="red" if site.dead_count else None)
    console.print(table)
    note = dropped_note(headers, keep)
    if note:
        console.print(Text(note))
    for line in summary_lines(result):
        console.print(Text(line))


def md_text(text: str) -> str:
    """Text for one markdown line or table cell: site names come from model files (an ONNX
    node may be named anything), so line breaks, pipes and HTML tags must not reach the page
    ("<1%" stays as it is: only a "<" that opens a tag is escaped)."""
    flat = " ".join(text.splitlines())
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", flat).replace("|", "\\|")


def md_code(text: str) -> str:
    """``text`` as an inline code span in a table cell, whatever backticks it holds: a
    fence longer than its longest run of backticks, padded when it starts or ends with one."""
    flat = " ".join(text.splitlines()).replace("|", "\\|")
    ticks = "`" * (1 + max((len(run) for run in re.findall(r"`+", flat)), default=0))
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def render_markdown(result: ScanResult) -> str:
    out = ["## deadrelu scan", ""]
    out += [f"- {md_text(line)}" for line in summary_lines(result)]
    out += [f"- **note:** {md_text(n)}" for n in result.notes]
    out += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for site in result.sites:
        row = site_row(site)
        cells = [md_code(row[0]), *(md_text(c) for c in row[1:])]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def render_json(result: ScanResult) -> str:
    return result.to_json() + "\n"


# ---- per-neuron view


def neuron_status(site: Site, i: int) -> str:
    f = site.figures
    if f.unobserved[i]:
        return "unobserved"
    if f.dead[i]:
        if f.dead_low[i]:
            return "dead-low"
        if f.dead_high[i]:
            return "dead-high"
        return site.dead_word
    if f.negative_only[i]:
        return "negative-only"
    if f.rarely_active[i]:
        return "rarely-active"
    if f.dormant[i]:
        return "dormant"
    return "alive"


def per_neuron_rows(site: Site) -> list[dict[str, Any]]:
    a = site.stats.arrays
    f = site.figures
    finite = np.maximum(a["finite"], 1)
    rows = []
    for i in range(site.info.neurons):
        rows.append({
            "index": i,
            "status": neuron_status(site, i),
            "active_fraction": float(f.active_fraction[i]),
            "sample_fraction": float(f.sample_fraction[i]),
            "max_pre": float(a["max_pre"][i]) if np.isfinite(a["max_pre"][i]) else None,
            "min_pre": float(a["min_pre"][i]) if np.isfinite(a["min_pre"][i]) else None,
            "mean_abs": float(a["abs_sum"][i] / finite[i]),
            "dormant_score": float(f.dormant_score[i]),
        })
    return rows


def render_per_neuron(site: Site, console: Console, limit: int = 256) -> None:
    rows = per_neuron_rows(site)
    neurons = plural(site.info.neurons, "neuron")
    console.print(Text(f"site {site.name} ({site.info.kind}, {neurons}, "
                       f"channel axis {site.info.channel_axis})"))
    console.print(Text(f"{site.dead_word} indices ({site.dead_count}): "
                       + (", ".join(map(str, site.dead_indices())) or "none")))
    shown = rows if len(rows) <= limit else [r for r in rows if r["status"] != "alive"]
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("neuron", "status", "active %", "samples %", "max pre", "min pre", "mean |h|",
                "dormant score"):
        table.add_column(col, justify="left" if col == "status" else "right")
    for r in shown:
        table.add_row(str(r["index"]), r["status"], _pct(r["active_fraction"]),
                      _pct(r["sample_fraction"]), _num(r["max_pre"]), _num(r["min_pre"]),
                      _num(r["mean_abs"]), _num(r["dormant_score"]),
                      style="red" if r["status"] not in ("alive", "dormant") else None)
    console.print(table)
    if len(shown) < len(rows):
        console.print(Text(f"({len(rows) - len(shown)} alive neurons not shown; "
                           "--format json lists every neuron)"))


def per_neuron_json(site: Site) -> str:
    return json.dumps({"site": site.name, "kind": site.info.kind,
                       "neurons": site.info.neurons, "dead_indices": site.dead_indices(),
                       "per_neuron": per_neuron_rows(site)}, indent=2) + "\n"


def per_neuron_markdown(site: Site) -> str:
    out = [f"### {md_code(site.name)} ({site.info.kind}, "
           f"{plural(site.info.neurons, 'neuron')})", "",
           f"{site.dead_word} indices: " + (", ".join(map(str, site.dead_indices())) or "none"),
           "", "| neuron | status | active % | samples % | max pre | min pre | mean \\|h\\| | "
           "dormant score |", "|---|---|---|---|---|---|---|---|"]
    for r in per_neuron_rows(site):
        out.append(f"| {r['index']} | {r['status']} | {_pct(r['active_fraction'])} | "
                   f"{_pct(r['sample_fraction'])} | {_num(r['max_pre'])} | "
                   f"{_num(r['min_pre'])} | {_num(r['mean_abs'])} | "
                   f"{_num(r['dormant_score'])} |")
    return "\n".join(out) + "\n"
