"""`deadrelu report`: render a saved JSON scan as an HTML page, a table or a terminal chart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deadrelu.cli.common import (
    FormatOpt,
    OutputFormat,
    OutputOpt,
    user_errors,
    write_diff,
    write_output,
    write_scan,
)
from deadrelu.cli.guard import command_inputs, guard_outputs
from deadrelu.errors import plural

if TYPE_CHECKING:
    from deadrelu.report.model import ScanResult

HtmlOpt = Annotated[Path | None, typer.Option(
    "--html", help="Write a self-contained HTML report (chart, sortable site table, "
    "per-neuron detail) to FILE; it opens from disk with no network.")]
PlotOpt = Annotated[bool, typer.Option(
    "--plot/--no-plot",
    help="Also print a per-site bar chart of the dead rate in the terminal.")]


def report_command(
    scan: Annotated[Path, typer.Argument(help="A JSON scan report (deadrelu scan --format "
                                         "json).", show_default=False)],
    html: HtmlOpt = None,
    baseline: Annotated[Path | None, typer.Option(
        help="An earlier JSON scan of the same architecture: show before / after per site "
        "and the neurons that died or revived.")] = None,
    plot: PlotOpt = False,
    output_format: FormatOpt = OutputFormat.table,
    output: OutputOpt = None,
) -> None:
    """Render a saved scan: an HTML page (--html), or the scan's table, markdown or JSON;
    with --baseline, the comparison with an earlier scan.

    Example: deadrelu report scan.json --html report.html --baseline old-scan.json
    """
    from deadrelu.report.load import load_report

    with user_errors():
        guard_outputs({"--output": output, "--html": html},
                      command_inputs(others=[scan, baseline]))
        result = load_report(scan)
        before = load_report(baseline) if baseline is not None else None
        if html is not None:
            write_html(result, html, before, baseline, scan)
        else:
            render_text(result, before, baseline, scan, output_format, output)
        if plot:
            emit_plot(result, output_format if html is None else None, output)


def write_html(result: ScanResult, html: Path, baseline: ScanResult | None = None,
               baseline_path: Path | None = None, result_path: Path | str = "scan") -> None:
    """Render and write the HTML report, then say where it is (stderr)."""
    from deadrelu.report.html import render_html

    page = render_html(result, baseline, str(baseline_path or "baseline"), str(result_path))
    write_output(page, html)
    typer.echo(f"HTML report: {html} ({plural(len(result.sites), 'site')}, "
               f"{plural(result.neurons, 'neuron')})",
               err=True)


def render_text(result: ScanResult, before: ScanResult | None, baseline: Path | None,
                scan: Path,
                output_format: OutputFormat, output: Path | None) -> None:
    if before is None:
        write_scan(result, output_format, output)
        return
    from deadrelu.diff import diff_results

    write_diff(diff_results(before, result, str(baseline), str(scan)), output_format, output)


def emit_plot(result: ScanResult, output_format: OutputFormat | None, output: Path | None) -> None:
    """The terminal chart goes to stdout, except when stdout carries JSON or markdown (pipes
    stay parseable): then to stderr."""
    from rich.console import Console

    from deadrelu.report.plot import render_plot

    busy = output is None and output_format in (OutputFormat.json, OutputFormat.markdown)
    render_plot(result, Console(stderr=busy))
