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
# Elements per part of the fast path (4 MiB of float32): a part stays in the last-level
# cache between passes. Measured on a 2-core EPYC (32 MiB L3): 1-4 MiB parts beat both
# smaller ones (per-op overhead) and whole 12-49 MiB activations (memory bandwidth).
_PART = 2**20
# The masked path's slices (elements): its half-dozen bool masks and float where()s of one
# slice stay near 50 MB however large an activation is.
_GENERAL_PART = 2**22
# Kinds whose output is >= 0 wherever the input is finite: |h| = h.
_NONNEGATIVE = frozenset({"relu", "relu6", "softplus", "sigmoid", "hardsigmoid"})


# observe_input's finite mask for observe_output: one, or one per slice of the samples.
# A slice's None: all of it finite (kept on the CPU only, where checking costs nothing).
FiniteMask = torch.Tensor | tuple[torch.Tensor | None, ...]


def channel_axis_for(ndim: int, channels_first: bool, override: int | None = None) -> int:
    """design.md §1: axis 1 for rank >= 4 or channel-first producers, else the last axis."""
    if ndim <= 1:
        return 0
    if override is not None:
        axis = override if override >= 0 else ndim + override
        if not 0 <= axis < ndim:
            raise ValueError(f"--channel-axis {override} is out of range for rank {ndim}")
        if axis == 0:  # its "neurons" would be the batch's slots
            raise ValueError(f"--channel-axis {override} is the batch axis of a rank-{ndim} "
                             "site")
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


def _extremes_into(v: torch.Tensor, out: torch.Tensor, buf: torch.Tensor) -> None:
    """Per (sample, channel) max and *negated* min of ``v`` (A, P, C, Q) into ``out``
    (2, A, C), so that one max reduces both over batches; NaN propagates. ``buf``: scratch
    of v's shape."""
    a, _, c, q = v.shape
    if _small_inner(v):
        # A max-pool of width Q is 3x faster than amax there.
        out[0].copy_(F.max_pool1d(v.reshape(a, 1, c * q), q).reshape(a, c))
        negated = torch.neg(v, out=buf).reshape(a, 1, c * q)
        out[1].copy_(F.max_pool1d(negated, q).reshape(a, c))
        return
    torch.amax(v, dim=(1, 3), out=out[0])
    torch.amin(v, dim=(1, 3), out=out[1]).neg_()


