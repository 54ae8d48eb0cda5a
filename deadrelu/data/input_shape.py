"""``--input-shape``: the shape text a user gives for each model input."""

from __future__ import annotations

import re
from collections.abc import Sequence

from deadrelu.data.source import InputSpec
from deadrelu.errors import DeadReluError


def parse_input_shapes(text: str | None, inputs: Sequence[InputSpec]) -> dict[str, tuple[int, ...]]:
    """Parse ``--input-shape``: ``"1,3,32,32"`` (the first input) or ``"a=1,3;b=1,128"``.

    Entries are separated by ``;`` or whitespace; dims by ``,`` (``x`` also works: 1x3x32x32).
    """
    if text is None or not text.strip():
        return {}
    names = [i.name for i in inputs]
    # Glue "a = 1, 3" together so that whitespace can separate entries.
    glued = re.sub(r"\s*([,=×])\s*", r"\1", text.strip())
    parts = [p for p in re.split(r"[;\s]+", glued) if p]
    shapes: dict[str, tuple[int, ...]] = {}
    for part in parts:
        name, eq, dims = part.rpartition("=")
        if not eq:
            if len(parts) > 1:
                raise DeadReluError(
                    f"--input-shape: {part!r} has no input name; with several entries write "
                    f"name=dims for each (the model's inputs: {', '.join(names)})")
            if not names:
                raise DeadReluError("--input-shape: the model has no inputs")
            name = names[0]
        elif name not in names:
            raise DeadReluError(
                f"--input-shape: the model has no input named {name!r} "
                f"(its inputs: {', '.join(names) or 'none'})")
        if name in shapes:
            raise DeadReluError(f"--input-shape: input {name!r} is given twice")
        shapes[name] = _parse_dims(dims, part)
    return shapes


def _parse_dims(dims: str, part: str) -> tuple[int, ...]:
    pieces = re.split(r"[,x×]", dims.lower())
    out = []
    for piece in pieces:
        if not piece.isdigit() or int(piece) < 1:
            what = f"{piece!r} is not" if piece else "a dimension is missing or not"
            raise DeadReluError(
                f"--input-shape: in {part!r}, {what} a positive whole number; write the dims "
                "like 1,3,32,32 or 1x3x32x32")
        out.append(int(piece))
    return tuple(out)
