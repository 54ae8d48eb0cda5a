"""`deadrelu check`: scan (or read a scan report) and gate it on limits, for CI."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deadrelu.cli.common import (
    ArchKwargsOpt,
    ArchOpt,
    BatchSizeOpt,
    ChannelAxisOpt,
    CompileOpt,
    ConfigOpt,
    DataOpt,
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
    NumWorkersOpt,
    OutputFormat,
    OutputOpt,
    SamplesOpt,
    StdOpt,
    TauOpt,
    TrustPickleOpt,
    user_errors,
    warn,
    write_formatted,
    write_output,
)
from deadrelu.cli.guard import command_inputs, guard_outputs
from deadrelu.cli.scan import run_scan
from deadrelu.errors import DeadReluError

if TYPE_CHECKING:
    from deadrelu.gate import GateResult

LIMITS = "Limits (a limit given is checked)"
BASELINE = "Baseline"


def check_command(
    ctx: typer.Context,
    model: Annotated[Path | None, typer.Argument(
        help="Model file, as for scan. Optional with --scan or a `model` config key.",
        show_default=False)] = None,
    data: DataOpt = None,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    trust_pickle: TrustPickleOpt = False,
    input_shape: InputShapeOpt = None,
    batch_size: BatchSizeOpt = 32,
    samples: SamplesOpt = None,
    device: DeviceOpt = "cpu",
    scan_report: Annotated[Path | None, typer.Option(
        "--scan", help="Gate an existing JSON scan report (scan --format json, or merge) "
        "instead of running the model.", show_default=False)] = None,
    max_dead_rate: Annotated[float | None, typer.Option(
        help="Model: dead neurons / neurons.", rich_help_panel=LIMITS)] = None,
    max_dead: Annotated[int | None, typer.Option(
        help="Model: dead neurons.", rich_help_panel=LIMITS)] = None,
    max_dormant_rate: Annotated[float | None, typer.Option(
        help="Model: dormant neurons / neurons.", rich_help_panel=LIMITS)] = None,
    max_saturation: Annotated[float | None, typer.Option(
        help="Model: inactive elements / elements over all sites (site saturations weighted "
        "by elements).", rich_help_panel=LIMITS)] = None,
    max_site_dead_rate: Annotated[float | None, typer.Option(
        help="Every site: dead rate.", rich_help_panel=LIMITS)] = None,
    max_site_dead: Annotated[int | None, typer.Option(
        help="Every site: dead neurons.", rich_help_panel=LIMITS)] = None,
    max_site_dormant_rate: Annotated[float | None, typer.Option(
        help="Every site: dormant rate.", rich_help_panel=LIMITS)] = None,
    max_site_saturation: Annotated[float | None, typer.Option(
        help="Every site: saturation (fraction of inactive elements).",
        rich_help_panel=LIMITS)] = None,
    ignore: Annotated[list[str] | None, typer.Option(
        "--ignore", help="Leave sites matching this glob out of every check (repeatable).",
        rich_help_panel=LIMITS, show_default=False)] = None,
    baseline: Annotated[Path | None, typer.Option(
        help="An earlier JSON scan of the same architecture to compare with.",
        rich_help_panel=BASELINE, show_default=False)] = None,
    max_new_dead: Annotated[int | None, typer.Option(
        help="Neurons dead now that were alive in the baseline (model total).",
        rich_help_panel=BASELINE)] = None,
    max_dead_rate_increase: Annotated[float | None, typer.Option(
        help="Rise of the model dead rate since the baseline, in rate points (0.01 = 1 "
        "point).", rich_help_panel=BASELINE)] = None,
    junit: Annotated[Path | None, typer.Option(
        help="Also write a JUnit XML file: one testcase per site and model-level limit.",
        show_default=False)] = None,
    output_format: FormatOpt = OutputFormat.table,
    output: OutputOpt = None,
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
    config: ConfigOpt = None,
) -> None:
    """Scan MODEL and fail (exit 1) when a limit is exceeded: a CI gate on trained models.

    Exit 0: every limit holds; 1: a limit or baseline check failed (each failure listed with
    site, figure and limit); 2: usage or input error. Under GitHub Actions
    (GITHUB_ACTIONS=true) it also writes ::error annotations and a step summary.

    Example: deadrelu check model.pt --arch nets.py:Net --data val.npz --max-dead-rate 0.05
    --max-site-dead-rate 0.5 --baseline main-scan.json --max-new-dead 0 --junit report.xml
    """
    from deadrelu.config import Config
    from deadrelu.distributed import is_primary
    from deadrelu.gate import Limits, SiteLimits, evaluate
    from deadrelu.report.load import load_report

    started = time.monotonic()
    with user_errors(ctx):
        cfg: Config = ctx.meta.get("deadrelu.config") or Config(None)
        limits = Limits(
            max_dead_rate=max_dead_rate, max_dead=max_dead, max_dormant_rate=max_dormant_rate,
            max_saturation=max_saturation,
            site=SiteLimits(max_site_dead_rate, max_site_dead, max_site_dormant_rate,
                            max_site_saturation),
            overrides=tuple(cfg.sites), ignore=tuple(ignore or ()),
            max_new_dead=max_new_dead, max_dead_rate_increase=max_dead_rate_increase)
        limits.validate()  # before the scan: a bad limit fails in a second, not a minute
        guard_outputs({"--output": output, "--junit": junit},
                      command_inputs(model, others=[scan_report, baseline], data=data,
                                     arch=arch, ctx=ctx, outputs=[output, junit]))
        before = load_report(baseline) if baseline is not None else None
        if scan_report is None and model is None:
            raise DeadReluError("no model to check: give MODEL, --scan REPORT.json, or a "
                                "`model` key in [tool.deadrelu]")
        if scan_report is not None:
            if model is not None:
                warn(f"--scan {scan_report} is checked; MODEL {model} is not scanned")
            result = load_report(scan_report)
            # A saved scan keeps the settings it was made with; say when the flags differ.
            asked = {"eps": eps, "tau": tau, "min_active": min_active}
            kept = result.settings.to_dict()
            differ = [f"--{k.replace('_', '-')} {v:g} (the scan used {kept[k]:g})"
                      for k, v in asked.items() if v != kept[k]]
            if differ:
                warn(f"{', '.join(differ)}: a saved scan is checked with its own settings; "
                     "re-scan to apply others")
        else:
            assert model is not None
            result = run_scan(model, data, arch, arch_kwargs, trust_pickle, input_shape,
                              batch_size, samples, device, eps, tau, min_active, channel_axis,
                              image_size, mean, std, drop_columns, fast_path, distributed,
                              dtype, num_workers, compile_model)
        # Warned once the scan has run: a bad input is then the only line.
        if limits.is_empty():
            warn("no limits set (--max-dead-rate, --max-site-dead-rate, …, or [tool.deadrelu]"
                 "): the check passes whatever the scan finds")
        gate = evaluate(result, limits, before, str(baseline))
        # Under torchrun every rank has the combined scan, so the same verdict and exit code;
        # rank 0 alone prints and writes it.
        if is_primary():
            report_gate(gate, output_format, output, junit, time.monotonic() - started)
    if not gate.passed:
        raise typer.Exit(1)


def report_gate(gate: GateResult, output_format: OutputFormat, output: Path | None,
                junit: Path | None, seconds: float) -> None:
    """The verdict: its rendering, the JUnit file and GitHub Actions annotations."""
    from deadrelu.report import gate_render, github
    from deadrelu.report import junit as junit_xml

    for glob in gate.unmatched_globs:
        warn(f"the site glob {glob!r} matches no site of this model")
    write_formatted(output_format, output,
                    json=lambda: gate_render.render_check_json(gate),
                    markdown=lambda: gate_render.render_check_markdown(gate),
                    table=lambda c: gate_render.render_check_table(gate, c))
    if junit is not None:
        write_output(junit_xml.render_junit(gate, seconds), junit)
    if github.in_github_actions():
        trouble = github.emit(gate)
        if trouble is not None:
            warn(trouble)
