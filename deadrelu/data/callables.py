"""``module:function`` or ``file.py:function``: a user function that returns the batches."""

from __future__ import annotations

import importlib
import importlib.util
import numbers
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deadrelu.data.arrays import tensor_array
from deadrelu.data.common import (
    Opts,
    check_dtype,
    check_shape,
    choose,
    float_target,
    same_length,
    single_input,
)
from deadrelu.data.source import Batch, DataSource
from deadrelu.errors import DeadReluError, a_type, first_line, user_code_failure

_MODULE_TARGET = re.compile(r"^([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")
_FILE_TARGET = re.compile(r"^(.+\.py):([A-Za-z_]\w*)$")


def callable_target(text: str) -> tuple[str, str, bool] | None:
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
    except (Exception, SystemExit) as exc:  # the user's module: any failure is theirs
        raise DeadReluError(f"importing {where!r} {user_code_failure(exc)}", path=spec) from None
    fn = getattr(module, name, None)
    if fn is None:
        found = sorted(k for k, v in vars(module).items()
                       if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        listing = f" (it has: {', '.join(found)})" if found else ""
        raise DeadReluError(f"{where!r} has no function {name!r}{listing}", path=spec)
    if not callable(fn):
        raise DeadReluError(f"{where}.{name} is {a_type(fn)}, not a function",
                            path=spec)
    return fn


def from_callable(spec: str, target: tuple[str, str, bool], opts: Opts) -> DataSource:
    fn = _import_target(spec, target)

    def load() -> Iterator[Batch]:
        try:
            result = fn()
        except DeadReluError:
            raise
        except (Exception, SystemExit) as exc:
            raise DeadReluError(f"calling {target[1]}() {user_code_failure(exc)}",
                                path=spec) from None
        yield from batches_of(result, opts, spec, f"{target[1]}()")

    return DataSource(spec, False, None, load, spec, opts.samples)


def from_memory(value: Any, opts: Opts) -> DataSource:
    """Data handed to the library directly: an array or tensor (one input), a mapping of input
    name to array, or an iterable of such batches (a list, a DataLoader)."""
    label = "in-memory data"
    if not (_is_arrayish(value) or isinstance(value, Iterable)):  # a Mapping is Iterable
        raise DeadReluError(f"data must be a path, module:function, an array, a mapping of "
                            f"input name to array, or an iterable of batches, not "
                            f"{type(value).__name__}")
    return DataSource(label, False, None, lambda: batches_of(value, opts, label, "the data"),
                      label, opts.samples)


def batches_of(result: Any, opts: Opts, spec: str, what: str) -> Iterator[Batch]:
    """The batches in what a data function returned (or the library was given): the whole
    data set at once (an array or a mapping), cut into batches here, or an iterable of
    batches, pulled one at a time."""
    if _is_arrayish(result) or isinstance(result, Mapping):
        whole = _convert_batch(result, opts, spec, "the returned data")
        n = len(next(iter(whole.values())))
        for start in range(0, n, opts.batch_size):
            yield {k: v[start:start + opts.batch_size] for k, v in whole.items()}
        return
    if result is None or not isinstance(result, Iterable):
        raise DeadReluError(
            f"{what} returned {type(result).__name__}; it must return an iterable "
            "of batches (a list, a generator or a DataLoader)", path=spec)
    batches = iter(result)
    k = 0
    while True:
        try:  # the user's generator runs here, batch by batch
            batch = next(batches)
        except StopIteration:
            return
        except DeadReluError:
            raise
        except (Exception, SystemExit) as exc:
            raise DeadReluError(f"{what} {user_code_failure(exc)} while producing batch {k}",
                                path=spec) from None
        yield _convert_batch(batch, opts, spec, f"batch {k}")
        k += 1


def _is_arrayish(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return True
    torch = sys.modules.get("torch")  # a tensor means torch is already imported
    return torch is not None and isinstance(value, torch.Tensor)


def _convert_batch(batch: Any, opts: Opts, spec: str, what: str) -> Batch:
    """A user's batch (array, tensor, tuple/list or dict) as {input name: float-cast array}."""
    inputs = opts.inputs
    if isinstance(batch, Mapping):
        keys = [str(k) for k in batch]
        by_str = {str(k): v for k, v in batch.items()}
        chosen = choose(keys, inputs, what, spec, opts.optional)
        raw = {n: by_str[k] for n, k in chosen.items()}
    elif isinstance(batch, (tuple, list)):
        if batch and all(isinstance(v, numbers.Number) for v in batch):
            # Nested Python lists of samples (X.tolist()): each row was taken as a batch.
            raise DeadReluError(f"{what} is a list of {len(batch)} numbers, not a batch: give "
                                "the samples as an array or a tensor (np.asarray(rows)), or "
                                "an iterable of such batches", path=spec)
        if len(batch) < len(inputs):
            raise DeadReluError(f"{what} is {a_type(batch)} of {len(batch)} items but "
                                f"the model has {len(inputs)} inputs", path=spec)
        # Extra items (labels of (x, y) pairs) are ignored.
        raw = {i.name: batch[k] for k, i in enumerate(inputs)}
    else:
        raw = {single_input(inputs, f"{what} (one array)", spec).name: batch}
    out = {}
    specs = opts.specs
    for name, value in raw.items():
        label = f"{what} ({name!r})" if len(inputs) > 1 else what
        if _is_arrayish(value):
            a = tensor_array(value, label, spec)
        else:
            try:
                a = np.asarray(value)
            except (ValueError, TypeError) as exc:
                raise DeadReluError(f"{label} is not an array ({first_line(exc)})",
                                    path=spec) from None
        check_dtype(a.dtype, label, spec)
        if a.ndim == 0:
            raise DeadReluError(f"{label} is a single value, not a batch (axis 0 = samples)",
                                path=spec)
        check_shape(name, opts.wants[name], a.shape, label, spec)
        target = float_target(specs[name])
        out[name] = a.astype(target) if target is not None and a.dtype.kind == "f" else a
    same_length({k: len(v) for k, v in out.items()}, spec)
    return out
