"""Per-batch statistics of one site, computed with torch on the model's device.

One site's pre-activation ``z`` is reduced over every axis but the channel axis into the
accumulators of :mod:`deadrelu.stats`. Everything stays on the device; the only host sync is
:meth:`TorchSiteAccumulator.to_stats` at the end of the scan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deadrelu.activations import Interval, active_set, cap_bounds
from deadrelu.stats import NEURON_FIELDS, NeuronStats


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

    def _dims(self, ndim: int) -> tuple[list[int], list[int]]:
        reduce = [d for d in range(ndim) if d != self.channel_axis]
        per_sample = [d for d in reduce if d != 0]
        return reduce, per_sample

    def observe_input(self, z: torch.Tensor, prelu_weight: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """Fold the pre-activation in; returns the finite mask for :meth:`observe_output`.

        Runs before the activation, so in-place activations are measured on their input.
        """
        z = z.detach()
        if z.ndim == 0:
            z = z.reshape(1)
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

    def observe_output(self, h: torch.Tensor, finite: torch.Tensor) -> None:
        h = h.detach()
        if h.ndim == 0:
            h = h.reshape(1)
        reduce, _ = self._dims(h.ndim)
        magnitude = torch.where(finite, h.abs(), torch.zeros((), dtype=h.dtype, device=h.device))
        self.acc["abs_sum"] += magnitude.sum(dim=reduce, dtype=torch.float64)

    def to_stats(self) -> NeuronStats:
        arrays = {name: t.cpu().numpy().astype(NEURON_FIELDS[name][1])
                  for name, t in self.acc.items()}
        return NeuronStats({k: np.asarray(v) for k, v in arrays.items()}, self.samples,
                           self.elements)
