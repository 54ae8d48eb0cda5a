"""Sample data for a scan: files, image folders, user functions or synthetic noise, as batches.

:func:`open_data` turns the ``--data`` value into a :class:`DataSource`, whose ``batches()``
yields ``{input name: array}`` dicts with the batch on axis 0. Every problem the user can fix
raises :class:`~deadrelu.errors.DeadReluError` naming the file. Large inputs stay on disk:
``.npy`` files are memory-mapped and ``.npz`` arrays are only read when iterated.

torch is imported only where a source needs it, so ``import deadrelu.data`` stays fast.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import math
import os
import re
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deadrelu.errors import DeadReluError

Batch = dict[str, np.ndarray]
Shape = tuple[int | None, ...]

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
SUPPORTED = ".npy, .npz, .pt/.pth, .csv, a folder of images, or module:function"
DEFAULT_SYNTHETIC_SAMPLES = 64

# Arrays a single-input model reads from a file that holds several: the usual names for the
# inputs, and the usual names for labels (which are ignored).
_INPUT_NAMES = ("x", "input", "inputs", "data")
_LABEL_NAMES = frozenset({"y", "label", "labels", "target", "targets"})
_NUMERIC_KINDS = "fiub"  # float, signed, unsigned, bool
# Last parts of state-dict keys ("fc.weight", "bn.running_mean"): a model, not data.
_PARAM_NAMES = frozenset({"weight", "bias", "running_mean", "running_var",
                          "num_batches_tracked"})


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, shape (None dims are dynamic; None = unknown rank), dtype."""

    name: str
    shape: tuple[int | None, ...] | None
    dtype: str = "float32"


@dataclass
class DataSource:
    """Where the batches come from.

    ``loader`` makes a fresh iterable of ``{input name: array}`` batches on every call;
    ``batches()`` caps it at ``limit`` samples and raises when it yields no samples at all.
    ``path`` is what those errors name (the description when None).
    """

    description: str
    synthetic: bool
    samples: int | None
    loader: Callable[[], Iterable[Mapping[str, np.ndarray]]] | None = None
    path: str | None = None
    limit: int | None = None

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        """The batches, from the start on every call."""
        if self.loader is None:
            raise NotImplementedError("give DataSource a loader or override batches()")
        seen = 0
        it = iter(self.loader())
        try:
            for batch in it:
                out = dict(batch)
                n = len(next(iter(out.values()))) if out else 0
                if n == 0:
                    continue
                if self.limit is not None and seen + n > self.limit:
                    n = self.limit - seen
                    out = {k: v[:n] for k, v in out.items()}
                seen += n
                yield out
                if self.limit is not None and seen >= self.limit:
                    break
        finally:
            # Stop a user's generator or DataLoader workers now, not at garbage collection.
            close = getattr(it, "close", None)
            if callable(close):
                close()
        if seen == 0:
            raise DeadReluError("the data set has no samples", path=self.path or self.description)


# --------------------------------------------------------------------------- --input-shape

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
            raise DeadReluError(
                f"--input-shape: in {part!r}, {piece!r} is not a positive whole number; "
                "write the dims like 1,3,32,32")
        out.append(int(piece))
    return tuple(out)


# --------------------------------------------------------------------------- open_data

