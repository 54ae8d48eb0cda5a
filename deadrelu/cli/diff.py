"""`deadrelu diff`: compare two scans site by site (dead before / after, died, revived)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deadrelu.cli.common import (
    FormatOpt,
    OutputFormat,
    OutputOpt,
    user_errors,
    write_diff,
)
from deadrelu.cli.guard import command_inputs, guard_outputs


def diff_command(
    before: Annotated[Path, typer.Argument(help="The earlier JSON scan report.",
                                           show_default=False)],
    after: Annotated[Path, typer.Argument(help="The later JSON scan report.",
                                          show_default=False)],
    output_format: FormatOpt = OutputFormat.table,
    output: OutputOpt = None,
) -> None:
    """Per-site change between two scans: dead counts before / after, the neurons that died
    and the ones that revived. Sites are matched by name.

    Example: deadrelu diff main-scan.json branch-scan.json --format markdown
    """
    from deadrelu.diff import diff_results
    from deadrelu.report.load import load_report

    with user_errors():
        guard_outputs({"--output": output}, command_inputs(others=[before, after]))
        d = diff_results(load_report(before), load_report(after), str(before), str(after))
        write_diff(d, output_format, output)
