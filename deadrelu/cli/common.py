"""Shared CLI plumbing: option aliases, the user-error guard, output writing, progress."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from deadrelu.errors import DeadReluError

T = TypeVar("T")


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


# ---- options shared by scan / check / patch
ModelArg = Annotated[Path, typer.Argument(help="Model file: state dict / checkpoint (with "
                                          "--arch), pickled nn.Module (with --trust-pickle), "
                                          "torch.export .pt2, TorchScript, or .onnx (external "
                                          "data too).", show_default=False)]
DataOpt = Annotated[str | None, typer.Option(
    "--data", "-d", help="Data: .npy, .npz, .pt tensors, a folder of images, .csv, or "
    "module:function returning batches. None: synthetic inputs (with a warning).")]
ArchOpt = Annotated[str | None, typer.Option(
    help="Architecture for a state dict: module:factory or path/to/file.py:factory.")]
ArchKwargsOpt = Annotated[str | None, typer.Option(
    help="JSON object of keyword arguments for the --arch factory.")]
TrustPickleOpt = Annotated[bool, typer.Option(
    help="Allow unpickling a whole pickled nn.Module. Unpickling runs arbitrary code: only "
    "for files you trust.")]
InputShapeOpt = Annotated[str | None, typer.Option(
    help="Input shape(s), batch dim first: 1,3,32,32 or 'x=1,3,32,32;mask=1,16'. Fixes "
    "dynamic dims and sizes synthetic inputs.")]


def _batch_size_given(ctx: typer.Context, param: typer.CallbackParam, value: int | None
                      ) -> int | None:
    # Neither the flag nor a config key: None, so that scan() and patch() take the model's
    # fixed batch size where its graph has one, else 32.
    # (By the source's name: click's ParameterSource lives in typer's vendored copy.)
    source = ctx.get_parameter_source(param.name or "")
    given = source is not None and source.name != "DEFAULT"
    if source is not None and source.name == "DEFAULT_MAP":  # the config's batch-size key
        cfg = ctx.meta.get("deadrelu.config")
        ctx.meta[_BATCH_SIZE_FROM] = cfg.where if cfg is not None else "the config"
    return value if given else None


_BATCH_SIZE_FROM = "deadrelu.batch_size_from"


BatchSizeOpt = Annotated[int | None, typer.Option(
    "--batch-size", "-b", min=1, callback=_batch_size_given,
    help="Samples per forward pass (an ONNX model with a fixed batch size: that size).")]
SamplesOpt = Annotated[int | None, typer.Option("--samples", "-n", min=1, help="Use at most "
                                                "this many samples (synthetic default: 64).")]
DeviceOpt = Annotated[str, typer.Option(help="Torch device: cpu, cuda, cuda:1, mps.")]
EpsOpt = Annotated[float, typer.Option(help="An element is active when |f'(z)| >= eps.")]
TauOpt = Annotated[float, typer.Option(help="Dormant threshold on the normalised mean "
                                       "activation (Sokar et al. 2023).")]
MinActiveOpt = Annotated[float, typer.Option(help="Rarely active: active on fewer than this "
                                             "fraction of samples.")]
ChannelAxisOpt = Annotated[int | None, typer.Option(help="Override the neuron (channel) axis "
                                                    "for every site.")]
ImageSizeOpt = Annotated[str | None, typer.Option(help="Image folder: resize to S or H,W.")]
MeanOpt = Annotated[str | None, typer.Option(help="Image folder: per-channel mean, e.g. "
                                             "0.485,0.456,0.406.")]
StdOpt = Annotated[str | None, typer.Option(help="Image folder: per-channel std.")]
DropColumnsOpt = Annotated[str | None, typer.Option(help="CSV: columns to drop (names or "
                                                    "0-based indices, comma separated).")]
FastPathOpt = Annotated[bool, typer.Option(help="Keep PyTorch's fused transformer fast path "
                                           "(its inner activation is then not scanned).")]
DistributedOpt = Annotated[bool | None, typer.Option(
    "--distributed/--no-distributed",
    help="Shard the data over the torchrun processes and combine their statistics (default: "
    "on when launched by torchrun with 2+ processes). Rank 0 writes.")]
DtypeOpt = Annotated[str | None, typer.Option(
    help="Run a PyTorch model in float16 or bfloat16 (GPU scans). Lower precision can change "
    "which elements are exactly zero: the report says so.")]
NumWorkersOpt = Annotated[int, typer.Option(
    "--num-workers", min=0, help="Batches a background thread prepares ahead while the model "
    "runs (0: none).")]
CompileOpt = Annotated[bool, typer.Option(
    "--compile/--no-compile", help="Run a PyTorch model through torch.compile, the statistics "
    "computed inside the compiled graph (fused with each activation).")]
def _format_by_suffix(ctx: typer.Context, param: typer.CallbackParam,
                      value: OutputFormat) -> OutputFormat:
    # No --format (flag or config): -o report.json means JSON and -o report.md markdown, not
    # a text table in a file named .json. (Click processes the given -o before a defaulted
    # -f, so ctx.params has it here.)
    source = ctx.get_parameter_source(param.name or "")
    output = ctx.params.get("output")
    if source is not None and source.name == "DEFAULT" and isinstance(output, Path):
        suffix = output.suffix.lower()
        if suffix == ".json":
            return OutputFormat.json
        if suffix in (".md", ".markdown"):
            return OutputFormat.markdown
    return value


FormatOpt = Annotated[OutputFormat, typer.Option(
    "--format", "-f", callback=_format_by_suffix,
    help="Output format (default: by -o's suffix, .json or .md, else table).")]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Write the report "
                                                "to FILE instead of stdout.")]


def _load_config(ctx: typer.Context, value: Path | None) -> Path | None:
    # Eager: runs before every other parameter, so the config's values become the defaults
    # of this command's flags (a flag on the command line still wins).
    from deadrelu.config import load_config

    try:
        cfg = load_config(value)
    except DeadReluError as exc:
        raise fail(str(exc).replace("\n", " ")) from None
    ctx.default_map = cfg.defaults_for(ctx.info_name or "")
    ctx.meta["deadrelu.config"] = cfg
    return value


ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", is_eager=True, callback=_load_config,
    help="Config file: a pyproject.toml with a tool.deadrelu table, or a deadrelu.toml. "
    "Default: the nearest one from the current folder up. Flags override its keys.")]


def fail(message: str) -> typer.Exit:
    """Print one line on stderr and give the exit to raise (code 2)."""
    typer.echo(f"deadrelu: error: {message}", err=True)
    return typer.Exit(2)


@contextmanager
def user_errors(ctx: typer.Context | None = None) -> Iterator[None]:
    """DeadReluError -> one stderr line and exit 2; anything else keeps its traceback.
    ``ctx``: the command's, to name the config key behind a value the model refuses."""
    try:
        yield
    except DeadReluError as exc:
        from deadrelu.batching import BatchSizeConflict  # numpy: not for every --help

        where = ctx.meta.get(_BATCH_SIZE_FROM) if ctx is not None else None
        if isinstance(exc, BatchSizeConflict) and where:
            exc = exc.fixed.conflict(exc.requested, exc.path, asked_in=where)
        raise fail(str(exc).replace("\n", " ")) from None
    except KeyboardInterrupt:
        raise interrupted() from None
    except ImportError:
        # Ctrl-C while a compiled extension (onnxruntime) initialises surfaces as
        # "ImportError: initialization failed", not as KeyboardInterrupt.
        if _SIGINT.seen:
            raise interrupted() from None
        raise


