"""Per-batch statistics of one site, computed with torch on the model's device.

One site's pre-activation ``z`` is reduced over every axis but the channel axis into the
accumulators of :mod:`deadrelu.stats`. Everything stays on the device. On an accelerator the
only host sync is :meth:`TorchSiteAccumulator.to_stats` at the end of the scan; on the CPU, where
reading a value back costs nothing, each batch first checks that it is all finite and then
takes a path with a few passes per site instead of a dozen masked ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deadrelu.activations import Interval, active_set, cap_bounds
from deadrelu.stats import NEURON_FIELDS, NeuronStats

# Per-(sample, channel) counts are float32 sums of 0/1: exact below 2**24 elements.
_EXACT_COUNT = 2**24
# Up to this many elements per (sample, channel), pooling and matmul beat amax and sum.
_SMALL_INNER = 16
# Largest scratch buffer of the fast path, in elements (8 MiB of float32).
_SCRATCH = 2**21
# Kinds whose output is >= 0 wherever the input is finite: |h| = h.
_NONNEGATIVE = frozenset({"relu", "relu6", "softplus", "sigmoid", "hardsigmoid"})


def channel_axis_for(ndim: int, channels_first: bool, override: int | None = None) -> int:
    """design.md §1: axis 1 for rank >= 4 or channel-first producers, else the last axis."""
    if ndim <= 1:
        return 0
    if override is not None:
        axis = override if override >= 0 else ndim + override
        if not 0 <= axis < ndim:
            raise ValueError(f"--channel-axis {override} is out of range for rank {ndim}")
        return axis
    if ndim >= 4 or channels_first:
        return 1
    return ndim - 1


@dataclass
class SiteRule:
    """How to decide activity at one site: the kind's active intervals and cap."""

    kind: str
    params: Mapping[str, Any]
    eps: float
    intervals: tuple[Interval, ...] = field(init=False)
    cap: tuple[float, float] | None = field(init=False)

    def __post_init__(self) -> None:
        scalar = {k: v for k, v in self.params.items() if isinstance(v, (int, float, str))}
        # PReLU's slope is a per-channel tensor: its base set is z > 0 and the channels whose
        # slope passes gradient are OR-ed in by observe_input.
        base = "relu" if self.kind == "prelu" else self.kind
        self.intervals = active_set(base, self.eps, **scalar)
        self.cap = cap_bounds(self.kind, **scalar)


def active_mask(z: torch.Tensor, intervals: Sequence[Interval]) -> torch.Tensor:
    """Elements of z inside the active set. NaN and ±Inf are never active."""
    mask: torch.Tensor | None = None
    for iv in intervals:
        lo = z >= iv.lo if iv.lo_closed else z > iv.lo
        hi = z <= iv.hi if iv.hi_closed else z < iv.hi
        part = lo & hi
        mask = part if mask is None else mask | part
    if mask is None:
        return torch.zeros_like(z, dtype=torch.bool)
    return mask


def prelu_always_active(weight: torch.Tensor, eps: float, z: torch.Tensor) -> torch.Tensor:
    """PReLU channels whose negative slope passes gradient, shaped to broadcast like torch's
    prelu (weight on dim 1, or dim 0 for 1-D inputs)."""
    always = weight.detach().abs() >= eps
    if weight.numel() == 1 or z.ndim < 2:
        return always.reshape(-1)[0] if weight.numel() == 1 else always
    shape = [1] * z.ndim
    shape[1] = weight.numel()
    return always.reshape(shape)


def _small_inner(v: torch.Tensor) -> bool:
    """(A, 1, C, Q) with a few elements per channel (late CNN stages: 2x2 .. 4x4 maps),
    where torch's reductions over the innermost axis are slow."""
    return v.shape[1] == 1 and 1 < v.shape[3] <= _SMALL_INNER and v.dtype == torch.float32


