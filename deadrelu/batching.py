"""Models that run only on batches of exactly N samples: ONNX and torch.export graphs without
a dynamic batch axis.

Every refusal about such a batch is worded here, once for every format: the batch size a
scan asks for, a sample count that leaves a short last batch (both checked before anything
runs), and a batch that data told its size only while it was read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deadrelu.data import DEFAULT_SYNTHETIC_SAMPLES
from deadrelu.data.source import InputSpec
from deadrelu.errors import DeadReluError

DEFAULT_BATCH_SIZE = 32


class BatchSizeConflict(DeadReluError):
    """A batch size asked for that the model's graph refuses. The CLI words it again when
    the size came from a config key (:meth:`FixedBatch.conflict`'s ``asked_in``)."""

    def __init__(self, message: str, *, path: object | None, fixed: FixedBatch,
                 requested: int) -> None:
        super().__init__(message, path=path)
        self.fixed = fixed
        self.requested = requested


@dataclass(frozen=True)
class FixedBatch:
    """What a graph fixes of its inputs' batch axis (axis 0).

    ``sizes``: input -> N for every input whose axis 0 is fixed; ``origin``: how the graph
    came to fix it, said after the size where it helps; ``remedy``: how to export it so that
    it takes any batch size.
    """

    sizes: dict[str, int]
    remedy: str
    origin: str = ""

    @classmethod
    def of(cls, inputs: Sequence[InputSpec], remedy: str, origin: str = ""
           ) -> FixedBatch | None:
        sizes = {s.name: s.shape[0] for s in inputs if s.shape and s.shape[0]}
        return cls(sizes, remedy, origin) if sizes else None

    @property
    def common(self) -> tuple[str, int] | None:
        """(an input, N) when every fixed input fixes the same N: the size to scan with."""
        (name, n), *rest = self.sizes.items()
        return (name, n) if all(m == n for _, m in rest) else None

    def _head(self, name: str) -> str:
        origin = f" ({self.origin})" if self.origin else ""
        return f"input {name!r} has a fixed batch size of {self.sizes[name]}{origin}"

    def conflict(self, requested: int, model: object, asked_in: str = ""
                 ) -> BatchSizeConflict:
        """The scan asked for batches of ``requested``, which the graph refuses;
        ``asked_in``: where it was asked for when not by the flag (a config file)."""
        name, n = self.common or next(iter(self.sizes.items()))
        where = f" (batch-size = {requested} in {asked_in})" if asked_in else ""
        return BatchSizeConflict(f"{self._head(name)}, not {requested}{where}: use "
                                 f"--batch-size {n} (or {self.remedy})", path=model,
                                 fixed=self, requested=requested)

    def short_of(self, samples: int, model: object) -> DeadReluError:
        """``samples`` is not a whole number of batches."""
        name, n = self.common or next(iter(self.sizes.items()))
        if samples < n:
            what, fix = "less than one batch", f"give at least {n} samples"
        else:
            what = "which leaves a short last batch"
            fix = f"use --samples {samples // n * n} (a multiple of {n})"
        return DeadReluError(f"{self._head(name)} and the data has {samples:,} samples, "
                             f"{what}: {fix}, or {self.remedy}", path=model)

    def refuse(self, name: str, got: int, seen: int, *, model: str | None, data: str,
               rank: int | None = None) -> DeadReluError:
        """A batch of ``got`` samples for ``name`` after ``seen`` samples, found only while
        reading the data (a --data function's batches, a stream of unknown length).

        The model file leads the line when known, and the data is named in the sentence.
        Under torchrun ``seen`` counts this rank's share only: no --samples advice then.
        """
        n = self.sizes[name]
        by = f"the data ({data})" if model else "the data"
        if rank is not None:
            by += f" on rank {rank}"
        samples = f"{got:,} sample{'s' if got != 1 else ''}"
        if self.common is None:
            sizes = ", ".join(f"{k!r}: {m}" for k, m in self.sizes.items())
            return DeadReluError(
                f"the inputs fix different batch sizes ({sizes}) but {by} gave {name!r} a "
                f"batch of {samples}: only a --data function whose batches give each input "
                f"its own size can feed this model, or {self.remedy}", path=model or data)
        if got > n or not seen or rank is not None:
            what = "first batch" if not seen and got < n and rank is None else "batch"
            return DeadReluError(f"{self._head(name)} but {by} gave a {what} of {samples}: "
                                 f"feed batches of exactly {n}, or {self.remedy}",
                                 path=model or data)
        return DeadReluError(f"{self._head(name)} but {by} gave a short batch of {samples} "
                             f"after {seen:,} ({seen + got:,} so far): feed batches of exactly "
                             f"{n} (--samples {seen}, a multiple of {n}), or {self.remedy}",
                             path=model or data)


def fixed_batch(backend: object) -> FixedBatch | None:
    """What the backend's graph fixes of its batch axis (None: any batch size runs)."""
    fixed = getattr(backend, "fixed_batch", None)
    return fixed() if callable(fixed) else None


def batch_plan(fixed: FixedBatch | None, has_data: bool, batch_size: int | None,
               samples: int | None, model: object) -> tuple[int, int | None]:
    """Batch size and sample cap to open the data with (scan and patch alike): the graph's
    fixed size unless another was asked for, which it would refuse on every batch."""
    if fixed is None or fixed.common is None:
        return (DEFAULT_BATCH_SIZE if batch_size is None else batch_size), samples
    n = fixed.common[1]
    if batch_size is not None and batch_size != n:
        raise fixed.conflict(batch_size, model)
    if not has_data and samples is None:
        # Synthetic inputs in whole batches: a short last one would not run.
        samples = max(n, DEFAULT_SYNTHETIC_SAMPLES // n * n)
    return n, samples


def check_whole_batches(fixed: FixedBatch | None, samples: int | None, model: object) -> None:
    """Refuse, before anything runs, a sample count that leaves a short last batch: the model
    cannot run it, and padding it would change the statistics."""
    if fixed is None or fixed.common is None or samples is None \
            or samples % fixed.common[1] == 0:
        return
    raise fixed.short_of(samples, model)
