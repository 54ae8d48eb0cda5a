"""The deadrelu command line: a thin translator from flags to one library call."""

from __future__ import annotations

import sys
import traceback

import typer

from deadrelu import __version__
from deadrelu.cli.check import check_command
from deadrelu.cli.diff import diff_command
from deadrelu.cli.merge import merge_command
from deadrelu.cli.patch import patch_command
from deadrelu.cli.report import report_command
from deadrelu.cli.scan import scan_command
from deadrelu.cli.sites import sites_command

app = typer.Typer(
    name="deadrelu",
    help="How much of my network is dead? Dead-neuron and saturation statistics per "
    "activation site of PyTorch models, on your data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"deadrelu {__version__}")
        raise typer.Exit()


# Commands that shard their data over torchrun processes; the others would run whole on
# every rank and write their output once per rank.
_SHARDED = frozenset({"scan", "check"})


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """deadrelu: per-site dead-neuron statistics for trained networks."""
    from deadrelu.distributed import is_primary, launched

    command = ctx.invoked_subcommand
    if launched() and command not in _SHARDED:
        # Every rank refuses; rank 0 alone says why, so the line is not printed N times.
        if is_primary():
            typer.echo(f"deadrelu: error: deadrelu {command} does not run under torchrun: only "
                       "scan and check shard their data over processes; run it once, "
                       "without torchrun", err=True)
        raise typer.Exit(2)


app.command("scan")(scan_command)
app.command("check")(check_command)
app.command("patch")(patch_command)
app.command("merge")(merge_command)
app.command("diff")(diff_command)
app.command("sites")(sites_command)
app.command("report")(report_command)


def _tolerate_narrow_encodings() -> None:
    """A stdout that cannot encode the tables' box and bar glyphs (cp1252, the default for a
    redirected stream on Windows; PYTHONIOENCODING=ascii) gets them replaced by '?': a
    UnicodeEncodeError would end a passing `check` with a traceback."""
    for stream in (sys.stdout, sys.stderr):
        try:
            "─▃✅→".encode(stream.encoding or "utf-8")
        except (UnicodeEncodeError, LookupError):
            reconfigure = getattr(stream, "reconfigure", None)
            if callable(reconfigure):
                reconfigure(errors="replace")


def main() -> None:
    """The console script: Typer's parsing, with a usage error as one line (design.md §2)."""
    import signal

    from deadrelu.cli.common import interrupted, on_sigint

    signal.signal(signal.SIGINT, on_sigint)
    _tolerate_narrow_encodings()
    try:
        code = app(standalone_mode=False)
    except KeyboardInterrupt:  # outside a command's own handling (start-up, parsing)
        sys.exit(interrupted().exit_code)
    except Exception as exc:
        # Typer's usage errors (bad value, unknown option, missing argument) carry an exit
        # code and a message; standalone mode would draw them as a multi-line panel.
        message, exit_code = getattr(exc, "format_message", None), getattr(exc, "exit_code", None)
        if not callable(message) or not isinstance(exit_code, int):
            # An internal error: its traceback, and exit 2 as ruff and mypy give a crash, so
            # that exit 1 stays "a threshold failed" (a crashing `check` is not a failed gate).
            traceback.print_exc()
            typer.echo("deadrelu: internal error (a bug: the traceback above says where)",
                       err=True)
            sys.exit(2)
        text = str(message()).strip()
        if text:  # empty: bare `deadrelu`, whose help Typer has already printed
            ctx = getattr(exc, "ctx", None)
            where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            typer.echo(f"deadrelu: error: {text}{where}", err=True)
        sys.exit(exit_code)
    sys.exit(code if isinstance(code, int) else 0)
