"""Statistics of an image-shaped float32 ReLU from pooling nodes, and their per-batch fold.

On the CPU onnxruntime runs convolutions in a blocked channel layout (NCHWc). A Reduce* node
cannot read that layout, so every activation it reduces is first reordered back to NCHW: a
full copy per site, a third of what the general fast graph cost on a ResNet-50. The pooling
ops, depthwise convolutions and HardSigmoid run in the blocked layout, so this graph takes
each (sample, channel)'s figures with them and leaves the last, tiny reduction over the
samples to numpy (:func:`fold`):

- max z = GlobalMaxPool(z); min z = -GlobalMaxPool(-z), ``-z`` a depthwise convolution of
  weight -1 (exact);
- positives = GlobalAveragePool(indicator of h > 0) * H*W, rounded: the mean of k ones
  times the element count is within a few ulps of k, so exact below 2**21 elements;
- sum h = GlobalAveragePool(h) * H*W (float32, like every abs_sum of the fast graphs).

The indicator is a depthwise convolution of weight 2**127 with HardSigmoid(alpha=2**127)
fused into it: the smallest positive float32, 2**-149, becomes 2**105 and clips to 1; 0
stays 0. NaN in z stays NaN through Relu into the sums, ±Inf reaches the extremes: a batch
with any non-finite figure is rerun through the exact graph (see :func:`poisoned`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from deadrelu.backends.onnx_instrument import SiteLayout, _Builder
    from deadrelu.backends.onnx_sites import OnnxSite

# Below this many elements per (sample, channel) a count read back from a mean is exact.
MAX_INNER = 2**21
# The columns of the one (N, 4C) output, in order.
PARTS = ("max", "negmax", "count", "sum")
_BIG = 2.0**127


def applies(s: OnnxSite, lay: SiteLayout, dtype: np.dtype[Any]) -> bool:
    """A float32 ReLU on an (N, C, H, W) value whose C, H and W shape inference knows."""
    return (s.kind == "relu" and s.slope is None and s.bias is None
            and dtype == np.float32 and lay.rank == 4 and lay.channel_axis == 1
            and lay.dims is not None and all(d is not None for d in lay.dims[1:])
            and lay.inner is not None and 0 < lay.inner < MAX_INNER)


def build(b: _Builder, z: str, h: str, lay: SiteLayout
          ) -> tuple[dict[str, str], dict[str, int]]:
    """The nodes of one site; returns {"pooled": value}, an (N, 4C) float32 of PARTS.

    One output, not four, and made by a Flatten of deadrelu's own: onnxruntime's NCHWc pass
    adds a ReorderOutput node for every pooled value that leaves the blocked layout, and
    numbers those nodes in the model's order. Were they the graph's leaves, onnxruntime's
    execution order (a reverse depth-first walk from the leaves, highest node number first,
    see onnx_instrument._order_for_onnxruntime) would run the whole model before any
    site's statistics and keep every activation alive (3.5 GB instead of 1.2 GB on the
    bench ResNet-50). The Flatten keeps the number deadrelu gave it.
    """
    import onnx

    assert lay.dims is not None and lay.dims[1] is not None
    channels = lay.dims[1]

    def depthwise(x: str, weight: float) -> str:
        w = b.const(np.full((channels, 1, 1, 1), weight, dtype=np.float32), "w")
        return b.node("Conv", [x, w], group=channels)

    indicator = b.node("HardSigmoid", [depthwise(h, _BIG)], alpha=_BIG, beta=0.0)
    parts = {
        "max": b.node("GlobalMaxPool", [z]),
        "negmax": b.node("GlobalMaxPool", [depthwise(z, -1.0)]),
        "count": b.node("GlobalAveragePool", [indicator]),
        "sum": b.node("GlobalAveragePool", [h]),
    }
    joined = b.node("Concat", [parts[p] for p in PARTS], axis=1)
    return ({"pooled": b.node("Flatten", [joined], axis=1)},
            {"pooled": int(onnx.TensorProto.FLOAT)})


def poisoned(value: Any) -> bool:
    """Whether a site's pooled output shows a NaN or ±Inf pre-activation in the batch (the
    extremes catch ±Inf, the sums NaN; the count of finite values is finite)."""
    return not bool(np.all(np.isfinite(value)))


def fold(values: Mapping[str, Any], outs: Mapping[str, str], lay: SiteLayout
         ) -> tuple[dict[str, np.ndarray], tuple[int, ...]] | None:
    """One batch's per-neuron fields and z's shape; None for an empty batch or an If branch
    not taken. Only for batches that :func:`poisoned` passed: ``finite`` is every element."""
    assert lay.dims is not None and lay.inner is not None
    joined = np.asarray(values[outs["pooled"]])
    if joined.size == 0:
        return None
    samples, inner = joined.shape[0], lay.inner
    parts = joined.reshape(samples, len(PARTS), -1)
    per_sample = {p: parts[:, i] for i, p in enumerate(PARTS)}  # each (N, C)
    counts = np.rint(per_sample["count"].astype(np.float64) * inner).astype(np.int64)
    sums = per_sample["sum"].astype(np.float64) * inner
    batch = {
        "active": counts.sum(axis=0),
        "positive": counts.sum(axis=0),
        "active_samples": (counts > 0).sum(axis=0),
        "finite": np.full(counts.shape[1], samples * inner, dtype=np.int64),
        "at_cap": np.zeros(counts.shape[1], dtype=np.int64),
        "abs_sum": sums.sum(axis=0),
        "max_pre": per_sample["max"].max(axis=0),
        "min_pre": -per_sample["negmax"].max(axis=0),
    }
    shape = (samples, *(int(d) for d in lay.dims[1:] if d is not None))
    return batch, shape
