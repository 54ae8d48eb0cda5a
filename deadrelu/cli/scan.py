"""`deadrelu scan`: per-site dead-neuron statistics of a model on data."""

from __future__ import annotations

from pathlib import Path

import typer

from deadrelu.cli.common import (
    ArchKwargsOpt,
    ArchOpt,
    BatchSizeOpt,
    ChannelAxisOpt,
    CompileOpt,
    ConfigOpt,
    DataOpt,
    DelayedProgress,
    DeviceOpt,
    DistributedOpt,
    DropColumnsOpt,
    DtypeOpt,
    EpsOpt,
    FastPathOpt,
    FormatOpt,
    ImageSizeOpt,
    InputShapeOpt,
    MeanOpt,
    MinActiveOpt,
    ModelArg,
    NumWorkersOpt,
    OutputFormat,
    OutputOpt,
    SamplesOpt,
    StdOpt,
    TauOpt,
    TrustPickleOpt,
    parse_floats,
    parse_image_size,
    user_errors,
    warn,
    write_formatted,
    write_scan,
)
from deadrelu.cli.guard import command_inputs, guard_outputs
from deadrelu.cli.report import HtmlOpt, PlotOpt, emit_plot, write_html
from deadrelu.errors import DeadReluError


def run_scan(model: Path, data: str | None, arch: str | None, arch_kwargs: str | None,
             trust_pickle: bool, input_shape: str | None, batch_size: int | None,
             samples: int | None, device: str, eps: float, tau: float, min_active: float,
             channel_axis: int | None, image_size: str | None, mean: str | None,
             std: str | None, drop_columns: str | None, fast_path: bool,
             distributed: bool | None = None, dtype: str | None = None, num_workers: int = 0,
             compile_model: bool = False):
    """The library call behind scan/check/patch, with CLI progress and warnings."""
    from deadrelu.distributed import is_primary
    from deadrelu.scanner import scan
    from deadrelu.stats import Settings

    primary = is_primary()  # under torchrun only rank 0 shows progress and warnings
    progress = DelayedProgress(enabled=primary)
    try:
        result = scan(
            str(model), data, arch=arch, arch_kwargs=arch_kwargs, trust_pickle=trust_pickle,
            input_shape=input_shape, batch_size=batch_size, samples=samples, device=device,
            settings=Settings(eps=eps, tau=tau, min_active=min_active),
            channel_axis=channel_axis, image_size=parse_image_size(image_size),
            mean=parse_floats(mean, "--mean"), std=parse_floats(std, "--std"),
            drop_columns=[c.strip() for c in drop_columns.split(",")] if drop_columns else (),
            fast_path=fast_path, distributed=distributed, dtype=dtype, num_workers=num_workers,
            compile=compile_model, on_start=progress.on_start, on_batch=progress.on_batch)
    finally:
        progress.close()
    for note in result.notes:
        warn(note)
    return result


def scan_command(
    ctx: typer.Context,
    model: ModelArg,
    data: DataOpt = None,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    trust_pickle: TrustPickleOpt = False,
    input_shape: InputShapeOpt = None,
    batch_size: BatchSizeOpt = 32,
    samples: SamplesOpt = None,
    device: DeviceOpt = "cpu",
    output_format: FormatOpt = OutputFormat.table,
    output: OutputOpt = None,
    per_neuron: str | None = typer.Option(
        None, help="List one site's neurons: dead indices and per-neuron activity."),
    eps: EpsOpt = 1e-3,
    tau: TauOpt = 0.025,
    min_active: MinActiveOpt = 0.01,
    channel_axis: ChannelAxisOpt = None,
    image_size: ImageSizeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    drop_columns: DropColumnsOpt = None,
    fast_path: FastPathOpt = True,
    distributed: DistributedOpt = None,
    dtype: DtypeOpt = None,
    num_workers: NumWorkersOpt = 0,
    compile_model: CompileOpt = False,
    html: HtmlOpt = None,
    plot: PlotOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Scan MODEL on data and report dead, dormant and saturated neurons per site.

    Example: deadrelu scan model.pt --arch nets.py:Net --data val.npz --format json -o scan.json
    """
    from deadrelu.report import render

    with user_errors(ctx):
        # Fail before the scan, not after it.
        guard_outputs({"--output": output, "--html": html},
                      command_inputs(model, data=data, arch=arch, ctx=ctx,
                                     outputs=[output, html]))
        result = run_scan(model, data, arch, arch_kwargs, trust_pickle, input_shape,
                          batch_size, samples, device, eps, tau, min_active, channel_axis,
                          image_size, mean, std, drop_columns, fast_path, distributed, dtype,
                          num_workers, compile_model)
        from deadrelu.distributed import is_primary

        if not is_primary():  # every rank has the combined result; rank 0 reports it
            return
        if html is not None:
            write_html(result, html)
        if per_neuron is not None:
            site = result.site(per_neuron)
            write_formatted(output_format, output, json=lambda: render.per_neuron_json(site),
                            markdown=lambda: render.per_neuron_markdown(site),
                            table=lambda c: render.render_per_neuron(site, c))
            return
        write_scan(result, output_format, output)
        if plot:
            emit_plot(result, output_format, output)


__all__ = ["DeadReluError", "run_scan", "scan_command"]
