"""Rewrite ONNX activation nodes: Relu / Clip(0, ·) → LeakyRelu, Elu or PRelu (+ the ReLU6 cap).

The new activation node keeps the old node's name and metadata (so a re-scan names the site
as before) and writes the old output value, so nothing downstream changes. PRelu's slope is an
initializer shaped (C, 1, …, 1) to broadcast on the site's channel axis; the ReLU6 cap is
written with Sub / Mul / Add / Min, which are not activations of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deadrelu.errors import DeadReluError
from deadrelu.patch.plan import Plan, Rewrite

_PASS_THROUGH = frozenset({"Reshape", "Flatten", "MaxPool", "AveragePool", "GlobalAveragePool",
                           "Identity", "Dropout"})


def _elem_types(model: Any) -> dict[str, int]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is a help here, not a requirement
        inferred = model
    out: dict[str, int] = {}
    g = inferred.graph
    for v in [*g.input, *g.output, *g.value_info]:
        if v.type.HasField("tensor_type"):
            out[v.name] = v.type.tensor_type.elem_type
    return out


def check_onnx_sites(model: Any, plan: Plan) -> None:
    """Mark planned sites this graph cannot rewrite as skipped, with the reason."""
    from deadrelu.backends.onnx_graph import opset
    from deadrelu.backends.onnx_sites import find_sites

    if opset(model) < 8:
        raise DeadReluError(f"opset {opset(model)}: patch writes opset 8 or newer graphs "
                            "(Min with broadcasting); convert the model with "
                            "onnx.version_converter first")
    found = {s.name: s for s in find_sites(model)}
    for p in plan.active:
        s = found.get(p.name)
        if s is None:
            p.skipped = "not found in the ONNX graph"
        elif s.graph:
            p.skipped = "inside a control-flow subgraph"
        elif len(s.nodes) != 1:
            p.skipped = "a written-out activation of several nodes"


def rewrite_onnx(model: Any, plan: Plan) -> dict[str, str]:
    """Rewrite ``model`` in place; returns site name -> the output value of its new node."""
    import onnx
    from onnx import helper, numpy_helper

    from deadrelu.backends.onnx_sites import find_sites

    types = _elem_types(model)
    found = {s.name: s for s in find_sites(model)}
    graph = model.graph
    by_label = {(n.name or n.output[0]): n for n in graph.node}
    outputs: dict[str, str] = {}
    dropped: set[str] = set()
    for i, p in enumerate(plan.active):
        rw = p.rewrite
        assert rw is not None
        site = found[p.name]
        old = by_label[site.node]
        elem = types.get(site.z, onnx.TensorProto.FLOAT)
        dtype = helper.tensor_dtype_to_np_dtype(elem)
        prefix = f"deadrelu/patch/{i}"

        def const(name: str, value: Any, _dtype: Any = dtype, _prefix: str = prefix) -> str:
            full = f"{_prefix}/{name}"
            graph.initializer.append(numpy_helper.from_array(
                np.asarray(value, dtype=_dtype), full))
            return full

        pre = site.h if rw.cap is None else f"{prefix}/uncapped"
        if rw.op == "prelu":
            assert rw.slopes is not None
            shape = [len(rw.slopes)] + [1] * max(p.rank - 1 - p.channel_axis, 0)
            base = helper.make_node("PRelu", [site.z, const(
                "slope", np.reshape(rw.slopes, shape))], [pre], name=old.name)
        elif rw.op == "leaky_relu":
            base = helper.make_node("LeakyRelu", [site.z], [pre], name=old.name,
                                    alpha=rw.alpha)
        else:
            base = helper.make_node("Elu", [site.z], [pre], name=old.name, alpha=rw.alpha)
        base.metadata_props.extend(old.metadata_props)
        dropped.update(x for x in old.input[1:] if x)
        new_nodes = [base]
        if rw.cap is not None:
            new_nodes += _cap_nodes(rw, pre, site.h, prefix, const, p.rank, p.channel_axis)
        nodes = list(graph.node)
        pos = nodes.index(old)
        nodes[pos:pos + 1] = new_nodes
        del graph.node[:]
        graph.node.extend(nodes)
        by_label = {(n.name or n.output[0]): n for n in graph.node}
        outputs[p.name] = site.h
    _drop_unused(model, dropped)
    return outputs


def _drop_unused(model: Any, names: set[str]) -> None:
    """Remove initializers only the replaced nodes read (Clip's bounds)."""
    used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name not in names or t.name in used]
    if len(keep) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)


