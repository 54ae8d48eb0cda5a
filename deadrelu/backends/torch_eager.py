"""Capture every activation call of an eager ``nn.Module``.

Two mechanisms, one site registry:

* activation *modules* (``nn.ReLU``, ``nn.GELU``, …) through forward pre-hooks and hooks: the
  pre-hook sees the input before an in-place module overwrites it;
* *functional* calls (``F.relu``, ``torch.sigmoid``, ``x.relu_()``, …) through a
  ``TorchFunctionMode``, named after the enclosing module. A module's own functional call
  (``nn.ReLU.forward`` calls ``F.relu``) is skipped by the mode: the hooks already have it.

An active torch-function mode makes ``has_torch_function`` true, which switches off the fused
fast paths of eval-mode ``nn.MultiheadAttention`` and ``nn.TransformerEncoder(Layer)`` and so
changes their numerics. Inside those modules the mode is suspended, and a transformer layer's
functional ``activation`` attribute is wrapped instead; when the fused kernel runs, the
activation inside it cannot be observed and the scan says so.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from deadrelu.backends.sites import (
    ROOT,
    SiteRegistry,
    call_params,
    function_kinds,
    module_kind,
)
from deadrelu.measure import FiniteMask

# Functions whose rank-3 output is (N, C, L): the channel axis of what follows is 1.
_CHANNEL_FIRST_PRODUCERS = frozenset({
    "conv1d", "conv_transpose1d", "batch_norm", "instance_norm", "group_norm", "max_pool1d",
    "avg_pool1d", "adaptive_avg_pool1d", "adaptive_max_pool1d", "max_pool1d_with_indices",
    "lp_pool1d", "convolution",
})
# Elementwise functions that keep an (N, C, L) tensor channel-first.
_CHANNEL_KEEPING = frozenset({
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "__add__", "__iadd__",
    "__radd__", "__sub__", "__isub__", "__mul__", "__imul__", "__rmul__", "__truediv__",
    "dropout", "clone", "contiguous", "neg", "abs", "clamp", "clamp_",
})


def _fast_path_types() -> tuple[type, ...]:
    nn = torch.nn
    return (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder)


@dataclass
class _Frame:
    path: str
    module: torch.nn.Module
    activation: bool
    finite: FiniteMask | None = None
    site: str | None = None
    recorded_inside: int = 0


@dataclass
class _CaptureState:
    registry: SiteRegistry
    stack: list[_Frame] = field(default_factory=list)
    # id -> tensor, weakly: Tensor.__eq__ is elementwise, so a WeakSet cannot hold tensors.
    channels_first: weakref.WeakValueDictionary[int, torch.Tensor] = field(
        default_factory=weakref.WeakValueDictionary)
    mode: _ActivationMode | None = None
    mode_active: bool = False
    suspended: int = 0
    fused_noted: set[str] = field(default_factory=set)

    def enclosing_path(self) -> str:
        return self.stack[-1].path if self.stack else ROOT

    def mark_recorded(self) -> None:
        for frame in self.stack:
            frame.recorded_inside += 1

    def is_channels_first(self, z: torch.Tensor) -> bool:
        return self.channels_first.get(id(z)) is z

    def mark_channels_first(self, z: torch.Tensor) -> None:
        self.channels_first[id(z)] = z


def _observe_functional(state: _CaptureState, kind_name: str, func: Callable[..., Any],
                        args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    z = args[0] if args else kwargs.get("input")
    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        return func(*args, **kwargs)
    kind_name, params = call_params(kind_name, args, kwargs)
    registry = state.registry
    name = registry.name_call(f"{state.enclosing_path()}/{kind_name}")
    acc = registry.accumulator(name, kind_name, params, z,
                               channels_first=state.is_channels_first(z),
                               call="functional", module=state.enclosing_path())
    weight = _prelu_weight(kind_name, args, kwargs)
    finite = acc.observe_input(z, weight)
    out = func(*args, **kwargs)
    if isinstance(out, torch.Tensor):
        acc.observe_output(out, finite)
    state.mark_recorded()
    return out


def _prelu_weight(kind_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> torch.Tensor | None:
    if kind_name != "prelu":
        return None
    w = args[1] if len(args) > 1 else kwargs.get("weight")
    return w if isinstance(w, torch.Tensor) else None


class _ActivationMode(TorchFunctionMode):
    def __init__(self, state: _CaptureState) -> None:
        super().__init__()
        self.state = state
        self.kinds = function_kinds()

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        state = self.state
        kind = self.kinds.get(func)
        top = state.stack[-1] if state.stack else None
        if kind is not None and not (top is not None and top.activation and top.site):
            return _observe_functional(state, kind.name, func, tuple(args), kwargs)
        out = func(*args, **kwargs)
        _track_channels_first(state, func, args, out)
        return out


def _track_channels_first(state: _CaptureState, func: Any, args: Any, out: Any) -> None:
    if not isinstance(out, torch.Tensor) or out.ndim != 3:
        return
    name = getattr(func, "__name__", "")
    if name in _CHANNEL_FIRST_PRODUCERS:
        state.mark_channels_first(out)
    elif name in _CHANNEL_KEEPING or func in function_kinds():
        for a in args:
            if isinstance(a, torch.Tensor) and a.shape == out.shape and state.is_channels_first(a):
                state.mark_channels_first(out)
                return


def _suspend(state: _CaptureState) -> None:
    if state.suspended == 0 and state.mode_active and state.mode is not None:
        state.mode.__exit__(None, None, None)
        state.mode_active = False
    state.suspended += 1


def _resume(state: _CaptureState) -> None:
    state.suspended -= 1
    if state.suspended == 0 and not state.mode_active and state.mode is not None:
        state.mode.__enter__()
        state.mode_active = True


def _make_hooks(state: _CaptureState, path: str, module: torch.nn.Module
                ) -> tuple[Callable[..., Any], Callable[..., Any]]:
    kind = module_kind(module)
    fast_path = isinstance(module, _fast_path_types())

    def pre_hook(mod: torch.nn.Module, args: tuple[Any, ...]) -> None:
        frame = _Frame(path, mod, activation=kind is not None)
        state.stack.append(frame)
        if kind is not None and args and isinstance(args[0], torch.Tensor) \
                and args[0].is_floating_point():
            z = args[0]
            kind_name, params = _module_params(kind.name, mod)
            name = state.registry.name_call(path)
            # Our own reductions must not pass through our function mode: dozens of
            # intercepted calls per site otherwise.
            with torch._C.DisableTorchFunction():
                acc = state.registry.accumulator(
                    name, kind_name, params, z, channels_first=state.is_channels_first(z),
                    call="module", module=path)
                weight = getattr(mod, "weight", None) if kind_name == "prelu" else None
                frame.finite = acc.observe_input(z, weight)
            frame.site = name
        if fast_path:
            _suspend(state)
            _wrap_transformer_activation(state, mod, path)

    def hook(mod: torch.nn.Module, args: tuple[Any, ...], out: Any) -> None:
        frame = state.stack.pop()
        if frame.site is not None and isinstance(out, torch.Tensor):
            with torch._C.DisableTorchFunction():
                state.registry.accs[frame.site].observe_output(out, frame.finite)
            state.mark_recorded()
            if args and isinstance(args[0], torch.Tensor) \
                    and state.is_channels_first(args[0]) and out.ndim == 3:
                state.mark_channels_first(out)
        if fast_path:
            _unwrap_transformer_activation(mod)
            _resume(state)
            _note_fused(state, mod, path, frame)

    return pre_hook, hook


def _module_params(kind_name: str, mod: torch.nn.Module) -> tuple[str, dict[str, Any]]:
    if kind_name in ("relu6", "hardtanh"):
        return call_params("hardtanh", (None, mod.min_val, mod.max_val), {})
    if kind_name == "leaky_relu":
        return call_params(kind_name, (None, mod.negative_slope), {})
    if kind_name == "rrelu":
        return call_params(kind_name, (None, mod.lower, mod.upper, mod.training), {})
    if kind_name in ("elu", "celu"):
        return call_params(kind_name, (None, mod.alpha), {})
    if kind_name == "gelu":
        return call_params(kind_name, (None,), {"approximate": mod.approximate})
    if kind_name == "softplus":
        return call_params(kind_name, (None, mod.beta, mod.threshold), {})
    return call_params(kind_name, (None,), {})


_WRAPPED = "_deadrelu_original_activation"


def _wrap_transformer_activation(state: _CaptureState, mod: torch.nn.Module, path: str) -> None:
    act = getattr(mod, "activation", None)
    kind = function_kinds().get(act) if callable(act) else None
    if kind is None or act is None:
        return
    original = act
    kind_name = kind.name

    def observed(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        state.stack.append(_Frame(path, mod, activation=False))
        try:
            return _observe_functional(state, kind_name, original, (x, *args), kwargs)
        finally:
            state.stack.pop()

    object.__setattr__(mod, _WRAPPED, original)
    object.__setattr__(mod, "activation", observed)


def _unwrap_transformer_activation(mod: torch.nn.Module) -> None:
    original = mod.__dict__.pop(_WRAPPED, None)
    if original is not None:
        object.__setattr__(mod, "activation", original)


def _note_fused(state: _CaptureState, mod: torch.nn.Module, path: str, frame: _Frame) -> None:
    if not isinstance(mod, torch.nn.TransformerEncoderLayer) or frame.recorded_inside:
        return
    if path in state.fused_noted:
        return
    state.fused_noted.add(path)
    state.registry.notes.append(
        f"{path}: the activation inside this TransformerEncoderLayer ran in PyTorch's fused "
        "fast path (torch._transformer_encoder_layer_fwd) and cannot be observed without "
        "changing the computation; it is not scanned. Run with --no-fast-path to disable "
        "the fast path and scan it."
    )


@contextmanager
def capture(model: torch.nn.Module, registry: SiteRegistry) -> Iterator[_CaptureState]:
    """Hooks and mode on ``model`` for the duration of the block, always removed."""
    state = _CaptureState(registry)
    handles = []
    try:
        for path, module in model.named_modules():
            pre, post = _make_hooks(state, path or ROOT, module)
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
        state.mode = _ActivationMode(state)
        state.mode.__enter__()
        state.mode_active = True
        yield state
    finally:
        if state.mode is not None and state.mode_active:
            state.mode.__exit__(None, None, None)
        state.mode_active = False
        for h in handles:
            h.remove()
        for module in model.modules():
            _unwrap_transformer_activation(module)
        state.stack.clear()
