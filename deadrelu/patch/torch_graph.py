"""Rewrite the activation nodes of a ``torch.export`` program (the ``.pt2`` output).

Works at the FX graph level, so functional calls (``F.relu``) and a module called at several
sites are rewritten one call at a time. Site names come from the same ``planned_sites`` the
scanner uses, so a plan made from a scan names exactly the nodes changed here. The rewritten
graph is exported again: the result is a plain ``ExportedProgram`` that ``torch.export.load``
reads without deadrelu (its extra tensors are ordinary buffers).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from deadrelu.backends.torch_export import _op_name, planned_sites
from deadrelu.errors import DeadReluError
from deadrelu.patch.plan import Plan, Rewrite

_VIEW_OPS = frozenset({"view", "_unsafe_view", "reshape", "slice", "select", "as_strided",
                       "transpose", "permute", "expand", "unsqueeze", "squeeze", "t",
                       "flatten", "narrow", "unflatten", "diagonal", "alias", "detach"})


def export_module(module: torch.nn.Module, example: Sequence[torch.Tensor]) -> Any:
    """``torch.export`` an eager module, with a dynamic batch dimension."""
    from torch.export import Dim

    shapes = tuple({0: Dim.AUTO} if t.ndim else None for t in example)
    try:
        return torch.export.export(module.eval(), tuple(example), dynamic_shapes=shapes)
    except Exception as exc:  # torch.export raises many types; the first line says why
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DeadReluError(f"torch.export cannot export this model ({first}); write a "
                            "pickled module with -o FILE.pt instead") from None


def dynamic_shapes_of(program: Any) -> tuple[Any, ...]:
    """Dim.AUTO on every dimension that was symbolic in ``program``'s user inputs."""
    from torch.export import Dim

    user = [s.arg.name for s in program.graph_signature.input_specs
            if s.kind.name == "USER_INPUT"]
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    out: list[Any] = []
    for name in user:
        val = nodes[name].meta.get("val") if name in nodes else None
        if isinstance(val, torch.Tensor):
            dims = {i: Dim.AUTO for i, d in enumerate(val.shape) if not isinstance(d, int)}
            out.append(dims or None)
        else:
            out.append(None)
    return tuple(out)


def check_graph_sites(gm: torch.fx.GraphModule, plan: Plan) -> None:
    """Mark planned sites this graph cannot rewrite safely as skipped, with the reason."""
    nodes = {name: node for node, name, *_ in planned_sites(gm)}
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    for p in plan.active:
        node = nodes.get(p.name)
        if node is None:
            p.skipped = "not found in the exported graph"
            continue
        assert p.rewrite is not None
        if p.rewrite.op == "prelu" and p.rank > 2 and p.channel_axis != 1:
            p.skipped = (f"per-channel PReLU needs the channels on axis 1; this site's "
                         f"neurons are on axis {p.channel_axis}: use --scope layers")
            continue
        if _op_name(node.target).endswith("_"):
            src = node.args[0] if node.args else None
            later = [u for u in getattr(src, "users", {}) if u is not node
                     and order.get(u, -1) > order[node]]
            if not isinstance(src, torch.fx.Node) or later or src.op == "placeholder" or (
                    src.op == "call_function" and _op_name(src.target) in _VIEW_OPS):
                p.skipped = ("in-place ReLU whose input is read again or is a view: "
                             "replacing it out of place could change other values")


