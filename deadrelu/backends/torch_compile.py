"""``--compile``: the statistics computed inside a ``torch.compile``d graph.

The model is captured with ``torch.export`` (a ``.pt2`` already is), giving one FX graph of
ATen ops. Before each activation node we insert a node that reduces its pre-activation per
channel (the counts, extremes and per-sample activity of :mod:`deadrelu.measure`'s masked
path), after it one that sums ``|h|``. The graph's outputs gain those per-batch partials, and
one compiled step runs the graph and folds the partials into the accumulators in place. So
inductor sees the activation and its reductions together and fuses them; nothing leaves the
device until the scan ends, and the model's own output, which the scan never reads, is
dropped from the compiled code.

Sites and their names are those of :func:`deadrelu.backends.torch_export.planned_sites`, so a
compiled scan reports what an eager scan of the same model reports. The statistics are those
of the compiled model: where inductor computes a layer differently from eager (another
summation order in a convolution or a norm), a pre-activation can differ in its last bits.
"""

from __future__ import annotations

import math
import types
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
import torch.utils._pytree as pytree

from deadrelu.activations import Interval
from deadrelu.backends.sites import SiteInfo, SiteRegistry
from deadrelu.backends.torch_export import _channels_first, planned_sites, site_params
from deadrelu.errors import DeadReluError, first_line
from deadrelu.measure import SiteRule, TorchSiteAccumulator, active_mask, channel_axis_for
from deadrelu.measure import prelu_always_active as _prelu_always_active

_SUMS = ("active", "active_samples", "positive", "finite", "at_cap", "abs_sum")


@dataclass(eq=False)  # hashed by identity: FX keeps node targets in a lookup table
class _PreStats:
    """Inserted before an activation: per-channel partials of its pre-activation ``z``."""

    axis: int
    intervals: tuple[Interval, ...]
    cap_hi: float | None
    eps: float

    def __call__(self, z: torch.Tensor, weight: torch.Tensor | None = None) -> Any:
        shape = z.shape
        z = z.detach()
        if z.ndim <= 1:  # one value per neuron: (C, 1), as the eager masked path does
            z = z.reshape(-1, 1)
        reduce = [d for d in range(z.ndim) if d != self.axis]
        finite = torch.isfinite(z)
        active = active_mask(z, self.intervals)
        if weight is not None:
            active = active | (_prelu_always_active(weight, self.eps, z) & finite)
        out = {
            "active": active.sum(dim=reduce),
            "positive": ((z > 0) & finite).sum(dim=reduce),
            "finite": finite.sum(dim=reduce),
            "max_pre": torch.where(finite, z, -math.inf).amax(dim=reduce),
            "min_pre": torch.where(finite, z, math.inf).amin(dim=reduce),
        }
        if self.cap_hi is not None:
            out["at_cap"] = ((z >= self.cap_hi) & finite).sum(dim=reduce)
        if z.ndim >= 2 and self.axis != 0:
            per_sample = [d for d in reduce if d != 0]
            hit = active.any(dim=per_sample) if per_sample else active
            out["active_samples"] = hit.sum(dim=0)
        else:
            # The channel axis leads: one sample per batch, as the eager path counts.
            out["active_samples"] = active.reshape(z.shape[0], -1).any(dim=1).to(torch.int64)
        return out, finite, shape

    @property
    def __name__(self) -> str:  # FX codegen names the callable
        return "deadrelu_pre_stats"


@dataclass(eq=False)
class _PostStats:
    """Inserted after an activation: the per-channel sum of ``|h|`` over finite ``z``."""

    axis: int

    def __call__(self, h: torch.Tensor, pre: Any) -> Any:
        out, finite, shape = pre
        h = h.detach()
        if h.ndim <= 1:
            h = h.reshape(-1, 1)
        reduce = [d for d in range(h.ndim) if d != self.axis]
        magnitude = torch.where(finite, h.abs(), 0.0)
        return {**out, "abs_sum": magnitude.sum(dim=reduce, dtype=torch.float64)}, shape

    @property
    def __name__(self) -> str:
        return "deadrelu_post_stats"


@dataclass
class _Site:
    name: str
    kind: str
    params: dict[str, Any]
    axis: int
    neurons: int
    call: str
    module: str


