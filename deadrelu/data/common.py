"""Checks and batching shared by the readers: shapes, dtypes, which array feeds which input."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deadrelu.data.source import Batch, DataSource, InputSpec, Shape
from deadrelu.errors import DeadReluError, plural

# Arrays a single-input model reads from a file that holds several: the usual names for the
# inputs, and the usual names for labels (which are ignored).
_INPUT_NAMES = ("x", "input", "inputs", "data")
_LABEL_NAMES = frozenset({"y", "label", "labels", "target", "targets"})
_NUMERIC_KINDS = "fiub"  # float, signed, unsigned, bool


@dataclass
class Opts:
    inputs: list[InputSpec]
    wants: dict[str, Shape | None]  # expected shape per input, dim 0 a wildcard
    batch_size: int
    samples: int | None
    # Inputs the model can do without (forward's parameters with a default): fed only from
    # an array or key of exactly their name.
    optional: list[InputSpec] = field(default_factory=list)

    @property
    def specs(self) -> dict[str, InputSpec]:
        return {i.name: i for i in (*self.inputs, *self.optional)}

    def total(self, n: int) -> int:
        return n if self.samples is None else min(n, self.samples)


def wanted(spec: InputSpec, shapes: Mapping[str, tuple[int, ...]]) -> Shape | None:
    shape: Shape | None = shapes.get(spec.name, spec.shape)
    if shape is None or len(shape) == 0:
        return shape
    return (None, *shape[1:])


def _show(want: Shape) -> str:
    dims = ["N" if i == 0 else ("?" if d is None else str(d)) for i, d in enumerate(want)]
    return "(" + ", ".join(dims) + (",)" if len(dims) == 1 else ")")


def _fits(want: Shape, got: tuple[int, ...]) -> bool:
    return len(want) == len(got) and all(
        i == 0 or w is None or w == g for i, (w, g) in enumerate(zip(want, got, strict=True)))


def _mismatch(name: str, want: Shape, got: tuple[int, ...], what: str,
              path: str) -> DeadReluError:
    hint = ""
    if (len(want) == 4 == len(got) and want[1] is not None and got[3] == want[1]
            and got[1] != want[1]):
        hint = "; it looks channels-last: save it as NCHW (np.transpose(a, (0, 3, 1, 2)))"
    return DeadReluError(f"input {name!r} expects shape {_show(want)} but {what} has "
                         f"{tuple(got)}{hint}", path=path)


def check_shape(name: str, want: Shape | None, got: tuple[int, ...], what: str,
                 path: str) -> None:
    if want is not None and not _fits(want, got):
        raise _mismatch(name, want, got, what, path)


def reshape_to(name: str, want: Shape | None, got: tuple[int, ...], what: str,
                path: str) -> tuple[int, ...] | None:
    """The per-sample shape to reshape rows to when the input's rank differs (csv, images)."""
    if want is None or _fits(want, got):
        return None
    fixed = want[1:]
    if len(want) != len(got) and all(d is not None for d in fixed):
        dims = tuple(d for d in fixed if d is not None)
        if math.prod(dims) == math.prod(got[1:]):
            return dims
    raise _mismatch(name, want, got, what, path)


def float_target(spec: InputSpec) -> np.dtype[Any] | None:
    """The dtype float data is cast to: the input's float dtype (float32 for bfloat16 & co)."""
    try:
        dtype = np.dtype(spec.dtype)
    except TypeError:
        dtype = None
    if dtype is not None and dtype.kind == "f":
        return dtype
    # numpy has no bfloat16; once onnx is imported ml_dtypes registers one numpy cannot add.
    return np.dtype(np.float32) if "float" in spec.dtype else None


def check_dtype(dtype: np.dtype[Any], what: str, path: str) -> None:
    if dtype.kind not in _NUMERIC_KINDS:
        raise DeadReluError(f"{what} holds {dtype} values, not numbers", path=path)


@dataclass(frozen=True)
class Fix:
    """How one input's slices are finished: float cast and per-sample reshape."""

    dtype: np.dtype[Any] | None = None
    sample_shape: tuple[int, ...] | None = None

    def __call__(self, part: np.ndarray) -> np.ndarray:
        # np.array copies: a memmap slice must not keep the file mapped, and torch wants
        # writable memory.
        dtype = self.dtype if self.dtype is not None and part.dtype.kind == "f" else None
        out = np.array(part, dtype=dtype, order="C")
        if self.sample_shape is not None:
            out = out.reshape((len(out), *self.sample_shape))
        return out