def rewrite_graph(gm: torch.fx.GraphModule, plan: Plan) -> dict[str, torch.fx.Node]:
    """Replace every active planned site's node in place; returns site name -> output node."""
    aten = torch.ops.aten
    nodes = {name: node for node, name, *_ in planned_sites(gm)}
    outputs: dict[str, torch.fx.Node] = {}
    for i, p in enumerate(plan.active):
        node, rw = nodes[p.name], p.rewrite
        assert rw is not None
        z = node.args[0]
        graph = gm.graph
        with graph.inserting_before(node):
            if rw.op == "prelu":
                assert rw.slopes is not None
                gm.register_buffer(f"deadrelu_slope_{i}", torch.tensor(rw.slopes,
                                                                       dtype=_dtype(node)))
                h = graph.call_function(aten.prelu.default,
                                        (z, graph.get_attr(f"deadrelu_slope_{i}")))
            elif rw.op == "leaky_relu":
                h = graph.call_function(aten.leaky_relu.default, (z, rw.alpha))
            else:
                h = graph.call_function(aten.elu.default, (z, rw.alpha))
            h.meta = _meta_as(node, rw.op)
            out = h
            if rw.cap is not None:
                out = _cap(gm, graph, h, rw, p.rank, p.channel_axis, i, _dtype(node))
        node.replace_all_uses_with(out)
        graph.erase_node(node)
        outputs[p.name] = out
    graph = gm.graph
    graph.lint()
    gm.recompile()
    return outputs


_NEW_CLASS = {"prelu": "PReLU", "leaky_relu": "LeakyReLU", "elu": "ELU"}


def _meta_as(node: torch.fx.Node, op: str) -> dict[str, Any]:
    """The node's meta with its innermost module recorded as the new activation's class:
    the site keeps its module path (and so its name), and a re-scan reads the new kind."""
    meta = dict(node.meta)
    stack = dict(meta.get("nn_module_stack") or {})
    if stack:
        key = list(stack)[-1]
        path, cls = stack[key]
        cls_name = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
        if cls_name.startswith("torch.nn.modules.activation."):
            stack[key] = (path, f"torch.nn.modules.activation.{_NEW_CLASS[op]}")
        meta["nn_module_stack"] = stack
    return meta


def _dtype(node: torch.fx.Node) -> torch.dtype:
    val = node.meta.get("val")
    return val.dtype if isinstance(val, torch.Tensor) else torch.float32


def _cap(gm: torch.fx.GraphModule, graph: torch.fx.Graph, h: torch.fx.Node, rw: Rewrite,
         rank: int, axis: int, i: int, dtype: torch.dtype) -> torch.fx.Node:
    aten = torch.ops.aten
    assert rw.cap is not None
    if rw.cap_slopes is None:
        return graph.call_function(aten.clamp.default, (h, None, rw.cap))
    above = graph.call_function(aten.sub.Tensor, (h, rw.cap))
    if len(set(rw.cap_slopes)) == 1:
        scaled = graph.call_function(aten.mul.Tensor, (above, rw.cap_slopes[0]))
    else:
        shape = [len(rw.cap_slopes)] + [1] * max(rank - 1 - axis, 0)
        gm.register_buffer(f"deadrelu_cap_slope_{i}",
                           torch.tensor(rw.cap_slopes, dtype=dtype).reshape(shape))
        scaled = graph.call_function(aten.mul.Tensor,
                                     (above, graph.get_attr(f"deadrelu_cap_slope_{i}")))
    lid = graph.call_function(aten.add.Tensor, (scaled, rw.cap))
    return graph.call_function(aten.minimum.default, (h, lid))


def reexport(gm: torch.fx.GraphModule, example: Sequence[torch.Tensor],
             dynamic: tuple[Any, ...]) -> Any:
    try:
        return torch.export.export(gm, tuple(example), dynamic_shapes=dynamic or None)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DeadReluError(f"the rewritten graph does not export again: {first}") from None


# ------------------------------------------------------------------ bias compensation

_PASS_THROUGH = frozenset({"view", "_unsafe_view", "reshape", "flatten", "clone", "contiguous",
                           "dropout", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
                           "max_pool1d", "avg_pool1d", "adaptive_avg_pool1d", "mean"})


