"""The ONNX fast graph of a float32 ReLU counts on the activation's output and has no poison
pass of its own; a batch with NaN, +Inf or -Inf in one pre-activation must still be rerun
through the exact graph and agree with the torch scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from deadrelu import scan
from deadrelu.data import DataSource

FIELDS = ("active", "active_samples", "positive", "finite", "at_cap", "max_pre", "min_pre")


def _relu_model(path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="act")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4, 5])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _source(x: np.ndarray, name: str) -> DataSource:
    return DataSource("x", False, len(x), lambda: iter([{name: x[:4]}, {name: x[4:]}]))


@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
def test_one_nonfinite_element_reaches_the_exact_graph(bad: float | None,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "relu.onnx"
    _relu_model(path)
    x = np.random.default_rng(0).standard_normal((8, 3, 4, 5)).astype(np.float32)
    x[:, 2] = -np.abs(x[:, 2])  # channel 2 dead
    if bad is not None:
        x[6, 1, 2, 3] = bad
    graph = scan(str(path), _source(x, "x"))
    eager = scan(torch.nn.Sequential(torch.nn.ReLU()), _source(x, "input"))
    a, b = graph.sites[0], eager.sites[0]
    assert a.dead_indices() == b.dead_indices() == [2]
    for field in FIELDS:
        np.testing.assert_array_equal(a.stats.arrays[field], b.stats.arrays[field],
                                      err_msg=field)
    np.testing.assert_allclose(a.stats.arrays["abs_sum"], b.stats.arrays["abs_sum"], rtol=1e-6)
    assert (a.stats.samples, a.stats.elements) == (b.stats.samples, b.stats.elements)
