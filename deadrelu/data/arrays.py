"""``.npy`` (memory-mapped), ``.npz`` (read per batch) and ``.pt`` / ``.pth`` tensors."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deadrelu.data.common import (
    Opts,
    arrays_source,
    choose,
    single_input,
)
from deadrelu.data.source import DataSource
from deadrelu.errors import DeadReluError, a_type, first_line

# Last parts of state-dict keys ("fc.weight", "bn.running_mean"): a model, not data.
_PARAM_NAMES = frozenset({"weight", "bias", "running_mean", "running_var",
                          "num_batches_tracked"})


def from_npy(path: Path, opts: Opts) -> DataSource:
    label = str(path)
    spec = single_input(opts.inputs, "a .npy file", label)
    try:
        # Memory-mapped: a batch is read (and copied) only when it is sliced.
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DeadReluError(f"not a readable .npy array ({first_line(exc)})",
                            path=label) from None
    if not isinstance(array, np.ndarray):
        raise DeadReluError("not a .npy array (np.load gave an archive): rename it to .npz",
                            path=label)
    return arrays_source(path, opts, {spec.name: array.shape}, {spec.name: array.dtype},
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


def from_npz(path: Path, opts: Opts) -> DataSource:
    label = str(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DeadReluError(f"not a readable .npz archive ({first_line(exc)})",
                            path=label) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DeadReluError("is a .npy array, not an .npz archive: rename it to .npy",
                            path=label)
    with npz:
        keys = list(npz.files)
    if not keys:
        raise DeadReluError("the .npz archive holds no arrays", path=label)
    chosen = choose(keys, opts.inputs, "the archive", label, opts.optional)
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

    return arrays_source(
        path, opts, {n: headers[k][0] for n, k in chosen.items()},
        {n: headers[k][1] for n, k in chosen.items()},
        {n: f"array {k!r} of {path.name}" for n, k in chosen.items()}, load)


def _npz_read(npz: Any, key: str, label: str) -> np.ndarray:
    try:
        return np.asarray(npz[key])
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DeadReluError(f"cannot read array {key!r} ({first_line(exc)})",
                            path=label) from None


# --------------------------------------------------------------------------- .pt / .pth

def from_torch(path: Path, opts: Opts) -> DataSource:
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
        raise DeadReluError(f"torch.load cannot read it ({first_line(exc)})",
                            path=label) from None

    if isinstance(obj, (torch.Tensor, np.ndarray)):
        spec = single_input(opts.inputs, "a file with one tensor", label)
        named: dict[str, Any] = {spec.name: obj}
        what = {spec.name: path.name}
    elif isinstance(obj, Mapping):
        named, what = _torch_dict(obj, path, opts)
    elif isinstance(obj, (list, tuple)):
        if len(obj) < len(opts.inputs):
            raise DeadReluError(
                f"holds {a_type(obj)} of {len(obj)} tensor"
                f"{'s' if len(obj) != 1 else ''} but the model has {len(opts.inputs)} input"
                f"{'s' if len(opts.inputs) != 1 else ''}", path=label)
        _refuse_alike_items(obj, len(opts.inputs), label)
        named = {i.name: obj[k] for k, i in enumerate(opts.inputs)}
        what = {i.name: f"item {k} of {path.name}" for k, i in enumerate(opts.inputs)}
    else:
        raise DeadReluError(
            f"holds {a_type(obj)}, not data: save a tensor, a dict of tensors named "
            "after the model's inputs, or a list of tensors", path=label)

    arrays = {name: tensor_array(value, what[name], label) for name, value in named.items()}
    return arrays_source(path, opts, {n: a.shape for n, a in arrays.items()},
                          {n: a.dtype for n, a in arrays.items()}, what, arrays)


def _refuse_alike_items(items: list[Any] | tuple[Any, ...], inputs: int, label: str) -> None:
    """Item k feeds input k and the rest are labels: (x, y). More tensors than inputs, all
    shaped alike, may instead be batches saved as a list, of which only the first would be
    scanned: refuse rather than guess."""
    import torch

    if len(items) <= inputs or not all(isinstance(t, torch.Tensor) for t in items):
        return
    if len({(tuple(t.shape[1:]), t.dtype) for t in items}) == 1:
        raise DeadReluError(
            f"holds {a_type(items)} of {len(items)} tensors of shape "
            f"{tuple(items[0].shape)} (axis 0 aside) for a model with {inputs} input"
            f"{'s' if inputs != 1 else ''}: batches, or inputs and targets? Save batches "
            "as one tensor (torch.cat) or inputs as a dict {'<input name>': tensor}",
            path=label)


def _torch_dict(obj: Mapping[Any, Any], path: Path,
                opts: Opts) -> tuple[dict[str, Any], dict[str, str]]:
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
    chosen = choose(keys, opts.inputs, "the file", label, opts.optional)
    by_str = {str(k): v for k, v in obj.items()}
    return ({n: by_str[k] for n, k in chosen.items()},
            {n: f"{k!r} of {path.name}" for n, k in chosen.items()})


def tensor_array(value: Any, what: str, path: str) -> np.ndarray:
    """A tensor (or array) as a numpy array; anything else is an error."""
    if isinstance(value, np.ndarray):
        return value
    import torch

    if not isinstance(value, torch.Tensor):
        raise DeadReluError(f"{what} is {a_type(value)}, not a tensor", path=path)
    t = value.detach().cpu()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16
        t = t.float()
    try:
        return t.numpy()
    except (TypeError, RuntimeError) as exc:
        raise DeadReluError(f"{what} cannot become a numpy array ({first_line(exc)})",
                            path=path) from None
