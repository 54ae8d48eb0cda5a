"""Site bookkeeping shared by the torch backends: names, kinds, parameters, accumulators."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from deadrelu.activations import KINDS, Kind
from deadrelu.errors import DeadReluError
from deadrelu.measure import SiteRule, TorchSiteAccumulator, channel_axis_for
from deadrelu.stats import NeuronStats, Settings

ROOT = "root"  # the path that names the top-level model in functional site names


@dataclass
class SiteInfo:
    """What a site is, independent of the data."""

    name: str
    kind: str
    channel_axis: int
    neurons: int
    shape: tuple[int, ...]  # the input shape of the first call, batch included
    call: str  # "module" | "functional" | "graph" | "node" (an ONNX node)
    module: str  # module path of the activation module, or of the enclosing module
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class SiteResult:
    info: SiteInfo
    stats: NeuronStats


@lru_cache(maxsize=1)
def function_kinds() -> dict[Callable[..., Any], Kind]:
    """torch function object -> kind, for every functional form in the activation table."""
    table: dict[Callable[..., Any], Kind] = {}
    for k in KINDS:
        for dotted in k.torch_functions:
            obj: Any = torch
            for part in dotted.split(".")[1:]:
                obj = getattr(obj, part, None)
                if obj is None:
                    break
            if obj is not None:
                table[obj] = k
    return table


@lru_cache(maxsize=1)
def module_kinds() -> dict[type, Kind]:
    table: dict[type, Kind] = {}
    for k in KINDS:
        for cls_name in k.torch_modules:
            cls = getattr(torch.nn, cls_name, None)
            if cls is not None:
                table[cls] = k
    return table


def module_kind(module: torch.nn.Module) -> Kind | None:
    """The activation kind of a module (subclasses count: nn.ReLU6 is checked before Hardtanh)."""
    kinds = module_kinds()
    for cls in type(module).__mro__:
        if cls in kinds:
            return kinds[cls]
    return None


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str,
         default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def call_params(kind: str, args: tuple[Any, ...], kwargs: Mapping[str, Any],
                module: torch.nn.Module | None = None) -> tuple[str, dict[str, Any]]:
    """Kind (possibly refined) and parameters of one activation call, from its arguments.

    Module attributes win where the module holds the truth (RReLU's eval slope).
    """
    p: dict[str, Any] = {}
    if kind in ("relu6", "hardtanh"):
        if kind == "relu6" and module is None:
            lo, hi = 0.0, 6.0
        else:
            lo = float(_arg(args, kwargs, 1, "min_val", -1.0))
            hi = float(_arg(args, kwargs, 2, "max_val", 1.0))
        # A Hardtanh(0, 6) is a ReLU6, as ONNX's Clip(0, 6) is: one name across formats.
        kind = "relu6" if (lo, hi) == (0.0, 6.0) else "hardtanh"
        p = {"lo": lo, "hi": hi}
    elif kind == "leaky_relu":
        p = {"slope": float(_arg(args, kwargs, 1, "negative_slope", 0.01))}
    elif kind == "rrelu":
        lower = float(_arg(args, kwargs, 1, "lower", 1.0 / 8))
        upper = float(_arg(args, kwargs, 2, "upper", 1.0 / 3))
        # In eval mode RReLU is a LeakyReLU with the mean slope; in training the slope is
        # random in [lower, upper] and the smallest one bounds the gradient it passes.
        training = bool(_arg(args, kwargs, 3, "training", False))
        p = {"slope": lower if training else (lower + upper) / 2, "lower": lower,
             "upper": upper}
    elif kind in ("elu", "celu"):
        p = {"alpha": float(_arg(args, kwargs, 1, "alpha", 1.0))}
    elif kind == "gelu":
        p = {"approximate": str(kwargs.get("approximate", "none"))}
    elif kind == "softplus":
        p = {"beta": float(_arg(args, kwargs, 1, "beta", 1.0)),
             "threshold": float(_arg(args, kwargs, 2, "threshold", 20.0))}
    return kind, p


class SiteRegistry:
    """Sites in first-seen order, their accumulators, and the per-forward call counters."""

    def __init__(self, settings: Settings, channel_axis: int | None, device: torch.device,
                 count_at_cap: Mapping[int, float] | None = None):
        self.settings = settings
        self.channel_axis = channel_axis
        self.device = device
        self.infos: dict[str, SiteInfo] = {}
        self.accs: dict[str, TorchSiteAccumulator] = {}
        self._counts: dict[str, int] = {}
        self.notes: list[str] = []
        # k -> c: the k-th site (in first-seen order) also counts its elements >= c. patch
        # asks for it when a rewrite keeps ReLU6's flat top after a new activation, which
        # the re-scan would otherwise not see (the top is a separate min).
        self.count_at_cap: dict[int, float] = dict(count_at_cap or {})

    def begin_forward(self) -> None:
        self._counts.clear()

    def name_call(self, base: str) -> str:
        """``base`` for the first call in a forward pass, ``base#k`` for the k-th."""
        n = self._counts.get(base, 0) + 1
        self._counts[base] = n
        return base if n == 1 else f"{base}#{n}"

    def accumulator(self, name: str, kind: str, params: dict[str, Any], z: torch.Tensor,
                    *, channels_first: bool, call: str, module: str) -> TorchSiteAccumulator:
        acc = self.accs.get(name)
        if acc is not None:
            neurons = z.shape[acc.channel_axis] if z.ndim > 1 else z.numel()
            if acc.channel_axis >= z.ndim or neurons != acc.neurons:
                raise DeadReluError(
                    f"site {name} changed shape between batches ({tuple(z.shape)} after "
                    f"{self.infos[name].shape}); its neurons must stay the same"
                )
            return acc
        try:
            axis = channel_axis_for(z.ndim, channels_first, self.channel_axis)
        except ValueError as exc:
            raise DeadReluError(f"site {name}: {exc}") from None
        neurons = z.shape[axis] if z.ndim >= 1 else 1
        scalar_params = {k: v for k, v in params.items() if not isinstance(v, torch.Tensor)}
        rule = SiteRule(kind, scalar_params, self.settings.eps)
        top = self.count_at_cap.get(len(self.accs))
        if top is not None and rule.cap is None:
            rule.cap = (-math.inf, top)  # counted as at_cap; never a clamp of z (lo < 0)
        acc = TorchSiteAccumulator(neurons, axis, rule, z.device)
        self.accs[name] = acc
        self.infos[name] = SiteInfo(name, kind, axis, neurons, tuple(z.shape), call, module,
                                    scalar_params)
        return acc

    def results(self) -> list[SiteResult]:
        return [SiteResult(self.infos[n], self.accs[n].to_stats()) for n in self.infos]
