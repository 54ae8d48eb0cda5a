"""The onnxruntime backend: run an instrumented copy of the graph, merge per-batch statistics.

Only the per-neuron statistics of :mod:`deadrelu.backends.onnx_instrument` cross from
onnxruntime into Python (plus the model's own outputs, which the graph computes anyway);
they are merged with the same :class:`~deadrelu.stats.NeuronStats` accumulators as the torch
path, so shards, formats and processes combine exactly.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deadrelu.backends import onnx_pooled
from deadrelu.backends.onnx_graph import (
    graph_inputs,
    load_onnx,
    load_onnx_light,
    point_weights_at_file,
    take_weights,
)
from deadrelu.backends.onnx_instrument import (
    FIELDS,
    Instrumented,
    SiteLayout,
    instrument,
    layouts,
)
from deadrelu.backends.onnx_sites import OnnxSite, find_sites
from deadrelu.backends.sites import SiteInfo, SiteRegistry, SiteResult
from deadrelu.batching import FixedBatch
from deadrelu.data import InputSpec
from deadrelu.distributed import group_rank
from deadrelu.errors import DeadReluError, first_line
from deadrelu.stats import NeuronStats

OnBatch = Callable[[int], None]


def _input_kind(dtype: str) -> str:
    if dtype == "bfloat16" or "float" in dtype:
        return "f"
    try:
        return np.dtype(dtype).kind.replace("u", "i")
    except TypeError:
        return "?"


@dataclass
class OnnxBackend:
    """An ONNX model (as a ModelProto whose external weights stay in ``base_dir``)."""

    model: Any
    path: Path | None
    format: str = "onnx"
    module_types: Mapping[str, str] | None = None  # TorchScript exports: module path -> class
    inputs: list[InputSpec] = field(init=False)
    sites: list[OnnxSite] = field(init=False)
    # The large initializers once taken out of ``model`` (see _split); None again once
    # handed to the scan's session, which keeps its own copy.
    weights: dict[str, np.ndarray] | None = field(init=False, default=None)
    _light: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.inputs = graph_inputs(self.model)
        self.sites = find_sites(self.model, self.base_dir, self.module_types)

    @classmethod
    def with_weights_in_file(cls, light: Any, path: Path) -> OnnxBackend:
        """A model from :func:`load_onnx_light`: its large weights are already external data
        in ``path``, so :meth:`_split` has nothing to take out or hand over."""
        backend = cls(light, path)
        backend.weights, backend._light = {}, True
        return backend

    @property
    def base_dir(self) -> Path | None:
        return self.path.parent if self.path is not None else None

    def image_channels(self) -> int | None:
        shape = self.inputs[0].shape if self.inputs else None
        return shape[1] if shape is not None and len(shape) == 4 else None

    def fixed_batch(self) -> FixedBatch | None:
        """What the graph fixes of its inputs' axis 0, as an export without a dynamic batch
        axis does: onnxruntime then takes batches of exactly N samples."""
        return FixedBatch.of(self.inputs, "re-export the model with a dynamic batch axis")

    def static_sites(self) -> list[tuple[str, str]]:
        return [(s.name, s.kind) for s in self.sites]

    # ------------------------------------------------------------------ running

    def session(self, model: Any, device: Any, weights: Mapping[str, np.ndarray]) -> Any:
        """A session of ``model``, a light copy from :meth:`_split`, given the ``weights``
        it still needs handed over in memory."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # Full optimisation is safe: statistics are outputs computed from each site's z, so
        # no fusion can remove what they measure (see onnx_instrument).
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.base_dir is not None:
            opts.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                          str(self.base_dir))
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise DeadReluError("--device cuda: this onnxruntime has no CUDA execution "
                                    "provider (install onnxruntime-gpu)", path=self.path)
            providers.insert(0, "CUDAExecutionProvider")
        if weights:
            # Handed over in memory: no serialising and re-parsing of the weights. onnxruntime
            # copies them while it creates the session; the arrays may go after that.
            opts.add_external_initializers(
                list(weights), [ort.OrtValue.ortvalue_from_numpy(a) for a in weights.values()])
        try:
            session = ort.InferenceSession(model.SerializeToString(), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DeadReluError(f"onnxruntime cannot load the model: {first_line(exc)}",
                                path=self.path) from None
        return session

    def feed(self, batch: Mapping[str, np.ndarray], source: str, seen: int = 0
             ) -> dict[str, np.ndarray]:
        """The batch as onnxruntime inputs, after checking names, ranks, a fixed batch size
        and dtypes; ``seen``: the samples before this batch, for the error."""
        out: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            if spec.name not in batch:
                names = ", ".join(sorted(batch)) or "none"
                raise DeadReluError(f"the data has no array for the model input {spec.name!r} "
                                    f"(it has: {names})", path=source)
            array = np.asarray(batch[spec.name])
            if spec.shape is not None and array.ndim != len(spec.shape):
                raise DeadReluError(
                    f"input {spec.name!r} has rank {len(spec.shape)} in the model but the data "
                    f"has rank {array.ndim} (shape {array.shape})", path=source)
            if spec.shape and spec.shape[0] and array.shape[0] != spec.shape[0]:
                fixed = self.fixed_batch()
                assert fixed is not None  # this input fixes its batch axis
                raise fixed.refuse(spec.name, array.shape[0], seen, data=source,
                                   model=None if self.path is None else str(self.path),
                                   rank=group_rank())
            if spec.shape is not None:
                for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
                    if axis and want is not None and want != got:
                        raise DeadReluError(
                            f"input {spec.name!r} expects {want} on axis {axis} but the data "
                            f"has shape {array.shape}", path=source)
            want_kind, got_kind = _input_kind(spec.dtype), array.dtype.kind.replace("u", "i")
            if want_kind != got_kind:
                raise DeadReluError(f"input {spec.name!r} is {spec.dtype} in the model but the "
                                    f"data has {array.dtype}", path=source)
            if spec.dtype != str(array.dtype) and spec.dtype != "bfloat16":
                array = array.astype(spec.dtype)
            out[spec.name] = np.ascontiguousarray(array)
        return out

    def run(self, batches: Iterable[Mapping[str, np.ndarray]], registry: SiteRegistry, *,
            source: str, on_batch: OnBatch | None = None, fast_path: bool = True
            ) -> list[SiteResult]:
        del fast_path  # a torch notion
        for s in self.sites:
            if not s.scanned:
                registry.notes.append(f"site {s.name} is not measured: {s.reason}")
        it: Iterator[Mapping[str, np.ndarray]] = iter(batches)
        first = next(it, None)
        if first is None:
            return []
        feed = self.feed(first, source)
        scanned = [s for s in self.sites if s.scanned]
        light, weights = self._split()
        lay = layouts(light, scanned, registry.channel_axis)
        missing = [s for s in scanned if s.name not in lay and not s.graph]
        if missing:
            lay.update(layouts(light, missing, registry.channel_axis,
                               self._probe(missing, feed, registry.device)))
        for k, s in enumerate(scanned):
            if s.name in lay and k in registry.count_at_cap:
                lay[s.name].count_at = registry.count_at_cap[k]
        eps = registry.settings.eps
        fast = _Program(self, instrument(light, scanned, lay, eps, fast=True), weights,
                        registry.device)
        self._release_weights()
        del weights
        exact: _Program | None = None  # built on the first batch holding NaN or ±Inf
        stats: dict[str, NeuronStats] = {}
        first_shape: dict[str, tuple[int, ...]] = {}
        seen = 0
        for batch in itertools.chain([first], it):
            inputs = self.feed(batch, source, seen)
            program, values = fast.program, fast.run(inputs, source)
            if fast.poisoned(values):
                if exact is None:
                    exact = _Program(self, instrument(light, scanned, lay, eps),
                                     self._split()[1], registry.device)
                    self._release_weights()
                program, values = exact.program, exact.run(inputs, source)
            for s in scanned:
                outs = program.outputs.get(s.name)
                if outs is None:
                    continue
                self._fold(s, outs, values, lay[s.name], stats, first_shape)
            x = next(iter(batch.values()), None)
            n = int(np.shape(x)[0]) if x is not None and np.ndim(x) else 1
            seen += n
            if on_batch is not None:
                on_batch(n)
        results = []
        for s in scanned:
            if s.name not in stats:
                if s.name in lay:
                    registry.notes.append(f"site {s.name} never ran on this data (its "
                                          "If branch was never taken)")
                else:
                    registry.notes.append(f"site {s.name} is not measured: the rank of its "
                                          "input is unknown")
                continue
            shape = first_shape[s.name]
            info = SiteInfo(s.name, s.kind, lay[s.name].channel_axis, stats[s.name].neurons,
                            shape, "node", s.node, dict(s.params))
            results.append(SiteResult(info, stats[s.name]))
        return results

    def _split(self) -> tuple[Any, dict[str, np.ndarray]]:
        """The model without its large initializers, and those it still needs handed over.

        Done once (shape inference, instrumenting and sessions copy the graph), into a fresh
        protobuf, so the loaded one and its copy of the weights are freed. Tensors stored in
        the file are pointed at their own bytes there (onnx_offsets), so onnxruntime reads
        them from disk as plain inference does; the rest come back as arrays, which a session
        copies: they are released once the scan's session is made (:meth:`_release_weights`)
        and read again if another is needed (the exact graph, for a batch with NaN or ±Inf).
        ResNet-50: 676 MiB peak when deadrelu held the weights, 481 MiB with them released,
        plain onnxruntime 338.
        """
        import onnx

        if not self._light:
            self.weights = self._take(self.model)
            light = onnx.ModelProto()
            light.CopyFrom(self.model)
            self.model, self._light = light, True
        elif self.weights is None:
            assert self.path is not None
            self.weights = self._take(load_onnx(self.path))
        return self.model, self.weights

    def _take(self, model: Any) -> dict[str, np.ndarray]:
        # onnxruntime refuses external data whose resolved path leaves the model's folder as
        # given, as a symlinked model file's does: such files hand the weights over in memory.
        path = self.path
        if path is not None and os.path.realpath(path) == os.path.abspath(path):
            point_weights_at_file(model, path)
        return take_weights(model)  # what is left: {} for most files

    def _release_weights(self) -> None:
        # Only arrays are released ({} when the file holds them all: nothing to read again),
        # and only when there is a file to read them from again.
        if self.path is not None and self.weights:
            self.weights = None

    def _run(self, sess: Any, names: list[str], feed: dict[str, np.ndarray], source: str
             ) -> list[Any]:
        try:
            return list(sess.run(names, feed))
        except Exception as exc:  # onnxruntime has its own exception types
            raise DeadReluError(f"onnxruntime could not run the model on this data: "
                                f"{first_line(exc)}", path=source) from None

    def _fold(self, s: OnnxSite, outs: Mapping[str, str], values: Mapping[str, Any],
              lay: SiteLayout, stats: dict[str, NeuronStats],
              first_shape: dict[str, tuple[int, ...]]) -> None:
        batch: Mapping[str, Any] | None = None
        if "pooled" in outs:
            folded = onnx_pooled.fold(values, outs, lay)
            if folded is None:
                return  # an empty batch, or an If branch this batch did not take
            batch, shape = folded
            neurons = shape[1]
        else:
            shape = tuple(int(d) for d in values[outs["shape"]])
            if not shape and np.asarray(values[outs["active"]]).size == 0:
                return  # an If branch this batch did not take
            neurons = int(np.asarray(values[outs["active"]]).size)
        acc = stats.get(s.name)
        if acc is None:
            acc = stats[s.name] = NeuronStats.zeros(neurons)
            first_shape[s.name] = shape
        elif acc.neurons != neurons:
            raise DeadReluError(f"site {s.name} changed shape between batches ({shape} after "
                                f"{first_shape[s.name]}); its neurons must stay the same")
        total = int(np.prod(shape)) if shape else 1
        per_neuron = total // max(neurons, 1)
        if batch is None:
            # The fast graph runs only on all-finite batches: every element is finite there.
            missing = {"finite": np.full(neurons, per_neuron, dtype=np.int64)}
            batch = {f: values[outs[f]] if f in outs
                     else missing.get(f, np.zeros(neurons, dtype=np.int64)) for f in FIELDS}
        if lay.rank >= 2 and lay.channel_axis != 0:
            samples = shape[0]
        else:
            samples = 1
        acc.update(batch, samples, per_neuron)

    def _probe(self, sites: list[OnnxSite], feed: dict[str, np.ndarray], device: Any
               ) -> dict[str, tuple[int, int]]:
        """Rank and element type of values shape inference left unknown, from one run that
        returns only Shape(z) and a one-element reduction of z per site."""
        import onnx

        copy = onnx.ModelProto()
        copy.CopyFrom(self.model)
        del copy.graph.output[:]
        wanted: dict[str, tuple[str, str]] = {}
        for i, s in enumerate(sites):
            shape_out, one_out = f"deadrelu/probe/{i}/shape", f"deadrelu/probe/{i}/one"
            copy.graph.node.append(onnx.helper.make_node("Shape", [s.z], [shape_out]))
            flat = f"deadrelu/probe/{i}/flat"
            copy.graph.node.append(onnx.helper.make_node(
                "Reshape", [s.z, "deadrelu/probe/minus1"], [flat]))
            copy.graph.node.append(onnx.helper.make_node(
                "Slice", [flat, "deadrelu/probe/zero", "deadrelu/probe/one"], [one_out]))
            for name in (shape_out, one_out):
                copy.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
            wanted[s.name] = (shape_out, one_out)
        for name, value in (("minus1", [-1]), ("zero", [0]), ("one", [1])):
            copy.graph.initializer.append(onnx.numpy_helper.from_array(
                np.asarray(value, dtype=np.int64), f"deadrelu/probe/{name}"))
        sess = self.session(copy, device, self._split()[1])
        names = [n for pair in wanted.values() for n in pair]
        values = dict(zip(names, self._run(sess, names, feed, "probe"), strict=True))
        out = {}
        for site, (shape_out, one_out) in wanted.items():
            rank = int(np.asarray(values[shape_out]).size)
            elem = onnx.helper.np_dtype_to_tensor_dtype(np.asarray(values[one_out]).dtype)
            out[site] = (rank, int(elem))
        return out


class _Program:
    """One instrumented graph and its session."""

    def __init__(self, backend: OnnxBackend, program: Instrumented,
                 weights: dict[str, np.ndarray], device: Any) -> None:
        self.backend = backend
        self.program = program
        self.session = backend.session(program.model, device, weights)
        self.names = list(dict.fromkeys(v for outs in program.outputs.values()
                                        for v in outs.values()))
        self.poison = [outs[f] for outs in program.outputs.values()
                       for f in ("poison", "pooled") if f in outs]

    def run(self, feed: dict[str, np.ndarray], source: str) -> dict[str, Any]:
        if not self.names:
            # No site to measure. The model still runs, so that data it cannot take is still
            # an error; no names would ask onnxruntime for every output, so name them.
            outputs = [o.name for o in self.session.get_outputs()]
            self.backend._run(self.session, outputs, feed, source)
            return {}
        return dict(zip(self.names, self.backend._run(self.session, self.names, feed, source),
                        strict=True))

    def poisoned(self, values: Mapping[str, Any]) -> bool:
        return any(onnx_pooled.poisoned(values[p]) for p in self.poison)


def load_onnx_backend(path: Path) -> OnnxBackend:
    light = load_onnx_light(path)
    if light is None:
        return OnnxBackend(load_onnx(path), path)
    return OnnxBackend.with_weights_in_file(light, path)
