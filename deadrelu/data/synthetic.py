"""Synthetic inputs when no ``--data`` is given: N(0,1) floats, 0/1 integers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from deadrelu.data.common import float_target
from deadrelu.data.source import Batch, DataSource, InputSpec
from deadrelu.errors import DeadReluError, plural

DEFAULT_SYNTHETIC_SAMPLES = 64


class NoSyntheticInput(DeadReluError):
    """Synthetic values cannot be made for an input. Worded for scan, which takes --data;
    ``deadrelu sites``, which has no --data, words it again with :meth:`without_data`."""

    def __init__(self, problem: str, fix: str, *, path: object | None = None) -> None:
        self.problem, self.fix = problem, fix
        super().__init__(f"{problem} and no --data: {fix}, or --data" if fix
                         else f"{problem}: pass --data", path=path)

    def at(self, path: object) -> NoSyntheticInput:
        """The same error, naming ``path`` (the model) first."""
        return NoSyntheticInput(self.problem, self.fix, path=path)

    def without_data(self) -> DeadReluError:
        fix = self.fix or "only a scan with --data can run this model"
        return DeadReluError(f"{self.problem}: {fix}", path=self.path)



def synthetic_source(inputs: list[InputSpec], shapes: Mapping[str, tuple[int, ...]],
                     batch_size: int, samples: int | None, seed: int) -> DataSource:
    total = DEFAULT_SYNTHETIC_SAMPLES if samples is None else samples
    plan: list[tuple[str, tuple[int, ...], str, np.dtype[Any]]] = []
    for spec in inputs:
        shape = shapes.get(spec.name, spec.shape)
        if shape is None:
            raise NoSyntheticInput(f"input {spec.name!r} has an unknown shape",
                                   f"pass its shape with --input-shape (e.g. "
                                   f"{spec.name}=1,3,32,32)")
        if len(shape) == 0:
            raise NoSyntheticInput(f"input {spec.name!r} is a scalar, which cannot be batched",
                                   "")
        for axis, d in enumerate(shape[1:], start=1):
            if d is None:
                example = ",".join("1" if i == 0 else "?" if x is None else str(x)
                                   for i, x in enumerate(shape))
                raise NoSyntheticInput(
                    f"input {spec.name!r} has a dynamic dimension {axis}",
                    f"pass --input-shape {spec.name}={example} with each ? filled in")
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
    return DataSource(f"{what}, {plural(total, 'sample')}", True, total, load, None, total)


def _synthetic_kind(spec: InputSpec) -> tuple[str, np.dtype[Any]]:
    """Floats are N(0,1); integers are 0 or 1 (valid ids and masks for any vocabulary)."""
    float_dtype = float_target(spec)
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
    raise NoSyntheticInput(f"input {spec.name!r} has dtype {spec.dtype}, which deadrelu "
                           "cannot make synthetic values for", "")
