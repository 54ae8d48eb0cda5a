"""Naive ONNX reference: mark every site's pre-activation as a graph output, copy it out.

This is the Polygraphy-style path deadrelu avoids (whole activations cross into Python),
kept here only to check the in-graph statistics. Derivatives come from float64 autograd on
the torch equivalent of each ONNX activation, not from deadrelu's interval table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F

from tests.reference import Call


def _torch_fn(kind: str, params: dict[str, Any], slope: np.ndarray | None) -> Any:
    if kind == "relu":
        return F.relu
    if kind in ("relu6", "hardtanh"):
        return lambda z: F.hardtanh(z, params["lo"], params["hi"])
    if kind == "leaky_relu":
        return lambda z: F.leaky_relu(z, params["slope"])
    if kind == "prelu":
        assert slope is not None
        w = torch.from_numpy(slope.astype(np.float64))
        return lambda z: torch.where(z > 0, z, z * w)
    if kind == "elu":
        return lambda z: F.elu(z, params.get("alpha", 1.0))
    if kind == "celu":
        return lambda z: F.celu(z, params.get("alpha", 1.0))
    if kind == "selu":
        return F.selu
    if kind == "gelu":
        approx = params.get("approximate", "none")
        if approx == "sigmoid":
            return lambda z: z * torch.sigmoid(params["alpha"] * z)
        return lambda z: F.gelu(z, approximate=approx)
    if kind == "hardsigmoid" and "alpha" in params:
        return lambda z: torch.clamp(params["alpha"] * z + params["beta"], 0, 1)
    return {"silu": F.silu, "mish": F.mish, "softplus": F.softplus, "hardswish": F.hardswish,
            "hardsigmoid": F.hardsigmoid, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[kind]


def naive_calls(path: Path, data: dict[str, np.ndarray], batch_size: int = 32
                ) -> tuple[list[list[Call]], list[Any]]:
    """Per batch, per site: z, h and f'(z), from a graph whose outputs are every z and h."""
    from deadrelu.backends.onnx_backend import OnnxBackend
    from deadrelu.backends.onnx_graph import GraphIndex, load_onnx

    model = load_onnx(path)
    backend = OnnxBackend(model, path)
    sites = [s for s in backend.sites if s.scanned]
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for s in sites:
        for value in (s.z, s.h):
            copy.graph.output.append(onnx.helper.make_empty_tensor_value_info(value))
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                  str(path.parent))
    sess = ort.InferenceSession(copy.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    index = GraphIndex(model.graph, path.parent)
    names = [v for s in sites for v in (s.z, s.h)]
    n = len(next(iter(data.values())))
    calls: list[list[Call]] = []
    for start in range(0, n, batch_size):
        feed = {k: v[start:start + batch_size] for k, v in data.items()}
        values = dict(zip(names, sess.run(names, feed), strict=True))
        batch: list[Call] = []
        for s in sites:
            z = values[s.z].astype(np.float64)
            if s.bias:
                z = (values[s.z] + index.constant(s.bias)).astype(np.float64)
            slope = index.constant(s.slope) if s.slope else None
            z64 = torch.from_numpy(z).requires_grad_(True)
            fn = _torch_fn(s.kind, s.params, slope)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(fn(z64).sum(), z64)
            batch.append(Call(s.kind, z, values[s.h].astype(np.float64), grad.numpy()))
        calls.append(batch)
    return calls, sites