def _cap_nodes(rw: Rewrite, pre: str, out: str, prefix: str, const: Any, rank: int,
               axis: int) -> list[Any]:
    from onnx import helper

    assert rw.cap is not None
    cap = const("cap", rw.cap)
    if rw.cap_slopes is None:
        return [helper.make_node("Min", [pre, cap], [out], name=f"{prefix}/cap")]
    if len(set(rw.cap_slopes)) == 1:
        slope = const("cap_slope", rw.cap_slopes[0])
    else:
        shape = [len(rw.cap_slopes)] + [1] * max(rank - 1 - axis, 0)
        slope = const("cap_slope", np.reshape(rw.cap_slopes, shape))
    return [
        helper.make_node("Sub", [pre, cap], [f"{prefix}/above"], name=f"{prefix}/sub"),
        helper.make_node("Mul", [f"{prefix}/above", slope], [f"{prefix}/scaled"],
                         name=f"{prefix}/mul"),
        helper.make_node("Add", [f"{prefix}/scaled", cap], [f"{prefix}/lid"],
                         name=f"{prefix}/add"),
        helper.make_node("Min", [pre, f"{prefix}/lid"], [out], name=f"{prefix}/cap"),
    ]


def check_written(model: Any, path: Any) -> None:
    """onnx.checker (full check, shape inference included) and an onnxruntime session."""
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    except Exception as exc:
        raise DeadReluError(f"the rewritten model fails onnx.checker: {exc}", path=path) from None
    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise DeadReluError(f"onnxruntime cannot load the rewritten model: {exc}",
                            path=path) from None


# ------------------------------------------------------------------ bias compensation

def onnx_consumer(model: Any, value: str) -> tuple[Any, str]:
    """The Gemm / 1×1 Conv node fed by ``value`` (through reshapes and pooling), or why not."""
    from deadrelu.backends.onnx_graph import attribute

    inits = {t.name for t in model.graph.initializer}
    users: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for name in n.input:
            users.setdefault(name, []).append(n)
    outputs = {o.name for o in model.graph.output}
    current = value
    for _ in range(16):
        us = users.get(current, [])
        if len(us) != 1 or current in outputs:
            return None, "its output has several consumers"
        node = us[0]
        if node.op_type == "Gemm":
            if node.input[0] != current or len(node.input) < 3 or node.input[2] not in inits \
                    or node.input[1] not in inits or attribute(node, "transA", 0) \
                    or attribute(node, "alpha", 1.0) != 1.0 or attribute(node, "beta", 1.0) != 1.0:
                return None, "the consuming Gemm is not x·Wᵀ + b with stored W and b"
            return node, ""
        if node.op_type == "Conv":
            w = next((t for t in model.graph.initializer if t.name == node.input[1]), None)
            pads = list(attribute(node, "pads", []) or [])
            if w is None or len(node.input) < 3 or node.input[2] not in inits \
                    or any(d != 1 for d in w.dims[2:]) or attribute(node, "group", 1) != 1 \
                    or any(pads):
                return None, "the consumer is a Conv that is not 1×1 with a stored bias"
            return node, ""
        if node.op_type not in _PASS_THROUGH:
            return None, f"its output goes into {node.op_type}, not a Gemm / 1×1 Conv"
        current = node.output[0]
    return None, "no Gemm / 1×1 Conv within 16 nodes"


def onnx_input_means(model: Any, consumers: Sequence[Any], run: Any) -> dict[str, np.ndarray]:
    """Mean over the data of each consumer's input, per feature (Gemm: last axis, Conv: 1)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    names = []
    for node in consumers:
        copy.graph.output.append(onnx.helper.make_empty_tensor_value_info(node.input[0]))
        names.append(node.input[0])
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}

    def sink(values: dict[str, np.ndarray]) -> None:
        for node in consumers:
            x = np.asarray(values[node.input[0]], dtype=np.float64)
            axis = x.ndim - 1 if node.op_type == "Gemm" else 1
            flat = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
            sums[node.name] = sums.get(node.name, 0) + flat.sum(axis=1)
            counts[node.name] = counts.get(node.name, 0) + flat.shape[1]

    run(copy, names, sink)
    return {k: sums[k] / max(counts[k], 1) for k in sums}


def fold_onnx_bias(model: Any, consumer: Any, shift: np.ndarray) -> None:
    from onnx import numpy_helper

    from deadrelu.backends.onnx_graph import attribute

    inits = {t.name: t for t in model.graph.initializer}
    w = numpy_helper.to_array(inits[consumer.input[1]]).astype(np.float64)
    if consumer.op_type == "Gemm":
        w2 = w if attribute(consumer, "transB", 0) else w.T
    else:
        w2 = w.reshape(w.shape[0], -1)
    b_init = inits[consumer.input[2]]
    b = numpy_helper.to_array(b_init)
    new = (b.astype(np.float64) - w2 @ shift).astype(b.dtype)
    b_init.CopyFrom(numpy_helper.from_array(new, b_init.name))
