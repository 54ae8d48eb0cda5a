"""Output safety, checked before any work: no output replaces a file the command reads, and
no two outputs of one command name the same file.

A command's inputs are more than its positional arguments: the ``--data`` file, folder or
``file.py:function`` module, the ``--arch`` source file, the config file in use and, for an
ONNX model, the files holding its external weights. Writing a report over any of them would
destroy it silently (the report is written atomically, so it replaces the file whole).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import typer

from deadrelu.errors import DeadReluError


def check_writable(output: Path, inputs: Sequence[Path]) -> None:
    """Fail when ``output`` cannot be written, or would replace an input or a file inside an
    input folder."""
    resolved = Path(os.path.realpath(output))
    directory = resolved.parent
    if not directory.is_dir():
        raise DeadReluError("cannot write: the directory does not exist", path=output)
    if output.is_dir():
        raise DeadReluError("cannot write: it is a directory", path=output)
    if output.exists():
        for src in inputs:
            if not src.exists():
                continue
            real = Path(os.path.realpath(src))
            if real == resolved:
                raise DeadReluError(f"would overwrite the input {src}; choose another file",
                                    path=output)
            if real.is_dir() and resolved.is_relative_to(real):
                raise DeadReluError(f"would overwrite a file of the input folder {src}; "
                                    "choose another file", path=output)
    if not os.access(directory, os.W_OK):
        raise DeadReluError("cannot write: the directory is not writable", path=output)


def guard_outputs(outputs: Mapping[str, Path | None], inputs: Sequence[Path]) -> None:
    """Every given output (flag -> path) writable, none an input, no two the same file."""
    seen: dict[str, str] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        check_writable(path, inputs)
        key = os.path.realpath(path)
        if key in seen:
            raise DeadReluError(f"{seen[key]} and {flag} name the same file; give each its "
                                "own", path=path)
        seen[key] = flag


def command_inputs(model: Path | None = None, *, others: Sequence[Path | None] = (),
                   data: str | None = None, arch: str | None = None,
                   ctx: typer.Context | None = None,
                   outputs: Sequence[Path | None] = ()) -> list[Path]:
    """Every file a command reads (see the module docstring)."""
    files = [p for p in (model, *others) if p is not None]
    if data:
        files += [Path(data)] if Path(data).exists() else user_code_files(data)
    files += user_code_files(arch)
    cfg = ctx.meta.get("deadrelu.config") if ctx is not None else None
    if cfg is not None and cfg.path is not None:
        files.append(cfg.path)
    # Only an existing output can replace a file, so the model is parsed only then.
    if model is not None and any(o is not None and o.exists() for o in outputs):
        files += onnx_external_files(model)
    return files


def user_code_files(spec: str | None) -> list[Path]:
    """The Python source a ``file.py:name`` or ``module:name`` spec names, found without
    importing anything (a dotted module is looked for under the current folder and on the
    path's top level only)."""
    if not spec:
        return []
    target, sep, _ = spec.rpartition(":")
    if not sep or not target:
        return []
    if target.endswith(".py") or "/" in target or os.sep in target:
        return [Path(target)]
    relative = Path(*target.split("."))
    roots = [Path.cwd()] + [Path(p) for p in sys.path if p and Path(p).is_dir()]
    return [root / c for root in roots
            for c in (relative.with_suffix(".py"), relative / "__init__.py")
            if (root / c).is_file()]


def onnx_external_files(model: Path) -> list[Path]:
    """The files an ONNX model keeps external tensors in ([] for anything else)."""
    from deadrelu.formats import detect

    try:
        if detect(model) != "onnx":
            return []
        import onnx

        from deadrelu.backends.onnx_graph import external_locations

        proto = onnx.load(str(model), load_external_data=False)
    except Exception:  # not readable as ONNX: the command reports that itself
        return []
    return [model.parent / location for location in external_locations(proto)]
