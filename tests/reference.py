"""Brute-force reference for the statistics: keep every activation input, compute with NumPy.

Deliberately naive and independent of deadrelu's machinery: a bare TorchFunctionMode clones
the input of every activation call, the local derivative comes from float64 autograd on the
activation itself (not from deadrelu's interval table), and every per-neuron figure is a
NumPy reduction over the full tensor moved to (channel, rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# Activation callables -> (kind, out-of-place function used for the derivative).
_T = torch.Tensor
REFERENCE_FUNCS: dict[Any, tuple[str, Any]] = {
    F.relu: ("relu", F.relu), torch.relu: ("relu", torch.relu), torch.relu_: ("relu", torch.relu),
    _T.relu: ("relu", torch.relu), _T.relu_: ("relu", torch.relu),
    F.relu6: ("relu6", F.relu6), F.hardtanh: ("hardtanh", F.hardtanh),
    F.leaky_relu: ("leaky_relu", F.leaky_relu), F.prelu: ("prelu", F.prelu),
    torch.prelu: ("prelu", torch.prelu), F.rrelu: ("rrelu", F.rrelu), F.elu: ("elu", F.elu),
    F.selu: ("selu", F.selu), torch.selu: ("selu", torch.selu), F.celu: ("celu", F.celu),
    torch.celu: ("celu", torch.celu), F.gelu: ("gelu", F.gelu), F.silu: ("silu", F.silu),
    F.mish: ("mish", F.mish), F.softplus: ("softplus", F.softplus),
    F.hardswish: ("hardswish", F.hardswish), F.hardsigmoid: ("hardsigmoid", F.hardsigmoid),
    torch.sigmoid: ("sigmoid", torch.sigmoid), _T.sigmoid: ("sigmoid", torch.sigmoid),
    _T.sigmoid_: ("sigmoid", torch.sigmoid), torch.tanh: ("tanh", torch.tanh),
    _T.tanh: ("tanh", torch.tanh), _T.tanh_: ("tanh", torch.tanh),
    F.sigmoid: ("sigmoid", torch.sigmoid), F.tanh: ("tanh", torch.tanh),
}


@dataclass
class Call:
    kind: str
    z: np.ndarray  # pre-activation, float64
    h: np.ndarray  # output
    grad: np.ndarray  # local derivative f'(z), float64 autograd


class _Recorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[Call]] = []  # per forward pass

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):
        kwargs = dict(kwargs or {})
        entry = REFERENCE_FUNCS.get(func)
        if entry is None:
            return func(*args, **kwargs)
        kind, pure = entry
        z = args[0].detach().clone()
        out = func(*args, **kwargs)
        rest = [a.detach().double() if isinstance(a, torch.Tensor) else a for a in args[1:]]
        kw = {k: v for k, v in kwargs.items() if k != "inplace"}
        if kind in ("relu6", "hardtanh", "leaky_relu", "elu", "celu", "rrelu"):
            rest = rest[:2] if kind != "rrelu" else rest[:3]  # drop positional inplace
        z64 = z.double().requires_grad_(True)
        with torch.enable_grad():
            y = pure(z64, *rest, **kw)
            (grad,) = torch.autograd.grad(y.sum(), z64)
        self.calls[-1].append(Call(kind, z.double().numpy(), out.detach().double().numpy(),
                                   grad.numpy()))
        return out


def record(model: torch.nn.Module, batches: list[torch.Tensor]) -> list[list[Call]]:
    rec = _Recorder()
    model.eval()
    with torch.no_grad(), rec:
        for x in batches:
            rec.calls.append([])
            model(x)
    return rec.calls


@dataclass
class RefSite:
    kind: str
    neurons: int
    active: np.ndarray
    active_samples: np.ndarray
    positive: np.ndarray
    finite: np.ndarray
    abs_sum: np.ndarray
    max_pre: np.ndarray
    min_pre: np.ndarray
    samples: int

    @property
    def dead(self) -> list[int]:
        return [int(i) for i in np.flatnonzero((self.active == 0) & (self.finite > 0))]

    @property
    def negative_only(self) -> list[int]:
        return [int(i) for i in np.flatnonzero((self.positive == 0) & (self.finite > 0))]


def reference_sites(calls: list[list[Call]], channel_axes: list[int], eps: float = 1e-3
                    ) -> list[RefSite]:
    """Per-site figures over all batches; sites matched by call order within a forward."""
    n_sites = len(calls[0])
    out = []
    for i in range(n_sites):
        axis = channel_axes[i]
        zs = [c[i].z for c in calls]
        hs = [c[i].h for c in calls]
        gs = [c[i].grad for c in calls]
        # (channel, batch, rest) — the torch.ao PerChannel observer's permute-and-flatten.
        def per_channel(a: np.ndarray, axis: int = axis) -> np.ndarray:
            a = np.moveaxis(a, axis, 0)
            if a.ndim == 1:
                return a.reshape(a.shape[0], 1, 1)
            return a.reshape(a.shape[0], a.shape[1], -1)

        z = np.concatenate([per_channel(a) for a in zs], axis=1)
        h = np.concatenate([per_channel(a) for a in hs], axis=1)
        g = np.concatenate([per_channel(a) for a in gs], axis=1)
        finite = np.isfinite(z)
        active = (np.abs(g) >= eps) & finite
        out.append(RefSite(
            kind=calls[0][i].kind,
            neurons=z.shape[0],
            active=active.sum(axis=(1, 2)),
            active_samples=active.any(axis=2).sum(axis=1),
            positive=((z > 0) & finite).sum(axis=(1, 2)),
            finite=finite.sum(axis=(1, 2)),
            abs_sum=np.where(finite, np.abs(h), 0).sum(axis=(1, 2)),
            max_pre=np.where(finite, z, -np.inf).max(axis=(1, 2)),
            min_pre=np.where(finite, z, np.inf).min(axis=(1, 2)),
            samples=z.shape[1],
        ))
    return out