def _instrument(gm: torch.fx.GraphModule, registry: SiteRegistry) -> list[_Site]:
    """Insert the statistics nodes and make the graph return (its output, [site partials])."""
    graph = gm.graph
    sites: list[_Site] = []
    partials: list[torch.fx.Node] = []
    for node, name, kind, call, module in planned_sites(gm):
        z = node.args[0] if node.args else node.kwargs.get("self", node.kwargs.get("input"))
        if not isinstance(z, torch.fx.Node):
            continue
        val = z.meta.get("val")
        if not isinstance(val, torch.Tensor) or not val.is_floating_point():
            continue  # the eager scan skips integer activations too
        consts = [a.meta.get("val") if isinstance(a, torch.fx.Node) else a for a in node.args]
        kind, params = site_params(kind, tuple(consts), dict(node.kwargs))
        scalar = {k: v for k, v in params.items() if not isinstance(v, torch.Tensor)}
        try:
            axis = channel_axis_for(val.ndim, _channels_first(z), registry.channel_axis)
        except ValueError as exc:
            raise DeadReluError(f"site {name}: {exc}") from None
        neurons = val.shape[axis] if val.ndim >= 1 else 1
        if not isinstance(neurons, int):
            raise DeadReluError(f"--compile: site {name} has a number of neurons that depends "
                                "on the input shape; scan without --compile")
        rule = SiteRule(kind, scalar, registry.settings.eps)
        weight = node.args[1] if kind == "prelu" and len(node.args) > 1 else None
        with graph.inserting_before(node):
            pre = graph.call_function(
                _PreStats(axis, rule.intervals, rule.cap[1] if rule.cap else None,
                          rule.eps), (z, weight))
        with graph.inserting_after(node):
            partials.append(graph.call_function(_PostStats(axis), (node, pre)))
        sites.append(_Site(name, kind, scalar, axis, neurons, call, module))
    output = next(n for n in graph.nodes if n.op == "output")
    (flat,) = output.args
    flat = flat if isinstance(flat, (list, tuple)) else (flat,)
    output.args = ((*flat, *partials),)
    codegen: Any = graph._codegen
    info = codegen.pytree_info
    leaves = [0] * info.out_spec.num_leaves
    spec = pytree.tree_structure((pytree.tree_unflatten(leaves, info.out_spec),
                                  [0] * len(partials)))
    codegen.pytree_info = info._replace(out_spec=spec)
    gm.recompile()
    return sites


def _step(gm: torch.nn.Module, accs: list[dict[str, torch.Tensor]],
          *args: torch.Tensor) -> list[Any]:
    """One batch: run the graph and fold its partials into ``accs`` in place (compiled)."""
    _, partials = gm(*args)
    shapes = []
    for acc, (part, shape) in zip(accs, partials, strict=True):
        for name in _SUMS:
            if name in part:
                acc[name].add_(part[name])
        acc["max_pre"].copy_(torch.maximum(acc["max_pre"], part["max_pre"]))
        acc["min_pre"].copy_(torch.minimum(acc["min_pre"], part["min_pre"]))
        shapes.append(shape)
    return shapes


@dataclass
class _Compiled:
    step: Callable[..., list[Any]]
    sites: list[_Site]
    static: list[tuple[int | None, ...] | None]  # input shapes the graph was captured for

    def accepts(self, args: Sequence[torch.Tensor]) -> bool:
        if len(args) != len(self.static):
            return False
        for a, want in zip(args, self.static, strict=True):
            if want is None:
                continue
            if a.ndim != len(want) or any(w is not None and w != g
                                          for g, w in zip(a.shape, want, strict=True)):
                return False
        return True


def _export(module: torch.nn.Module, args: Sequence[torch.Tensor]) -> Any:
    dims = tuple({0: torch.export.Dim.AUTO} if a.ndim >= 1 else None for a in args)
    try:
        return torch.export.export(module, tuple(args), dynamic_shapes=dims, strict=False)
    except Exception as exc:  # export fails in many ways; each is "cannot be captured"
        raise DeadReluError(f"--compile: torch.export cannot capture the model "
                            f"({first_line(exc)}); scan without --compile") from None