def open_data(
    spec: str | os.PathLike[str] | None,
    inputs: Sequence[InputSpec],
    *,
    batch_size: int = 32,
    samples: int | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    image_size: int | tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channels: int | None = None,
    drop_columns: Sequence[str] = (),
    seed: int = 0,
) -> DataSource:
    """Open ``--data`` for a model with these ``inputs``.

    ``spec`` is a path (``.npy``, ``.npz``, ``.pt``/``.pth``, ``.csv`` or a folder of images),
    ``module:function`` or ``path/to/file.py:function`` (a function that returns the batches),
    or None for synthetic inputs. ``samples`` caps every source; ``input_shapes``
    (``--input-shape``) overrides the model's input shapes for synthetic data and for the
    reshaping of csv rows and images.
    """
    inputs = list(inputs)
    if batch_size < 1:
        raise DeadReluError(f"--batch-size must be at least 1, got {batch_size}")
    if samples is not None and samples < 1:
        raise DeadReluError(f"--samples must be at least 1, got {samples}")
    if not inputs:
        raise DeadReluError("the model has no inputs to feed data to")
    shapes = dict(input_shapes or {})
    wants = {i.name: _wanted(i, shapes) for i in inputs}
    opts = _Opts(inputs, wants, batch_size, samples)

    if spec is None:
        _only_for("synthetic inputs", None, image_size=image_size, mean=mean, std=std,
                  drop_columns=drop_columns)
        return _synthetic(inputs, shapes, batch_size, samples, seed)

    text = os.fspath(spec)
    path = Path(text)
    if not path.exists():
        target = _callable_target(text)
        if target is not None:
            _only_for("module:function data", text, image_size=image_size, mean=mean, std=std,
                      drop_columns=drop_columns)
            return _from_callable(text, target, opts)
        if path.suffix.lower() == ".py":
            raise DeadReluError("no such file; a Python file is given as file.py:function",
                                path=text)
        raise DeadReluError("no such file or directory", path=text)
    if path.is_dir():
        _only_for("an image folder", text, drop_columns=drop_columns)
        return _from_images(path, opts, image_size, mean, std, channels)

    suffix = path.suffix.lower()
    if suffix == ".py":
        raise DeadReluError("a Python file is given as file.py:function, naming the function "
                            "that returns the batches", path=text)
    readers: dict[str, Callable[[Path, _Opts], DataSource]] = {
        ".npy": _from_npy, ".npz": _from_npz, ".pt": _from_torch, ".pth": _from_torch}
    if suffix not in readers and suffix != ".csv":
        hint = "; put images in a folder and pass the folder" if suffix in IMAGE_SUFFIXES else ""
        raise DeadReluError(f"unsupported data file type {suffix or '(no suffix)'!r}: use "
                            f"{SUPPORTED}{hint}", path=text)
    try:
        empty = path.stat().st_size == 0
    except OSError as exc:
        raise DeadReluError(f"cannot read it ({exc.strerror or exc})", path=text) from None
    if empty:
        raise DeadReluError("empty file", path=text)
    if suffix == ".csv":
        _only_for("a .csv file", text, image_size=image_size, mean=mean, std=std)
        return _from_csv(path, opts, drop_columns)
    _only_for(f"a {suffix} file", text, image_size=image_size, mean=mean, std=std,
              drop_columns=drop_columns)
    return readers[suffix](path, opts)


@dataclass
class _Opts:
    inputs: list[InputSpec]
    wants: dict[str, Shape | None]  # expected shape per input, dim 0 a wildcard
    batch_size: int
    samples: int | None

    def total(self, n: int) -> int:
        return n if self.samples is None else min(n, self.samples)


def _only_for(kind: str, path: str | None, *, image_size: object = None,
              mean: object = None, std: object = None, drop_columns: Sequence[str] = ()) -> None:
    # Options that would silently do nothing are an error: the user expects them to matter.
    given = [flag for flag, value in (("--image-size", image_size), ("--mean", mean),
                                      ("--std", std), ("--drop-columns", drop_columns))
             if value is not None and value != () and value != []]
    if given:
        where = {"--drop-columns": "a .csv file"}.get(given[0], "an image folder")
        raise DeadReluError(f"{given[0]} applies to {where}, not to {kind}", path=path)


def _wanted(spec: InputSpec, shapes: Mapping[str, tuple[int, ...]]) -> Shape | None:
    shape: Shape | None = shapes.get(spec.name, spec.shape)
    if shape is None or len(shape) == 0:
        return shape
    return (None, *shape[1:])


# --------------------------------------------------------------------------- shapes, dtypes

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


def _check_shape(name: str, want: Shape | None, got: tuple[int, ...], what: str,
                 path: str) -> None:
    if want is not None and not _fits(want, got):
        raise _mismatch(name, want, got, what, path)