def _sum_into(v: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Per (sample, channel) float32 sum of ``v`` (A, P, C, Q) into ``out`` (A, C); exact
    for 0/1 counts."""
    if _small_inner(v):
        ones = torch.ones(v.shape[3], dtype=v.dtype, device=v.device)
        return torch.matmul(v.reshape(v.shape[0], v.shape[2], v.shape[3]), ones, out=out)
    return torch.sum(v, dim=(1, 3), dtype=torch.float32, out=out)


def _sum(v: torch.Tensor) -> torch.Tensor:
    out = torch.empty((v.shape[0], v.shape[2]), dtype=torch.float32, device=v.device)
    return _sum_into(v, out)


def _split(v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``v`` split along its sample axis into parts of at most _PART elements (one sample
    per part when a sample is larger)."""
    row = max(1, math.prod(v.shape[1:]))  # no v[0]: one torch call less per site
    rows = max(1, _PART // row)
    return v.split(rows) if v.shape[0] > rows else (v,)


def _parts(v: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """:func:`_split`'s parts of ``v`` and a scratch buffer the size of the largest part.

    Every pass of the fast path runs part by part, so that the second and later passes read
    the part from the cache instead of memory (2x faster on a 49 MiB activation); it also
    bounds the scan's extra memory however large an activation is: every per-(sample,
    channel) figure of a part is folded into per-neuron sums before the next part, so only
    one part's figures are alive at a time.
    """
    parts = _split(v)
    return parts, torch.empty((len(parts[0]), *v.shape[1:]), dtype=v.dtype, device=v.device)


def _columns(v: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor] | None:
    """With one element per (sample, channel) (A, 1, C, 1) and more than _PART elements:
    ``v`` as one "sample" of A elements per channel (1, A, C, 1), split into blocks of
    channels of at most _PART elements, and a scratch buffer the size of a block; else None.

    Per-(sample, channel) figures of such a batch would each be as large as the activation;
    these blocks reduce it straight over its samples, a cache-sized block at a time. Counts
    stay exact (A < 2**24); |h| is summed in float32 over the batch's A values per neuron, as
    over a sample's elements elsewhere, and in float64 across batches.
    """
    a, p, c, q = v.shape
    if p * q != 1 or not 1 < a < _EXACT_COUNT or a * c <= _PART:
        return None
    width = max(1, _PART // a)
    w = v.reshape(1, a, c, 1)
    return w.split(width, dim=2), torch.empty((1, a, min(width, c), 1), dtype=v.dtype,
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
        # Kinds whose output is clamp(z, lo, hi) with lo >= 0: the fast path sums it from z.
        self._output_is_clamp: tuple[float, float | None] | None = (
            (0.0, None) if rule.kind == "relu"
            else (rule.cap[0], rule.cap[1]) if rule.cap is not None and rule.cap[0] >= 0
            else None)
        self._output_folded = False
        # The fast path's per-neuron sums, one row per field (float64: exact for counts
        # below 2**53), and its [max, -min] of z; both folded into acc by to_stats.
        self._rows: list[str] = ["active", "active_samples"]  # abs_sum last: optional
        if not self._positive_is_active:
            self._rows.append("positive")
        if rule.cap is not None:
            self._rows.append("at_cap")
        if self._output_is_clamp is not None:
            self._rows.append("abs_sum")
        self._sums: torch.Tensor | None = None
        self._extremes: torch.Tensor | None = None

    def _dims(self, ndim: int) -> tuple[list[int], list[int]]:
        reduce = [d for d in range(ndim) if d != self.channel_axis]
        per_sample = [d for d in reduce if d != 0]
        return reduce, per_sample

    def observe_input(self, z: torch.Tensor, prelu_weight: torch.Tensor | None = None
                      ) -> FiniteMask | None:
        """Fold the pre-activation in; returns what :meth:`observe_output` needs: the finite
        mask, or None when every element was finite.

        Runs before the activation, so in-place activations are measured on their input.
        """
        z = z.detach()
        if z.ndim == 0:
            z = z.reshape(1)
        self._output_folded = False
        if self.fast and prelu_weight is None and z.is_floating_point():
            v = self._view(z)
            if v.shape[1] * v.shape[3] < _EXACT_COUNT and self._observe_finite(v):
                return None
        return self._observe_general(z, prelu_weight)

    def _view(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` as (A, P, C, Q): A the sample axis (1 when the channel axis is the batch
        axis or the tensor has rank 1), C the channel axis, P and Q what lies around it."""
        axis = self.channel_axis
        if z.ndim >= 2 and axis != 0:
            return z.reshape(z.shape[0], math.prod(z.shape[1:axis]), z.shape[axis], -1)
        return z.reshape(1, math.prod(z.shape[:axis]), z.shape[axis], -1)

    def _observe_finite(self, v: torch.Tensor) -> bool:
        """The all-finite fast path. Folds the batch in and returns True, or returns False
        with nothing folded in when some element is NaN or ±Inf.

        Every per-(sample, channel) figure of a part is written into one array, so that one
        sum and one max fold them in: on small feature maps (one part) the cost is the number
        of torch calls, not the bytes. Larger batches never hold every sample's figures: with
        one element per (sample, channel), a Linear layer's, they would be as large as the
        activation, several times over. There the batch is reduced straight over its samples,
        a block of channels at a time (:meth:`_observe_columns`); otherwise each part's
        figures are folded into per-neuron sums before the next part (:meth:`_fold_parts`).
        """
        a, _, c, _ = v.shape
        columns = _columns(v)
        parts, buf = _parts(v) if columns is None else columns
        # A clamp's |h| is summed from z here when z spans several parts: the post-hook's
        # pass over h would read it from memory, while each part is in the cache now.
        fold = self._output_is_clamp is not None and len(parts) > 1
        used = len(self._rows) - (self._output_is_clamp is not None and not fold)
        fig = torch.empty((used + 2, len(parts[0]), c), dtype=torch.float32, device=v.device)
        ext = torch.empty((2, len(parts[0]), c), dtype=v.dtype, device=v.device)
        batch_sums: torch.Tensor
        if columns is not None:
            self._observe_columns(parts, buf, fig, ext, fold)
            # One element per (sample, channel): samples with an active element are the
            # active elements. f64 += f32 below: counts below 2**24, exact.
            fig[1].copy_(fig[0])
            batch_sums, batch_ext = fig[:used, 0], ext[:, 0]
        elif len(parts) == 1:
            _extremes_into(v, ext, buf)
            self._figures_into(v, buf, fig.unbind(0), fold)
            torch.gt(fig[0], 0, out=fig[1])  # samples with an active element
            batch_sums = fig[:used].sum(dim=1, dtype=torch.float64)
            batch_ext = ext.amax(dim=1)
        else:
            batch_sums, batch_ext = self._fold_parts(parts, buf, fig, ext, used, fold)
        # NaN propagates through max and min, so finite extremes of every neuron prove the
        # batch finite; ±Inf makes the sum non-finite (float64: no overflow of finite ones).
        if not math.isfinite(batch_ext.sum(dtype=torch.float64).item()):
            return False
        sums, extremes = self._sums, self._extremes
        if sums is None or extremes is None:
            sums = self._sums = torch.zeros((len(self._rows), c), dtype=torch.float64,
                                            device=v.device)
            extremes = self._extremes = torch.full((2, c), -math.inf, dtype=torch.float64,
                                                   device=v.device)
        sums[:used] += batch_sums
        torch.maximum(extremes, batch_ext, out=extremes)
        self._output_folded = fold
        per = v.shape[1] * v.shape[3]
        self._all_finite += a * per  # every element of every neuron: added in to_stats
        self.samples += a
        self.elements += a * per
        return True

    def _observe_columns(self, blocks: Sequence[torch.Tensor], buf: torch.Tensor,
                         fig: torch.Tensor, ext: torch.Tensor, fold: bool) -> None:
        """Figures and extremes of ``blocks``, (1, A, width, 1) blocks of channels of a batch
        with one element per (sample, channel), into ``fig`` and ``ext`` (k, 1, C): each a
        sum or extreme over the A samples, so nothing is as large as the activation."""
        start = 0
        for block in blocks:
            end = start + block.shape[2]
            scratch = buf[:, :, :end - start]
            _extremes_into(block, ext[:, :, start:end], scratch)
            self._figures_into(block, scratch, fig[:, :, start:end].unbind(0), fold)
            start = end

    def _fold_parts(self, parts: Sequence[torch.Tensor], buf: torch.Tensor,
                    fig: torch.Tensor, ext: torch.Tensor, used: int, fold: bool
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's per-neuron float64 sums of the first ``used`` rows of figures and its
        [max, -min], folded part by part into buffers allocated once: only one part's
        figures are alive at a time, and no part allocates (fresh pages cost more than the
        arithmetic on a wide site). A part's float32 sum over its samples is exact for
        counts, a part holding at most _PART elements; a folded clamp's |h| is then a float32
        sum over at most _PART elements, as a sample's already is, and float64 across parts."""
        c = fig.shape[2]
        rows = fig.shape[1]
        one = rows == 1  # a sample per part: its figures are the part's sums already
        counts = fig[:used, 0] if one else torch.empty((used, c), dtype=torch.float32,
                                                         device=fig.device)
        top = ext[:, 0] if one else torch.empty((2, c), dtype=ext.dtype, device=ext.device)
        sums = torch.empty((used, c), dtype=torch.float64, device=fig.device)
        wide = torch.empty_like(sums)
        extremes = torch.empty_like(top)
        for i, part in enumerate(parts):
            n = len(part)
            part_fig, part_ext = fig[:, :n], ext[:, :n]
            _extremes_into(part, part_ext, buf[:n])
            self._figures_into(part, buf[:n], part_fig.unbind(0), fold)
            torch.gt(part_fig[0], 0, out=part_fig[1])  # samples with an active element
            if not one:
                torch.sum(part_fig[:used], dim=1, out=counts)
                torch.amax(part_ext, dim=1, out=top)
            if i == 0:
                sums.copy_(counts)
                extremes.copy_(top)
            else:
                # f64 += f32 in one call is 5x slower than a conversion and a same-type add.
                sums.add_(wide.copy_(counts))
                torch.maximum(extremes, top, out=extremes)
        return sums, extremes

    def _figures_into(self, part: torch.Tensor, buf: torch.Tensor,
                      fig: Sequence[torch.Tensor], fold: bool) -> None:
        """The rows of :attr:`_rows` for one part (A, P, C, Q), each (A, C): float32 counts
        (exact below 2**24 elements), each a compare into ``buf`` and its sum; with
        ``fold``, the sum of the clamp's output. The last two rows of ``fig`` are scratch."""

        def count(op: Any, bound: float, out: torch.Tensor) -> torch.Tensor:
            return _sum_into(op(part, bound, out=buf), out)

        active = fig[0]
        for i, iv in enumerate(self.rule.intervals):
            got = active if i == 0 else fig[-2]
            if iv.lo == -math.inf:
                got.fill_(float(part.shape[1] * part.shape[3]))
            else:
                count(torch.ge if iv.lo_closed else torch.gt, iv.lo, got)
            if iv.hi != math.inf:
                got.sub_(count(torch.gt if iv.hi_closed else torch.ge, iv.hi, fig[-1]))
            if i > 0:
                active.add_(got)
        if not self.rule.intervals:
            active.zero_()
        row = 2
        if not self._positive_is_active:
            count(torch.gt, 0.0, fig[row])
            row += 1
        if self.rule.cap is not None:
            count(torch.ge, self.rule.cap[1], fig[row])
            row += 1
        if fold:
            assert self._output_is_clamp is not None
            # h = clamp(z) >= 0 exactly, so its sum is |h|'s.
            _sum_into(torch.clamp(part, *self._output_is_clamp, out=buf), fig[row])

    def _observe_general(self, z: torch.Tensor, prelu_weight: torch.Tensor | None
                         ) -> FiniteMask:
        """The masked path, over slices of at most _GENERAL_PART elements along the sample
        axis: its masks and where()s each hold a copy of what they read, so a whole large
        activation would cost several times its size (on a GPU every batch comes here)."""
        if z.ndim == 1:  # one value per neuron: (C, 1), or sum(dim=[]) would sum them all
            z = z.reshape(-1, 1)
        rows = self._general_rows(z)
        if rows is None:
            return self._observe_general_part(z, prelu_weight)
        masks = [self._observe_general_part(part, prelu_weight) for part in z.split(rows)]
        if self.fast:  # on the CPU reading a value back is free: keep only masks with a hole
            return tuple(None if bool(m.all()) else m for m in masks)
        return tuple(masks)

    def _general_rows(self, t: torch.Tensor) -> int | None:
        """Samples per slice of the masked path, or None for the whole tensor at once."""
        if t.ndim < 2 or self.channel_axis == 0 or t.numel() <= _GENERAL_PART \
                or t.shape[0] < 2:
            return None
        return max(1, _GENERAL_PART // max(1, t.numel() // t.shape[0]))

    def _observe_general_part(self, z: torch.Tensor, prelu_weight: torch.Tensor | None
                              ) -> torch.Tensor:
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

    def observe_output(self, h: torch.Tensor, finite: FiniteMask | None) -> None:
        h = h.detach()
        if h.ndim == 0:
            h = h.reshape(1)
        if finite is None:  # the fast path: every input, so every output, was finite
            if self._output_folded:
                return
            v = self._view(h)
            columns = _columns(v)
            total = self.acc["abs_sum"]
            if columns is not None:
                # A sum over the samples per block of channels: no per-sample sums.
                blocks, buf = columns
                sums = torch.empty((1, v.shape[2]), dtype=torch.float32, device=v.device)
                start = 0
                for block in blocks:
                    end = start + block.shape[2]
                    scratch = buf[:, :, :end - start]
                    _sum_into(block if self._nonnegative else torch.abs(block, out=scratch),
                              sums[:, start:end])
                    start = end
                total += sums[0]
                return
            parts = _split(v)
            if self._nonnegative and len(parts) == 1:
                total += _sum(v).sum(dim=0, dtype=torch.float64)
                return
            # Part by part, each folded in before the next: the whole batch's per-(sample,
            # channel) sums would be as large as h where a sample is small.
            spare = None if self._nonnegative else torch.empty(
                (len(parts[0]), *v.shape[1:]), dtype=v.dtype, device=v.device)
            sums = torch.empty((len(parts[0]), v.shape[2]), dtype=torch.float32,
                               device=v.device)
            for part in parts:
                n = len(part)
                _sum_into(part if spare is None else torch.abs(part, out=spare[:n]),
                          sums[:n])
                total += sums[:n].sum(dim=0, dtype=torch.float64)
            return
        if h.ndim == 1:
            h = h.reshape(-1, 1)
        reduce, _ = self._dims(h.ndim)
        masks = finite if isinstance(finite, tuple) else (finite,)
        rows = self._general_rows(h)
        parts = h.split(rows) if len(masks) > 1 and rows is not None else (h,)
        zero = torch.zeros((), dtype=h.dtype, device=h.device)
        for part, mask in zip(parts, masks, strict=True):
            magnitude = part.abs() if mask is None else torch.where(mask, part.abs(), zero)
            self.acc["abs_sum"] += magnitude.sum(dim=reduce, dtype=torch.float64)

    def to_stats(self) -> NeuronStats:
        arrays = {name: t.cpu().numpy().astype(NEURON_FIELDS[name][1])
                  for name, t in self.acc.items()}
        arrays["finite"] += self._all_finite
        if self._sums is not None and self._extremes is not None:
            sums = self._sums.cpu().numpy()
            for name, row in zip(self._rows, sums, strict=True):
                arrays[name] += row.astype(arrays[name].dtype)  # counts: exact integers
            if self._positive_is_active:
                arrays["positive"] += sums[0].astype(np.int64)
            top, neg_bottom = self._extremes.cpu().numpy()
            np.maximum(arrays["max_pre"], top, out=arrays["max_pre"])
            np.minimum(arrays["min_pre"], -neg_bottom, out=arrays["min_pre"])
        return NeuronStats({k: np.asarray(v) for k, v in arrays.items()}, self.samples,
                           self.elements)
