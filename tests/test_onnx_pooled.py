"""The pooled statistics of image ReLUs (deadrelu/backends/onnx_pooled.py) against a numpy
reference computed on the pre-activations onnxruntime itself produced: counts exact (down
to subnormal activations and spatial maps past 2**16 elements), extremes exact, with and
without onnxruntime's blocked NCHWc layout, and NaN / ±Inf batches rerun exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from deadrelu import scan
from deadrelu.backends.onnx_backend import load_onnx_backend
from deadrelu.backends.onnx_instrument import instrument, layouts
from deadrelu.data import DataSource

EXACT = ("active", "active_samples", "positive", "finite", "max_pre", "min_pre")


def _model(path: Path, channels: int, size: tuple[int, int], identity: bool) -> None:
    """x -> Conv -> Relu -> Conv -> Relu. With ``identity`` the first Conv is a 1x1
    identity (so z = x exactly, subnormals included); otherwise 3x3 random weights. The
    first Conv's bias plants channel 1 dead."""
    rng = np.random.default_rng(1)
    if identity:
        w0 = np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1)
        pads = [0, 0, 0, 0]
    else:
        w0 = (rng.standard_normal((channels, channels, 3, 3)) / 8).astype(np.float32)
        pads = [1, 1, 1, 1]
    b0 = np.zeros(channels, dtype=np.float32)
    b0[1] = -1e4
    w1 = (rng.standard_normal((channels, channels, 3, 3)) / 8).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w0, "w0"), (b0, "b0"), (w1, "w1"))]
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["z0"], pads=pads),
             helper.make_node("Relu", ["z0"], ["h0"], name="act0"),
             helper.make_node("Conv", ["h0", "w1"], ["z1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["z1"], ["y"], name="act1")]
    shape = ["N", channels, *size]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                              inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _pre_activations(path: Path, batches: list[np.ndarray]) -> dict[str, np.ndarray]:
    """z of both sites, fetched from a plain onnxruntime session of the model."""
    model = onnx.load(str(path))
    for name in ("z0", "z1"):
        model.graph.output.append(helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    runs = [sess.run(["z0", "z1"], {"x": b}) for b in batches]
    return {name: np.concatenate([r[i] for r in runs]) for i, name in enumerate(("z0", "z1"))}


def _reference(z: np.ndarray) -> dict[str, np.ndarray]:
    """Brute force over (N, C, H, W), NaN and ±Inf never active nor extreme."""
    finite = np.isfinite(z)
    positive = (z > 0) & finite
    masked_hi = np.where(finite, z, -np.inf)
    masked_lo = np.where(finite, z, np.inf)
    return {
        "active": positive.sum(axis=(0, 2, 3)),
        "positive": positive.sum(axis=(0, 2, 3)),
        "active_samples": positive.any(axis=(2, 3)).sum(axis=0),
        "finite": finite.sum(axis=(0, 2, 3)),
        "max_pre": masked_hi.max(axis=(0, 2, 3)),
        "min_pre": masked_lo.min(axis=(0, 2, 3)),
        "abs_sum": np.where(positive, z, 0).astype(np.float64).sum(axis=(0, 2, 3)),
    }


def _check(path: Path, batches: list[np.ndarray]) -> None:
    backend = load_onnx_backend(path)
    lay = layouts(backend.model, backend.sites, None)
    program = instrument(backend.model, backend.sites, lay, 1e-6, fast=True)
    assert all("pooled" in outs for outs in program.outputs.values())  # the path under test
    source = DataSource("x", False, sum(len(b) for b in batches),
                        lambda: iter({"x": b} for b in batches))
    result = scan(str(path), source)
    z = _pre_activations(path, batches)
    assert [s.name for s in result.sites] == ["act0", "act1"]
    for site, name in zip(result.sites, ("z0", "z1"), strict=True):
        want = _reference(z[name])
        for field in EXACT:
            np.testing.assert_array_equal(site.stats.arrays[field], want[field],
                                          err_msg=f"{site.name} {field}")
        # abs_sum is a float32 mean times H*W: a lone subnormal's mean underflows to 0. It only
        # feeds the dormant score, where 1e-45 and 0 are both dormant.
        np.testing.assert_allclose(site.stats.arrays["abs_sum"], want["abs_sum"], rtol=1e-5,
                                   atol=1e-30)
        assert site.stats.samples == len(z[name])
    assert 1 in result.sites[0].dead_indices()


@pytest.mark.parametrize(("channels", "size"), [
    (32, (9, 7)),    # a multiple of the NCHWc block: onnxruntime's blocked layout
    (13, (5, 6)),    # not a multiple: plain NCHW kernels
    (16, (260, 260)),  # 67,600 elements per (sample, channel): counts past float16 / 2**16
])
def test_pooled_statistics_equal_the_brute_force_reference(tmp_path: Path, channels: int,
                                                           size: tuple[int, int]) -> None:
    path = tmp_path / "m.onnx"
    _model(path, channels, size, identity=False)
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((n, channels, *size)).astype(np.float32) for n in (3, 2)]
    batches[1][:, 0] = -np.abs(batches[1][:, 0])  # channel 0 silent in batch 2 only
    _check(path, batches)


def test_subnormal_and_zero_pre_activations_are_counted_exactly(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    channels = 32
    _model(path, channels, (8, 8), identity=True)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, channels, 8, 8)).astype(np.float32)
    tiny = np.float32(2.0**-149)  # the smallest positive float32
    x[:, 2] = 0.0
    x[0, 2, 3, 4] = tiny  # channel 2: one subnormal positive element, the rest exactly 0
    x[:, 3] = rng.choice(np.asarray([0.0, tiny, -tiny, 1e-39], dtype=np.float32),
                         size=(4, 8, 8))
    z0 = _pre_activations(path, [x])["z0"]
    assert z0[0, 2, 3, 4] == tiny and (z0[:, 3] == tiny).any()  # not flushed to zero
    _check(path, [x])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nonfinite_pre_activation_sends_the_batch_to_the_exact_graph(tmp_path: Path,
                                                                        bad: float) -> None:
    path = tmp_path / "m.onnx"
    _model(path, 32, (6, 6), identity=True)
    rng = np.random.default_rng(4)
    batches = [rng.standard_normal((3, 32, 6, 6)).astype(np.float32) for _ in range(2)]
    batches[1][1, 5, 2, 2] = bad
    _check(path, batches)