def _reshape_to(name: str, want: Shape | None, got: tuple[int, ...], what: str,
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


def _float_target(spec: InputSpec) -> np.dtype[Any] | None:
    """The dtype float data is cast to: the input's float dtype (float32 for bfloat16 & co)."""
    try:
        dtype = np.dtype(spec.dtype)
    except TypeError:
        dtype = None
    if dtype is not None and dtype.kind == "f":
        return dtype
    # numpy has no bfloat16; once onnx is imported ml_dtypes registers one numpy cannot add.
    return np.dtype(np.float32) if "float" in spec.dtype else None


def _check_dtype(dtype: np.dtype[Any], what: str, path: str) -> None:
    if dtype.kind not in _NUMERIC_KINDS:
        raise DeadReluError(f"{what} holds {dtype} values, not numbers", path=path)


@dataclass(frozen=True)
class _Fix:
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


class _Slicer:
    """Equal-length arrays cut into batches; ``arrays`` may be memory-mapped or made lazily."""

    def __init__(self, arrays: Mapping[str, np.ndarray] | Callable[[], Mapping[str, np.ndarray]],
                 total: int, batch_size: int, fixes: Mapping[str, _Fix]) -> None:
        self.arrays = arrays
        self.total = total
        self.batch_size = batch_size
        self.fixes = fixes

    def __call__(self) -> Iterator[Batch]:
        arrays = self.arrays if isinstance(self.arrays, Mapping) else self.arrays()
        for start in range(0, self.total, self.batch_size):
            stop = min(start + self.batch_size, self.total)
            yield {name: self.fixes[name](a[start:stop]) for name, a in arrays.items()}


def _single_input(inputs: list[InputSpec], kind: str, path: str) -> InputSpec:
    if len(inputs) > 1:
        names = ", ".join(i.name for i in inputs)
        raise DeadReluError(
            f"{kind} feeds one input but the model has {len(inputs)} ({names}): save a .npz "
            "with one array per input, named after the inputs (np.savez(f, name=array, ...))",
            path=path)
    return inputs[0]


def _choose(keys: Sequence[str], inputs: list[InputSpec], what: str,
            path: str) -> dict[str, str]:
    """Which named array feeds which input (input name -> key)."""
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


def _same_length(lengths: Mapping[str, int], path: str) -> int:
    if len(set(lengths.values())) > 1:
        said = ", ".join(f"{k!r} has {n:,}" for k, n in lengths.items())
        raise DeadReluError(f"the arrays differ in length along axis 0 ({said}); every input "
                            "needs one entry per sample", path=path)
    return next(iter(lengths.values()))


def _counted(name: str, total: int, n: int, unit: str = "samples") -> str:
    return f"{name} ({n:,} {unit})" if total == n else f"{name} ({total:,} of {n:,} {unit})"


def _arrays_source(path: Path, opts: _Opts, shapes: Mapping[str, tuple[int, ...]],
                   dtypes: Mapping[str, np.dtype[Any]], what: Mapping[str, str],
                   arrays: Mapping[str, np.ndarray] | Callable[[], Mapping[str, np.ndarray]],
                   ) -> DataSource:
    """Checks shared by npy/npz/pt: numeric, rank and fixed dims, one length; then batches."""
    label = str(path)
    specs = {i.name: i for i in opts.inputs}
    for name, shape in shapes.items():
        _check_dtype(dtypes[name], what[name], label)
        if len(shape) == 0:
            raise DeadReluError(f"{what[name]} holds a single value (shape ()), not an array "
                                "with one entry per sample along axis 0", path=label)
        _check_shape(name, opts.wants[name], shape, what[name], label)
    n = _same_length({what[k]: s[0] for k, s in shapes.items()}, label)
    if n == 0:
        raise DeadReluError("the data set has no samples (its arrays have length 0)",
                            path=label)
    total = opts.total(n)
    fixes = {name: _Fix(_float_target(specs[name])) for name in shapes}
    return DataSource(_counted(path.name, total, n), False, total,
                      _Slicer(arrays, total, opts.batch_size, fixes), label, total)


# --------------------------------------------------------------------------- .npy / .npz

def _from_npy(path: Path, opts: _Opts) -> DataSource:
    label = str(path)
    spec = _single_input(opts.inputs, "a .npy file", label)
    try:
        # Memory-mapped: a batch is read (and copied) only when it is sliced.
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DeadReluError(f"not a readable .npy array ({_first_line(exc)})",
                            path=label) from None
    if not isinstance(array, np.ndarray):
        raise DeadReluError("not a .npy array (np.load gave an archive): rename it to .npz",
                            path=label)
    return _arrays_source(path, opts, {spec.name: array.shape}, {spec.name: array.dtype},
                          {spec.name: path.name}, {spec.name: array})


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]] | None:
    """Shape and dtype of every array in an .npz from the headers alone (None if unsure)."""
    fmt = np.lib.format
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                if not member.endswith(".npy"):
                    return None
                with zf.open(member) as f:
                    version = fmt.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = fmt.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, _, dtype = fmt.read_array_header_2_0(f)
                    else:
                        return None
                out[member[: -len(".npy")]] = (tuple(shape), np.dtype(dtype))
    except (zipfile.BadZipFile, ValueError, OSError, KeyError):
        return None
    return out