def _build(gm: torch.fx.GraphModule, registry: SiteRegistry) -> _Compiled:
    sites = _instrument(gm, registry)
    static: list[tuple[int | None, ...] | None] = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            val = node.meta.get("val")
            static.append(tuple(d if isinstance(d, int) else None for d in val.shape)
                          if isinstance(val, torch.Tensor) else None)
    # Dynamo caches compiled code per code object, at most recompile_limit (8) entries, a hard
    # error under fullgraph: a fresh copy of _step's code per graph keeps scans independent.
    fresh = types.FunctionType(_step.__code__.replace(), _step.__globals__, "_step")
    compiled = torch.compile(fresh, fullgraph=True)

    def step(accs: list[dict[str, torch.Tensor]], *args: torch.Tensor) -> list[Any]:
        return compiled(gm, accs, *args)

    return _Compiled(step, sites, static)


# A module scanned again with the same weights, device and settings reuses its compiled step
# (the bench scans one model many times; a training loop scans after each epoch, and its
# weights' in-place updates change their version counters, so those scans capture afresh).
_CACHE: weakref.WeakKeyDictionary[torch.nn.Module, tuple[Any, list[_Compiled]]] = \
    weakref.WeakKeyDictionary()


def _fingerprint(module: torch.nn.Module, registry: SiteRegistry) -> Any:
    state = [(id(t), t._version, t.dtype, t.device)
             for t in (*module.parameters(), *module.buffers())]
    return (str(registry.device), registry.settings.eps, registry.channel_axis, tuple(state))


class CompiledScan:
    """Runs batches through the compiled, instrumented graph of a module or program."""

    def __init__(self, registry: SiteRegistry, *, module: torch.nn.Module | None = None,
                 graph: torch.fx.GraphModule | None = None,
                 cache_key: torch.nn.Module | None = None) -> None:
        """``module``: an eager module, captured with torch.export at the first batch;
        ``graph``: an exported program's module (a .pt2), instrumented in place."""
        self.registry = registry
        self.module = module
        self.graph = graph
        self.entries: list[_Compiled] = []
        self.accs: dict[str, TorchSiteAccumulator] = {}
        if module is not None and cache_key is not None:
            key = _fingerprint(module, registry)
            cached = _CACHE.get(cache_key)
            if cached is None or cached[0] != key:
                cached = (key, [])
                _CACHE[cache_key] = cached
            self.entries = cached[1]

    def _entry(self, args: Sequence[torch.Tensor]) -> _Compiled:
        for entry in self.entries:
            if entry.accepts(args):
                return entry
        if self.graph is not None:
            if self.entries:  # a .pt2 whose shapes do not fit: the program itself says how
                return self.entries[0]
            gm = self.graph
        else:
            assert self.module is not None
            gm = _export(self.module, args).module()
        entry = _build(gm, self.registry)
        self.entries.append(entry)
        return entry

    def __call__(self, args: Sequence[torch.Tensor]) -> None:
        entry = self._entry(args)
        accs = [self._accumulator(site, args).acc for site in entry.sites]
        try:
            shapes = entry.step(accs, *args)
        except torch._dynamo.exc.TorchDynamoException as exc:
            raise DeadReluError(f"--compile: torch.compile failed ({first_line(exc)}); scan "
                                "without --compile") from None
        for site, shape in zip(entry.sites, shapes, strict=True):
            acc = self.registry.accs[site.name]
            info = self.registry.infos[site.name]
            if not info.shape:
                info.shape = tuple(int(d) for d in shape)
            dims = [int(d) for d in shape] or [1]
            if len(dims) >= 2 and site.axis != 0:
                acc.samples += dims[0]
            else:
                acc.samples += 1
            acc.elements += math.prod(dims) // site.neurons

    def _accumulator(self, site: _Site, args: Sequence[torch.Tensor]) -> TorchSiteAccumulator:
        registry = self.registry
        acc = registry.accs.get(site.name)
        if acc is None:
            rule = SiteRule(site.kind, site.params, registry.settings.eps)
            acc = TorchSiteAccumulator(site.neurons, site.axis, rule, registry.device)
            registry.accs[site.name] = acc
            registry.infos[site.name] = SiteInfo(site.name, site.kind, site.axis,
                                                 site.neurons, (), site.call, site.module,
                                                 site.params)
        elif acc.neurons != site.neurons:
            raise DeadReluError(f"site {site.name} changed shape between batches; its "
                                "neurons must stay the same")
        return acc
