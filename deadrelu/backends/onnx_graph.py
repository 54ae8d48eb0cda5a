"""Reading an ONNX model: load (external data too), validate, inputs, constants, producers.

The model is loaded *without* its external weights: deadrelu only rewrites the graph, and
onnxruntime reads the weight files itself from the model's folder, so a model over 2 GB never
has to fit in one protobuf message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deadrelu.data import InputSpec
from deadrelu.errors import DeadReluError, first_line

DEFAULT_DOMAINS = ("", "ai.onnx")


def load_onnx(path: Path) -> Any:
    """The ModelProto of ``path`` (external tensors left on disk), checked by onnx.checker.

    The file is read once and checked from its bytes before they are parsed, so at most two
    copies of a model's weights exist at any moment (checker's and ours would be three) and
    a 100 MB model is not read twice. A model with external data fails that form of the
    check (it cannot find the data files) and is checked by path, the form that can.
    """
    import onnx
    from google.protobuf.message import DecodeError

    checker_errors = _checker_errors()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DeadReluError(f"cannot read the model: {first_line(exc)}", path=path) from None
    rejected: BaseException | None = None
    try:
        onnx.checker.check_model(data)
    except checker_errors as exc:
        rejected = exc
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise DeadReluError(f"truncated or not an ONNX model ({first_line(exc)})",
                            path=path) from None
    del data
    if not model.graph.node and not model.graph.output:
        raise DeadReluError("not an ONNX model: the file holds no graph", path=path)
    external = external_locations(model)
    missing = [loc for loc in external if not (path.parent / loc).is_file()]
    if missing:
        raise DeadReluError(f"the model keeps weights in {missing[0]!r}, which is not next to it "
                            f"({path.parent / missing[0]} does not exist)", path=path)
    if rejected is not None and external:
        try:
            onnx.checker.check_model(str(path))
            rejected = None
        except checker_errors as exc:
            rejected = exc
    if rejected is not None:
        raise DeadReluError(f"onnx.checker rejects the model: {first_line(rejected)}",
                            path=path) from None
    return model


def load_onnx_light(path: Path) -> Any | None:
    """The checked ModelProto of ``path`` whose large main-graph initializers stay in the file,
    as external data at their own bytes (:func:`deadrelu.backends.onnx_offsets.
    light_model_bytes`), or None when this way does not apply and :func:`load_onnx` must.

    The weights are never read into Python: no file bytes, no parsed protobuf (a 100 MB
    model loaded 0.1 s faster, and 64 MB of weights cost no extra memory). None for a
    symlinked file (onnxruntime refuses external data whose resolved path leaves the folder
    of the model path as given), a model with external data of its own, a file that does
    not parse as expected, or one the checker rejects: :func:`load_onnx` then loads it whole
    and reports any error with the weights in view.
    """
    import onnx
    from google.protobuf.message import DecodeError

    from deadrelu.backends.onnx_offsets import light_model_bytes

    if os.path.realpath(path) != os.path.abspath(path):
        return None
    data = light_model_bytes(path, _LARGE)
    if data is None:
        return None
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, RuntimeError, ValueError):
        return None
    if (not model.graph.node and not model.graph.output) or not _lengths_fit(model):
        return None
    try:
        onnx.checker.check_model(_checkable(model).SerializeToString())
    except _checker_errors():
        return None
    return model


def _checker_errors() -> tuple[type[BaseException], ...]:
    import onnx

    return (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError,
            RuntimeError)


def _lengths_fit(model: Any) -> bool:
    """Every external tensor's byte length is what its dims and type need."""
    import onnx

    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        length = {e.key: e.value for e in tensor.external_data}.get("length", "")
        try:
            itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        except (KeyError, TypeError, ValueError):
            return False
        if not length.isdigit() or int(length) != itemsize * int(np.prod(tensor.dims)):
            return False
    return True


def _checkable(model: Any) -> Any:
    """``model`` with its external initializers turned into graph inputs of the same type
    and shape, for onnx.checker: given bytes, it looks for external data relative to the
    working directory, not the model's folder."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    listed = {i.name for i in out.graph.input}
    inline = []
    for tensor in out.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            inline.append(tensor)
        elif tensor.name not in listed:
            out.graph.input.append(onnx.helper.make_tensor_value_info(
                tensor.name, tensor.data_type, list(tensor.dims)))
    del out.graph.initializer[:]
    out.graph.initializer.extend(inline)
    return out


def external_locations(model: Any) -> list[str]:
    """Files that the model's external tensors live in."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    out: list[str] = []
    for tensor in _all_initializers(model.graph):
        if uses_external_data(tensor):
            loc = ExternalDataInfo(tensor).location
            if loc not in out:
                out.append(loc)
    return out


