"""Run by tests/test_memory.py in a fresh process: the peak resident memory of one run.

    python tests/memory_probe.py plain|scan conv|wide|onnx-relu|onnx-gelu|onnx-heavy BATCHES

Prints ``{"peak": bytes, "neurons": n}``: the high-water mark of the process's resident set
(reset through /proc/self/clear_refs just before the run) minus the resident set at that
moment. The caller sets MALLOC_MMAP_THRESHOLD_ so that every large block is returned to the
system when freed and the resident set follows what is really alive.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn


def conv(middle: type[nn.Module] = nn.GELU) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1), middle(),
                         nn.Conv2d(32, 16, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def wide() -> nn.Module:
    """24 MLP sites of 8192 neurons each: 196,608 neurons on short sequences."""
    layers: list[nn.Module] = []
    for _ in range(24):
        layers += [nn.Linear(64, 8192), nn.GELU(), nn.Linear(8192, 64)]
    return nn.Sequential(*layers)


SHAPES = {"conv": (16, 3, 64, 64), "wide": (4, 8, 64), "onnx-relu": (16, 3, 64, 64),
          "onnx-gelu": (16, 3, 64, 64), "onnx-heavy": (16, 1024)}


def heavy() -> nn.Module:
    """64 MiB of weights around one small ReLU site: what weights cost, not activations."""
    return nn.Sequential(nn.Linear(1024, 8192), nn.ReLU(), nn.Linear(8192, 1024))


def batches(kind: str, n: int, small: bool = False) -> Iterator[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    shape = SHAPES[kind]
    if small:
        shape = ((1, 1, 64) if kind == "wide" else (2, 1024) if kind == "onnx-heavy"
                 else (2, 3, 64, 64) if kind.startswith("onnx") else (2, 3, 4, 4))
    for _ in range(n):
        yield {"input": rng.standard_normal(shape, dtype=np.float32)}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def onnx_main(mode: str, kind: str, n: int) -> None:
    """The conv model (its middle activation a ReLU or a GELU), or the heavy one, as ONNX:
    plain onnxruntime (session and runs) or a deadrelu scan."""
    import tempfile

    import onnxruntime as ort

    from deadrelu import scan
    from deadrelu.data import DataSource

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        model = heavy() if kind == "onnx-heavy" else conv(
            nn.ReLU if kind == "onnx-relu" else nn.GELU)
        example = torch.zeros(2, *SHAPES[kind][1:])
        torch.onnx.export(model.eval(), (example,), path, dynamo=False,
                          input_names=["input"], dynamic_axes={"input": {0: "batch"}})
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1

        def plain(count: int, small: bool = False) -> None:
            session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            for b in batches(kind, count, small):
                session.run(None, b)

        def source(count: int, small: bool = False) -> DataSource:
            return DataSource("generated", False, None, lambda: batches(kind, count, small))

        # Imports and first-use allocations, on one small batch.
        warm = scan(path, source(1, small=True))
        plain(1, small=True)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _rss()
        if mode == "plain":
            plain(n)
        else:
            scan(path, source(n))
        print(json.dumps({"peak": _hwm() - base, "neurons": warm.neurons}))


def main() -> None:
    from deadrelu import scan
    from deadrelu.data import DataSource

    mode, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)
    if kind.startswith("onnx"):
        onnx_main(mode, kind, n)
        return
    torch.manual_seed(0)
    model = (conv if kind == "conv" else wide)().eval()

    def source(count: int, small: bool = False) -> DataSource:
        return DataSource("generated", False, None, lambda: batches(kind, count, small))

    # Imports and first-use allocations, on inputs too small to matter.
    warm = scan(model, source(1, small=True))
    with torch.inference_mode():
        model(torch.zeros(SHAPES[kind] if kind == "wide" else (2, 3, 4, 4))[:1])
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark to the current resident set
    base = _rss()
    if mode == "plain":
        with torch.inference_mode():
            for b in source(n).batches():
                model(torch.from_numpy(b["input"]))
    else:
        scan(model, source(n))
    print(json.dumps({"peak": _hwm() - base, "neurons": warm.neurons}))


if __name__ == "__main__":
    main()
