"""The background prefetch: same batches, same order, errors surface, the stream is closed."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from deadrelu.errors import DeadReluError
from deadrelu.loader import prefetch


def _stream(n: int, log: list[str]):
    try:
        for i in range(n):
            log.append(threading.current_thread().name)
            yield {"x": np.full((2, 3), i, dtype=np.float32)}
    finally:
        log.append("closed")


def test_prefetch_yields_every_batch_in_order_from_another_thread() -> None:
    log: list[str] = []
    got = [int(b["x"][0, 0]) for b in prefetch(_stream(7, log), 2)]
    assert got == list(range(7))
    assert log[-1] == "closed"
    assert set(log[:-1]) == {"deadrelu-prefetch"}


def test_depth_zero_runs_in_the_calling_thread() -> None:
    log: list[str] = []
    assert len(list(prefetch(_stream(3, log), 0))) == 3
    assert set(log[:-1]) == {threading.current_thread().name}


def test_an_error_in_the_source_is_raised_at_its_batch() -> None:
    def broken():
        yield {"x": np.zeros(1)}
        raise DeadReluError("bad file", path="f.npy")

    it = prefetch(broken(), 3)
    assert next(it)["x"].shape == (1,)
    with pytest.raises(DeadReluError, match="bad file"):
        next(it)


def test_stopping_early_closes_the_source() -> None:
    log: list[str] = []
    it = prefetch(_stream(1000, log), 2)
    next(it)
    it.close()  # the consumer stops (an error in the model)
    assert log[-1] == "closed"
    assert len(log) < 10
