"""Max and min of channel-last ONNX sites, taken in two reshaped steps when the inner size
allows (onnx_instrument._extreme_split), equal numpy's over the whole batch and the eager
torch scan's, on all-finite batches (fast graph) and on batches with NaN / ±Inf (exact
graph)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from deadrelu import scan
from deadrelu.backends.onnx_instrument import SiteLayout, _extreme_split
from deadrelu.data import DataSource

FIELDS = ("active", "active_samples", "positive", "finite", "at_cap", "max_pre", "min_pre")
TORCH_OPS = {"Relu": torch.nn.ReLU(), "Sigmoid": torch.nn.Sigmoid()}


def _model(path: Path, op: str, inner: tuple[int, ...], channels: int) -> None:
    shape = ["N", *inner, channels]
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], name="act")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _source(x: np.ndarray, name: str) -> DataSource:
    return DataSource("x", False, len(x), lambda: iter([{name: x[:3]}, {name: x[3:]}]))


@pytest.mark.parametrize("inner,split", [
    ((48,), (8, 6)), ((196,), (7, 28)), ((4, 12), (8, 6)), ((37,), None), ((8,), None)])
def test_split_choice(inner: tuple[int, ...], split: tuple[int, int] | None) -> None:
    n = int(np.prod(inner))
    assert _extreme_split(SiteLayout(len(inner) + 2, len(inner) + 1, 1, n)) == split


@pytest.mark.parametrize("op", ["Relu", "Sigmoid"])
@pytest.mark.parametrize("inner", [(48,), (196,), (4, 12), (37,)])
@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
def test_channel_last_extremes(op: str, inner: tuple[int, ...], bad: float | None,
                               tmp_path: Path) -> None:
    channels = 5
    path = tmp_path / "m.onnx"
    _model(path, op, inner, channels)
    rng = np.random.default_rng(len(inner) * 100 + inner[-1])
    x = (rng.standard_normal((7, *inner, channels)) * 3).astype(np.float32)
    x[..., 2] = -np.abs(x[..., 2]) - 0.5  # channel 2 never positive
    # Each channel's extremes sit at a different position, and in the last sample only.
    for c in range(channels):
        idx = (6, *[(c * 7 + k) % d for k, d in enumerate(inner)], c)
        x[idx] = 40.0 + c
        idx_low = (6, *[(c * 3 + 1) % d for d in inner], c)
        x[idx_low] = -40.0 - c
    if bad is not None:
        x[(4, *[0 for _ in inner], 3)] = bad
    # Rank 4 is channel-first by default (design.md §1): ask for the last axis.
    axis = -1 if x.ndim >= 4 else None
    graph = scan(str(path), _source(x, "x"), channel_axis=axis).sites[0].stats.arrays
    eager = scan(torch.nn.Sequential(TORCH_OPS[op]), _source(x, "input"),
                 channel_axis=axis).sites[0].stats.arrays
    finite = np.where(np.isfinite(x), x, np.nan)
    axes = tuple(range(x.ndim - 1))
    np.testing.assert_array_equal(graph["max_pre"], np.nanmax(finite, axis=axes))
    np.testing.assert_array_equal(graph["min_pre"], np.nanmin(finite, axis=axes))
    for field in FIELDS:
        np.testing.assert_array_equal(graph[field], eager[field], err_msg=field)
