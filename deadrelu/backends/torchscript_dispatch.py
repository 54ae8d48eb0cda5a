"""TorchScript models the ONNX exporter cannot convert, measured as they run.

Hooks and function modes do not see inside a ScriptModule, but every op the TorchScript
interpreter runs goes through the dispatcher, where a ``TorchDispatchMode`` sees it. Sites
are named from a static walk of the scripted code (module calls and functional calls, in
program order): the k-th activation op at run time takes the next planned name of the same
op, so names match the eager model's (``encoder.0.mlp/gelu``) wherever control flow follows
the plan, and fall back to ``root/<kind>`` where it does not.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from deadrelu.backends.sites import ROOT, SiteRegistry, SiteResult, call_params
from deadrelu.backends.torch_export import _CHANNEL_FIRST_OPS, _CHANNEL_KEEPING_OPS
from deadrelu.errors import DeadReluError

# Scripted function / aten names -> the op the dispatcher runs (composite ops decompose).
_RUNTIME_OP = {
    "relu": "relu", "relu_": "relu_", "relu6": "hardtanh", "hardtanh": "hardtanh",
    "hardtanh_": "hardtanh_", "leaky_relu": "leaky_relu", "leaky_relu_": "leaky_relu_",
    "elu": "elu", "elu_": "elu_", "selu": "elu", "celu": "celu", "gelu": "gelu",
    "silu": "silu", "mish": "mish", "softplus": "softplus", "hardswish": "hardswish",
    "hardsigmoid": "hardsigmoid", "sigmoid": "sigmoid", "sigmoid_": "sigmoid_",
    "tanh": "tanh", "tanh_": "tanh_", "prelu": "_prelu_kernel", "rrelu": "rrelu_with_noise",
}
# Dispatcher op -> deadrelu kind before call_params refines it (hardtanh(0, 6) is relu6).
_OP_KIND = {
    "relu": "relu", "relu_": "relu", "hardtanh": "hardtanh", "hardtanh_": "hardtanh",
    "leaky_relu": "leaky_relu", "leaky_relu_": "leaky_relu", "elu": "elu", "elu_": "elu",
    "gelu": "gelu", "silu": "silu", "mish": "mish", "softplus": "softplus",
    "hardswish": "hardswish", "hardsigmoid": "hardsigmoid", "sigmoid": "sigmoid",
    "sigmoid_": "sigmoid", "tanh": "tanh", "tanh_": "tanh", "_prelu_kernel": "prelu",
    "rrelu_with_noise": "rrelu",
    "selu": "selu", "selu_": "selu", "celu": "celu", "celu_": "celu",
}
_ACTIVATION_MODULES = frozenset({
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU", "SiLU",
    "Mish", "Softplus", "Hardswish", "Hardsigmoid", "Hardtanh", "Sigmoid", "Tanh",
})
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805


@dataclass
class PlannedCall:
    base: str  # site name before call numbering
    op: str  # dispatcher op name it runs as
    call: str  # "module" | "functional"
    module: str


_FORWARD = re.compile(r"forward\d*")


def plan_calls(module: Any) -> list[PlannedCall]:
    """Activation calls of a ScriptModule in program order, with eager-style names."""
    out: list[PlannedCall] = []
    _walk(module, "", module.forward.graph, out, 0)
    return out


def _is_activation_module(module: Any) -> bool:
    return str(getattr(module, "original_name", "")) in _ACTIVATION_MODULES


def _record(out: list[PlannedCall], module: Any, path: str, name: str) -> None:
    op = _RUNTIME_OP.get(name)
    if op is None:
        return
    if _is_activation_module(module):
        out.append(PlannedCall(path, op, "module", path))
    else:
        kind = "relu6" if name == "relu6" else _OP_KIND[op]
        out.append(PlannedCall(f"{path or ROOT}/{kind}", op, "functional", path or ROOT))


def _walk(module: Any, path: str, graph: Any, out: list[PlannedCall], depth: int) -> None:
    if depth > 64:
        return
    self_value = next(iter(graph.inputs())).debugName()
    owners: dict[str, tuple[Any, str]] = {self_value: (module, path)}

    def visit(block: Any) -> None:
        for node in block.nodes():
            kind = node.kind()
            if kind == "prim::GetAttr":
                owner = owners.get(node.input().debugName())
                if owner is not None:
                    sub = getattr(owner[0], node.s("name"), None)
                    if isinstance(sub, torch.nn.Module):
                        name = node.s("name")
                        owners[node.output().debugName()] = (
                            sub, f"{owner[1]}.{name}" if owner[1] else name)
            elif kind == "prim::CallMethod" and _FORWARD.fullmatch(node.s("name")):
                # torch.jit.trace gives a module called k times the methods forward,
                # forward1, …, forward<k-1>, one per call.
                target = owners.get(node.inputsAt(0).debugName())
                method = getattr(target[0], node.s("name"), None) if target else None
                if target is not None and method is not None:
                    _walk(target[0], target[1], method.graph, out, depth + 1)
            elif kind == "prim::CallFunction":
                fn = node.inputsAt(0).node()
                if fn.kind() == "prim::Constant" and fn.hasAttribute("name"):
                    _record(out, module, path, fn.s("name"))
            elif kind.startswith("aten::"):
                _record(out, module, path, kind[len("aten::"):])
            for inner in node.blocks():
                visit(inner)

    visit(graph)


def _same_op(a: str, b: str) -> bool:
    """An in-place call (``relu_``) matches its planned out-of-place form and vice versa:
    ``F.relu(x, inplace=True)`` scripts as ``relu`` and runs as ``relu_``."""
    return a.rstrip("_") == b.rstrip("_")


def _kind_and_params(op: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
                     ) -> tuple[str, dict[str, Any]]:
    if op in ("celu", "celu_"):
        return "celu", {"alpha": float(args[1]) if len(args) > 1 else 1.0}
    if op in ("selu", "selu_"):
        return "selu", {}
    if op in ("elu", "elu_"):
        alpha = float(args[1]) if len(args) > 1 else 1.0
        scale = float(args[2]) if len(args) > 2 else 1.0
        input_scale = float(args[3]) if len(args) > 3 else 1.0
        if abs(alpha - _SELU_ALPHA) < 1e-6 and abs(scale - _SELU_SCALE) < 1e-6:
            return "selu", {}
        if scale == 1.0 and input_scale != 1.0:
            return "celu", {"alpha": alpha}
        return "elu", {"alpha": alpha}
    if op == "rrelu_with_noise":
        lower = float(args[2]) if len(args) > 2 else 1.0 / 8
        upper = float(args[3]) if len(args) > 3 else 1.0 / 3
        training = bool(args[4]) if len(args) > 4 else False
        return "rrelu", {"slope": lower if training else (lower + upper) / 2, "lower": lower,
                         "upper": upper}
    if op == "gelu":
        return "gelu", {"approximate": str(kwargs.get("approximate", "none"))}
    return call_params(_OP_KIND[op], args, kwargs, None)


@dataclass
class _Capture(TorchDispatchMode):
    registry: SiteRegistry
    plan: list[PlannedCall]
    cursor: int = 0
    channels_first: weakref.WeakValueDictionary[int, torch.Tensor] = field(
        default_factory=weakref.WeakValueDictionary)
    last_error: str = ""  # the last op error, which the interpreter's re-raise loses
    user_error: DeadReluError | None = None  # raised by deadrelu itself, re-raised as is

    def __post_init__(self) -> None:
        super().__init__()

    def begin_forward(self) -> None:
        self.cursor = 0
        self.registry.begin_forward()

    def _name(self, op: str, kind: str) -> tuple[str, str, str]:
        for i in range(self.cursor, len(self.plan)):
            if _same_op(self.plan[i].op, op):
                self.cursor = i + 1
                p = self.plan[i]
                return p.base, p.call, p.module
        return f"{ROOT}/{kind}", "functional", ROOT

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        kwargs = kwargs or {}
        op = str(getattr(func, "_overloadpacket", func).__name__).split(".")[-1]
        z = args[0] if args else None
        if op not in _OP_KIND or not isinstance(z, torch.Tensor) or not z.is_floating_point():
            try:
                out = func(*args, **kwargs)
            except Exception as exc:
                # The TorchScript interpreter re-raises a Python mode's error with an empty
                # message: keep the op's own words for the user.
                self.last_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}" \
                    if str(exc).strip() else type(exc).__name__
                raise
            self._track(op, args, out)
            return out
        kind, params = _kind_and_params(op, tuple(args), kwargs)
        base, call, module = self._name(op, kind)
        name = self.registry.name_call(base)
        first = id(z) in self.channels_first and self.channels_first[id(z)] is z
        try:
            acc = self.registry.accumulator(name, kind, params, z, channels_first=first,
                                            call=call, module=module)
        except DeadReluError as exc:  # a flag that does not fit this site: the user's line
            self.user_error = exc
            raise
        weight = args[1] if op == "_prelu_kernel" and len(args) > 1 else None
        finite = acc.observe_input(z, weight)
        out = func(*args, **kwargs)
        acc.observe_output(out, finite)
        self._track(op, args, out)
        return out

    def _track(self, op: str, args: Any, out: Any) -> None:
        if isinstance(out, (tuple, list)) and out:  # batch_norm: (out, mean, invstd)
            out = out[0]
        if not isinstance(out, torch.Tensor) or out.ndim != 3:
            return
        if op in _CHANNEL_FIRST_OPS:
            self.channels_first[id(out)] = out
        elif op in _CHANNEL_KEEPING_OPS or op in _OP_KIND:
            for a in args:
                if isinstance(a, torch.Tensor) and a.shape == out.shape and \
                        self.channels_first.get(id(a)) is a:
                    self.channels_first[id(out)] = out
                    return


def run_dispatch(module: Any, inputs: list[str], batches: Iterable[Mapping[str, np.ndarray]],
                 registry: SiteRegistry, source: str,
                 on_batch: Callable[[int], None] | None) -> list[SiteResult]:
    """Run the ScriptModule over the batches, measuring every activation op it dispatches."""
    capture = _Capture(registry, plan_calls(module))
    device = registry.device
    module = module.to(device)
    with torch.no_grad():
        for batch in batches:
            missing = [n for n in inputs if n not in batch]
            if missing:
                raise DeadReluError(f"the data has no array for the model input "
                                    f"{missing[0]!r}", path=source)
            args = [torch.from_numpy(np.ascontiguousarray(batch[n])).to(device) for n in inputs]
            capture.begin_forward()
            try:
                with capture:
                    module(*args)
            except RuntimeError as exc:
                if capture.user_error is not None:
                    raise capture.user_error from None
                reason = _interpreter_error(exc)
                if reason.rstrip(":") in ("RuntimeError", "") and capture.last_error:
                    reason = capture.last_error
                raise DeadReluError(f"the TorchScript model failed on this data: {reason}",
                                    path=source) from None
            if on_batch is not None:
                on_batch(int(args[0].shape[0]) if args and args[0].ndim else 1)
    return registry.results()


def _interpreter_error(exc: RuntimeError) -> str:
    """The error line of a TorchScript interpreter failure: its message opens with "The
    following operation failed in the TorchScript interpreter." and a traceback of the
    scripted code, and ends with the original error (``RuntimeError: Input type …``)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("The following operation failed") and len(lines) > 1:
        return lines[-1]
    return lines[0]
