"""Batches prepared while the model runs: a background thread reads ahead of the scan.

The data sources of :mod:`deadrelu.data` are single streams (a memory-mapped ``.npy`` read
slice by slice, an image folder decoded file by file, a user's generator), so one producer
thread pulls from the stream and keeps up to ``depth`` batches ready; numpy slicing, PIL
decoding and the copy into pinned memory release the GIL, so they overlap the forward pass.
On CUDA the arrays are turned into page-locked tensors there, so the copy to the device can
be asynchronous.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

_END = object()


def pinned(batch: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: array}`` as page-locked CPU tensors (floats and ints alike)."""
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v)).pin_memory() for k, v in batch.items()}


def prefetch(batches: Iterable[Mapping[str, Any]], depth: int, *, pin: bool = False
             ) -> Iterator[Mapping[str, Any]]:
    """The same batches in the same order, produced ``depth`` ahead by a background thread.

    An exception in the producer is raised here, at the batch where it happened; stopping
    early (an error in the model) stops and closes the producer's stream.
    """
    if depth < 1:
        yield from batches
        return
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(batches)
        try:
            for batch in it:
                if not put(pinned(batch) if pin else batch):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
        finally:
            close = getattr(it, "close", None)
            if callable(close):
                close()

    thread = threading.Thread(target=produce, name="deadrelu-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