def _from_npz(path: Path, opts: _Opts) -> DataSource:
    label = str(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DeadReluError(f"not a readable .npz archive ({_first_line(exc)})",
                            path=label) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DeadReluError("is a .npy array, not an .npz archive: rename it to .npy",
                            path=label)
    with npz:
        keys = list(npz.files)
    if not keys:
        raise DeadReluError("the .npz archive holds no arrays", path=label)
    chosen = _choose(keys, opts.inputs, "the archive", label)
    headers = _npz_headers(path)
    if headers is None or not all(k in headers for k in chosen.values()):
        headers = {}
        with np.load(path, allow_pickle=False) as npz:
            for key in chosen.values():
                a = _npz_read(npz, key, label)
                headers[key] = (a.shape, a.dtype)

    def load() -> dict[str, np.ndarray]:
        # Only the arrays that feed inputs are read (labels stay on disk), and only now.
        with np.load(path, allow_pickle=False) as npz:
            return {name: _npz_read(npz, key, label) for name, key in chosen.items()}

    return _arrays_source(
        path, opts, {n: headers[k][0] for n, k in chosen.items()},
        {n: headers[k][1] for n, k in chosen.items()},
        {n: f"array {k!r} of {path.name}" for n, k in chosen.items()}, load)


def _npz_read(npz: Any, key: str, label: str) -> np.ndarray:
    try:
        return np.asarray(npz[key])
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DeadReluError(f"cannot read array {key!r} ({_first_line(exc)})",
                            path=label) from None


# --------------------------------------------------------------------------- .pt / .pth

def _from_torch(path: Path, opts: _Opts) -> DataSource:
    import pickle

    import torch

    label = str(path)
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise DeadReluError(
            "holds pickled Python objects (a whole model, a Dataset, …) that torch.load("
            "weights_only=True) refuses: save the inputs themselves, torch.save(tensor) or "
            "torch.save({'x': tensor})", path=label) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise DeadReluError(f"torch.load cannot read it ({_first_line(exc)})",
                            path=label) from None

    if isinstance(obj, (torch.Tensor, np.ndarray)):
        spec = _single_input(opts.inputs, "a file with one tensor", label)
        named: dict[str, Any] = {spec.name: obj}
        what = {spec.name: path.name}
    elif isinstance(obj, Mapping):
        named, what = _torch_dict(obj, path, opts)
    elif isinstance(obj, (list, tuple)):
        if len(obj) < len(opts.inputs):
            raise DeadReluError(
                f"holds a {type(obj).__name__} of {len(obj)} tensors but the model has "
                f"{len(opts.inputs)} inputs", path=label)
        named = {i.name: obj[k] for k, i in enumerate(opts.inputs)}
        what = {i.name: f"item {k} of {path.name}" for k, i in enumerate(opts.inputs)}
    else:
        raise DeadReluError(
            f"holds a {type(obj).__name__}, not data: save a tensor, a dict of tensors named "
            "after the model's inputs, or a list of tensors", path=label)

    arrays = {name: _tensor_array(value, what[name], label) for name, value in named.items()}
    return _arrays_source(path, opts, {n: a.shape for n, a in arrays.items()},
                          {n: a.dtype for n, a in arrays.items()}, what, arrays)


def _torch_dict(obj: Mapping[Any, Any], path: Path,
                opts: _Opts) -> tuple[dict[str, Any], dict[str, str]]:
    label = str(path)
    keys = [str(k) for k in obj]
    names = {i.name for i in opts.inputs}
    if not names & set(keys):
        params = [k for k in keys if k.rpartition(".")[2] in _PARAM_NAMES]
        if params:
            raise DeadReluError(
                f"looks like a model state dict, not data (keys like {params[0]!r}): pass it "
                "as the model and give --data a file of inputs", path=label)
        if any(isinstance(v, Mapping) for v in obj.values()):
            raise DeadReluError(
                f"looks like a checkpoint, not data (keys: {', '.join(keys[:8])}): give --data "
                "a tensor or a dict of tensors named after the model's inputs", path=label)
    chosen = _choose(keys, opts.inputs, "the file", label)
    by_str = {str(k): v for k, v in obj.items()}
    return ({n: by_str[k] for n, k in chosen.items()},
            {n: f"{k!r} of {path.name}" for n, k in chosen.items()})


def _tensor_array(value: Any, what: str, path: str) -> np.ndarray:
    """A tensor (or array) as a numpy array; anything else is an error."""
    if isinstance(value, np.ndarray):
        return value
    import torch

    if not isinstance(value, torch.Tensor):
        raise DeadReluError(f"{what} is a {type(value).__name__}, not a tensor", path=path)
    t = value.detach().cpu()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16
        t = t.float()
    try:
        return t.numpy()
    except (TypeError, RuntimeError) as exc:
        raise DeadReluError(f"{what} cannot become a numpy array ({_first_line(exc)})",
                            path=path) from None


# --------------------------------------------------------------------------- .csv

def _from_csv(path: Path, opts: _Opts, drop_columns: Sequence[str]) -> DataSource:
    label = str(path)
    spec = _single_input(opts.inputs, "a .csv file", label)
    table = _read_csv(path, drop_columns)
    if len(table) == 0:
        raise DeadReluError("the data set has no samples (the .csv has no data rows)",
                            path=label)
    sample_shape = _reshape_to(spec.name, opts.wants[spec.name], table.shape, path.name, label)
    total = opts.total(len(table))
    fix = _Fix(_float_target(spec), sample_shape)
    return DataSource(_counted(path.name, total, len(table)), False, total,
                      _Slicer({spec.name: table}, total, opts.batch_size, {spec.name: fix}),
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


# --------------------------------------------------------------------------- image folders

def _image_files(root: Path) -> list[Path]:
    files = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        # Skip hidden files and folders (macOS "._x.jpg" resource forks are not images).
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            files.append(p)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def _from_images(root: Path, opts: _Opts, image_size: int | tuple[int, int] | None,
                 mean: Sequence[float] | None, std: Sequence[float] | None,
                 channels: int | None) -> DataSource:
    label = str(root)
    spec = _single_input(opts.inputs, "an image folder", label)
    want = opts.wants[spec.name]
    files = _image_files(root)
    if not files:
        kinds = ", ".join(sorted(s[1:] for s in IMAGE_SUFFIXES))
        raise DeadReluError(f"the folder holds no images ({kinds})", path=label)
    four = want is not None and len(want) == 4
    if channels is None:
        channels = want[1] if four and want is not None and want[1] is not None else 3
    if channels not in _MODES:
        raise DeadReluError(
            f"input {spec.name!r} wants {channels} channels but images give 1 (grayscale), "
            "3 (RGB) or 4 (RGBA)", path=label)
    size = _image_size(image_size, label)  # (width, height)
    if size is None and four and want is not None and want[2] and want[3]:
        size = (want[3], want[2])
    first_size = _open_image(files[0], _MODES[channels], None).shape
    resize = size is not None
    if size is None:
        size = (first_size[1], first_size[0])
    scale = _mean_std(mean, std, channels, label)
    got = (len(files), channels, size[1], size[0])
    sample_shape = _reshape_to(spec.name, want, got, f"{root.name}/ (images as N, C, H, W)",
                               label)
    total = opts.total(len(files))
    loader = _Images(spec.name, files[:total], _MODES[channels], size, resize, scale,
                     opts.batch_size, _Fix(_float_target(spec), sample_shape))
    desc = _counted(f"{root.name}/", total, len(files), "images")
    desc = desc[:-1] + f", {_MODES[channels]} {size[0]}x{size[1]})"
    return DataSource(desc, False, total, loader, label, total)


def _image_size(value: int | tuple[int, int] | None, label: str) -> tuple[int, int] | None:
    if value is None:
        return None
    hw = (value, value) if isinstance(value, int) else tuple(value)
    if len(hw) != 2 or not all(isinstance(d, int) and d >= 1 for d in hw):
        raise DeadReluError(f"--image-size must be one or two positive whole numbers (H W), "
                            f"got {value!r}", path=label)
    return (hw[1], hw[0])


def _mean_std(mean: Sequence[float] | None, std: Sequence[float] | None, channels: int,
              label: str) -> tuple[np.ndarray, np.ndarray] | None:
    mean = None if mean is None or len(mean) == 0 else mean  # an unset CLI list may be []
    std = None if std is None or len(std) == 0 else std
    if mean is None and std is None:
        return None
    vectors = []
    for flag, values, default in (("--mean", mean, 0.0), ("--std", std, 1.0)):
        v = np.asarray([default] if values is None else list(values), dtype=np.float32)
        if len(v) not in (1, channels):
            raise DeadReluError(f"{flag} has {len(v)} values but the images have {channels} "
                                "channels: give one value per channel (or one for all)",
                                path=label)
        vectors.append(np.broadcast_to(v, (channels,)).reshape(channels, 1, 1))
    if np.any(vectors[1] == 0):
        raise DeadReluError("--std must not be 0", path=label)
    return vectors[0], vectors[1]


def _open_image(file: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """One image as float32 in [0, 1], (H, W) or (H, W, C)."""
    from PIL import Image

    try:
        with Image.open(file) as opened:
            im = opened.convert(mode)
            if size is not None and im.size != size:
                im = im.resize(size, Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.float32) / np.float32(255)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DeadReluError(f"cannot read this image ({_first_line(exc)})",
                            path=file) from None


class _Images:
    """Image files decoded batch by batch into (N, C, H, W) float arrays."""

    def __init__(self, name: str, files: list[Path], mode: str, size: tuple[int, int],
                 resize: bool, scale: tuple[np.ndarray, np.ndarray] | None, batch_size: int,
                 fix: _Fix) -> None:
        self.name, self.files, self.mode, self.size = name, files, mode, size
        self.resize = resize
        self.scale, self.batch_size, self.fix = scale, batch_size, fix

    def __call__(self) -> Iterator[Batch]:
        for start in range(0, len(self.files), self.batch_size):
            images = [self._load(f) for f in self.files[start:start + self.batch_size]]
            x = np.stack(images)
            x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
            if self.scale is not None:
                x = (x - self.scale[0]) / self.scale[1]
            yield {self.name: self.fix(x)}

    def _load(self, file: Path) -> np.ndarray:
        a = _open_image(file, self.mode, self.size if self.resize else None)
        if a.shape[:2] != (self.size[1], self.size[0]):
            raise DeadReluError(
                f"image is {a.shape[1]}x{a.shape[0]} but {self.files[0].name} is "
                f"{self.size[0]}x{self.size[1]}: pass --image-size to resize them all",
                path=file)
        return a


# --------------------------------------------------------------------------- callables

_MODULE_TARGET = re.compile(r"^([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")
_FILE_TARGET = re.compile(r"^(.+\.py):([A-Za-z_]\w*)$")


def _callable_target(text: str) -> tuple[str, str, bool] | None:
    """(module or file, function, is_file) for ``module:function`` / ``file.py:function``."""
    m = _FILE_TARGET.match(text)
    if m:
        return m.group(1), m.group(2), True
    m = _MODULE_TARGET.match(text)
    if m:
        return m.group(1), m.group(2), False
    return None


def _import_target(spec: str, target: tuple[str, str, bool]) -> Callable[[], Any]:
    where, name, is_file = target
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # `python -m`-like: the user's own modules are importable
    try:
        if is_file:
            file = Path(where)
            if not file.is_file():
                raise DeadReluError(f"no such file {where!r}", path=spec)
            folder = str(file.resolve().parent)
            if folder not in sys.path:
                sys.path.append(folder)  # its sibling modules import as when run directly
            mod_name = "_deadrelu_data_" + re.sub(r"\W", "_", file.stem)
            loader_spec = importlib.util.spec_from_file_location(mod_name, file)
            if loader_spec is None or loader_spec.loader is None:
                raise DeadReluError(f"cannot load {where!r} as Python", path=spec)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = module  # dataclasses and pickling look it up there
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except DeadReluError:
        raise
    except Exception as exc:  # the user's module: any failure is theirs to fix
        raise DeadReluError(f"importing {where!r} failed: {type(exc).__name__}: "
                            f"{_first_line(exc)}", path=spec) from exc
    fn = getattr(module, name, None)
    if fn is None:
        found = sorted(k for k, v in vars(module).items()
                       if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        listing = f" (it has: {', '.join(found)})" if found else ""
        raise DeadReluError(f"{where!r} has no function {name!r}{listing}", path=spec)
    if not callable(fn):
        raise DeadReluError(f"{where}.{name} is a {type(fn).__name__}, not a function",
                            path=spec)
    return fn


def _from_callable(spec: str, target: tuple[str, str, bool], opts: _Opts) -> DataSource:
    fn = _import_target(spec, target)

    def load() -> Iterator[Batch]:
        try:
            result = fn()
        except DeadReluError:
            raise
        except Exception as exc:
            raise DeadReluError(f"calling {target[1]}() raised {type(exc).__name__}: "
                                f"{_first_line(exc)}", path=spec) from exc
        if _is_arrayish(result) or isinstance(result, Mapping):
            # The whole data set at once: cut it into batches here.
            whole = _convert_batch(result, opts, spec, "the returned data")
            n = len(next(iter(whole.values())))
            for start in range(0, n, opts.batch_size):
                yield {k: v[start:start + opts.batch_size] for k, v in whole.items()}
            return
        if result is None or not isinstance(result, Iterable):
            raise DeadReluError(
                f"{target[1]}() returned {type(result).__name__}; it must return an iterable "
                "of batches (a list, a generator or a DataLoader)", path=spec)
        for k, batch in enumerate(result):
            yield _convert_batch(batch, opts, spec, f"batch {k}")

    return DataSource(spec, False, None, load, spec, opts.samples)


def _is_arrayish(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return True
    torch = sys.modules.get("torch")  # a tensor means torch is already imported
    return torch is not None and isinstance(value, torch.Tensor)


def _convert_batch(batch: Any, opts: _Opts, spec: str, what: str) -> Batch:
    """A user's batch (array, tensor, tuple/list or dict) as {input name: float-cast array}."""
    inputs = opts.inputs
    if isinstance(batch, Mapping):
        keys = [str(k) for k in batch]
        by_str = {str(k): v for k, v in batch.items()}
        chosen = _choose(keys, inputs, what, spec)
        raw = {n: by_str[k] for n, k in chosen.items()}
    elif isinstance(batch, (tuple, list)):
        if len(batch) < len(inputs):
            raise DeadReluError(f"{what} is a {type(batch).__name__} of {len(batch)} items but "
                                f"the model has {len(inputs)} inputs", path=spec)
        # Extra items (labels of (x, y) pairs) are ignored.
        raw = {i.name: batch[k] for k, i in enumerate(inputs)}
    else:
        raw = {_single_input(inputs, f"{what} (one array)", spec).name: batch}
    out = {}
    specs = {i.name: i for i in inputs}
    for name, value in raw.items():
        label = f"{what} ({name!r})" if len(inputs) > 1 else what
        if _is_arrayish(value):
            a = _tensor_array(value, label, spec)
        else:
            try:
                a = np.asarray(value)
            except (ValueError, TypeError) as exc:
                raise DeadReluError(f"{label} is not an array ({_first_line(exc)})",
                                    path=spec) from None
        _check_dtype(a.dtype, label, spec)
        if a.ndim == 0:
            raise DeadReluError(f"{label} is a single value, not a batch (axis 0 = samples)",
                                path=spec)
        _check_shape(name, opts.wants[name], a.shape, label, spec)
        target = _float_target(specs[name])
        out[name] = a.astype(target) if target is not None and a.dtype.kind == "f" else a
    _same_length({k: len(v) for k, v in out.items()}, spec)
    return out


# --------------------------------------------------------------------------- synthetic

def _synthetic(inputs: list[InputSpec], shapes: Mapping[str, tuple[int, ...]], batch_size: int,
               samples: int | None, seed: int) -> DataSource:
    total = DEFAULT_SYNTHETIC_SAMPLES if samples is None else samples
    plan: list[tuple[str, tuple[int, ...], str, np.dtype[Any]]] = []
    for spec in inputs:
        shape = shapes.get(spec.name, spec.shape)
        if shape is None:
            raise DeadReluError(
                f"input {spec.name!r} has an unknown shape and no --data: pass its shape with "
                f"--input-shape (e.g. {spec.name}=1,3,32,32), or --data")
        if len(shape) == 0:
            raise DeadReluError(f"input {spec.name!r} is a scalar, which cannot be batched; "
                                "pass --data")
        for axis, d in enumerate(shape[1:], start=1):
            if d is None:
                example = ",".join("1" if i == 0 else "?" if x is None else str(x)
                                   for i, x in enumerate(shape))
                raise DeadReluError(
                    f"input {spec.name!r} has a dynamic dimension {axis} and no --data: pass "
                    f"--input-shape {spec.name}={example} with each ? filled in, or --data")
        kind, dtype = _synthetic_kind(spec)
        plan.append((spec.name, tuple(d for d in shape[1:] if d is not None), kind, dtype))

    def load() -> Iterator[Batch]:
        rng = np.random.default_rng(seed)  # fresh each time: re-iteration repeats the data
        for start in range(0, total, batch_size):
            n = min(batch_size, total - start)
            batch = {}
            for name, rest, kind, dtype in plan:
                size = (n, *rest)
                if kind == "normal":
                    batch[name] = rng.standard_normal(size, dtype=np.float32).astype(dtype)
                elif kind == "int":
                    batch[name] = rng.integers(0, 2, size=size).astype(dtype)
                else:
                    batch[name] = rng.random(size) < 0.5
            yield batch

    kinds = {k for _, _, k, _ in plan}
    if kinds == {"normal"}:
        what = "synthetic N(0,1) inputs"
    else:
        words = {"normal": "N(0,1)", "int": "integers in [0, 2)", "bool": "random booleans"}
        what = "synthetic inputs (" + ", ".join(f"{n}: {words[k]}" for n, _, k, _ in plan) + ")"
    return DataSource(f"{what}, {total:,} samples", True, total, load, None, total)


def _synthetic_kind(spec: InputSpec) -> tuple[str, np.dtype[Any]]:
    """Floats are N(0,1); integers are 0 or 1 (valid ids and masks for any vocabulary)."""
    float_dtype = _float_target(spec)
    if float_dtype is not None:
        return "normal", float_dtype
    try:
        dtype = np.dtype(spec.dtype)
    except TypeError:
        dtype = np.dtype(object)  # a torch-only dtype: no synthetic values for it
    if dtype.kind in "iu":
        return "int", dtype
    if dtype.kind == "b":
        return "bool", dtype
    raise DeadReluError(f"input {spec.name!r} has dtype {spec.dtype}, which deadrelu cannot "
                        "make synthetic values for: pass --data")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
