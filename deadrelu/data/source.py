"""A model input, and the stream of batches a scan reads."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from deadrelu.errors import DeadReluError

Batch = dict[str, np.ndarray]
Shape = tuple[int | None, ...]


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