class _SIGINT:
    seen = False  # set by the handler main() installs


def on_sigint(signum: int, frame: object) -> None:
    """Python's own behaviour (KeyboardInterrupt), remembered for :func:`user_errors`."""
    _SIGINT.seen = True
    raise KeyboardInterrupt


def interrupted() -> typer.Exit:
    typer.echo("deadrelu: interrupted", err=True)
    return typer.Exit(130)


def warn(message: str) -> None:
    """A warning on stderr; under torchrun from rank 0 only (every rank has the same ones)."""
    from deadrelu.distributed import is_primary

    if not is_primary():
        return
    typer.secho(f"warning: {message}", err=True, fg="yellow")


def parse_floats(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise DeadReluError(f"{flag} {text!r} must be numbers separated by commas") from None


def parse_image_size(text: str | None) -> int | tuple[int, int] | None:
    values = parse_floats(text, "--image-size")
    if values is None:
        return None
    if len(values) == 1 and values[0] >= 1:
        return int(values[0])
    if len(values) == 2 and min(values) >= 1:
        return int(values[0]), int(values[1])
    raise DeadReluError(f"--image-size {text!r} must be S or H,W")


def write_output(text: str, output: Path | None) -> None:
    """stdout, or FILE written whole (temp file + rename: never half a report).

    A symlink is followed, so the file it points at gets the report and the link stays; a
    device or pipe (``/dev/stdout``, a FIFO) is written to directly, as a rename would
    replace the node itself.
    """
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        special = output.exists() and not stat.S_ISREG(output.stat().st_mode)
    except OSError:
        special = False
    if special:
        try:
            with output.open("w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise DeadReluError(f"cannot write: {exc.strerror}", path=output) from None
        return
    target = Path(os.path.realpath(output))
    directory = target.parent
    if not directory.is_dir():
        raise DeadReluError("cannot write: the directory does not exist", path=output)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; a report is a normal file
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise DeadReluError(f"cannot write: {exc.strerror}", path=output) from None


def write_formatted(output_format: OutputFormat, output: Path | None, *,
                    json: Callable[[], str], markdown: Callable[[], str],
                    table: Callable[[Any], None]) -> None:
    """The one dispatch of --format: JSON and markdown written as text, the table drawn."""
    if output_format is OutputFormat.json:
        write_output(json(), output)
    elif output_format is OutputFormat.markdown:
        write_output(markdown(), output)
    else:
        write_rich(table, output)


def write_scan(result: Any, output_format: OutputFormat, output: Path | None) -> None:
    """A ScanResult in the chosen format (scan, merge, report)."""
    from deadrelu.report import render

    write_formatted(output_format, output, json=lambda: render.render_json(result),
                    markdown=lambda: render.render_markdown(result),
                    table=lambda c: render.render_table(result, c))


def write_diff(diff: Any, output_format: OutputFormat, output: Path | None) -> None:
    """A ScanDiff in the chosen format (diff, report --baseline)."""
    from deadrelu.report import gate_render

    write_formatted(output_format, output, json=lambda: gate_render.render_diff_json(diff),
                    markdown=lambda: gate_render.render_diff_markdown(diff),
                    table=lambda c: gate_render.render_diff_table(diff, c))


def write_rich(draw: Callable[[Any], None], output: Path | None) -> None:
    """Draw a rich renderable on stdout, or as plain text into FILE (140 columns)."""
    import io

    from rich.console import Console

    if output is None:
        draw(Console())
        return
    console = Console(record=True, width=140, file=io.StringIO())
    draw(console)
    write_output(console.export_text(), output)


class DelayedProgress:
    """A rich progress bar on stderr that appears only once a scan has run for 2 s."""

    def __init__(self, enabled: bool = True, delay: float = 2.0) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.delay = delay
        self.started = time.monotonic()
        self.done = 0
        self.total: int | None = None
        self._progress: Any = None
        self._task: Any = None

    def on_start(self, total: int | None) -> None:
        self.total = total
        self.started = time.monotonic()

    def on_batch(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._progress is None and time.monotonic() - self.started >= self.delay:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} samples/s"), TimeRemainingColumn(),
                console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("scan", total=self.total, rate="")
        if self._progress is not None:
            rate = self.done / max(time.monotonic() - self.started, 1e-9)
            self._progress.update(self._task, completed=self.done, rate=f"{rate:,.0f}")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def guarded(fn: Callable[[], T]) -> T:
    with user_errors():
        return fn()
