"""Swap activation modules of an eager ``nn.Module`` (the pickled ``.pt`` output).

Only built-in torch modules go in (``nn.LeakyReLU``, ``nn.ELU``, ``nn.PReLU``), so the saved
model needs nothing but torch and the user's own classes. A module swap changes every call of
that module, and cannot reach a functional ``F.relu`` in ``forward``: such sites are refused
with the reason, never patched at the wrong call. The ``.pt2`` output rewrites the graph and
handles them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from deadrelu.patch.plan import Plan, PlannedSite

_PT2 = "write -o FILE.pt2 (a graph rewrite) to patch it"


def check_module_sites(model: torch.nn.Module, plan: Plan, all_sites: Sequence[Any]) -> None:
    """Mark planned sites a module swap cannot patch exactly as skipped, with the reason."""
    modules = dict(model.named_modules())
    calls: dict[str, list[str]] = {}
    for s in all_sites:
        if s.info.call == "module":
            calls.setdefault(s.info.module, []).append(s.name)
    active = {p.name: p for p in plan.active}
    for p in plan.active:
        rw = p.rewrite
        assert rw is not None
        if p.call != "module" or p.module not in modules:
            p.skipped = f"a functional call inside {p.module}.forward, not a module: {_PT2}"
        elif not isinstance(modules[p.module], (torch.nn.ReLU, torch.nn.ReLU6)):
            p.skipped = f"{type(modules[p.module]).__name__} is not nn.ReLU: {_PT2}"
        elif rw.cap is not None:
            p.skipped = f"no built-in torch module computes a capped {rw.describe()}: {_PT2}"
        elif rw.op == "prelu" and p.rank > 2 and p.channel_axis != 1:
            p.skipped = (f"nn.PReLU acts on axis 1, this site's neurons are on axis "
                         f"{p.channel_axis}: use --scope layers")
        elif len(calls.get(p.module, [])) > 1:
            others = calls[p.module]
            same = all(n in active and active[n].rewrite == rw for n in others)
            if not same or rw.op == "prelu":
                p.skipped = (f"module {p.module} is called at {len(others)} sites "
                             f"({', '.join(others)}); swapping it would change them all: {_PT2}")


def swap_modules(model: torch.nn.Module, plan: Plan) -> None:
    """Replace the module of every active planned site, in place."""
    for p in plan.active:
        old = model.get_submodule(p.module)
        _set(model, p.module, _new_module(p, old))


def _new_module(p: PlannedSite, old: torch.nn.Module) -> torch.nn.Module:
    rw = p.rewrite
    assert rw is not None
    inplace = bool(getattr(old, "inplace", False))
    new: torch.nn.Module
    if rw.op == "leaky_relu":
        new = torch.nn.LeakyReLU(rw.alpha, inplace=inplace)
    elif rw.op == "elu":
        new = torch.nn.ELU(rw.alpha, inplace=inplace)
    else:
        assert rw.slopes is not None
        new = torch.nn.PReLU(num_parameters=len(rw.slopes))
        with torch.no_grad():
            new.weight.copy_(torch.tensor(rw.slopes))
    ref = next(iter(p_ for p_ in _params(old)), None)
    return new.to(ref.device) if ref is not None else new


def _params(m: torch.nn.Module) -> list[torch.Tensor]:
    return list(m.parameters()) + list(m.buffers())


def _set(model: torch.nn.Module, path: str, new: torch.nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, new)


def unimportable_classes(model: torch.nn.Module) -> list[str]:
    """Classes a plain ``torch.load`` could not import back (deadrelu's --arch file loader,
    ``__main__``)."""
    bad = []
    for m in model.modules():
        mod = type(m).__module__
        if mod.startswith("_deadrelu_user_") or mod == "__main__":
            bad.append(type(m).__qualname__)
    return list(dict.fromkeys(bad))


# ------------------------------------------------------------------ bias compensation

def module_consumers(model: torch.nn.Module, plan: Plan, example: Sequence[torch.Tensor]
                     ) -> dict[str, tuple[str | None, str]]:
    """site -> (path of the nn.Linear / 1×1 nn.Conv that reads its output, or None, why)."""
    # Held (not only their addresses) so that no later tensor can reuse a site output's memory.
    out_storage: dict[int, tuple[str, torch.Tensor]] = {}
    found: dict[str, tuple[str | None, str]] = {
        p.name: (None, "no Linear / 1×1 Conv reads its output (directly or through a view)")
        for p in plan.active}
    handles = []
    modules = dict(model.named_modules())
    by_module = {p.module: p.name for p in plan.active}

    def after(path: str) -> Any:
        def hook(mod: torch.nn.Module, args: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                out_storage[out.untyped_storage().data_ptr()] = (by_module[path], out)
        return hook

    def before(path: str) -> Any:
        def hook(mod: torch.nn.Module, args: Any) -> None:
            if not args or not isinstance(args[0], torch.Tensor):
                return
            hit = out_storage.get(args[0].untyped_storage().data_ptr())
            if hit is None or found[hit[0]][0] is not None:
                return
            site = hit[0]
            if mod.bias is None:
                found[site] = (None, f"the consumer {path} has no bias")
            elif isinstance(mod, torch.nn.modules.conv._ConvNd) and (
                    any(k != 1 for k in mod.kernel_size) or mod.groups != 1
                    or mod.padding not in ((0,), (0, 0), (0, 0, 0))
                    or isinstance(mod, torch.nn.modules.conv._ConvTransposeNd)):
                found[site] = (None, f"the consumer {path} is a Conv that is not 1×1")
            else:
                found[site] = (path, "")
        return hook

    try:
        for path in by_module:
            handles.append(modules[path].register_forward_hook(after(path)))
        for path, mod in modules.items():
            if isinstance(mod, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)):
                handles.append(mod.register_forward_pre_hook(before(path)))
        with torch.no_grad():
            model(*example)
    finally:
        for h in handles:
            h.remove()
    return found


def module_input_means(model: torch.nn.Module, paths: Sequence[str], run: Any
                       ) -> dict[str, np.ndarray]:
    from deadrelu.patch.torch_graph import MeanRecorder

    recorders = {}
    handles = []
    for path in paths:
        mod = model.get_submodule(path)
        rec = MeanRecorder(-1 if isinstance(mod, torch.nn.Linear) else 1)
        recorders[path] = rec
        handles.append(mod.register_forward_pre_hook(lambda m, a, r=rec: r(a[0])))
    try:
        run(model)
    finally:
        for h in handles:
            h.remove()
    return {p: r.mean() for p, r in recorders.items()}


def fold_module_bias(model: torch.nn.Module, path: str, shift: np.ndarray) -> None:
    mod = model.get_submodule(path)
    weight, bias = mod.weight, mod.bias
    assert isinstance(weight, torch.Tensor) and isinstance(bias, torch.Tensor)
    w2 = weight.detach().double().reshape(weight.shape[0], -1)
    delta = w2 @ torch.from_numpy(shift).to(w2.device)
    with torch.no_grad():
        bias.copy_((bias.double() - delta).to(bias.dtype))
