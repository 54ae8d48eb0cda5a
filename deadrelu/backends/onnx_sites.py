"""Find the activation sites of an ONNX graph, without running it.

A site is one activation op (Relu, Gelu, Clip, …) or one written-out activation that
exporters and hand-written graphs produce: SiLU as ``x * Sigmoid(x)``, Mish as
``x * Tanh(Softplus(x))``, GELU with Erf or Tanh, HardSwish as ``x * Clip(x + 3, 0, 6) / 6``
(PaddleOCR), onnxruntime's ``com.microsoft`` Gelu / FastGelu / BiasGelu / QuickGelu.
Every site records its pre-activation ``z`` and its output ``h``; what the statistics need.

Names: the node's module path when the exporter recorded it (``torch.onnx.export``'s
``pkg.torch.onnx.name_scopes``, or the TorchScript-based exporter's ``/a/a.0/relu/Relu``
scopes, see :mod:`deadrelu.backends.onnx_scopes`), so the same model gets the same site names
as a ``.pt`` or ``.pt2``; otherwise the node name, else its output name (design.md §1).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from deadrelu.backends.onnx_graph import DEFAULT_DOMAINS, GraphIndex, attribute, subgraphs
from deadrelu.backends.onnx_scopes import LegacyScopes

MS_DOMAIN = "com.microsoft"

# Single ONNX ops -> deadrelu kind (Clip and the contrib ops are decided per node).
_OP_KINDS = {
    "Relu": "relu", "LeakyRelu": "leaky_relu", "PRelu": "prelu", "Elu": "elu", "Selu": "selu",
    "Celu": "celu", "Gelu": "gelu", "ThresholdedRelu": "thresholded_relu",
    "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish", "Sigmoid": "sigmoid", "Tanh": "tanh",
    "Softplus": "softplus", "Mish": "mish",
}
_SQRT2 = math.sqrt(2.0)
_GELU_TANH_K = math.sqrt(2.0 / math.pi)
_SELU_ALPHA, _SELU_GAMMA = 1.6732632423543772, 1.0507009873554805

# torch.nn activation classes as the exporter names them in class_hierarchy.
_ACTIVATION_CLASSES = frozenset({
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU", "SiLU",
    "Mish", "Softplus", "Hardswish", "Hardsigmoid", "Hardtanh", "Sigmoid", "Tanh",
})


@dataclass
class OnnxSite:
    """One activation site of the graph."""

    kind: str
    params: dict[str, Any]
    z: str  # the pre-activation value
    h: str  # the activation's output value
    nodes: list[str]  # the ONNX node names that make up the activation
    node: str  # the node that names it (the output node), else its output name
    order: int  # position of its first node: sites are listed in graph order
    graph: str = ""  # "" for the main graph, else the control-flow node and branch
    bias: str | None = None  # BiasGelu / FastGelu: z = input + bias
    slope: str | None = None  # PRelu: the slope value
    base: str = ""  # name before call numbering
    name: str = ""
    scanned: bool = True
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _close(value: float | None, target: float, rel: float = 1e-3) -> bool:
    return value is not None and abs(value - target) <= rel * abs(target)


def node_label(node: Any) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


class _Matcher:
    """Pattern matching over one graph; claimed nodes belong to a composite site."""

    def __init__(self, index: GraphIndex, opset: int) -> None:
        self.ix = index
        self.opset = opset
        self.order = {id(n): i for i, n in enumerate(index.graph.node)}
        self.claimed: set[int] = set()

    def prod(self, name: str, op: str, domain: tuple[str, ...] = DEFAULT_DOMAINS) -> Any:
        node = self.ix.producer.get(name)
        if node is not None and node.op_type == op and node.domain in domain:
            return node
        return None

    def site(self, kind: str, params: dict[str, Any], z: str, nodes: list[Any],
             **kw: Any) -> OnnxSite:
        last = nodes[-1]
        for n in nodes:
            self.claimed.add(id(n))
        return OnnxSite(kind, params, z, last.output[0], [node_label(n) for n in nodes],
                        node_label(last), min(self.order[id(n)] for n in nodes), **kw)

    # ----------------------------------------------------------------- written-out forms

    def mul_of(self, mul: Any, inner_op: str) -> tuple[str, Any] | None:
        """For Mul(x, OP(...)) or Mul(OP(...), x): (x, the OP node)."""
        a, b = mul.input[0], mul.input[1]
        for x, y in ((a, b), (b, a)):
            node = self.prod(y, inner_op)
            if node is not None and self.ix.only_consumer(y) is mul:
                return x, node
        return None

    def silu_or_mish(self, mul: Any) -> OnnxSite | None:
        hit = self.mul_of(mul, "Sigmoid")
        if hit is not None and hit[1].input[0] == hit[0]:
            return self.site("silu", {}, hit[0], [hit[1], mul])
        hit = self.mul_of(mul, "Tanh")
        if hit is not None:
            x, tanh = hit
            sp = self.prod(tanh.input[0], "Softplus")
            if sp is not None and sp.input[0] == x and self.ix.only_consumer(sp.output[0]):
                return self.site("mish", {}, x, [sp, tanh, mul])
        hit = self.mul_of(mul, "HardSigmoid")
        if hit is not None:
            x, hs = hit
            if (hs.input[0] == x and _close(attribute(hs, "alpha", 0.2), 1 / 6)
                    and _close(attribute(hs, "beta", 0.5), 0.5)):
                return self.site("hardswish", {}, x, [hs, mul])
        return None

    def scale_step(self, value: str, factor: float) -> Any | None:
        """The node computing ``value / factor`` (Div) or ``value * (1/factor)`` (Mul)."""
        node = self.ix.only_consumer(value)
        if node is None or node.domain not in DEFAULT_DOMAINS:
            return None
        if node.op_type == "Div" and node.input[0] == value and _close(
                self.ix.scalar(node.input[1]), factor):
            return node
        if node.op_type == "Mul":
            other = node.input[1] if node.input[0] == value else node.input[0]
            if _close(self.ix.scalar(other), 1 / factor):
                return node
        return None

    def hardswish_clip(self, clip: Any, lo: float | None, hi: float | None) -> OnnxSite | None:
        """x * Clip(x + 3, 0, 6) / 6, in any of the orders exporters write it."""
        if lo != 0.0 or hi != 6.0:
            return None
        add = self.prod(clip.input[0], "Add")
        if add is None or self.ix.only_consumer(add.output[0]) is not clip:
            return None
        x = next((a for a, b in ((add.input[0], add.input[1]), (add.input[1], add.input[0]))
                  if _close(self.ix.scalar(b), 3.0)), None)
        if x is None:
            return None
        nxt = self.ix.only_consumer(clip.output[0])
        if nxt is None:
            return None
        if nxt.op_type == "Mul" and x in nxt.input and clip.output[0] in nxt.input:
            div = self.scale_step(nxt.output[0], 6.0)
            return self.site("hardswish", {}, x, [add, clip, nxt, div]) if div else None
        div = self.scale_step(clip.output[0], 6.0)
        if div is None:
            return None
        mul = self.ix.only_consumer(div.output[0])
        if mul is not None and mul.op_type == "Mul" and x in mul.input:
            return self.site("hardswish", {}, x, [add, clip, div, mul])
        return None

    def half_x_product(self, start: Any, x: str) -> list[Any] | None:
        """Muls after ``start`` that multiply its output by x and by 0.5 (GELU's tail)."""
        cur, nodes, have = start.output[0], [], set()
        for _ in range(3):
            mul = self.ix.only_consumer(cur)
            if mul is None or mul.op_type != "Mul" or mul.domain not in DEFAULT_DOMAINS:
                return None
            other = mul.input[1] if mul.input[0] == cur else mul.input[0]
            if other == x:
                have.add("x")
            elif _close(self.ix.scalar(other), 0.5):
                have.add("half")
            else:
                half_x = self.prod(other, "Mul")
                if half_x is None or x not in half_x.input or not any(
                        _close(self.ix.scalar(i), 0.5) for i in half_x.input if i != x):
                    return None
                nodes.append(half_x)
                have.update(("x", "half"))
            nodes.append(mul)
            cur = mul.output[0]
            if have == {"x", "half"}:
                return nodes
        return None

    def gelu_erf(self, erf: Any) -> OnnxSite | None:
        scale = self.ix.producer.get(erf.input[0])
        if scale is None or scale.op_type not in ("Div", "Mul"):
            return None
        x = scale.input[0]
        c = self.ix.scalar(scale.input[1])
        if scale.op_type == "Mul" and not _close(c, 1 / _SQRT2):
            x, c = scale.input[1], self.ix.scalar(scale.input[0])
            if not _close(c, 1 / _SQRT2):
                return None
        elif scale.op_type == "Div" and not _close(c, _SQRT2):
            return None
        add = self.ix.only_consumer(erf.output[0])
        if add is None or add.op_type != "Add" or not any(
                _close(self.ix.scalar(i), 1.0) for i in add.input if i != erf.output[0]):
            return None
        tail = self.half_x_product(add, x)
        if tail is None:
            return None
        return self.site("gelu", {"approximate": "none"}, x, [scale, erf, add, *tail])

    def gelu_tanh(self, tanh: Any) -> OnnxSite | None:
        outer = self.prod(tanh.input[0], "Mul")
        if outer is None:
            return None
        inner = next((self.prod(i, "Add") for i in outer.input
                      if _close(self.ix.scalar(next(j for j in outer.input if j != i)),
                                _GELU_TANH_K) and self.prod(i, "Add") is not None), None)
        if inner is None:
            return None
        for x, cubic_name in ((inner.input[0], inner.input[1]), (inner.input[1], inner.input[0])):
            cubic = self.prod(cubic_name, "Mul")
            if cubic is None:
                continue
            for a, b in ((cubic.input[0], cubic.input[1]), (cubic.input[1], cubic.input[0])):
                cube = self.cube(b, x) if _close(self.ix.scalar(a), 0.044715) else None
                if cube is None:
                    continue
                add = self.ix.only_consumer(tanh.output[0])
                if add is None or add.op_type != "Add":
                    return None
                tail = self.half_x_product(add, x)
                if tail is None:
                    return None
                nodes = [*cube, cubic, inner, outer, tanh, add, *tail]
                return self.site("gelu", {"approximate": "tanh"}, x, nodes)
        return None

    def cube(self, value: str, x: str) -> list[Any] | None:
        """The nodes computing ``x ** 3`` as Pow(x, 3) or x * (x * x), else None."""
        pow_node = self.prod(value, "Pow")
        if pow_node is not None:
            ok = pow_node.input[0] == x and _close(self.ix.scalar(pow_node.input[1]), 3.0)
            return [pow_node] if ok else None
        outer = self.prod(value, "Mul")
        if outer is None or x not in outer.input:
            return None
        other = outer.input[1] if outer.input[0] == x else outer.input[0]
        square = self.prod(other, "Mul")
        if square is not None and list(square.input) == [x, x]:
            return [square, outer]
        return None

    # ----------------------------------------------------------------- single ops

    def clip_bounds(self, clip: Any) -> tuple[float | None, float | None, bool]:
        """(lo, hi, known): ±inf where absent; known False when a bound is computed at run time."""
        if self.opset < 11:
            return (float(attribute(clip, "min", -math.inf)),
                    float(attribute(clip, "max", math.inf)), True)
        bounds: list[float | None] = []
        known = True
        for i, default in ((1, -math.inf), (2, math.inf)):
            name = clip.input[i] if len(clip.input) > i else ""
            if not name:
                bounds.append(default)
                continue
            value = self.ix.scalar(name)
            known = known and value is not None
            bounds.append(value)
        return bounds[0], bounds[1], known

    def single(self, node: Any) -> OnnxSite | None:
        op, domain = node.op_type, node.domain
        if domain == MS_DOMAIN:
            return self.contrib(node)
        if domain not in DEFAULT_DOMAINS:
            return None
        if op == "Clip":
            lo, hi, known = self.clip_bounds(node)
            if not known:
                s = self.site("hardtanh", {}, node.input[0], [node])
                s.scanned, s.reason = False, "Clip with bounds computed at run time"
                return s
            assert lo is not None and hi is not None
            if lo == 0.0 and hi == math.inf:
                return self.site("relu", {}, node.input[0], [node])
            kind = "relu6" if (lo, hi) == (0.0, 6.0) else "hardtanh"
            return self.site(kind, {"lo": lo, "hi": hi}, node.input[0], [node])
        if op not in _OP_KINDS:
            return None
        kind = _OP_KINDS[op]
        params: dict[str, Any] = {}
        if op == "LeakyRelu":
            params = {"slope": float(attribute(node, "alpha", 0.01))}
        elif op in ("Elu", "Celu"):
            params = {"alpha": float(attribute(node, "alpha", 1.0))}
        elif op == "ThresholdedRelu":
            params = {"alpha": float(attribute(node, "alpha", 1.0))}
        elif op == "HardSigmoid":
            params = {"alpha": float(attribute(node, "alpha", 0.2)),
                      "beta": float(attribute(node, "beta", 0.5))}
        elif op == "Gelu":
            approximate = attribute(node, "approximate", b"none")
            params = {"approximate": approximate.decode() if isinstance(approximate, bytes)
                      else str(approximate)}
        elif op == "Selu":
            # Only non-default constants are parameters: the defaults are torch's SELU.
            alpha = float(attribute(node, "alpha", _SELU_ALPHA))
            gamma = float(attribute(node, "gamma", _SELU_GAMMA))
            if not (_close(alpha, _SELU_ALPHA, 1e-6) and _close(gamma, _SELU_GAMMA, 1e-6)):
                params = {"alpha": alpha, "gamma": gamma}
        elif op == "Softplus":
            params = {"beta": 1.0}
        if op == "PRelu":
            return self.site(kind, params, node.input[0], [node], slope=node.input[1])
        return self.site(kind, params, node.input[0], [node])

    def contrib(self, node: Any) -> OnnxSite | None:
        op = node.op_type
        bias = node.input[1] if len(node.input) > 1 and node.input[1] else None
        if op in ("Gelu", "BiasGelu"):
            return self.site("gelu", {"approximate": "none"}, node.input[0], [node], bias=bias)
        if op == "FastGelu":
            return self.site("gelu", {"approximate": "tanh"}, node.input[0], [node], bias=bias)
        if op == "QuickGelu":
            alpha = float(attribute(node, "alpha", 1.702))
            return self.site("gelu", {"approximate": "sigmoid", "alpha": alpha}, node.input[0],
                             [node])
        return None


def find_sites(model: Any, base_dir: Any = None, module_types: Mapping[str, str] | None = None
               ) -> list[OnnxSite]:
    """Every activation site of ``model`` (subgraphs included), in graph order, named.

    ``module_types`` (module path -> class name) lets TorchScript exports be named after
    their modules.
    """
    from deadrelu.backends.onnx_graph import opset

    index = GraphIndex(model.graph, base_dir)
    sites = _graph_sites(index, opset(model), "")
    _name_sites(sites, model, module_types)
    return sites


def _graph_sites(index: GraphIndex, version: int, where: str) -> list[OnnxSite]:
    m = _Matcher(index, version)
    composite: list[OnnxSite] = []
    # Written-out forms first: their parts (a Sigmoid, a Clip, a Tanh) are not sites alone.
    for node in index.graph.node:
        if node.domain not in DEFAULT_DOMAINS or id(node) in m.claimed:
            continue
        found = None
        if node.op_type == "Mul":
            found = m.silu_or_mish(node)
        elif node.op_type == "Erf":
            found = m.gelu_erf(node)
        elif node.op_type == "Tanh":
            found = m.gelu_tanh(node)
        elif node.op_type == "Clip":
            lo, hi, known = m.clip_bounds(node)
            found = m.hardswish_clip(node, lo, hi) if known else None
        if found is not None:
            composite.append(found)
    sites = list(composite)
    for node in index.graph.node:
        if id(node) in m.claimed:
            continue
        found = m.single(node)
        if found is not None:
            sites.append(found)
    for s in sites:
        s.graph = where
    sites.sort(key=lambda s: s.order)
    # Control flow: sites inside subgraphs follow the node that owns them.
    out: list[OnnxSite] = []
    nested: dict[int, list[OnnxSite]] = {}
    for i, node in enumerate(index.graph.node):
        for attr_name, g in subgraphs(node):
            inner = _graph_sites(GraphIndex(g, index.base_dir, index), version,
                                 f"{where}{node_label(node)}.{attr_name}/")
            for s in inner:
                s.order = i
                if s.scanned and node.op_type != "If":
                    # A Loop / Scan body runs many times per batch; measuring it needs
                    # loop-carried accumulators, which deadrelu does not add (yet).
                    s.scanned = False
                    s.reason = (f"inside the {node.op_type} node {node_label(node)!r} "
                                f"({attr_name}): activations in Loop / Scan bodies are "
                                "listed but not measured")
            nested.setdefault(i, []).extend(inner)
    for s in sites:
        out.append(s)
    for i in sorted(nested):
        # Insert each subgraph's sites after the last main-graph site before the node.
        pos = next((k for k, s in enumerate(out) if s.order > i), len(out))
        out[pos:pos] = nested[i]
    return out


def _torch_base(site: OnnxSite, node: Any) -> str | None:
    """The module-path name torch formats give this site, when the dynamo exporter recorded
    it in the node's metadata."""
    props = {p.key: p.value for p in node.metadata_props}
    scopes_text = props.get("pkg.torch.onnx.name_scopes")
    classes_text = props.get("pkg.torch.onnx.class_hierarchy")
    if not (scopes_text and classes_text):
        return None
    try:
        scopes = ast.literal_eval(scopes_text)
        classes = ast.literal_eval(classes_text)
    except (ValueError, SyntaxError):
        return None
    if len(scopes) < 2 or len(classes) != len(scopes):
        return None
    path, cls = str(scopes[-2]), str(classes[-2])
    if cls.rsplit(".", 1)[-1] in _ACTIVATION_CLASSES and cls.startswith("torch.nn."):
        return path
    return f"{path or 'root'}/{site.kind}"


def _legacy_scopes(model: Any, sites: list[OnnxSite],
                   module_types: Mapping[str, str] | None) -> LegacyScopes | None:
    # Only torch's own exports: other producers' "/a/b/Op" names are not module scopes.
    if module_types is None and model.producer_name != "pytorch":
        return None
    claimed = [n for s in sites if not s.graph for n in s.nodes]
    return LegacyScopes(model.graph.node, claimed, module_types, _ACTIVATION_CLASSES)


def _all_nodes(graph: Any) -> Iterator[Any]:
    for node in graph.node:
        yield node
        for _, g in subgraphs(node):
            yield from _all_nodes(g)


def _name_sites(sites: list[OnnxSite], model: Any,
                module_types: Mapping[str, str] | None) -> None:
    # No recursive closure here: it would be a reference cycle holding node protos, and so
    # the whole loaded model (weights included), until the cyclic garbage collector ran.
    by_label = {node_label(node): node for node in _all_nodes(model.graph)}
    legacy = _legacy_scopes(model, sites, module_types)
    counts: dict[str, int] = {}
    for s in sites:
        node = by_label.get(s.node)
        base = None
        if node is not None and not s.graph:
            base = _torch_base(s, node)
            if base is None and legacy is not None:
                base = legacy.base(s.kind, node, s.nodes)
        s.base = base or f"{s.graph}{s.node}"
        n = counts.get(s.base, 0) + 1
        counts[s.base] = n
        s.name = s.base if n == 1 else f"{s.base}#{n}"
