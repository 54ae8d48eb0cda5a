"""One table: activation kind -> torch modules, torch functions, ONNX ops, and the active test.

The active test is the heart of every number deadrelu reports: an element is *active* when the
activation's local derivative passes gradient, ``|f'(z)| >= eps`` (design.md §1). For every
kind that set of pre-activations ``z`` is a union of at most two intervals, so we compute the
interval end points once, in float64, from the analytic derivative, and every backend (torch
eager, torch.export, ONNX) then applies the same comparisons to ``z``. That is what makes the
numbers identical across formats, and exact for ReLU (active ⇔ z > 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

Family = Literal["rectifier", "capped", "leaky", "smooth", "saturating"]

INF = math.inf


@dataclass(frozen=True)
class Interval:
    """A set of z values: ``lo < z < hi`` with optionally closed ends."""

    lo: float = -INF
    hi: float = INF
    lo_closed: bool = False
    hi_closed: bool = False


@dataclass(frozen=True)
class Kind:
    name: str
    family: Family
    torch_modules: tuple[str, ...]  # class names in torch.nn
    torch_functions: tuple[str, ...]  # dotted names, resolved lazily (torch is a heavy import)
    onnx_ops: tuple[str, ...]
    # Which word the report uses for a neuron with no active element.
    dead_word: str = "dead"
    params: tuple[str, ...] = field(default_factory=tuple)


# The order is the order of `deadrelu sites --kinds` and of the README table.
KINDS: tuple[Kind, ...] = (
    Kind("relu", "rectifier", ("ReLU",),
         ("torch.nn.functional.relu", "torch.relu", "torch.relu_", "torch.Tensor.relu",
          "torch.Tensor.relu_"), ("Relu",)),
    Kind("relu6", "capped", ("ReLU6",),
         ("torch.nn.functional.relu6",), (), params=("lo", "hi")),
    Kind("hardtanh", "capped", ("Hardtanh",),
         ("torch.nn.functional.hardtanh", "torch.nn.functional.hardtanh_"), ("Clip",),
         params=("lo", "hi")),
    Kind("thresholded_relu", "rectifier", (), (), ("ThresholdedRelu",), params=("alpha",)),
    Kind("leaky_relu", "leaky", ("LeakyReLU",),
         ("torch.nn.functional.leaky_relu", "torch.nn.functional.leaky_relu_"),
         ("LeakyRelu",), params=("slope",)),
    Kind("prelu", "leaky", ("PReLU",), ("torch.nn.functional.prelu", "torch.prelu"),
         ("PRelu",), params=("weight",)),
    Kind("rrelu", "leaky", ("RReLU",),
         ("torch.nn.functional.rrelu", "torch.nn.functional.rrelu_", "torch.rrelu"),
         (), params=("slope",)),
    Kind("elu", "smooth", ("ELU",),
         ("torch.nn.functional.elu", "torch.nn.functional.elu_"), ("Elu",), params=("alpha",)),
    Kind("selu", "smooth", ("SELU",), ("torch.nn.functional.selu", "torch.selu"), ("Selu",),
         params=("alpha", "gamma")),
    Kind("celu", "smooth", ("CELU",), ("torch.nn.functional.celu", "torch.celu"), ("Celu",),
         params=("alpha",)),
    Kind("gelu", "smooth", ("GELU",), ("torch.nn.functional.gelu",), ("Gelu",),
         params=("approximate",)),
    Kind("silu", "smooth", ("SiLU",), ("torch.nn.functional.silu",), ()),
    Kind("mish", "smooth", ("Mish",), ("torch.nn.functional.mish",), ("Mish",)),
    Kind("softplus", "smooth", ("Softplus",), ("torch.nn.functional.softplus",), ("Softplus",),
         params=("beta", "threshold")),
    Kind("hardswish", "smooth", ("Hardswish",), ("torch.nn.functional.hardswish",),
         ("HardSwish",)),
    Kind("hardsigmoid", "saturating", ("Hardsigmoid",), ("torch.nn.functional.hardsigmoid",),
         ("HardSigmoid",), dead_word="saturated", params=("alpha", "beta")),
    Kind("sigmoid", "saturating", ("Sigmoid",),
         ("torch.sigmoid", "torch.sigmoid_", "torch.Tensor.sigmoid", "torch.Tensor.sigmoid_",
          "torch.nn.functional.sigmoid"), ("Sigmoid",), dead_word="saturated"),
    Kind("tanh", "saturating", ("Tanh",),
         ("torch.tanh", "torch.tanh_", "torch.Tensor.tanh", "torch.Tensor.tanh_",
          "torch.nn.functional.tanh"), ("Tanh",), dead_word="saturated"),
)

KIND_BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}

DEFAULT_EPS = 1e-3


def kind(name: str) -> Kind:
    return KIND_BY_NAME[name]


# --------------------------------------------------------------------------------------------
# The active set of each kind, as intervals of z.


def _bisect(f: Callable[[float], float], a: float, b: float) -> float:
    """Root of f in [a, b] (f(a), f(b) of opposite sign), to float64 resolution."""
    fa = f(a)
    for _ in range(200):
        m = 0.5 * (a + b)
        if m in (a, b):
            break
        fm = f(m)
        if (fm < 0) == (fa < 0):
            a, fa = m, fm
        else:
            b = m
    return 0.5 * (a + b)


def _phi(z: float) -> float:
    return math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def _gelu_grad(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))) + z * _phi(z)


def _gelu_tanh_grad(z: float) -> float:
    k = math.sqrt(2.0 / math.pi)
    u = k * (z + 0.044715 * z**3)
    t = math.tanh(u)
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * k * (1.0 + 3 * 0.044715 * z * z)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _softplus(z: float) -> float:
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def _silu_grad(z: float) -> float:
    s = _sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


def _mish_grad(z: float) -> float:
    sp = _softplus(z)
    t = math.tanh(sp)
    return t + z * (1.0 - t * t) * _sigmoid(z)


def _smooth_active_set(grad: Callable[[float], float], eps: float) -> tuple[Interval, ...]:
    """{z : |grad(z)| >= eps} for GELU-like functions.

    These derivatives tend to 0 as z -> -inf, cross zero once (the minimum of f), dip
    negative in between and tend to 1 as z -> +inf. So the inactive set is a left tail
    (-inf, a) plus a small gap around the zero crossing; we find the crossings by scanning a
    grid and bisecting each sign change of |grad| - eps.
    """
    g = lambda z: abs(grad(z)) - eps  # noqa: E731
    coarse = [-60.0 + i * 0.01 for i in range(8001)]  # [-60, 20]
    # Where grad itself crosses zero, |grad| < eps on a gap that can be narrower than any
    # grid step; putting the crossing into the grid makes that gap visible for every eps.
    roots = [
        _bisect(grad, coarse[i], coarse[i + 1])
        for i in range(len(coarse) - 1)
        if (grad(coarse[i]) < 0) != (grad(coarse[i + 1]) < 0)
    ]
    grid = sorted(coarse + roots)
    values = [g(z) for z in grid]
    cuts = [
        _bisect(g, grid[i], grid[i + 1])
        for i in range(len(grid) - 1)
        if (values[i] < 0) != (values[i + 1] < 0)
    ]
    # Build intervals where g >= 0, starting from the sign at the left end.
    inside = values[0] >= 0
    start = -INF if inside else None
    out: list[Interval] = []
    for c in cuts:
        if inside:
            out.append(Interval(start if start is not None else -INF, c, True, True))
            inside = False
        else:
            start = c
            inside = True
    if inside:
        out.append(Interval(start if start is not None else -INF, INF, True, False))
    return tuple(out)


@lru_cache(maxsize=256)
def _exponential_below_zero(slope: float, coefficient: float, width: float, eps: float
                            ) -> tuple[Interval, ...]:
    """The active set of f'(z) = ``slope`` for z > 0 and ``coefficient * exp(z / width)``
    for z <= 0 (ELU, SELU, CELU), the two sides joined where they meet at 0.

    Below zero, |coefficient| exp(z / width) >= eps where z / width >= log(eps / |c|): from
    ``edge`` = width log(eps / |c|) up to 0 for width > 0 (nothing when edge > 0, a
    coefficient below eps), and everything up to min(edge, 0) for width < 0.
    """
    above = abs(slope) >= eps
    below: tuple[float, float] | None = None
    if coefficient != 0 and width != 0:
        edge = width * math.log(eps / abs(coefficient))
        if width < 0:
            below = (-INF, min(edge, 0.0))
        elif edge <= 0:
            below = (edge, 0.0)
    if below is None:
        return (Interval(0.0, INF),) if above else ()
    closed = math.isfinite(below[0])  # -inf itself is never active
    if above and below[1] == 0.0:
        return (Interval(below[0], INF, lo_closed=closed),)
    found = (Interval(below[0], below[1], lo_closed=closed, hi_closed=True),)
    return (*found, Interval(0.0, INF)) if above else found


def active_set(name: str, eps: float = DEFAULT_EPS, **params: float | str) -> tuple[Interval, ...]:
    """The pre-activations z at which ``|f'(z)| >= eps`` for kind ``name``.

    PReLU is per-channel and handled by the caller (its slope is a tensor); for it this gives
    the set for a slope passed as ``slope``.
    """
    p = dict(params)
    if name == "relu":
        return (Interval(0.0, INF),)
    if name == "thresholded_relu":
        return (Interval(float(p.get("alpha", 1.0)), INF),)
    if name in ("relu6", "hardtanh"):
        lo = float(p.get("lo", 0.0 if name == "relu6" else -1.0))
        hi = float(p.get("hi", 6.0 if name == "relu6" else 1.0))
        return (Interval(lo, hi),)
    if name in ("leaky_relu", "rrelu", "prelu"):
        slope = abs(float(p.get("slope", 0.01)))
        return (Interval(-INF, INF),) if slope >= eps else (Interval(0.0, INF),)
    if name == "elu":
        # f'(z) = 1 for z > 0, alpha * exp(z) for z <= 0.
        return _exponential_below_zero(1.0, float(p.get("alpha", 1.0)), 1.0, eps)
    if name == "selu":
        scale = float(p.get("gamma", 1.0507009873554804934193349852946))
        alpha = float(p.get("alpha", 1.6732632423543772848170429916717))
        return _exponential_below_zero(scale, scale * alpha, 1.0, eps)
    if name == "celu":
        # f'(z) = 1 for z > 0, exp(z / alpha) for z <= 0.
        return _exponential_below_zero(1.0, 1.0, float(p.get("alpha", 1.0)), eps)
    if name == "softplus":
        beta = float(p.get("beta", 1.0))
        # f'(z) = sigmoid(beta z) >= eps  <=>  beta z >= logit(eps): z above logit(eps) / beta
        # for beta > 0, below it for beta < 0.
        edge = math.log(eps / (1.0 - eps)) / beta
        return (Interval(edge, INF, lo_closed=True),) if beta > 0 else (
            Interval(-INF, edge, hi_closed=True),)
    if name == "gelu":
        approximate = p.get("approximate", "none")
        if approximate == "sigmoid":
            # QuickGelu: z * sigmoid(alpha z) = silu(alpha z) / alpha, f'(z) = silu'(alpha z).
            alpha = float(p.get("alpha", 1.702))
            return tuple(Interval(iv.lo / alpha, iv.hi / alpha, iv.lo_closed, iv.hi_closed)
                         for iv in _smooth_active_set(_silu_grad, eps))
        grad = _gelu_tanh_grad if approximate == "tanh" else _gelu_grad
        return _smooth_active_set(grad, eps)
    if name == "silu":
        return _smooth_active_set(_silu_grad, eps)
    if name == "mish":
        return _smooth_active_set(_mish_grad, eps)
    if name == "hardswish":
        # f'(z) = 0 (z < -3), z/3 + 1/2 (-3 <= z <= 3), 1 (z > 3): |f'| < eps near z = -1.5.
        gap = 3.0 * eps
        return (Interval(-3.0, -1.5 - gap, True, True), Interval(-1.5 + gap, INF, True, False))
    if name == "hardsigmoid":
        # max(0, min(1, alpha z + beta)): slope alpha on the open band where 0 < alpha z + beta < 1.
        # torch's Hardsigmoid is alpha = 1/6, beta = 1/2; ONNX's default is alpha = 0.2.
        if "alpha" not in p:
            return () if eps > 1.0 / 6.0 else (Interval(-3.0, 3.0),)
        alpha, beta = float(p["alpha"]), float(p.get("beta", 0.5))
        if abs(alpha) < eps:
            return ()
        ends = sorted(((0.0 - beta) / alpha, (1.0 - beta) / alpha))
        return (Interval(ends[0], ends[1]),)
    if name == "sigmoid":
        # sigma'(z) = s (1 - s) >= eps  <=>  |z| <= logit(s*) with s* (1 - s*) = eps.
        if eps > 0.25:
            return ()
        s = 0.5 * (1.0 + math.sqrt(1.0 - 4.0 * eps))
        t = math.log(s / (1.0 - s))
        return (Interval(-t, t, True, True),)
    if name == "tanh":
        if eps > 1.0:
            return ()
        t = math.atanh(math.sqrt(1.0 - eps))
        return (Interval(-t, t, True, True),)
    raise KeyError(f"unknown activation kind {name!r}")


def cap_bounds(name: str, **params: float | str) -> tuple[float, float] | None:
    """(low, high) of a capped kind's linear band, else None."""
    if name == "relu6":
        return float(params.get("lo", 0.0)), float(params.get("hi", 6.0))
    if name == "hardtanh":
        return float(params.get("lo", -1.0)), float(params.get("hi", 1.0))
    return None