def graph_consumer(out: torch.fx.Node) -> tuple[torch.fx.Node | None, str]:
    """The Linear / 1×1 Conv node that takes this site's output, through shape-only and
    pooling ops; (None, why not) when there is none."""
    current = out
    for _ in range(16):
        users = list(current.users)
        if len(users) != 1:
            return None, "its output has several consumers"
        user = users[0]
        name = _op_name(user.target) if user.op == "call_function" else ""
        if name == "linear":
            ok = len(user.args) > 2 and user.args[2] is not None
            return (user, "") if ok else (None, "the consuming Linear has no bias")
        if name in ("conv1d", "conv2d"):
            w = user.args[1].meta.get("val") if isinstance(user.args[1], torch.fx.Node) \
                else None
            pad = user.args[4] if len(user.args) > 4 else 0
            groups = user.args[6] if len(user.args) > 6 else 1
            if len(user.args) < 3 or user.args[2] is None:
                return None, "the consuming Conv has no bias"
            pads = list(pad) if isinstance(pad, (list, tuple)) else [pad]
            if w is None or any(int(k) != 1 for k in w.shape[2:]) or groups != 1 or any(
                    p != 0 for p in pads):
                return None, "the consumer is a Conv that is not 1×1 (unpadded, ungrouped)"
            return user, ""
        if name not in _PASS_THROUGH:
            return None, f"its output goes into {name or user.op}, not a Linear / 1×1 Conv"
        current = user
    return None, "no Linear / 1×1 Conv within 16 ops"


class MeanRecorder:
    """An FX call target that sums its input over every axis but the feature axis."""

    def __init__(self, axis: int) -> None:
        self.axis = axis
        self.total: torch.Tensor | None = None
        self.count = 0

    def __call__(self, x: torch.Tensor) -> None:
        axis = self.axis % x.ndim
        flat = x.detach().movedim(axis, 0).reshape(x.shape[axis], -1).double()
        s = flat.sum(dim=1)
        self.total = s if self.total is None else self.total + s
        self.count += flat.shape[1]

    @property
    def __name__(self) -> str:
        return "deadrelu_mean_recorder"

    def mean(self) -> np.ndarray:
        assert self.total is not None
        return (self.total / max(self.count, 1)).cpu().numpy()


def consumer_means(gm: torch.fx.GraphModule, names: Sequence[str], run: Any
                   ) -> dict[str, np.ndarray]:
    """Mean of the input of each named consumer node over the data (``run(fn)`` feeds it)."""
    with warnings.catch_warnings():  # torch's own pytree deprecation, on deepcopy
        warnings.simplefilter("ignore", FutureWarning)
        probe = copy.deepcopy(gm)
    nodes = {n.name: n for n in probe.graph.nodes}
    recorders: dict[str, MeanRecorder] = {}
    for name in names:
        node = nodes[name]
        axis = -1 if _op_name(node.target) == "linear" else 1
        recorders[name] = MeanRecorder(axis)
        with probe.graph.inserting_before(node):
            probe.graph.call_function(recorders[name], (node.args[0],))
    probe.recompile()
    run(probe)
    return {n: r.mean() for n, r in recorders.items()}


def param_of(gm: torch.fx.GraphModule, node: Any) -> torch.Tensor:
    if not isinstance(node, torch.fx.Node) or node.op != "get_attr":
        raise DeadReluError("a consumer's weight is not a stored parameter")
    obj: Any = gm
    for part in str(node.target).split("."):
        obj = getattr(obj, part)
    assert isinstance(obj, torch.Tensor)
    return obj


def fold_graph_bias(gm: torch.fx.GraphModule, consumer: str, shift: np.ndarray) -> None:
    """bias -= W · shift for the named Linear / 1×1 Conv node: its output mean is restored."""
    node = {n.name: n for n in gm.graph.nodes}[consumer]
    weight, bias = param_of(gm, node.args[1]), param_of(gm, node.args[2])
    w2 = weight.detach().double().reshape(weight.shape[0], -1)
    delta = w2 @ torch.from_numpy(shift).to(w2.device)
    with torch.no_grad():
        bias.copy_((bias.double() - delta).to(bias.dtype))


def user_example(batch: Mapping[str, np.ndarray], names: Sequence[str],
                 dtypes: Sequence[torch.dtype | None]) -> list[torch.Tensor]:
    out = []
    for name, dt in zip(names, dtypes, strict=False):
        t = torch.from_numpy(np.ascontiguousarray(batch[name]))
        if dt is not None and t.is_floating_point():
            t = t.to(dt)
        out.append(t)
    return out
