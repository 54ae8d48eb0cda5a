"""Append per-site statistics to a copy of an ONNX graph.

For every site the copy gets reduction nodes over its pre-activation ``z`` (and output
``h``) that produce that batch's per-neuron accumulators of :mod:`deadrelu.stats` — active /
positive / finite / at-cap counts, max and min of the finite pre-activations, the sum of
``|h|`` — plus ``Shape(z)``. Each run so returns O(neurons) numbers per site (image ReLUs:
four per sample and channel, see :mod:`deadrelu.backends.onnx_pooled`); no activation
tensor leaves onnxruntime. The comparisons are the same ones the torch backends make: each
interval end of :func:`deadrelu.activations.active_set` rounded to ``z``'s dtype, non-finite
elements never active.

Because the statistics are graph outputs computed from ``z`` itself, no graph optimisation
can fuse a site away from under them: ``z`` must exist for the outputs to exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deadrelu.activations import Interval, active_set, cap_bounds
from deadrelu.backends import onnx_pooled
from deadrelu.backends.onnx_graph import DEFAULT_DOMAINS, opset
from deadrelu.backends.onnx_sites import OnnxSite
from deadrelu.errors import DeadReluError

# Ops whose rank-3 output is (N, C, L): the channel axis of what follows is 1 (design.md §1).
_CHANNEL_FIRST_OPS = frozenset({
    "Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "MaxPool",
    "AveragePool", "LpPool", "GroupNormalization", "QLinearConv", "ConvInteger",
})
# Elementwise ops that keep an (N, C, L) tensor channel-first.
_CHANNEL_KEEPING_OPS = frozenset({
    "Add", "Sub", "Mul", "Div", "Dropout", "Identity", "Neg", "Abs", "Clip", "Relu", "LeakyRelu",
    "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish",
    "Softplus", "Mish", "ThresholdedRelu", "Cast",
})
FIELDS = ("active", "active_samples", "positive", "finite", "at_cap", "abs_sum", "max_pre",
          "min_pre")


@dataclass
class SiteLayout:
    """What instrumenting one site needs to know about its pre-activation."""

    rank: int
    channel_axis: int
    elem_type: int
    inner: int | None = None  # elements per (sample, neuron), when shape inference knows them
    dims: tuple[int | None, ...] | None = None  # the static dims shape inference found
    count_at: float | None = None  # also count elements >= this (SiteRegistry.count_at_cap)


@dataclass
class Instrumented:
    model: Any
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # site -> field -> output


class _Builder:
    def __init__(self, graph: Any, version: int, prefix: str) -> None:
        self.graph = graph
        self.version = version
        self.prefix = prefix
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}{hint}_{self.count}"

    def node(self, op: str, inputs: list[str], hint: str | None = None, **attrs: Any) -> str:
        import onnx

        out = self.name(hint or op.lower())
        self.graph.node.append(onnx.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const(self, value: np.ndarray, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, values: list[int]) -> str:
        return self.const(np.asarray(values, dtype=np.int64), "axes")

    def reduce(self, op: str, x: str, axes: list[int], keepdims: int = 0) -> str:
        # Axes moved from attribute to input: ReduceSum at opset 13, the others at 18.
        as_input = self.version >= (13 if op == "ReduceSum" else 18)
        if as_input:
            return self.node(op, [x, self.ints(axes)], keepdims=keepdims)
        return self.node(op, [x], axes=axes, keepdims=keepdims)

    def per_neuron(self, op: str, x: str, inner: list[int]) -> str:
        """``op`` over every axis but the neuron's: within each sample first, then over the
        samples. onnxruntime reduces the inner axes of (N, C, H, W) or (N, S, C) 1.5-3x faster
        than the same axes with the sample axis among them; the second reduce is tiny."""
        if inner:
            x = self.reduce(op, x, inner)
        return self.reduce(op, x, [0])

    def cast(self, x: str, to: int) -> str:
        return self.node("Cast", [x], to=to)

    # x >= bound and x <= bound: one node from opset 12, where Not(Less) costs a second pass
    # over the mask. The two differ on NaN, which never reaches them unmasked: the fast graph
    # runs on all-finite batches only and the exact one ANDs every mask with `finite`.
    def at_least(self, x: str, bound: str) -> str:
        if self.version >= 12:
            return self.node("GreaterOrEqual", [x, bound])
        return self.node("Not", [self.node("Less", [x, bound])])

    def at_most(self, x: str, bound: str) -> str:
        if self.version >= 12:
            return self.node("LessOrEqual", [x, bound])
        return self.node("Not", [self.node("Greater", [x, bound])])


def layouts(model: Any, sites: list[OnnxSite], override: int | None,
            observed: Mapping[str, tuple[int, int]] | None = None) -> dict[str, SiteLayout]:
    """Rank, channel axis and element type of each scanned site's ``z``.

    ``observed`` (site -> (rank, elem_type)) fills in what shape inference could not.
    """
    import onnx

    from deadrelu.backends.onnx_graph import without_weights
    from deadrelu.measure import channel_axis_for

    try:  # on a copy without weights: serialising them is most of the time otherwise
        inferred = onnx.shape_inference.infer_shapes(without_weights(model)[0],
                                                     strict_mode=False)
    except Exception:  # inference is a help, not a requirement
        inferred = model
    types: dict[str, Any] = {}
    producers: dict[str, Any] = {}
    for graph in _graphs(inferred.graph):
        for value in (*graph.value_info, *graph.input, *graph.output):
            types[value.name] = value.type.tensor_type
        for t in graph.initializer:
            types.setdefault(t.name, onnx.helper.make_tensor_type_proto(t.data_type, t.dims)
                             .tensor_type)
    for graph in _graphs(model.graph):
        producers.update({o: n for n in graph.node for o in n.output})
    out: dict[str, SiteLayout] = {}
    for s in sites:
        if not s.scanned:
            continue
        tt = types.get(s.z)
        dims = list(tt.shape.dim) if tt is not None and tt.HasField("shape") else None
        rank = len(dims) if dims is not None else None
        elem = tt.elem_type if tt is not None and tt.elem_type else None
        if observed and s.name in observed:
            rank, elem = observed[s.name]
        if rank is None or elem is None:
            continue
        try:
            axis = channel_axis_for(rank, _channels_first(s.z, producers), override)
        except ValueError as exc:
            raise DeadReluError(f"site {s.name}: {exc}") from None
        inner = static = None
        if dims is not None and len(dims) == rank:
            static = tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in dims)
        if dims is not None and len(dims) == rank and all(
                d.HasField("dim_value") for i, d in enumerate(dims) if i not in (0, axis)):
            inner = int(np.prod([d.dim_value for i, d in enumerate(dims) if i not in (0, axis)]))
        out[s.name] = SiteLayout(rank, axis, elem, inner, static)
    return out


def _graphs(graph: Any) -> list[Any]:
    """The graph and every subgraph inside it."""
    from deadrelu.backends.onnx_graph import subgraphs

    out = [graph]
    for node in graph.node:
        for _, g in subgraphs(node):
            out += _graphs(g)
    return out


def _channels_first(value: str, producers: Mapping[str, Any]) -> bool:
    current = producers.get(value)
    for _ in range(64):
        if current is None or current.domain not in DEFAULT_DOMAINS:
            return False
        if current.op_type in _CHANNEL_FIRST_OPS:
            return True
        if current.op_type not in _CHANNEL_KEEPING_OPS or not current.input:
            return False
        current = producers.get(current.input[0])
    return False


def instrument(model: Any, sites: list[OnnxSite], lay: Mapping[str, SiteLayout], eps: float,
               *, fast: bool = False) -> Instrumented:
    """A copy of ``model`` whose extra outputs are each site's per-batch statistics.

    Sites inside ``If`` branches get their statistics computed in the branch; the If node
    passes them out, and the branch not taken returns empty tensors in their place (so a
    batch that did not run a branch adds nothing to its sites).
    """
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    result = Instrumented(copy)
    by_graph: dict[str, list[tuple[int, OnnxSite]]] = {}
    for i, s in enumerate(sites):
        if s.name in lay:
            by_graph.setdefault(s.graph, []).append((i, s))
    exported = _instrument_graph(copy.graph, "", by_graph, lay, eps, opset(copy), result, fast)
    for value, elem in exported:
        copy.graph.output.append(onnx.helper.make_tensor_value_info(value, elem, None))
    return result


def _instrument_graph(graph: Any, prefix: str, by_graph: Mapping[str, list[tuple[int, OnnxSite]]],
                      lay: Mapping[str, SiteLayout], eps: float, version: int,
                      result: Instrumented, fast: bool) -> list[tuple[str, int]]:
    """Add the statistics of the sites in ``graph`` (and its If branches); returns the values
    (name, element type) the graph must pass out."""
    import onnx

    from deadrelu.backends.onnx_graph import subgraphs
    from deadrelu.backends.onnx_sites import node_label

    exported: list[tuple[str, int]] = []
    for i, s in by_graph.get(prefix, []):
        b = _Builder(graph, version, f"deadrelu/{i}/")
        outs, types = _site_stats(b, s, lay[s.name], eps, fast)
        result.outputs[s.name] = outs
        exported += _unique(outs, types)  # ReLU's "positive" is its "active": one output
    _order_for_onnxruntime(graph)
    for node in list(graph.node):
        if node.op_type != "If" or node.domain not in DEFAULT_DOMAINS:
            continue
        branches = dict(subgraphs(node))
        label = node_label(node)
        inner = {name: _instrument_graph(g, f"{prefix}{label}.{name}/", by_graph, lay, eps,
                                         version, result, fast)
                 for name, g in branches.items()}
        passed = [v for outs in inner.values() for v in outs]
        if not passed:
            continue
        for name, g in branches.items():
            mine = {v for v, _ in inner[name]}
            for value, elem in passed:
                if value not in mine:  # the other branch's statistics: empty here
                    empty = f"{value}/empty/{name}"
                    g.node.append(onnx.helper.make_node(
                        "Constant", [], [empty], name=empty,
                        value=onnx.helper.make_tensor(empty, elem, [0], [])))
                    value = empty
                g.output.append(onnx.helper.make_tensor_value_info(value, elem, None))
        renamed = {}
        for value, elem in passed:
            outer = f"{value}@{label}"
            node.output.append(outer)
            renamed[value] = outer
            exported.append((outer, elem))
        for outs in result.outputs.values():
            for f, v in outs.items():
                outs[f] = renamed.get(v, v)
    return exported


def _order_for_onnxruntime(graph: Any) -> None:
    """Put the sites' statistics nodes after the model's, last site first.

    onnxruntime orders execution by a reverse depth-first walk from the graph's leaf nodes,
    taking the leaf with the highest index (node position) first and running everything it
    needs. Appended in site order, the last site's reductions come first: the whole model
    runs, then every reduction, and every site's activation stays alive until the end (2.5 GB
    instead of 0.2 GB on a ResNet-50 at 224x224, batch 16). Last site first makes the walk run
    the model up to site 0 and its reductions, then up to site 1, and so on, so each
    activation is freed soon after its statistics are taken. Each group needs only the
    model's values and its own nodes, so the node list stays topologically sorted.
    """
    nodes = list(graph.node)
    groups: dict[int, list[Any]] = {}
    model_nodes = []
    for node in nodes:
        parts = node.name.split("/", 2)
        if parts[0] == "deadrelu" and len(parts) > 1 and parts[1].isdigit():
            groups.setdefault(int(parts[1]), []).append(node)
        else:
            model_nodes.append(node)
    ordered = model_nodes + [n for site in sorted(groups, reverse=True) for n in groups[site]]
    del graph.node[:]
    graph.node.extend(ordered)


def _unique(outs: Mapping[str, str], types: Mapping[str, int]) -> list[tuple[str, int]]:
    seen: dict[str, int] = {}
    for f, v in outs.items():
        seen.setdefault(v, types[f])
    return list(seen.items())


def _float_dtype(elem_type: int) -> np.dtype[Any]:
    import onnx

    if elem_type == onnx.TensorProto.DOUBLE:
        return np.dtype(np.float64)
    if elem_type == onnx.TensorProto.FLOAT16:
        return np.dtype(np.float16)
    if elem_type == onnx.TensorProto.FLOAT:
        return np.dtype(np.float32)
    raise DeadReluError(f"activation inputs of type {onnx.TensorProto.DataType.Name(elem_type)} "
                        "are not supported (float16, float32, float64 are)")


def _site_stats(b: _Builder, s: OnnxSite, lay: SiteLayout, eps: float, fast: bool
                ) -> tuple[dict[str, str], dict[str, int]]:
    """The statistics nodes of one site; returns field -> output value, and their types.

    ``fast``: the statistics of a batch whose pre-activations are all finite, with about half
    the passes over the activation (no NaN/Inf masks: ``finite`` is every element, extremes
    are plain ReduceMax/Min). It also returns ``poison``, the sum of z over everything, which
    is finite exactly when no element is NaN or ±Inf (or the sum overflows); the backend
    reruns a poisoned batch through the exact graph, so the figures are the same either way.
    """
    import onnx

    T = onnx.TensorProto
    dtype = _float_dtype(lay.elem_type)
    work = np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)
    if fast and onnx_pooled.applies(s, lay, dtype):
        return onnx_pooled.build(b, s.z, s.h, lay)  # no Shape(z): it would cost a reorder
    z = s.z
    if s.bias:  # BiasGelu / FastGelu measure input + bias, the value the GELU sees
        z = b.node("Add", [z, s.bias], "z")
    shape = b.node("Shape", [z], "shape")
    h = s.h
    if dtype == np.float16:
        # float16 -> float32 is exact; the bounds are rounded to float16 first (below), so
        # the comparisons are the ones float16 arithmetic makes.
        z = b.cast(z, T.FLOAT)
        h = b.cast(h, T.FLOAT)
    z3, h3, sum_axes, inner, reshaped = _views(b, z, h, shape, lay)
    split = None if reshaped else _extreme_split(lay)
    if fast and _relu_on_output(s, lay, reshaped, dtype):
        return _relu_fast(b, z3, h3, inner, split, shape)

    def bound(value: float) -> str:
        return b.const(np.asarray(np.asarray(value, dtype=dtype), dtype=work), "bound")

    def masked(mask: str) -> str:
        return mask if finite is None else b.node("And", [mask, finite])

    # Counts go per sample and neuron first, then over the batch in int64. onnxruntime sums
    # float32 several times faster than int32 (and int64 slower still: a 4M-element int64
    # count cost 25 ms against 3 ms); float32 sums of 0/1 are exact below 2**24 elements.
    counting = (T.FLOAT if lay.inner is not None and 0 < lay.inner < 2**24 else T.INT32)

    def per_sample(mask: str) -> str:
        counts = b.cast(masked(mask), counting)
        return b.reduce("ReduceSum", counts, inner) if inner else counts

    def total(mask: str) -> str:
        return b.reduce("ReduceSum", b.cast(per_sample(mask), T.INT64), [0])

    finite: str | None = None
    if not fast:
        nonfinite = b.node("Or", [b.node("IsNaN", [z3]), b.node("IsInf", [z3])])
        finite = b.node("Not", [nonfinite], "finite")
    kind_params = {k: v for k, v in s.params.items() if isinstance(v, (int, float, str))}
    base = "relu" if s.kind == "prelu" else s.kind
    intervals = active_set(base, eps, **kind_params)
    active = _in_intervals(b, z3, intervals, bound)
    if s.slope is not None:
        # PReLU channels whose negative slope passes gradient are active everywhere finite.
        slope = b.cast(s.slope, T.FLOAT) if dtype == np.float16 else s.slope
        passing = b.node("Not", [b.node("Less", [b.node("Abs", [slope]), bound(eps)])])
        if reshaped:  # slope (C,), (C,1,1) or scalar, onto the (1, C, rest) view
            passing = b.node("Reshape", [passing, b.ints([1, -1, 1])])
        active = b.node("Or", [active, passing])
    out: dict[str, str] = {"shape": shape}
    active_per_sample = per_sample(active)
    out["active"] = b.reduce("ReduceSum", b.cast(active_per_sample, T.INT64), [0])
    zero = np.asarray(0, dtype=np.float32 if counting == T.FLOAT else np.int32)
    hit = b.node("Greater", [active_per_sample, b.const(zero, "zero")])
    out["active_samples"] = b.reduce("ReduceSum", b.cast(hit, T.INT64), [0])
    if intervals == (Interval(0.0, np.inf),) and s.slope is None:
        out["positive"] = out["active"]  # a ReLU's active set is z > 0 itself
    else:
        out["positive"] = total(b.node("Greater", [z3, bound(0.0)]))
    cap = cap_bounds(s.kind, **kind_params)
    if cap is None and lay.count_at is not None:
        cap = (-np.inf, lay.count_at)
    if cap is not None and np.isfinite(cap[1]):
        out["at_cap"] = total(b.at_least(z3, bound(cap[1])))
    magnitude = h3 if s.kind in ("relu", "relu6") else b.node("Abs", [h3])  # h >= 0 already
    if finite is None:
        out["max_pre"] = _extreme(b, "ReduceMax", z3, inner, split)
        out["min_pre"] = _extreme(b, "ReduceMin", z3, inner, split)
        everything = list(range(3 if reshaped else lay.rank))
        out["poison"] = b.reduce("ReduceSum", z3, everything)
    else:
        out["finite"] = b.reduce("ReduceSum", b.cast(finite, T.INT64), sum_axes)
        low = b.node("Where", [finite, z3, b.const(np.asarray(-np.inf, dtype=work), "ninf")])
        high = b.node("Where", [finite, z3, b.const(np.asarray(np.inf, dtype=work), "pinf")])
        out["max_pre"] = _extreme(b, "ReduceMax", low, inner, split)
        out["min_pre"] = _extreme(b, "ReduceMin", high, inner, split)
        magnitude = b.node("Where", [finite, magnitude,
                                     b.const(np.asarray(0, dtype=work), "zero")])
    # Summed in the activation's float type, then widened: casting every element to double
    # first would write the activation out again at twice its size. abs_sum only feeds the
    # dormant score (a ratio of means), where float32 rounding is far below tau.
    # With inner axes: each sample's sum in float32, the samples' in float64.
    out["abs_sum"] = (b.reduce("ReduceSum", b.cast(b.reduce("ReduceSum", magnitude, inner),
                                                   T.DOUBLE), [0]) if inner
                      else b.cast(b.reduce("ReduceSum", magnitude, [0]), T.DOUBLE))
    extreme = T.DOUBLE if work == np.float64 else T.FLOAT
    types = {f: int(extreme if f in ("max_pre", "min_pre", "poison")
                    else T.DOUBLE if f == "abs_sum" else T.INT64) for f in out}
    return out, types


def _relu_on_output(s: OnnxSite, lay: SiteLayout, reshaped: bool, dtype: np.dtype[Any]
                    ) -> bool:
    """Can a ReLU site be counted on its output (see _relu_fast)?"""
    return (s.kind == "relu" and s.slope is None and s.bias is None and not reshaped
            and dtype == np.float32 and lay.inner is not None and 0 < lay.inner < 2**24)


def _relu_fast(b: _Builder, z: str, h: str, inner: list[int],
               split: tuple[int, int] | None, shape: str) -> tuple[dict[str, str], dict[str, int]]:
    """The fast statistics of a float32 ReLU, mostly read from its output ``h = max(z, 0)``.

    On finite z, z > 0 exactly where h > 0, so the active count is taken on h, and no NaN /
    Inf masks are built. Counts are float32 sums of
    0/1 per (sample, neuron), exact below 2**24 elements. Poison needs no pass of its own:
    NaN in z stays NaN through Relu (onnxruntime's Relu propagates it) and so in sum(h), +Inf
    makes sum(h) infinite, -Inf makes min(z) infinite.
    """
    import onnx

    T = onnx.TensorProto
    out: dict[str, str] = {"shape": shape}
    zero = b.const(np.asarray(0, dtype=np.float32), "zero")
    per_sample = b.cast(b.node("Greater", [h, zero]), T.FLOAT)
    if inner:
        per_sample = b.reduce("ReduceSum", per_sample, inner)
    out["active"] = b.reduce("ReduceSum", b.cast(per_sample, T.INT64), [0])
    out["positive"] = out["active"]
    hit = b.cast(b.node("Greater", [per_sample, zero]), T.INT64)
    out["active_samples"] = b.reduce("ReduceSum", hit, [0])
    out["max_pre"] = _extreme(b, "ReduceMax", z, inner, split)
    out["min_pre"] = _extreme(b, "ReduceMin", z, inner, split)
    sums = b.per_neuron("ReduceSum", h, inner)
    out["abs_sum"] = b.cast(sums, T.DOUBLE)
    every = b.node("Concat", [sums, out["max_pre"], out["min_pre"]], axis=0)
    out["poison"] = b.reduce("ReduceSum", every, [0])
    types = {f: int(T.FLOAT if f in ("max_pre", "min_pre", "poison")
                    else T.DOUBLE if f == "abs_sum" else T.INT64) for f in out}
    return out, types


def _extreme_split(lay: SiteLayout) -> tuple[int, int] | None:
    """A channel-last value (N, ..., C) with S elements per (sample, neuron) is reduced to
    its max or min per neuron as (N, a, b*C) over a, then as (N, b, C) over b, S = a*b: the
    (a, b) returned, or None to reduce its inner axes at once.

    onnxruntime reduces such a value's middle axes ("KRK") with an Eigen row-wise max that
    is slow over many rows: (32, 128, 1024) takes 2.0 ms, while reducing it as
    (32, 8, 16 * 1024) and then (32, 16, 1024) takes 0.5-1.0 ms. Measured over (N, S, C)
    from (64, 32, 512) to (4, 2048, 1024): a first reduction over ~8 rows was never slower
    and up to 3.4x faster. The reshapes are views; max and min are exact in any order.
    """
    if lay.rank < 3 or lay.channel_axis != lay.rank - 1 or lay.inner is None \
            or lay.inner < 32:
        return None
    divisors = [a for a in range(4, 17) if lay.inner % a == 0]
    if not divisors:
        return None
    a = min(divisors, key=lambda r: (abs(r - 8), -r))
    return a, lay.inner // a


def _extreme(b: _Builder, op: str, x: str, inner: list[int], split: tuple[int, int] | None
             ) -> str:
    """ReduceMax or ReduceMin of ``x`` per neuron (see _extreme_split)."""
    if split is None:
        return b.per_neuron(op, x, inner)
    a, rest = split
    rows = b.reduce(op, b.node("Reshape", [x, b.ints([0, a, -1])]), [1])
    per_sample = b.reduce(op, b.node("Reshape", [rows, b.ints([0, rest, -1])]), [1])
    return b.reduce(op, per_sample, [0])


def _views(b: _Builder, z: str, h: str, shape: str, lay: SiteLayout
           ) -> tuple[str, str, list[int], list[int], bool]:
    """z and h as the statistics read them, the axes to reduce per neuron, the axes to reduce
    within one sample, and whether they were reshaped.

    Torch counts samples along axis 0 unless the neurons are on axis 0 (or the tensor has
    rank < 2); then the whole tensor is one sample, viewed here as (1, neurons, rest).
    Otherwise the tensors are reduced in place: a Reshape of a value that other nodes also
    read is a copy in onnxruntime.
    """
    rank, axis = lay.rank, lay.channel_axis
    if rank >= 2 and axis != 0:
        every = [d for d in range(rank) if d != axis]
        return z, h, every, [d for d in every if d != 0], False
    if rank <= 1:
        target = b.ints([1, -1, 1])
    else:
        first = b.node("Slice", [shape, b.ints([0]), b.ints([1])])
        target = b.node("Concat", [b.ints([1]), first, b.ints([-1])], axis=0)
    return b.node("Reshape", [z, target]), b.node("Reshape", [h, target]), [0, 2], [2], True


def _in_intervals(b: _Builder, z: str, intervals: tuple[Interval, ...],
                  bound: Callable[[float], str]) -> str:
    """z inside any of the intervals (NaN compares false, as in torch)."""
    parts: list[str] = []
    for iv in intervals:
        conds: list[str] = []
        if np.isfinite(iv.lo):
            lo = bound(iv.lo)
            conds.append(b.at_least(z, lo) if iv.lo_closed
                         else b.node("Greater", [z, lo]))
        if np.isfinite(iv.hi):
            hi = bound(iv.hi)
            conds.append(b.at_most(z, hi) if iv.hi_closed
                         else b.node("Less", [z, hi]))
        if not conds:
            # (-inf, inf): everything finite; the caller ANDs with `finite`.
            conds.append(b.node("Not", [b.node("IsNaN", [z])]))
        part = conds[0] if len(conds) == 1 else b.node("And", conds)
        parts.append(part)
    if not parts:
        return b.node("Less", [z, bound(-np.inf)])  # an empty active set: never active
    out = parts[0]
    for p in parts[1:]:
        out = b.node("Or", [out, p])
    return out