def _all_initializers(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == attr.TENSOR:
                yield attr.t
            for g in _attr_graphs(attr):
                yield from _all_initializers(g)


def _attr_graphs(attr: Any) -> list[Any]:
    if attr.type == attr.GRAPH:
        return [attr.g]
    if attr.type == attr.GRAPHS:
        return list(attr.graphs)
    return []


def opset(model: Any) -> int:
    for imp in model.opset_import:
        if imp.domain in DEFAULT_DOMAINS:
            return int(imp.version)
    return 1


def np_dtype(elem_type: int) -> str:
    """numpy-style name of an ONNX tensor element type ("float32", "int64", "bfloat16")."""
    import onnx

    if elem_type == onnx.TensorProto.BFLOAT16:
        return "bfloat16"
    try:
        return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))
    except (KeyError, TypeError, ValueError):
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def graph_inputs(model: Any) -> list[InputSpec]:
    """The inputs a caller feeds: graph inputs that no initializer provides."""
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        tt = value.type.tensor_type
        shape: tuple[int | None, ...] | None = None
        if tt.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        specs.append(InputSpec(value.name, shape, np_dtype(tt.elem_type)))
    return specs


@dataclass
class GraphIndex:
    """Lookups over one graph (the main graph or a subgraph) and the values visible in it."""

    graph: Any
    base_dir: Path | None
    outer: GraphIndex | None = None
    producer: dict[str, Any] = field(default_factory=dict)
    consumers: dict[str, list[Any]] = field(default_factory=dict)
    initializers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for node in self.graph.node:
            for out in node.output:
                if out:
                    self.producer[out] = node
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.outputs = {o.name for o in self.graph.output}

    def constant(self, name: str) -> np.ndarray | None:
        """The value of ``name`` when it is an initializer or a Constant node's output."""
        from onnx import numpy_helper

        if not name:
            return None
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name],
                                         str(self.base_dir) if self.base_dir else "")
        node = self.producer.get(name)
        if node is not None:
            if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS:
                for attr in node.attribute:
                    if attr.name == "value":
                        return numpy_helper.to_array(attr.t)
                    if attr.name in ("value_float", "value_int"):
                        return np.asarray(attr.f if attr.name == "value_float" else attr.i)
                    if attr.name in ("value_floats", "value_ints"):
                        return np.asarray(list(attr.floats) or list(attr.ints))
            return None
        return self.outer.constant(name) if self.outer is not None else None

    def scalar(self, name: str) -> float | None:
        value = self.constant(name)
        if value is None or value.size != 1:
            return None
        return float(value.reshape(-1)[0])

    def only_consumer(self, name: str) -> Any:  # a NodeProto or None
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None


def attribute(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def subgraphs(node: Any) -> list[tuple[str, Any]]:
    """(attribute name, graph) for each subgraph of a control-flow node."""
    out = []
    for attr in node.attribute:
        for g in _attr_graphs(attr):
            out.append((attr.name, g))
    return out


# Initializers larger than this are taken out of the protobuf for shape inference and sessions.
_LARGE = 1024
IN_MEMORY = "deadrelu-in-memory"  # the location that marks a tensor handed over in memory


def without_weights(model: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """A copy of ``model`` whose large main-graph initializers hold no data (marked as external
    at IN_MEMORY), and those initializers' values (see :func:`take_weights`).

    Shape inference never reads weights, and onnxruntime takes them as OrtValues
    (``add_external_initializers``): neither then serialises and re-parses hundreds of MB.
    """
    import onnx

    light = onnx.ModelProto()
    light.CopyFrom(model)
    return light, take_weights(light)


def point_weights_at_file(model: Any, path: Path) -> int:
    """Mark the large main-graph initializers of ``model`` (loaded from ``path``) as external
    data at their own bytes inside ``path``, in place, so onnxruntime reads them from the
    file (see :mod:`deadrelu.backends.onnx_offsets`); returns how many.

    Each tensor's offset is checked against its bytes (both ends) before it is used.
    """
    import onnx

    from deadrelu.backends.onnx_offsets import raw_data_offsets

    offsets = raw_data_offsets(path)
    moved = 0
    with path.open("rb") as f:
        for tensor in model.graph.initializer:
            where = offsets.get(tensor.name)
            if where is None or not tensor.HasField("raw_data"):
                continue
            raw = tensor.raw_data  # a copy of the bytes, one tensor at a time
            offset, length = where
            if length != len(raw) or length <= _LARGE:
                continue
            f.seek(offset)
            head = f.read(32)
            f.seek(offset + length - 32)
            if head != raw[:32] or f.read(32) != raw[-32:]:
                continue
            tensor.ClearField("raw_data")
            tensor.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", path.name), ("offset", str(offset)),
                               ("length", str(length))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            moved += 1
    return moved


def take_weights(model: Any) -> dict[str, np.ndarray]:
    """Move the large main-graph initializers out of ``model``, in place: their values are
    returned and the tensors marked as external at IN_MEMORY.

    A protobuf's memory is freed only with the whole message, so a caller that wants the
    weights' bytes gone from the protobuf copies the (now light) model and drops this one.
    """
    import onnx

    weights: dict[str, np.ndarray] = {}
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.BFLOAT16 or not tensor.HasField("raw_data"):
            continue
        raw = tensor.raw_data  # a copy of the bytes
        if len(raw) <= _LARGE:
            continue
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).newbyteorder("<")
        weights[tensor.name] = np.frombuffer(raw, dtype=dtype).reshape(tuple(tensor.dims))
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", IN_MEMORY
    return weights
