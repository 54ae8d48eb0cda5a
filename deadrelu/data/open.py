"""``open_data``: the ``--data`` value to a :class:`DataSource`, by what it names."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deadrelu.data.arrays import from_npy, from_npz, from_torch
from deadrelu.data.callables import callable_target, from_callable, from_memory
from deadrelu.data.common import Opts, wanted
from deadrelu.data.csv_rows import from_csv
from deadrelu.data.images import IMAGE_SUFFIXES, from_images
from deadrelu.data.source import DataSource, InputSpec
from deadrelu.data.synthetic import synthetic_source
from deadrelu.errors import DeadReluError

SUPPORTED = ".npy, .npz, .pt/.pth, .csv, a folder of images, or module:function"



def open_data(
    spec: str | os.PathLike[str] | Any | None,
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
    optional: Sequence[InputSpec] = (),
) -> DataSource:
    """Open ``--data`` for a model with these ``inputs``.

    ``spec`` is a path (``.npy``, ``.npz``, ``.pt``/``.pth``, ``.csv`` or a folder of images),
    ``module:function`` or ``path/to/file.py:function`` (a function that returns the batches),
    data in memory (an array, a mapping of input name to array, an iterable of batches), or
    None for synthetic inputs. ``samples`` caps every source; ``input_shapes``
    (``--input-shape``) overrides the model's input shapes for synthetic data and for the
    reshaping of csv rows and images. ``optional``: inputs the model can do without,
    fed where named data (an .npz, a dict) has an array of exactly their name.
    """
    inputs = list(inputs)
    if batch_size < 1:
        raise DeadReluError(f"--batch-size must be at least 1, got {batch_size}")
    if samples is not None and samples < 1:
        raise DeadReluError(f"--samples must be at least 1, got {samples}")
    if not inputs:
        raise DeadReluError("the model has no inputs to feed data to")
    shapes = dict(input_shapes or {})
    wants = {i.name: wanted(i, shapes) for i in (*inputs, *optional)}
    opts = Opts(inputs, wants, batch_size, samples, list(optional))

    if spec is None:
        _only_for("synthetic inputs", None, image_size=image_size, mean=mean, std=std,
                  drop_columns=drop_columns)
        return synthetic_source(inputs, shapes, batch_size, samples, seed)

    if not isinstance(spec, str | os.PathLike):  # the library given data in memory
        _only_for("in-memory data", None, image_size=image_size, mean=mean, std=std,
                  drop_columns=drop_columns)
        return from_memory(spec, opts)
    text = os.fspath(spec)
    path = Path(text)
    if not path.exists():
        target = callable_target(text)
        if target is not None:
            _only_for("module:function data", text, image_size=image_size, mean=mean, std=std,
                      drop_columns=drop_columns)
            return from_callable(text, target, opts)
        if path.suffix.lower() == ".py":
            raise DeadReluError("no such file; a Python file is given as file.py:function",
                                path=text)
        raise DeadReluError("no such file or directory", path=text)
    if path.is_dir():
        _only_for("an image folder", text, drop_columns=drop_columns)
        return from_images(path, opts, image_size, mean, std, channels)

    suffix = path.suffix.lower()
    if suffix == ".py":
        raise DeadReluError("a Python file is given as file.py:function, naming the function "
                            "that returns the batches", path=text)
    readers: dict[str, Callable[[Path, Opts], DataSource]] = {
        ".npy": from_npy, ".npz": from_npz, ".pt": from_torch, ".pth": from_torch}
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
        return from_csv(path, opts, drop_columns)
    _only_for(f"a {suffix} file", text, image_size=image_size, mean=mean, std=std,
              drop_columns=drop_columns)
    return readers[suffix](path, opts)


def _only_for(kind: str, path: str | None, *, image_size: object = None,
              mean: object = None, std: object = None, drop_columns: Sequence[str] = ()) -> None:
    # Options that would silently do nothing are an error: the user expects them to matter.
    given = [flag for flag, value in (("--image-size", image_size), ("--mean", mean),
                                      ("--std", std), ("--drop-columns", drop_columns))
             if value is not None and value != () and value != []]
    if given:
        where = {"--drop-columns": "a .csv file"}.get(given[0], "an image folder")
        raise DeadReluError(f"{given[0]} applies to {where}, not to {kind}", path=path)
