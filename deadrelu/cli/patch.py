"""`deadrelu patch`: rewrite dead ReLU / ReLU6 activations, re-scan, report the drift."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from deadrelu.cli.common import (
    ArchKwargsOpt,
    ArchOpt,
    BatchSizeOpt,
    ChannelAxisOpt,
    DataOpt,
    DeviceOpt,
    DropColumnsOpt,
    EpsOpt,
    FastPathOpt,
    ImageSizeOpt,
    InputShapeOpt,
    MeanOpt,
    MinActiveOpt,
    ModelArg,
    SamplesOpt,
    StdOpt,
    TauOpt,
    TrustPickleOpt,
    parse_floats,
    parse_image_size,
    user_errors,
    warn,
    write_output,
    write_rich,
)
from deadrelu.cli.guard import command_inputs, guard_outputs


class Target(str, Enum):
    leaky = "leaky"
    elu = "elu"
    prelu = "prelu"


class Scope(str, Enum):
    layers = "layers"
    neurons = "neurons"


class RecordFormat(str, Enum):
    table = "table"
    json = "json"


def patch_command(
    model: ModelArg,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="The patched model. Its suffix picks the format: .pt2 "
        "(torch.export program; rewrites the graph, so functional calls and modules called "
        "at several sites are patched per call; loads anywhere with torch.export.load), .pt "
        "(the whole pickled nn.Module with built-in modules swapped in; loads with "
        "torch.load(weights_only=False) only where your model's classes import), .onnx.",
        show_default=False)] = None,
    data: DataOpt = None,
    to: Annotated[Target, typer.Option(
        "--to", help="leaky: LeakyReLU(alpha); elu: ELU(alpha); prelu: per-channel PReLU.")
    ] = Target.leaky,
    alpha: Annotated[float | None, typer.Option(
        help="Negative-side slope (leaky, prelu; default 0.01) or ELU alpha (default 1). "
        "0 reproduces the original model exactly.")] = None,
    scope: Annotated[Scope | None, typer.Option(
        help="layers: the whole activation changes; neurons: only the dead channels get the "
        "slope (a per-channel PReLU, exactly 0 on live channels). Default: neurons for prelu, "
        "layers otherwise.")] = None,
    scan: Annotated[Path | None, typer.Option(
        "--scan", help="Plan from this JSON scan report (deadrelu scan --format json) "
        "instead of a fresh scan; it must be of this very model (sha256 and sites).")] = None,
    sites: Annotated[list[str] | None, typer.Option(
        "--sites", help="Only sites matching this glob, e.g. 'layer3.*' (repeatable).")] = None,
    min_dead_rate: Annotated[float, typer.Option(
        help="Only sites with at least this fraction of dead neurons.")] = 0.0,
    kinds: Annotated[str, typer.Option(
        help="Activation kinds to patch, comma separated (relu, relu6).")] = "relu,relu6",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan; write nothing.")] = False,
    in_place: Annotated[bool, typer.Option(
        "--in-place", help="Allow -o to be the input file itself.")] = False,
    compensate: Annotated[bool, typer.Option(
        "--compensate", help="Fold the mean shift the revived channels add into the bias "
        "of the Linear / 1×1 Conv that consumes them; the drift is reported with and "
        "without.")] = False,
    labels: Annotated[str | None, typer.Option(
        help="Name of the label array in the --data .npz (default: y, label(s), target(s) "
        "when present) for accuracy before / after.")] = None,
    output_format: Annotated[RecordFormat, typer.Option(
        "--format", "-f", help="table, or json: the patch record (plan, changed sites, "
        "drift).")] = RecordFormat.table,
    record: Annotated[Path | None, typer.Option(
        help="Write the patch record to FILE instead of stdout.")] = None,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    trust_pickle: TrustPickleOpt = False,
    input_shape: InputShapeOpt = None,
    batch_size: BatchSizeOpt = 32,
    samples: SamplesOpt = None,
    device: DeviceOpt = "cpu",
    eps: EpsOpt = 1e-3,
    tau: TauOpt = 0.025,
    min_active: MinActiveOpt = 0.01,
    channel_axis: ChannelAxisOpt = None,
    image_size: ImageSizeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    drop_columns: DropColumnsOpt = None,
    fast_path: FastPathOpt = True,
) -> None:
    """Rewrite dead ReLU / ReLU6 neurons into LeakyReLU, ELU or per-channel PReLU.

    Writes a patched copy (never over the input), re-scans it on the same data and reports
    dead neurons before → after per site and the drift of the model's outputs.

    Example: deadrelu patch model.pt --arch nets.py:Net --data val.npz --to prelu -o fixed.pt2
    """
    from deadrelu.patch.api import patch
    from deadrelu.patch.record import render_table
    from deadrelu.stats import Settings

    with user_errors():
        inputs = command_inputs(model, others=[scan], data=data, arch=arch,
                                outputs=[output, record])
        # -o over the model itself is patch()'s to refuse (or allow, with --in-place).
        guard_outputs({"--output": output, "--record": record},
                      [p for p in inputs if p is not model])
        guard_outputs({"--record": record}, [model])
        result = patch(
            model, data, output=output, to=to.value, alpha=alpha,
            scope=scope.value if scope else None, scan=scan, sites=sites or (),
            min_dead_rate=min_dead_rate,
            kinds=[k.strip() for k in kinds.split(",") if k.strip()],
            dry_run=dry_run, in_place=in_place, compensate=compensate, labels=labels,
            arch=arch, arch_kwargs=arch_kwargs, trust_pickle=trust_pickle,
            input_shape=input_shape, batch_size=batch_size, samples=samples,
            device=device, settings=Settings(eps=eps, tau=tau, min_active=min_active),
            channel_axis=channel_axis, image_size=parse_image_size(image_size),
            mean=parse_floats(mean, "--mean"), std=parse_floats(std, "--std"),
            drop_columns=[c.strip() for c in drop_columns.split(",")]
            if drop_columns else (), fast_path=fast_path)
        for note in result.notes:
            warn(note)  # on stderr; the JSON record keeps them too
        if output_format is RecordFormat.json:
            write_output(result.to_json(), record)
        else:
            write_rich(lambda c: render_table(result, c), record)
