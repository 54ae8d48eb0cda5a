"""Render a check (GateResult) and a diff (ScanDiff): rich table, markdown, JSON."""

from __future__ import annotations

import json

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deadrelu.diff import ScanDiff, SiteDiff
from deadrelu.gate import GateResult
from deadrelu.report import render
from deadrelu.report.fit import dropped_note, fitting_columns


def verdict(gate: GateResult) -> str:
    n = len(gate.failures)
    checked = sum(1 for c in gate.cases if c.checked)
    if n:
        return f"deadrelu check FAILED: {n} limit{'s' * (n != 1)} exceeded"
    if not checked:
        return "deadrelu check passed: no limits were set"
    return f"deadrelu check passed: {checked} item{'s' * (checked != 1)} within limits"


def _baseline_line(gate: GateResult) -> str | None:
    b = gate.baseline
    if b is None:
        return None
    return (f"baseline {b.path}: {b.new_dead} newly dead, "
            f"{sum(len(v) for v in b.revived.values())} revived; dead rate "
            f"{100 * b.dead_rate_before:.2f}% -> {100 * b.dead_rate_after:.2f}%")


def render_check_table(gate: GateResult, console: Console) -> None:
    render.render_table(gate.result, console)
    console.print()
    skipped = [c.name for c in gate.cases if c.skipped]
    if skipped:
        console.print(Text(f"ignored sites: {', '.join(skipped)}"))
    line = _baseline_line(gate)
    if line:
        console.print(Text(line))
    for f in gate.failures:
        console.print(Text(f"FAIL {f.message()}", style="red"))
    console.print(Text(verdict(gate), style="bold red" if gate.failures else "bold green"))


def render_check_markdown(gate: GateResult) -> str:
    icon = "❌" if gate.failures else "✅"
    out = [f"## {icon} {verdict(gate)}", ""]
    if gate.failures:
        out += ["| where | check | figure | limit |", "|---|---|---|---|"]
        for f in gate.failures:
            where = render.md_code(f.site) if f.site is not None else "model"
            fig, lim = (f"{100 * f.figure:.2f}%", f"{100 * f.limit:.2f}%") if f.is_rate \
                else (str(int(f.figure)), str(int(f.limit)))
            detail = f" ({f.detail})" if f.detail else ""
            out.append(f"| {where} | --{f.metric}{detail} | {fig} | {lim} |")
        out.append("")
    line = _baseline_line(gate)
    if line:
        out += [f"- {render.md_text(line)}", ""]
    skipped = [c.name for c in gate.cases if c.skipped]
    if skipped:
        out += ["- ignored sites: " + ", ".join(render.md_code(s) for s in skipped), ""]
    body = render.render_markdown(gate.result)
    return "\n".join(out) + "\n" + body.replace("## deadrelu scan", "### scan", 1)


def render_check_json(gate: GateResult) -> str:
    return json.dumps(gate.to_dict(), indent=2, allow_nan=False) + "\n"


# ---- diff

DIFF_COLUMNS = ("site", "kind", "neurons", "dead before", "dead after", "dead% before",
                "dead% after", "died", "revived")


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _count(x: int | None) -> str:
    return "–" if x is None else str(x)


def _indices(values: list[int], limit: int = 12) -> str:
    if not values:
        return "–"
    text = ", ".join(map(str, values[:limit]))
    return text + (f" … (+{len(values) - limit})" if len(values) > limit else "")


def diff_row(s: SiteDiff) -> list[str]:
    if s.status == "resized":
        neurons = f"{s.neurons_before} -> {s.neurons_after}"
    else:
        neurons = _count(s.neurons_after if s.neurons_after is not None else s.neurons_before)
    name = s.name + ("" if s.status in ("same-shape", "resized") else f" ({s.status})")
    return [name, s.kind, neurons, _count(s.dead_before), _count(s.dead_after),
            _pct(s.dead_rate_before), _pct(s.dead_rate_after), _indices(s.died),
            _indices(s.revived)]


def diff_summary(d: ScanDiff) -> str:
    return (f"dead: {d.before.dead}/{d.before.neurons} ({100 * d.before.dead_rate:.2f}%) in "
            f"{d.before_path} -> {d.after.dead}/{d.after.neurons} "
            f"({100 * d.after.dead_rate:.2f}%) in {d.after_path}; {d.died} died, "
            f"{d.revived} revived")


def render_diff_table(d: ScanDiff, console: Console) -> None:
    table = Table(title="deadrelu diff", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    rows = [diff_row(s) for s in d.sites]
    keep = fitting_columns(DIFF_COLUMNS, rows, console.width,
                           droppable=("dead% before", "dead% after", "kind", "neurons"))
    for i in keep:
        col = DIFF_COLUMNS[i]
        table.add_column(col, justify="left" if col in ("site", "kind", "died", "revived")
                         else "right", no_wrap=col not in ("died", "revived"),
                         overflow="fold" if col in ("died", "revived") else "ellipsis",
                         min_width=len(col))  # rich would fold a header too: "di/ed"
    for s, row in zip(d.sites, rows, strict=True):
        style = "red" if s.died else ("green" if s.revived else None)
        table.add_row(*(row[i] for i in keep), style=style)
    console.print(table)
    note = dropped_note(DIFF_COLUMNS, keep)
    if note:
        console.print(Text(note))
    console.print(Text(diff_summary(d)))


def render_diff_markdown(d: ScanDiff) -> str:
    out = ["## deadrelu diff", "", f"- {render.md_text(diff_summary(d))}", "",
           "| " + " | ".join(DIFF_COLUMNS) + " |", "|" + "---|" * len(DIFF_COLUMNS)]
    for s in d.sites:
        row = diff_row(s)
        cells = [render.md_code(row[0]), *(render.md_text(c) for c in row[1:])]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def render_diff_json(d: ScanDiff) -> str:
    return json.dumps(d.to_dict(), indent=2, allow_nan=False) + "\n"