def _extremes(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (sample, channel) max and min of ``v`` (A, P, C, Q); NaN propagates."""
    a, _, c, q = v.shape
    if _small_inner(v):
        flat = v.reshape(a, 1, c * q)  # a max-pool of width Q is 3x faster there
        return (F.max_pool1d(flat, q).reshape(a, c),
                F.max_pool1d(flat.neg(), q).neg_().reshape(a, c))
    return v.amax(dim=(1, 3)), v.amin(dim=(1, 3))


def _sum(v: torch.Tensor) -> torch.Tensor:
    """Per (sample, channel) float32 sum of ``v`` (A, P, C, Q); exact for 0/1 counts."""
    if _small_inner(v):
        ones = torch.ones(v.shape[3], dtype=v.dtype, device=v.device)
        return torch.matmul(v.reshape(v.shape[0], v.shape[2], v.shape[3]), ones)
    return v.sum(dim=(1, 3), dtype=torch.float32)


def _scratch(v: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """``v`` split along its sample axis into parts of at most _SCRATCH elements (one part
    when a sample is larger), and a buffer the size of the largest part: the scan's extra
    memory stays bounded however large an activation is."""
    row = max(1, v[0].numel())
    rows = max(1, _SCRATCH // row)
    parts = v.split(rows) if v.shape[0] > rows else (v,)
    return parts, torch.empty((min(rows, v.shape[0]), *v.shape[1:]), dtype=v.dtype,
                              device=v.device)


class TorchSiteAccumulator:
    """Streaming statistics of one site on one device."""

    def __init__(self, neurons: int, channel_axis: int, rule: SiteRule,
                 device: torch.device) -> None:
        self.neurons = neurons
        self.channel_axis = channel_axis
        self.rule = rule
        self.samples = 0
        self.elements = 0
        self.acc: dict[str, torch.Tensor] = {
            name: torch.full((neurons,), init, dtype=getattr(torch, dtype), device=device)
            for name, (_, dtype, init) in NEURON_FIELDS.items()
        }
        # Reading a value back is free on the CPU; on an accelerator it would stall the
        # queue, so there every batch takes the branch-free masked path.
        self.fast = device.type == "cpu"
        self._all_finite = 0
        self._positive_is_active = rule.intervals == (Interval(0.0, math.inf),)
        self._nonnegative = rule.kind in _NONNEGATIVE

    def _dims(self, ndim: int) -> tuple[list[int], list[int]]:
        reduce = [d for d in range(ndim) if d != self.channel_axis]
        per_sample = [d for d in reduce if d != 0]
        return reduce, per_sample

    def observe_input(self, z: torch.Tensor, prelu_weight: torch.Tensor | None = None
                      ) -> torch.Tensor | None:
        """Fold the pre-activation in; returns what :meth:`observe_output` needs: the finite
        mask, or None when every element was finite.

        Runs before the activation, so in-place activations are measured on their input.
        """
        z = z.detach()
        if z.ndim == 0:
            z = z.reshape(1)
        if self.fast and prelu_weight is None and z.is_floating_point():
            v = self._view(z)
            if v.shape[1] * v.shape[3] < _EXACT_COUNT:
                # One pass each; NaN propagates through amax/amin, so finite extremes of
                # every (sample, channel) slice prove the whole slice finite.
                mx, mn = _extremes(v)
                # NaN and ±Inf make the spread non-finite (so may a huge finite spread:
                # that only sends the batch down the masked path).
                if math.isfinite((mx - mn).sum(dtype=torch.float64).item()):
                    self._observe_finite(v, mx, mn)
                    return None
        return self._observe_general(z, prelu_weight)

    def _view(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` as (A, P, C, Q): A the sample axis (1 when the channel axis is the batch
        axis or the tensor has rank 1), C the channel axis, P and Q what lies around it."""
        axis = self.channel_axis
        if z.ndim >= 2 and axis != 0:
            return z.reshape(z.shape[0], math.prod(z.shape[1:axis]), z.shape[axis], -1)
        return z.reshape(1, math.prod(z.shape[:axis]), z.shape[axis], -1)

    def _observe_finite(self, v: torch.Tensor, mx: torch.Tensor, mn: torch.Tensor) -> None:
        """The all-finite fast path: a comparison and a sum per threshold, into a scratch
        buffer, counted per (sample, channel) in float32 (exact below 2**24 elements)."""
        a, p, _, q = v.shape
        per = p * q
        parts, buf = _scratch(v)

        def count(op: Any, bound: float) -> torch.Tensor:
            sums = [_sum(op(part, bound, out=buf[:len(part)])) for part in parts]
            return sums[0] if len(sums) == 1 else torch.cat(sums)

        acc = self.acc
        active: torch.Tensor | None = None
        for iv in self.rule.intervals:
            if iv.lo == -math.inf:
                part = torch.full(mx.shape, float(per), dtype=torch.float32, device=v.device)
            else:
                part = count(torch.ge if iv.lo_closed else torch.gt, iv.lo)
            if iv.hi != math.inf:
                part = part - count(torch.gt if iv.hi_closed else torch.ge, iv.hi)
            active = part if active is None else active + part
        if active is None:
            active = torch.zeros(mx.shape, dtype=torch.float32, device=v.device)
        counts = active.to(torch.int64)
        total = counts.sum(dim=0)
        acc["active"] += total
        acc["active_samples"] += (counts > 0).sum(dim=0)
        acc["positive"] += (total if self._positive_is_active
                            else count(torch.gt, 0.0).to(torch.int64).sum(dim=0))
        self._all_finite += a * per  # every element of every neuron: added in to_stats
        if self.rule.cap is not None:
            acc["at_cap"] += count(torch.ge, self.rule.cap[1]).to(torch.int64).sum(dim=0)
        torch.maximum(acc["max_pre"], mx.amax(dim=0), out=acc["max_pre"])
        torch.minimum(acc["min_pre"], mn.amin(dim=0), out=acc["min_pre"])
        self.samples += a
        self.elements += a * per

    def _observe_general(self, z: torch.Tensor, prelu_weight: torch.Tensor | None
                         ) -> torch.Tensor:
        if z.ndim == 1:  # one value per neuron: (C, 1), or sum(dim=[]) would sum them all
            z = z.reshape(-1, 1)
        reduce, per_sample = self._dims(z.ndim)
        finite = torch.isfinite(z)
        active = active_mask(z, self.rule.intervals)
        if prelu_weight is not None:
            active = active | (prelu_always_active(prelu_weight, self.rule.eps, z) & finite)
        acc = self.acc
        acc["active"] += active.sum(dim=reduce)
        # +Inf is not evidence of a live neuron: count finite positives only.
        acc["positive"] += ((z > 0) & finite).sum(dim=reduce)
        acc["finite"] += finite.sum(dim=reduce)
        if self.rule.cap is not None:
            acc["at_cap"] += ((z >= self.rule.cap[1]) & finite).sum(dim=reduce)
        neg_inf = torch.tensor(-torch.inf, dtype=z.dtype, device=z.device)
        pos_inf = torch.tensor(torch.inf, dtype=z.dtype, device=z.device)
        torch.maximum(acc["max_pre"], torch.where(finite, z, neg_inf).amax(dim=reduce),
                      out=acc["max_pre"])
        torch.minimum(acc["min_pre"], torch.where(finite, z, pos_inf).amin(dim=reduce),
                      out=acc["min_pre"])
        if z.ndim >= 2 and self.channel_axis != 0:
            per_sample_active = active.any(dim=per_sample) if per_sample else active
            # Remaining axes are (batch, channel) in that order.
            acc["active_samples"] += per_sample_active.sum(dim=0)
            self.samples += z.shape[0]
        else:
            acc["active_samples"] += active.reshape(self.neurons, -1).any(dim=1)
            self.samples += 1
        self.elements += z.numel() // self.neurons
        return finite

    def observe_output(self, h: torch.Tensor, finite: torch.Tensor | None) -> None:
        h = h.detach()
        if h.ndim == 0:
            h = h.reshape(1)
        if finite is None:  # the fast path: every input, so every output, was finite
            v = self._view(h)
            if self._nonnegative:
                sums = _sum(v)
            else:
                parts, buf = _scratch(v)
                sums = torch.cat([_sum(torch.abs(part, out=buf[:len(part)]))
                                  for part in parts])
            self.acc["abs_sum"] += sums.to(torch.float64).sum(dim=0)
            return
        if h.ndim == 1:
            h = h.reshape(-1, 1)
        reduce, _ = self._dims(h.ndim)
        magnitude = torch.where(finite, h.abs(), torch.zeros((), dtype=h.dtype, device=h.device))
        self.acc["abs_sum"] += magnitude.sum(dim=reduce, dtype=torch.float64)

    def to_stats(self) -> NeuronStats:
        arrays = {name: t.cpu().numpy().astype(NEURON_FIELDS[name][1])
                  for name, t in self.acc.items()}
        arrays["finite"] += self._all_finite
        return NeuronStats({k: np.asarray(v) for k, v in arrays.items()}, self.samples,
                           self.elements)
