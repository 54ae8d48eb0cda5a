"""`deadrelu sites`: the activation sites of a model, without scanning data."""

from __future__ import annotations

import json

from deadrelu.cli.common import (
    ArchKwargsOpt,
    ArchOpt,
    FormatOpt,
    InputShapeOpt,
    ModelArg,
    OutputFormat,
    OutputOpt,
    TrustPickleOpt,
    user_errors,
    write_output,
    write_rich,
)
from deadrelu.cli.guard import command_inputs, guard_outputs


def sites_command(
    model: ModelArg,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    trust_pickle: TrustPickleOpt = False,
    input_shape: InputShapeOpt = None,
    output_format: FormatOpt = OutputFormat.table,
    output: OutputOpt = None,
) -> None:
    """List MODEL's activation sites (name, kind, ONNX nodes) in execution order.

    ONNX and .pt2 are read without running; eager and TorchScript models run one synthetic
    sample. Example: deadrelu sites model.onnx
    """
    from deadrelu.sites import list_sites

    with user_errors():
        guard_outputs({"--output": output},
                      command_inputs(model, arch=arch, outputs=[output]))
        listed = list_sites(str(model), arch=arch, arch_kwargs=arch_kwargs,
                            trust_pickle=trust_pickle, input_shape=input_shape)
        if output_format is OutputFormat.json:
            write_output(json.dumps([s.to_dict() for s in listed], indent=2) + "\n", output)
            return
        nodes = any(s.ops for s in listed)  # only ONNX sites are made of graph nodes
        if output_format is OutputFormat.markdown:
            head = ["site", "kind", *(["ONNX nodes"] if nodes else []), "measured"]
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join([f"`{s.name}`", s.kind, *([s.ops] if nodes else []),
                                         "yes" if s.measured else "no: " + s.reason]) + " |"
                      for s in listed]
            write_output("\n".join(lines) + "\n", output)
            return

        def draw(console: object) -> None:
            from rich.table import Table
            from rich.text import Text

            # A line of its own: as the table's title it would wrap to the table's width.
            console.print(Text(f"{len(listed)} activation sites of {model}"))  # type: ignore[attr-defined]
            table = Table(box=None)
            for col in ("site", "kind", *(["ONNX nodes"] if nodes else []), "measured"):
                table.add_column(col)
            for s in listed:
                table.add_row(s.name, s.kind, *([s.ops] if nodes else []),
                              "yes" if s.measured else f"[yellow]no[/]: {s.reason}")
            console.print(table)  # type: ignore[attr-defined]

        write_rich(draw, output)
