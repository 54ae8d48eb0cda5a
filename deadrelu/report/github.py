"""GitHub Actions output of a check: workflow-command annotations and the step summary.

Annotations go to stderr (the runner reads workflow commands from both streams), so stdout
keeps only the report: `deadrelu check … --format json | jq` works in Actions too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from deadrelu.gate import GateResult
from deadrelu.report.gate_render import render_check_markdown


def in_github_actions(env: Mapping[str, str] | None = None) -> bool:
    return (env if env is not None else os.environ).get("GITHUB_ACTIONS") == "true"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation_lines(gate: GateResult) -> list[str]:
    """One ::error per failure, one ::warning per scan note (synthetic data, …), attached to
    the model file (a path relative to the workspace, as check was given it)."""
    path = gate.result.model.path
    props = f"title={_escape_property(f'deadrelu check {path}')}"
    if not path.startswith("<"):  # "<Net>": a module handed to the library, no file
        props = f"file={_escape_property(path)},{props}"
    lines = [f"::error {props}::{_escape_data(f.message())}" for f in gate.failures]
    lines += [f"::warning {props}::{_escape_data(n)}" for n in gate.result.notes]
    return lines


def emit(gate: GateResult, env: Mapping[str, str] | None = None,
         stream: TextIO | None = None) -> str | None:
    """Annotations on stderr and the markdown summary appended to $GITHUB_STEP_SUMMARY;
    returns a warning when the summary cannot be written. That is the runner's file, not
    the gate: the verdict (printed already) and its exit code stand."""
    env = env if env is not None else os.environ
    out = stream if stream is not None else sys.stderr
    for line in annotation_lines(gate):
        out.write(line + "\n")
    out.flush()
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with Path(summary).open("a", encoding="utf-8") as f:
                f.write(render_check_markdown(gate) + "\n")
        except OSError as exc:
            return f"{summary}: cannot append the step summary: {exc.strerror}"
    return None
