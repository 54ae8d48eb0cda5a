"""Statistics: exact on random tensors (NaN/Inf included) against the brute-force reference,
mergeable so that two halves equal the whole, and lossless through JSON."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from deadrelu.activations import KINDS
from deadrelu.measure import SiteRule, TorchSiteAccumulator
from deadrelu.stats import NeuronStats, Settings, derive
from tests.reference import record, reference_sites

ACTIVATIONS: dict[str, nn.Module] = {
    "relu": nn.ReLU(), "relu6": nn.ReLU6(), "hardtanh": nn.Hardtanh(-0.5, 2.0),
    "leaky_relu": nn.LeakyReLU(0.2), "prelu": nn.PReLU(6, init=0.0005), "rrelu": nn.RReLU(),
    "elu": nn.ELU(0.7), "selu": nn.SELU(), "celu": nn.CELU(1.5), "gelu": nn.GELU(),
    "silu": nn.SiLU(), "mish": nn.Mish(), "softplus": nn.Softplus(2.0),
    "hardswish": nn.Hardswish(), "hardsigmoid": nn.Hardsigmoid(), "sigmoid": nn.Sigmoid(),
    "tanh": nn.Tanh(),
}


# Parameters at the edges of the kinds' formulas: an ELU slope below eps leaves nothing of
# z <= 0 active but all of z > 0; a negative CELU alpha or Softplus beta turns a side around.
VARIANTS: dict[str, nn.Module] = {
    "elu alpha 1e-4": nn.ELU(1e-4), "elu alpha -1": nn.ELU(-1.0), "celu alpha -1": nn.CELU(-1.0),
    "softplus beta -1": nn.Softplus(-1.0), "selu": nn.SELU(),
}


def test_every_torch_kind_is_covered() -> None:
    torch_kinds = {k.name for k in KINDS if k.torch_modules}
    assert torch_kinds == set(ACTIVATIONS)


def _random_batches(seed: int, shape: tuple[int, ...], n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n):
        x = torch.randn(shape, generator=g) * 6
        # channel 0 is dead on every sample, channel 1 lives on exactly one element
        x[:, 0] = -50.0
        x[:, 1] = -50.0
        if b == 0:
            x[0, 1, 0, 0] = 1.0
        # non-finite values, away from channels 0 and 1, that must count neither as dead nor
        # as alive
        rest = x[:, 2:].reshape(-1)  # a copy: write back through the channel slice
        idx = torch.randperm(rest.numel(), generator=g)[:5]
        rest[idx[:2]] = float("nan")
        rest[idx[2:4]] = float("inf")
        rest[idx[4]] = float("-inf")
        x[:, 2:] = rest.reshape(x[:, 2:].shape)
        out.append(x)
    return out


@pytest.mark.parametrize("kind", [*sorted(ACTIVATIONS), *VARIANTS])
def test_accumulators_match_the_reference_on_random_tensors(kind: str) -> None:
    model = nn.Sequential(ACTIVATIONS.get(kind) or VARIANTS[kind]).eval()
    batches = _random_batches(zlib.crc32(kind.encode()), (5, 6, 3, 4), 3)
    reference = reference_sites(record(model, [b.clone() for b in batches]), [1])[0]
    from deadrelu.backends.sites import SiteRegistry
    from deadrelu.backends.torch_eager import capture

    registry = SiteRegistry(Settings(), None, torch.device("cpu"))
    with torch.no_grad(), capture(model, registry):
        for b in batches:
            registry.begin_forward()
            model(b.clone())
    (result,) = registry.results()
    a = result.stats.arrays
    for field in ("active", "active_samples", "positive", "finite"):
        np.testing.assert_array_equal(a[field], getattr(reference, field), err_msg=field)
    np.testing.assert_array_equal(a["max_pre"], reference.max_pre)
    np.testing.assert_array_equal(a["min_pre"], reference.min_pre)
    np.testing.assert_allclose(a["abs_sum"], reference.abs_sum, rtol=1e-6)
    figures = derive(result.stats, result.info.kind, result.info.params, Settings())
    assert figures.nonfinite == 3 * 5
    leaky = kind in ("leaky_relu", "rrelu")
    expected_dead = [] if leaky else reference.dead
    assert [int(i) for i in np.flatnonzero(figures.dead)] == expected_dead


def test_dead_neuron_definition_by_family() -> None:
    """ReLU: channel 0 dead. ReLU6 split into dead-low / dead-high. Leaky: negative-only."""
    z = torch.tensor([[-1.0, 7.0, 2.0], [-3.0, 8.0, -1.0]])  # (N=2, C=3)

    def figures(kind: str, **params: float):
        acc = TorchSiteAccumulator(3, 1, SiteRule(kind, params, 1e-3), torch.device("cpu"))
        fin = acc.observe_input(z)
        acc.observe_output(z.clamp(min=0), fin)
        return derive(acc.to_stats(), kind, params, Settings())

    relu = figures("relu")
    assert relu.dead.tolist() == [True, False, False]
    r6 = figures("relu6", lo=0.0, hi=6.0)
    assert r6.dead_low.tolist() == [True, False, False]
    assert r6.dead_high.tolist() == [False, True, False]
    leaky = figures("leaky_relu", slope=0.01)
    assert not leaky.dead.any() and leaky.negative_only.tolist() == [True, False, False]
    flat = figures("leaky_relu", slope=1e-5)  # a slope below eps passes no gradient
    assert flat.dead.tolist() == [True, False, False]
    assert relu.margin == -1.0


def test_margin_is_the_distance_from_life_on_the_side_a_neuron_died_on() -> None:
    """Below the active set: the largest pre-activation minus the set's edge above it. Dead
    above it (past ReLU6's cap, a sigmoid saturated high): the smallest minus the top, and
    only when no neuron died below."""

    def margin(kind: str, z: torch.Tensor, **params: float) -> float | None:
        acc = TorchSiteAccumulator(z.shape[1], 1, SiteRule(kind, params, 1e-3),
                                   torch.device("cpu"))
        acc.observe_output(z, acc.observe_input(z))
        return derive(acc.to_stats(), kind, params, Settings()).margin

    # ReLU6: a neuron dead low at -996 next to neurons dead high at 1000 and 7.
    both = torch.tensor([[-996.0, 1000.0, 7.0, 2.0], [-999.0, 1003.0, 9.0, 3.0]])
    assert margin("relu6", both, lo=0.0, hi=6.0) == -996.0
    high_only = both[:, 1:]
    assert margin("relu6", high_only, lo=0.0, hi=6.0) == 1.0  # 7, one past the cap
    # Sigmoid (active for |z| <= t, sigmoid'(t) = eps) saturated both ways, then high only.
    t = math.log((1 + math.sqrt(1 - 4e-3)) / (1 - math.sqrt(1 - 4e-3)))
    sig = torch.tensor([[-12.0, 10.0, 0.5], [-11.0, 14.0, -0.5]])
    assert margin("sigmoid", sig) == pytest.approx(-11.0 + t)
    assert margin("sigmoid", sig[:, 1:]) == pytest.approx(10.0 - t)
    # A neuron seen only at -100 and +100 is not "below": the one dead at -29.9 is nearest.
    both = torch.tensor([[-100.0, -29.9, 0.5], [100.0, -35.0, -0.5]])
    assert margin("sigmoid", both) == pytest.approx(-29.9 + t, rel=1e-6)
    assert margin("sigmoid", both[:, :1]) is None  # its extremes are on both sides
    # Hardtanh(0.5, 2): dead low at 0.4 is 0.1 below the band, not "+0.4".
    band = torch.tensor([[0.4, 3.0, 1.0], [0.1, 2.5, 1.5]])
    assert margin("hardtanh", band, lo=0.5, hi=2.0) == pytest.approx(-0.1)
    # ELU (alpha 1): active from log(eps); a neuron at -7.0 is 0.09 from firing, not -7.
    elu = torch.tensor([[-7.0, -50.0, 1.0], [-7.5, -60.0, 2.0]])
    assert margin("elu", elu, alpha=1.0) == pytest.approx(-7.0 - math.log(1e-3))
    # Hardswish: dead in the flat gap at -1.5 is a hair from life on its right.
    gap = torch.tensor([[-1.5, -9.0, 1.0], [-1.5, -8.0, 2.0]])
    assert margin("hardswish", gap) == pytest.approx(-3e-3)


def _stats_of(chunks: list[torch.Tensor], kind: str = "gelu") -> NeuronStats:
    acc = TorchSiteAccumulator(chunks[0].shape[-1], chunks[0].ndim - 1,
                               SiteRule(kind, {}, 1e-3), torch.device("cpu"))
    for z in chunks:
        fin = acc.observe_input(z)
        acc.observe_output(F.gelu(z), fin)
    return acc.to_stats()


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 7), min_size=2, max_size=6),
    cut=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    neurons=st.integers(1, 5),
    nonfinite=st.booleans(),
)
def test_two_halves_merged_equal_the_whole(sizes: list[int], cut: int, seed: int,
                                           neurons: int, nonfinite: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    chunks = [torch.randn(n, 3, neurons, generator=g) * 4 for n in sizes]
    if nonfinite:
        chunks[0][0, 0, 0] = float("nan")
        chunks[-1][-1, -1, -1] = float("inf")
    cut = min(cut, len(chunks) - 1)
    whole = _stats_of(chunks)
    merged = _stats_of(chunks[:cut]).merge(_stats_of(chunks[cut:]))
    for field in ("active", "active_samples", "positive", "finite", "at_cap", "max_pre",
                  "min_pre"):
        np.testing.assert_array_equal(merged.arrays[field], whole.arrays[field])
    assert (merged.samples, merged.elements) == (whole.samples, whole.elements)
    # float64 sums of float32 partial sums: equal up to the order of additions
    np.testing.assert_allclose(merged.arrays["abs_sum"], whole.arrays["abs_sum"], rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), nonfinite=st.booleans())
def test_json_round_trip_is_lossless(seed: int, nonfinite: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(4, 3, 5, generator=g)
    if nonfinite:
        z[:, :, 2] = float("nan")  # neuron 2 never sees a finite value: stored as null
    stats = _stats_of([z])
    back = NeuronStats.from_dict(json.loads(json.dumps(stats.to_dict(), allow_nan=False)))
    assert back == stats
