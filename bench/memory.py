"""Peak memory of one run: device allocator peak on CUDA, sampled resident-set peak on CPU.

On CPU, torch tensors bypass tracemalloc, so a thread samples the process's RSS every
millisecond and reports the peak above the RSS at the start (large tensors are mmap-ed by
glibc and returned on free, so the delta tracks what a run holds at its worst moment).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class Peak:
    bytes: int = 0


@contextmanager
def peak_memory(device: str = "cpu") -> Iterator[Peak]:
    peak = Peak()
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        yield peak
        torch.cuda.synchronize()
        peak.bytes = torch.cuda.max_memory_allocated() - start
        return
    start = rss_bytes()
    top = [start]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            top[0] = max(top[0], rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        top[0] = max(top[0], rss_bytes())
        peak.bytes = top[0] - start
