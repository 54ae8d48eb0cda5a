"""The CPU fast path of the per-site reductions gives the masked path's statistics exactly.

On the CPU a batch whose pre-activations are all finite takes a path with fewer passes
(measure.TorchSiteAccumulator._observe_finite); anything else, and every batch on an
accelerator, takes the masked path. Both must agree on every count and extreme.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deadrelu.activations import KINDS
from deadrelu.backends.sites import call_params
from deadrelu.measure import SiteRule, TorchSiteAccumulator, channel_axis_for

FUNCS = {
    "relu": F.relu, "relu6": F.relu6, "hardtanh": F.hardtanh, "leaky_relu": F.leaky_relu,
    "rrelu": lambda z: F.rrelu(z, training=False), "elu": F.elu, "selu": F.selu,
    "celu": F.celu, "gelu": F.gelu, "silu": F.silu, "mish": F.mish, "softplus": F.softplus,
    "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid, "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}
SHAPES = [(6, 5, 4, 3), (4, 7, 9), (8, 11), (13,), (2, 3, 4, 5, 2)]


def _batch(shape: tuple[int, ...], rule: SiteRule, seed: int) -> torch.Tensor:
    """Normal values with the kind's interval bounds, 0 and the cap planted exactly."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g) * 4
    bounds = [0.0] + [b for iv in rule.intervals for b in (iv.lo, iv.hi) if np.isfinite(b)]
    flat = z.view(-1)
    for i, b in enumerate(bounds):
        flat[i::len(bounds) + 3] = torch.tensor(b, dtype=torch.float32)
    return z


def _scan(kind: str, shape: tuple[int, ...], fast: bool, batches: list[torch.Tensor],
          axis: int | None = None):
    _, params = call_params(kind, (None,), {})
    rule = SiteRule(kind, params, 1e-3)
    ch = channel_axis_for(len(shape), False, axis)
    acc = TorchSiteAccumulator(shape[ch] if len(shape) > 1 else shape[0], ch, rule,
                               torch.device("cpu"))
    acc.fast = fast
    for z in batches:
        token = acc.observe_input(z)
        acc.observe_output(FUNCS[kind](z), token)
    return acc.to_stats()


def _assert_same(a, b) -> None:
    assert (a.samples, a.elements) == (b.samples, b.elements)
    for name in ("active", "active_samples", "positive", "finite", "at_cap", "max_pre",
                 "min_pre"):
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name], err_msg=name)
    np.testing.assert_allclose(a.arrays["abs_sum"], b.arrays["abs_sum"], rtol=1e-6)


@pytest.mark.parametrize("kind", [k.name for k in KINDS if k.name in FUNCS])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fast_path_equals_masked_path(kind: str, shape: tuple[int, ...]) -> None:
    _, params = call_params(kind, (None,), {})
    rule = SiteRule(kind, params, 1e-3)
    batches = [_batch(shape, rule, seed) for seed in range(3)]
    _assert_same(_scan(kind, shape, True, batches), _scan(kind, shape, False, batches))


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_fast_path_with_a_channel_axis_override(axis: int) -> None:
    shape = (5, 6, 7)
    rule = SiteRule("gelu", {"approximate": "none"}, 1e-3)
    batches = [_batch(shape, rule, seed) for seed in range(2)]
    _assert_same(_scan("gelu", shape, True, batches, axis),
                 _scan("gelu", shape, False, batches, axis))


@pytest.mark.parametrize("kind", ["gelu", "relu", "relu6", "hardtanh", "sigmoid"])
def test_large_activations_are_counted_in_bounded_parts(monkeypatch: pytest.MonkeyPatch,
                                                        kind: str) -> None:
    # Several parts: ReLU and ReLU6 then sum their output from z, part by part.
    import deadrelu.measure

    shape = (9, 4, 5, 6)
    _, params = call_params(kind, (None,), {})
    rule = SiteRule(kind, params, 1e-3)
    batches = [_batch(shape, rule, seed) for seed in range(2)]
    whole = _scan(kind, shape, True, batches)
    monkeypatch.setattr(deadrelu.measure, "_PART", 2 * 4 * 5 * 6)  # parts of 2 samples
    _assert_same(_scan(kind, shape, True, batches), whole)
    _assert_same(_scan(kind, shape, False, batches), whole)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_batch_with_non_finite_values_takes_the_masked_path(bad: float) -> None:
    shape = (4, 3, 5)
    rule = SiteRule("relu", {}, 1e-3)
    batches = [_batch(shape, rule, seed) for seed in range(3)]
    batches[1][2, 1, 3] = bad
    fast = _scan("relu", shape, True, batches)
    _assert_same(fast, _scan("relu", shape, False, batches))
    assert fast.arrays["finite"][3] == 3 * 4 * 3 - 1  # neurons on the last axis


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_in_small_feature_maps_are_caught(bad: float) -> None:
    # 2x2 maps take the max-pool / matmul reductions of the fast path; they must still see
    # a single NaN or Inf and send the batch down the masked path.
    shape = (4, 3, 2, 2)
    rule = SiteRule("relu", {}, 1e-3)
    batches = [_batch(shape, rule, seed) for seed in range(3)]
    batches[1][2, 1, 1, 0] = bad
    fast = _scan("relu", shape, True, batches)
    _assert_same(fast, _scan("relu", shape, False, batches))
    assert fast.arrays["finite"][1] == 3 * 4 * 4 - 1


@pytest.mark.parametrize("kind", ["gelu", "relu6", "sigmoid"])
@pytest.mark.parametrize("shape", [(9, 4, 5, 6), (7, 12, 5)], ids=["nchw", "nsc"])
def test_the_masked_path_runs_in_slices_of_samples(monkeypatch: pytest.MonkeyPatch, kind: str,
                                                   shape: tuple[int, ...]) -> None:
    """Its masks would each copy a whole activation (every GPU batch, every NaN batch)."""
    import deadrelu.measure

    _, params = call_params(kind, (None,), {})
    rule = SiteRule(kind, params, 1e-3)
    batches = [_batch(shape, rule, seed) for seed in range(3)]
    batches[1].view(-1)[7] = float("nan")
    batches[2].view(-1)[-3] = float("inf")
    whole = _scan(kind, shape, False, batches)
    sample = int(np.prod(shape[1:]))
    seen: list[int] = []
    real = TorchSiteAccumulator._observe_general_part

    def spy(self: TorchSiteAccumulator, z: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        seen.append(len(z))
        return real(self, z, w)

    monkeypatch.setattr(TorchSiteAccumulator, "_observe_general_part", spy)
    monkeypatch.setattr(deadrelu.measure, "_GENERAL_PART", 2 * sample)  # 2 samples a slice
    _assert_same(_scan(kind, shape, False, batches), whole)
    assert max(seen) == 2 and sum(seen) == 3 * shape[0]
    # The fast path sends a NaN batch here too, in slices.
    _assert_same(_scan(kind, shape, True, batches), whole)
