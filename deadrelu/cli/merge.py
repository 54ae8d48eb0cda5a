"""`deadrelu merge`: combine partial scans of one model (data shards) into one report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from deadrelu.cli.common import OutputFormat, OutputOpt, user_errors, write_scan
from deadrelu.errors import DeadReluError


def merge_command(
    reports: Annotated[list[Path], typer.Argument(
        help="JSON scan reports of one model on different data shards.", show_default=False)],
    output_format: Annotated[OutputFormat, typer.Option(
        "--format", "-f", help="Output format.")] = OutputFormat.json,
    output: OutputOpt = None,
) -> None:
    """Merge scans of one model on different data into exactly the scan of all the data.

    Refuses scans of different models (sha256), sites or settings. Fan a large scan out
    (Slurm array, Ray, Spark), then merge.

    Example: deadrelu merge s1.json s2.json s3.json -o all.json
    """
    from deadrelu.merge import merge_results
    from deadrelu.report.load import load_report

    with user_errors():
        seen: dict[str, Path] = {}
        for p in reports:
            first = seen.setdefault(os.path.realpath(p), p)
            if first is not p:
                # Name both spellings only when they differ (a.json and ./a.json).
                spellings = f" (as {first} and {p})" if str(first) != str(p) else ""
                raise DeadReluError(f"is given twice{spellings}: merging a scan with itself "
                                    "would count its samples twice", path=p)
        merged = merge_results([load_report(p) for p in reports], [str(p) for p in reports])
        write_scan(merged, output_format, output)
