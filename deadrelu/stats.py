"""Exact, mergeable per-neuron statistics and the figures derived from them.

Every accumulator declares how it merges (sum / min / max, as torchmetrics' ``dist_reduce_fx``),
so shards, processes and formats combine exactly: counts are int64, extremes are extremes. No
running means, no histograms. ``abs_sum`` is a float64 sum and so exact up to float64 rounding
of the summation order; it only feeds the dormant score, a ratio of means.

The derived figures follow design.md §1: dead, dead-low / dead-high, negative-only, saturated,
dormant (Sokar et al. 2023), rarely active, site saturation, cap fraction, margin, NaN/Inf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from deadrelu.activations import KIND_BY_NAME, active_set, cap_bounds

Merge = Literal["sum", "min", "max"]

# Per-neuron accumulators: name -> (merge rule, dtype, initial value).
NEURON_FIELDS: dict[str, tuple[Merge, str, float]] = {
    "active": ("sum", "int64", 0),  # elements with |f'(z)| >= eps
    "active_samples": ("sum", "int64", 0),  # samples with at least one active element
    "positive": ("sum", "int64", 0),  # elements with z > 0 (negative-only test of leaky kinds)
    "finite": ("sum", "int64", 0),  # finite elements (NaN / Inf are counted apart)
    "at_cap": ("sum", "int64", 0),  # elements at or above the cap (capped kinds)
    "abs_sum": ("sum", "float64", 0.0),  # sum of |f(z)| over finite elements
    "max_pre": ("max", "float64", -np.inf),  # largest finite pre-activation
    "min_pre": ("min", "float64", np.inf),  # smallest finite pre-activation
}
# Per-site scalars.
SITE_FIELDS: dict[str, tuple[Merge, str, float]] = {
    "samples": ("sum", "int64", 0),  # entries along the batch axis
    "elements": ("sum", "int64", 0),  # elements per neuron (finite or not)
}


@dataclass
class NeuronStats:
    """Accumulated statistics of one site: arrays of shape (neurons,) plus two scalars."""

    arrays: dict[str, np.ndarray]
    samples: int = 0
    elements: int = 0

    @classmethod
    def zeros(cls, neurons: int) -> NeuronStats:
        arrays = {
            name: np.full(neurons, init, dtype=dtype)
            for name, (_, dtype, init) in NEURON_FIELDS.items()
        }
        return cls(arrays)

    @property
    def neurons(self) -> int:
        return int(self.arrays["active"].shape[0])

    def update(self, batch: Mapping[str, Any], samples: int, elements: int) -> None:
        """Fold one batch's partial statistics (numpy-convertible arrays) in place."""
        for name, (rule, dtype, _) in NEURON_FIELDS.items():
            value = np.asarray(batch[name], dtype=dtype).reshape(-1)
            _combine(self.arrays[name], value, rule)
        self.samples += int(samples)
        self.elements += int(elements)

    def merge(self, other: NeuronStats) -> NeuronStats:
        """The statistics of both data sets, as if scanned together."""
        if other.neurons != self.neurons:
            raise ValueError(f"cannot merge {self.neurons} neurons with {other.neurons}")
        out = NeuronStats({k: v.copy() for k, v in self.arrays.items()}, self.samples,
                          self.elements)
        out.update(other.arrays, other.samples, other.elements)
        return out

    def to_dict(self) -> dict[str, Any]:
        # JSON has no infinities: a neuron that never saw a finite value stores null.
        def encode(name: str, a: np.ndarray) -> list[Any]:
            if a.dtype.kind == "f":
                return [None if not np.isfinite(x) else float(x) for x in a.tolist()]
            return [int(x) for x in a.tolist()]

        d: dict[str, Any] = {"samples": self.samples, "elements": self.elements}
        d.update({name: encode(name, a) for name, a in self.arrays.items()})
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NeuronStats:
        arrays = {}
        for name, (_, dtype, init) in NEURON_FIELDS.items():
            values = [init if x is None else x for x in d[name]]
            arrays[name] = np.asarray(values, dtype=dtype)
        return cls(arrays, int(d["samples"]), int(d["elements"]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NeuronStats):
            return NotImplemented
        return (
            self.samples == other.samples
            and self.elements == other.elements
            and all(np.array_equal(self.arrays[k], other.arrays[k]) for k in NEURON_FIELDS)
        )


def _combine(acc: np.ndarray, value: np.ndarray, rule: Merge) -> None:
    if rule == "sum":
        acc += value
    elif rule == "max":
        np.maximum(acc, value, out=acc)
    else:
        np.minimum(acc, value, out=acc)


# --------------------------------------------------------------------------------------------
# Derived figures.


@dataclass(frozen=True)
class Settings:
    eps: float = 1e-3
    tau: float = 0.025
    min_active: float = 0.01

    def to_dict(self) -> dict[str, float]:
        return {"eps": self.eps, "tau": self.tau, "min_active": self.min_active}


@dataclass
class SiteFigures:
    """Per-neuron flags and per-site figures of one site."""

    dead: np.ndarray  # bool (neurons,): no active element, at least one finite one
    dead_low: np.ndarray  # capped kinds: z <= low everywhere
    dead_high: np.ndarray  # capped kinds: z >= high everywhere
    negative_only: np.ndarray  # leaky kinds: never z > 0
    dormant: np.ndarray
    rarely_active: np.ndarray  # alive, but active on < min_active of samples
    unobserved: np.ndarray  # no finite element at all (NaN/Inf only, or never reached)
    dormant_score: np.ndarray  # float (neurons,)
    active_fraction: np.ndarray  # per neuron: active / finite elements
    sample_fraction: np.ndarray  # per neuron: samples with an active element / samples
    saturation: float | None  # fraction of finite elements that are not active
    cap_fraction: float | None  # capped kinds: fraction of finite elements at the cap
    margin: float | None  # signed distance of the nearest dead neuron from life (_margin)
    nonfinite: int  # NaN / Inf elements


def _margin(a: Mapping[str, np.ndarray], dead: np.ndarray, kind_name: str,
            params: Mapping[str, Any], eps: float) -> float | None:
    """How near the site's dead neurons came to life: the signed distance from the active
    set of the neuron that came nearest. Below the active set (ReLU's z <= 0, an ELU's
    z < log(eps)): its largest pre-activation minus the edge of the active set above it,
    <= 0. Dead *above* the set (ReLU6 past its cap, a sigmoid saturated high): its smallest
    pre-activation minus the top of the set, >= 0; those count only when the site has no
    dead neuron below. For ReLU the margin is the largest pre-activation itself. A neuron
    seen on both sides (never inside) is near neither side as far as its extremes tell, and
    a kind with no active set at all has no life to be near: None then."""
    if not dead.any():
        return None
    scalar = {k: v for k, v in params.items() if isinstance(v, (int, float, str))}
    base = "relu" if kind_name == "prelu" else kind_name
    intervals = active_set(base, eps, **scalar)
    if not intervals:
        return None
    top = max(iv.hi for iv in intervals)
    below = dead & (a["max_pre"] < top)
    if below.any():
        z = a["max_pre"][below].astype(np.float64)
        # The edge of life above each neuron: the lowest interval start at or above its z
        # (a dead z never lies inside an interval, only at an open end).
        starts = np.sort(np.array([iv.lo for iv in intervals], dtype=np.float64))
        at = np.minimum(np.searchsorted(starts, z, side="left"), len(starts) - 1)
        return float((z - starts[at]).max())
    above = dead & (a["min_pre"] >= top)
    if above.any():
        return float(a["min_pre"][above].astype(np.float64).min() - top)
    return None


def derive(stats: NeuronStats, kind_name: str, params: Mapping[str, Any],
           settings: Settings) -> SiteFigures:
    a = stats.arrays
    finite = a["finite"]
    seen = finite > 0
    dead = seen & (a["active"] == 0)
    zeros = np.zeros_like(dead)
    caps = cap_bounds(kind_name, **{k: v for k, v in params.items() if k in ("lo", "hi")})
    if caps is not None:
        lo, hi = caps
        dead_low = dead & (a["max_pre"] <= lo)
        dead_high = dead & (a["min_pre"] >= hi)
    else:
        dead_low, dead_high = zeros, zeros
    family = KIND_BY_NAME[kind_name].family
    negative_only = seen & (a["positive"] == 0) if family == "leaky" else zeros

    with np.errstate(invalid="ignore", divide="ignore"):
        mean_abs = np.where(seen, a["abs_sum"] / np.maximum(finite, 1), 0.0)
        layer_mean = float(mean_abs[seen].mean()) if seen.any() else 0.0
        # A site whose every neuron outputs 0 has no scale to compare to: all are dormant.
        score = mean_abs / layer_mean if layer_mean > 0 else np.zeros_like(mean_abs)
        active_fraction = np.where(seen, a["active"] / np.maximum(finite, 1), 0.0)
        sample_fraction = a["active_samples"] / max(stats.samples, 1)
    dormant = seen & (score <= settings.tau)
    rarely = seen & ~dead & (sample_fraction < settings.min_active)

    total_finite = int(finite.sum())
    # (finite - active) / finite, divided once: 1 - active/finite rounds twice.
    saturation = ((total_finite - int(a["active"].sum())) / total_finite if total_finite
                  else None)
    cap_fraction = (int(a["at_cap"].sum()) / total_finite
                    if caps is not None and total_finite else None)
    margin = _margin(a, dead, kind_name, params, settings.eps)
    nonfinite = int(stats.elements * stats.neurons - total_finite)
    return SiteFigures(
        dead=dead, dead_low=dead_low, dead_high=dead_high, negative_only=negative_only,
        dormant=dormant, rarely_active=rarely, unobserved=~seen, dormant_score=score,
        active_fraction=active_fraction, sample_fraction=sample_fraction,
        saturation=saturation, cap_fraction=cap_fraction, margin=margin, nonfinite=nonfinite,
    )
