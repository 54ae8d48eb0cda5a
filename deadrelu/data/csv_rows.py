"""``.csv`` files: one numeric row per sample."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deadrelu.data.common import (
    Fix,
    Opts,
    Slicer,
    counted,
    float_target,
    reshape_to,
    single_input,
)
from deadrelu.data.source import DataSource
from deadrelu.errors import DeadReluError


def from_csv(path: Path, opts: Opts, drop_columns: Sequence[str]) -> DataSource:
    label = str(path)
    spec = single_input(opts.inputs, "a .csv file", label)
    table = _read_csv(path, drop_columns)
    if len(table) == 0:
        raise DeadReluError("the data set has no samples (the .csv has no data rows)",
                            path=label)
    sample_shape = reshape_to(spec.name, opts.wants[spec.name], table.shape, path.name, label)
    total = opts.total(len(table))
    fix = Fix(float_target(spec), sample_shape)
    return DataSource(counted(path.name, total, len(table)), False, total,
                      Slicer({spec.name: table}, total, opts.batch_size, {spec.name: fix}),
                      label, total)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_csv(path: Path, drop_columns: Sequence[str]) -> np.ndarray:
    """The numeric table (rows, columns) as float32, header and dropped columns removed."""
    label = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's BOM
            first = f.readline()
            f.seek(0)
            delimiter = ","
            if "," not in first:
                delimiter = ";" if ";" in first else ("\t" if "\t" in first else ",")
            reader = csv.reader(f, delimiter=delimiter)
            rows: list[list[str]] = []
            lines: list[int] = []
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue  # blank line
                rows.append([c.strip() for c in row])
                lines.append(reader.line_num)
    except UnicodeDecodeError:
        raise DeadReluError("not a text (UTF-8) .csv file", path=label) from None
    except csv.Error as exc:
        raise DeadReluError(f"not a readable .csv file ({exc})", path=label) from None
    except OSError as exc:
        raise DeadReluError(f"cannot read it ({exc.strerror or exc})", path=label) from None
    if not rows:
        raise DeadReluError("the data set has no samples (the .csv has no rows)", path=label)

    # A first row with a non-numeric cell is a header (empty cells say nothing either way).
    header = rows[0] if any(c and not _is_number(c) for c in rows[0]) else None
    if header is not None:
        rows, lines = rows[1:], lines[1:]
    width = len(header) if header is not None else len(rows[0]) if rows else 0
    for row, line in zip(rows, lines, strict=True):
        if len(row) != width:
            raise DeadReluError(f"line {line} has {len(row)} columns but "
                                f"{'the header' if header else 'the first row'} has {width}",
                                path=label)
    dropped = _dropped(drop_columns, header, width, label)
    keep = [c for c in range(width) if c not in dropped]
    if not keep:
        raise DeadReluError("--drop-columns drops every column; nothing is left to feed the "
                            "model", path=label)
    if not rows:
        return np.zeros((0, len(keep)), dtype=np.float32)
    cells = np.array(rows, dtype=str)[:, keep]
    try:
        return cells.astype(np.float32)
    except ValueError:
        pass
    # Find the first bad cell to name it.
    for r, row in enumerate(cells):
        for k, cell in enumerate(row):
            if not _is_number(str(cell)):
                col = keep[k]
                where = f"column {header[col]!r}" if header else f"column {col} (0-based)"
                problem = "is empty" if not cell else f"holds {str(cell)!r}, not a number"
                raise DeadReluError(
                    f"line {lines[r]}, {where} {problem}: every column fed to the model must "
                    "be numeric (drop others with --drop-columns)", path=label)
    raise AssertionError("unreachable: astype failed but every cell is a number")


def _dropped(drop: Sequence[str], header: list[str] | None, width: int, label: str) -> set[int]:
    out = set()
    for item in drop:
        item = str(item).strip()
        if header is not None and item in header:
            out.add(header.index(item))
        elif item.isdigit():
            if int(item) >= width:
                raise DeadReluError(f"--drop-columns: column {item} is out of range (the file "
                                    f"has {width} columns, numbered from 0)", path=label)
            out.add(int(item))
        elif header is not None:
            raise DeadReluError(f"--drop-columns: no column named {item!r} (the header has: "
                                f"{', '.join(header)})", path=label)
        else:
            raise DeadReluError(f"--drop-columns: the file has no header row, so name columns "
                                f"by 0-based number, not {item!r}", path=label)
    return out