class Slicer:
    """Equal-length arrays cut into batches; ``arrays`` may be memory-mapped or made lazily."""

    def __init__(self, arrays: Mapping[str, np.ndarray] | Callable[[], Mapping[str, np.ndarray]],
                 total: int, batch_size: int, fixes: Mapping[str, Fix]) -> None:
        self.arrays = arrays
        self.total = total
        self.batch_size = batch_size
        self.fixes = fixes

    def __call__(self) -> Iterator[Batch]:
        arrays = self.arrays if isinstance(self.arrays, Mapping) else self.arrays()
        for start in range(0, self.total, self.batch_size):
            stop = min(start + self.batch_size, self.total)
            yield {name: self.fixes[name](a[start:stop]) for name, a in arrays.items()}


def single_input(inputs: list[InputSpec], kind: str, path: str) -> InputSpec:
    if len(inputs) > 1:
        names = ", ".join(i.name for i in inputs)
        raise DeadReluError(
            f"{kind} feeds one input but the model has {len(inputs)} ({names}): save a .npz "
            "with one array per input, named after the inputs (np.savez(f, name=array, ...))",
            path=path)
    return inputs[0]


def choose(keys: Sequence[str], inputs: list[InputSpec], what: str, path: str,
           optional: Sequence[InputSpec] = ()) -> dict[str, str]:
    """Which named array feeds which input (input name -> key); an optional input is fed
    by a key of exactly its name."""
    chosen = _choose_required(keys, inputs, what, path)
    for spec in optional:
        if spec.name in keys and spec.name not in chosen.values():
            chosen[spec.name] = spec.name
    return chosen


def _choose_required(keys: Sequence[str], inputs: list[InputSpec], what: str,
                     path: str) -> dict[str, str]:
    names = [i.name for i in inputs]
    if all(n in keys for n in names):
        return {n: n for n in names}
    positional = [f"arr_{i}" for i in range(len(names))]
    if not any(n in keys for n in names) and all(p in keys for p in positional):
        return dict(zip(names, positional, strict=True))
    if len(names) == 1:
        if len(keys) == 1:
            return {names[0]: keys[0]}
        lowered = {k.lower(): k for k in keys}
        for usual in _INPUT_NAMES:
            if usual in lowered:
                return {names[0]: lowered[usual]}
        rest = [k for k in keys if k.lower() not in _LABEL_NAMES]
        if len(rest) == 1:
            return {names[0]: rest[0]}
    missing = [n for n in names if n not in keys]
    raise DeadReluError(
        f"{what} holds {', '.join(map(repr, keys)) or 'nothing'} but the model's inputs are "
        f"{', '.join(map(repr, names))} (no array for {', '.join(map(repr, missing))}): name "
        "the arrays after the inputs", path=path)


def same_length(lengths: Mapping[str, int], path: str) -> int:
    if len(set(lengths.values())) > 1:
        said = ", ".join(f"{k!r} has {n:,}" for k, n in lengths.items())
        raise DeadReluError(f"the arrays differ in length along axis 0 ({said}); every input "
                            "needs one entry per sample", path=path)
    return next(iter(lengths.values()))


def counted(name: str, total: int, n: int, unit: str = "sample") -> str:
    return f"{name} ({plural(n, unit)})" if total == n else \
        f"{name} ({total:,} of {plural(n, unit)})"


def arrays_source(path: Path, opts: Opts, shapes: Mapping[str, tuple[int, ...]],
                   dtypes: Mapping[str, np.dtype[Any]], what: Mapping[str, str],
                   arrays: Mapping[str, np.ndarray] | Callable[[], Mapping[str, np.ndarray]],
                   ) -> DataSource:
    """Checks shared by npy/npz/pt: numeric, rank and fixed dims, one length; then batches."""
    label = str(path)
    specs = opts.specs
    for name, shape in shapes.items():
        check_dtype(dtypes[name], what[name], label)
        if len(shape) == 0:
            raise DeadReluError(f"{what[name]} holds a single value (shape ()), not an array "
                                "with one entry per sample along axis 0", path=label)
        check_shape(name, opts.wants[name], shape, what[name], label)
    n = same_length({what[k]: s[0] for k, s in shapes.items()}, label)
    if n == 0:
        raise DeadReluError("the data set has no samples (its arrays have length 0)",
                            path=label)
    total = opts.total(n)
    fixes = {name: Fix(float_target(specs[name])) for name in shapes}
    return DataSource(counted(path.name, total, n), False, total,
                      Slicer(arrays, total, opts.batch_size, fixes), label, total)


