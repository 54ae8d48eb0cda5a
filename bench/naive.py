"""The naive references deadrelu is compared with.

* torch: a Python forward hook on every activation module doing a per-channel count of
  positive outputs and a per-channel max (what one writes by hand in a notebook);
* ONNX: every activation node's output marked as a graph output, fetched into numpy and
  reduced there per channel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

_ACT_MODULES = (torch.nn.ReLU, torch.nn.GELU, torch.nn.SiLU, torch.nn.ReLU6, torch.nn.LeakyReLU)
_ACT_OPS = ("Relu", "Gelu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Elu", "HardSwish")


def torch_hooks(model: torch.nn.Module, batches: Iterable[Mapping[str, np.ndarray]],
                device: str) -> dict[str, Any]:
    stats: dict[str, list[torch.Tensor]] = {}
    handles = []

    calls: dict[str, int] = {}

    def make(path: str) -> Any:
        def hook(mod: torch.nn.Module, args: Any, out: torch.Tensor) -> None:
            # Keyed by call, not module: a module called k times is k sites.
            calls[path] = calls.get(path, 0) + 1
            name = f"{path}#{calls[path]}"
            axis = 1 if out.ndim >= 4 else out.ndim - 1
            dims = [d for d in range(out.ndim) if d != axis]
            count = (out > 0).sum(dim=dims)
            peak = out.amax(dim=dims)
            if name in stats:
                stats[name][0] += count
                torch.maximum(stats[name][1], peak, out=stats[name][1])
            else:
                stats[name] = [count, peak]
        return hook

    handles.append(model.register_forward_pre_hook(lambda *_: calls.clear()))
    for name, mod in model.named_modules():
        if isinstance(mod, _ACT_MODULES):
            handles.append(mod.register_forward_hook(make(name)))
    try:
        with torch.inference_mode():
            for batch in batches:
                model(*(torch.from_numpy(v).to(device) for v in batch.values()))
    finally:
        for h in handles:
            h.remove()
    return {k: (v[0].cpu(), v[1].cpu()) for k, v in stats.items()}


def onnx_every_output(path: str, batches: Iterable[Mapping[str, np.ndarray]]) -> dict[str, Any]:
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    outs = [o for n in model.graph.node if n.op_type in _ACT_OPS for o in n.output[:1]]
    known = {o.name for o in model.graph.output}
    for name in outs:
        if name not in known:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    stats: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        values = sess.run(outs, dict(batch))
        for name, h in zip(outs, values, strict=True):
            axis = 1 if h.ndim >= 4 else h.ndim - 1
            dims = tuple(d for d in range(h.ndim) if d != axis)
            count = (h > 0).sum(axis=dims)
            peak = h.max(axis=dims)
            if name in stats:
                stats[name][0] += count
                np.maximum(stats[name][1], peak, out=stats[name][1])
            else:
                stats[name] = [count, peak]
    return stats


def onnx_plain(path: str, batches: Iterable[Mapping[str, np.ndarray]]) -> None:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    for batch in batches:
        sess.run(None, dict(batch))
