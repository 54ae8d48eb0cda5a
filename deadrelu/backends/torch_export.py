"""Sites of a ``torch.export`` program, instrumented in its FX graph.

An exported program has no module hooks; instead each activation node's target is replaced by
an observing wrapper. Names come from each node's ``nn_module_stack`` (its innermost entry is
the module the call ran in), so a ``.pt2`` names its sites exactly as the eager model does:
``layer1.0.relu``, ``layer1.0.relu#2``, ``encoder.0.mlp/gelu``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from deadrelu.activations import KIND_BY_NAME, KINDS
from deadrelu.backends.sites import ROOT, SiteRegistry, call_params

# aten op name (packet) -> kind
_ATEN_KINDS: dict[str, str] = {
    "relu": "relu", "relu_": "relu", "relu6": "relu6", "hardtanh": "hardtanh",
    "hardtanh_": "hardtanh", "leaky_relu": "leaky_relu", "leaky_relu_": "leaky_relu",
    "prelu": "prelu", "_prelu_kernel": "prelu", "rrelu": "rrelu", "rrelu_": "rrelu",
    "rrelu_with_noise": "rrelu", "elu": "elu", "elu_": "elu", "selu": "selu", "selu_": "selu",
    "celu": "celu", "celu_": "celu", "gelu": "gelu", "gelu_": "gelu", "silu": "silu",
    "silu_": "silu", "mish": "mish", "mish_": "mish", "softplus": "softplus",
    "hardswish": "hardswish", "hardswish_": "hardswish", "hardsigmoid": "hardsigmoid",
    "hardsigmoid_": "hardsigmoid", "sigmoid": "sigmoid", "sigmoid_": "sigmoid",
    "tanh": "tanh", "tanh_": "tanh",
}
_CHANNEL_FIRST_OPS = frozenset({
    "conv1d", "conv_transpose1d", "convolution", "_convolution", "batch_norm",
    "_native_batch_norm_legit_no_training", "native_batch_norm", "instance_norm", "group_norm",
    "native_group_norm", "max_pool1d", "avg_pool1d", "adaptive_avg_pool1d",
    "adaptive_max_pool1d", "max_pool1d_with_indices",
})
_CHANNEL_KEEPING_OPS = frozenset({
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "dropout", "clone",
    "contiguous", "neg", "abs", "clamp", "clamp_", "getitem", *_ATEN_KINDS,
})
_MODULE_CLASS_KINDS = {f"torch.nn.modules.activation.{cls}": k.name
                       for k in KINDS for cls in k.torch_modules}


def _op_name(target: Any) -> str:
    packet = getattr(target, "_overloadpacket", None)
    name = getattr(packet, "__name__", None) or getattr(target, "__name__", "")
    return str(name).split(".")[-1]


def _innermost(node: torch.fx.Node) -> tuple[str, str]:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, cls = list(stack.values())[-1]
    cls_name = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
    return str(path), cls_name


def _channels_first(node: torch.fx.Node) -> bool:
    """Does this rank-3 value come from a conv / norm over channels, through elementwise ops?"""
    seen = 0
    current: Any = node
    while isinstance(current, torch.fx.Node) and seen < 64:
        seen += 1
        name = _op_name(current.target) if current.op == "call_function" else ""
        if name in _CHANNEL_FIRST_OPS:
            return True
        if name not in _CHANNEL_KEEPING_OPS or not current.args:
            return False
        current = current.args[0]
    return False


def site_params(kind: str, args: Any, kwargs: Any) -> tuple[str, dict[str, Any]]:
    """Kind and parameters of an activation node from its arguments (a relu6 op is fixed)."""
    if kind == "relu6":
        return "relu6", {"lo": 0.0, "hi": 6.0}
    return call_params(kind, args, kwargs)


@dataclass(eq=False)  # hashed by identity: FX keeps node targets in a lookup table
class _Observed:
    """Replaces an activation node's target: measures, then calls the original op."""

    registry: SiteRegistry
    name: str
    kind: str
    module: str
    call: str
    channels_first: bool
    op: Callable[..., Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        z = args[0] if args else kwargs.get("self", kwargs.get("input"))
        if not isinstance(z, torch.Tensor) or not z.is_floating_point():
            return self.op(*args, **kwargs)
        kind, params = site_params(self.kind, args, kwargs)
        acc = self.registry.accumulator(self.name, kind, params, z,
                                        channels_first=self.channels_first, call=self.call,
                                        module=self.module)
        weight = args[1] if kind == "prelu" and len(args) > 1 else None
        finite = acc.observe_input(z, weight if isinstance(weight, torch.Tensor) else None)
        out = self.op(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            acc.observe_output(out, finite)
        return out

    @property
    def __name__(self) -> str:  # FX codegen names the callable
        return f"deadrelu_observed_{self.kind}"


def planned_sites(gm: torch.fx.GraphModule) -> list[tuple[torch.fx.Node, str, str, str, str]]:
    """(node, site name, kind, call, module path) for every activation node, in graph order."""
    counts: dict[str, int] = {}
    out = []
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        kind = _ATEN_KINDS.get(_op_name(node.target))
        if kind is None:
            continue
        path, cls_name = _innermost(node)
        module_kind = _MODULE_CLASS_KINDS.get(cls_name)
        if module_kind is not None and path:
            base, call, module = path, "module", path
            # A clamp module's hardtanh is refined from its (lo, hi) at run time; any other op
            # inside one (a patched ReLU6) keeps its own kind.
            if module_kind not in ("relu6", "hardtanh") and \
                    KIND_BY_NAME[module_kind].family == KIND_BY_NAME[kind].family:
                kind = module_kind
        else:
            base, call, module = f"{path or ROOT}/{kind}", "functional", path or ROOT
        n = counts.get(base, 0) + 1
        counts[base] = n
        out.append((node, base if n == 1 else f"{base}#{n}", kind, call, module))
    return out


def instrument(gm: torch.fx.GraphModule, registry: SiteRegistry) -> list[str]:
    """Replace every activation node's target in place; returns the site names in order."""
    names = []
    for node, name, kind, call, module in planned_sites(gm):
        first = node.args[0] if node.args else None
        rank3_first = isinstance(first, torch.fx.Node) and _channels_first(first)
        op = node.target
        assert callable(op)  # call_function nodes hold the op itself
        node.target = _Observed(registry, name, kind, module, call, rank3_first, op)
        names.append(name)
    gm.recompile()
    return names
