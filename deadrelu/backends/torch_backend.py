"""The torch backends: an eager ``nn.Module`` or a ``torch.export`` program, run over batches."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deadrelu.backends.sites import SiteRegistry, SiteResult
from deadrelu.backends.torch_compile import CompiledScan
from deadrelu.backends.torch_eager import capture
from deadrelu.backends.torch_export import instrument, planned_sites
from deadrelu.batching import FixedBatch
from deadrelu.data import InputSpec
from deadrelu.distributed import group_rank
from deadrelu.errors import DeadReluError, first_line

OnBatch = Callable[[int], None]


def eager_inputs(model: torch.nn.Module) -> list[InputSpec]:
    """Input names from ``forward``'s required parameters; shapes are unknown."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return [InputSpec("input", None)]
    names = [p.name for p in params
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    specs = [InputSpec(n, None) for n in names] or [InputSpec("input", None)]
    if len(specs) == 1 and _starts_with_embedding(model):
        # Token ids: synthetic inputs (sites, a scan without --data) are integers then.
        specs = [InputSpec(specs[0].name, None, "int64")]
    return specs


def _starts_with_embedding(model: torch.nn.Module) -> bool:
    first = next((m for m in model.modules() if not any(True for _ in m.children())), None)
    return isinstance(first, torch.nn.Embedding | torch.nn.EmbeddingBag)


def eager_optional_inputs(model: torch.nn.Module) -> list[InputSpec]:
    """``forward``'s parameters with a default (``mask=None``), passed by name: fed when the
    data names an array after one, else left to their default."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [InputSpec(p.name, None) for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty]


def export_inputs(program: Any) -> list[InputSpec]:
    """Input names, shapes (symbolic dims as None) and dtypes of an ExportedProgram."""
    user = [s.arg.name for s in program.graph_signature.input_specs
            if s.kind.name == "USER_INPUT"]
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    specs = []
    for name in user:
        val = placeholders[name].meta.get("val") if name in placeholders else None
        if isinstance(val, torch.Tensor):
            shape = tuple(d if isinstance(d, int) else None for d in val.shape)
            dtype = str(val.dtype).replace("torch.", "")
            specs.append(InputSpec(name, shape, dtype))
        else:
            specs.append(InputSpec(name, None))
    return specs


def image_channels(model: torch.nn.Module) -> int | None:
    """Channels an image input needs: the first 2-D convolution's in_channels, if any."""
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            return int(mod.in_channels)
    return None


def _module_dtype(model: torch.nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _to_tensor(array: np.ndarray | torch.Tensor, dtype: torch.dtype | None,
               device: torch.device) -> torch.Tensor:
    # A tensor comes from the prefetch thread, pinned when the device is a GPU.
    t = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(array))
    if dtype is not None and t.is_floating_point() and t.dtype != dtype:
        t = t.to(dtype)
    return t.to(device, non_blocking=True)


def check_shapes(batch: Mapping[str, np.ndarray], inputs: list[InputSpec], source: str) -> None:
    for spec in inputs:
        if spec.name not in batch:
            raise DeadReluError(f"the data has no array for the model input {spec.name!r}",
                                path=source)
        if spec.shape is None:
            continue
        got = batch[spec.name].shape
        want = spec.shape
        fits = len(got) == len(want) and all(
            w is None or i == 0 or g == w for i, (g, w) in enumerate(zip(got, want, strict=False)))
        if not fits:
            shown = "(" + ", ".join("N" if i == 0 else ("?" if w is None else str(w))
                                    for i, w in enumerate(want)) + ")"
            raise DeadReluError(
                f"input {spec.name!r} expects shape {shown} but the data has {tuple(got)}",
                path=source)


def _first_layer(model: torch.nn.Module, shape: tuple[int, ...] | None) -> str:
    """A hint naming the model's first layer, when the input ``shape`` visibly does not fit
    it (a mismatch further in, e.g. a spatial size, gets no hint: it would mislead)."""
    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if isinstance(w, torch.Tensor) and w.ndim >= 2:
            if isinstance(mod, torch.nn.Linear) and (not shape or
                                                     shape[-1] != mod.in_features):
                return f"; its first layer {name} (Linear) expects (…, {mod.in_features})"
            if isinstance(mod, torch.nn.modules.conv._ConvNd) and (
                    shape is None or len(shape) < 2 or shape[1] != mod.in_channels):
                return (f"; its first layer {name} ({type(mod).__name__}) expects "
                        f"{mod.in_channels} channels on axis 1")
            return ""
    return ""


_SHAPE_WORDS = ("shape", "size", "dimension", "expected", "mat1", "channels", "must match")
# torch's words for an input whose dtype the model cannot take (integer or bool data on a
# float model: "Input type (long int) and bias type (float) should be the same").
_DTYPE_WORDS = ("dtype", "scalar type", "input type", "should be the same")


# The frames through which eager capture runs the model's own torch calls: an error raised
# there is the model's (its op failed), not deadrelu's.
_PASS_THROUGH = frozenset({"__torch_function__", "_observe_functional"})


def _raised_in_deadrelu(exc: BaseException) -> bool:
    """Whether ``exc`` comes from deadrelu's own code running inside the forward (hooks and
    statistics) rather than from the model's code or torch."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    package = Path(__file__).resolve().parents[1]
    return (Path(code.co_filename).resolve().is_relative_to(package)
            and code.co_name not in _PASS_THROUGH)


@contextmanager
def _fast_path(enabled: bool) -> Any:
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled and previous)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


@contextmanager
def _borrowed(module: torch.nn.Module, device: torch.device, dtype: torch.dtype | None
              ) -> Any:
    """The caller's module in eval mode on ``device`` for the scan, given back as it came:
    every submodule's own mode (a frozen BatchNorm left in eval inside a training model, an
    MC-dropout left in train inside an eval one; ``module.train(flag)`` would overwrite them
    all) and every parameter's and buffer's device."""
    modes = [(m, m.training) for m in module.modules()]
    places = [(m, name, t.device, isinstance(t, torch.nn.Parameter))
              for m in module.modules()
              for name, t in (*m.named_parameters(recurse=False),
                              *m.named_buffers(recurse=False))]
    module.to(device=device, dtype=dtype).eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        for m, name, place, is_param in places:
            t = getattr(m, name)
            if t.device == place:
                continue
            if is_param:  # the same Parameter object, as module.to() keeps it
                t.data = t.data.to(place)
            else:
                setattr(m, name, t.to(place))


def _compiled(scan: CompiledScan) -> Callable[..., None]:
    return lambda *args: scan(args)


@dataclass
class TorchBackend:
    """An eager module or an exported program, with its inputs, ready to scan."""

    format: str
    inputs: list[InputSpec]
    module: torch.nn.Module | None = None  # eager
    program: Any = None  # torch.export.ExportedProgram
    dtype: torch.dtype | None = None  # --dtype: run weights and float inputs in this type
    compile: bool = False  # --compile: statistics inside a torch.compile'd graph
    path: str | None = None  # the model file, named by errors about the model itself
    optional_inputs: list[InputSpec] = field(default_factory=list)  # eager: passed by name

    def fixed_batch(self) -> FixedBatch | None:
        """What the exported program fixes of its inputs' axis 0, as ``torch.export`` without
        ``dynamic_shapes`` does: its guards then refuse any batch of another size. A dim from
        ``dynamic_shapes`` is symbolic (None in ``inputs``)."""
        if self.program is None:
            return None  # an eager module takes any batch size
        return FixedBatch.of(self.inputs, "export with dynamic_shapes",
                             origin="torch.export without dynamic_shapes")

    def _check_batch(self, batch: Mapping[str, np.ndarray], source: str, seen: int) -> None:
        """Refuse a batch whose size the program's guards would refuse with an assertion;
        ``seen``: the samples before this batch, for the message."""
        fixed = self.fixed_batch()
        if fixed is None:
            return
        for name, n in fixed.sizes.items():
            got = np.shape(batch[name])[0] if np.ndim(batch[name]) else None
            if got is not None and got != n:
                raise fixed.refuse(name, got, seen, model=self.path, data=source,
                                   rank=group_rank())

    def image_channels(self) -> int | None:
        if self.module is not None:
            return image_channels(self.module)
        shape = self.inputs[0].shape if self.inputs else None
        return shape[1] if shape is not None and len(shape) == 4 else None

    def static_sites(self) -> list[tuple[str, str]] | None:
        """(name, kind) of every site without running, where the format allows it."""
        if self.program is None:
            return None
        return [(name, kind) for _, name, kind, _, _ in planned_sites(self.program.module())]

    def run(self, batches: Iterable[Mapping[str, np.ndarray]], registry: SiteRegistry, *,
            source: str, on_batch: OnBatch | None = None, fast_path: bool = True
            ) -> list[SiteResult]:
        device = registry.device
        with ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            stack.enter_context(_fast_path(fast_path))
            fn: Callable[..., Any]
            if self.program is not None:
                gm = self.program.module().to(device=device, dtype=self.dtype)
                if self.compile:
                    fn = _compiled(CompiledScan(registry, graph=gm))
                else:
                    instrument(gm, registry)
                    fn = gm
                dtypes = [getattr(torch, s.dtype, None) for s in self.inputs]
            else:
                assert self.module is not None
                module = self.module
                if self.dtype is not None and self.format == "torch-module":
                    module = copy.deepcopy(module)  # never cast the caller's own weights
                stack.enter_context(_borrowed(module, device, self.dtype))
                if self.compile:
                    fn = _compiled(CompiledScan(registry, module=module,
                                                cache_key=self.module))
                else:
                    stack.enter_context(capture(module, registry))
                    fn = module
                dtypes = [_module_dtype(module)] * len(self.inputs)
            if self.dtype is not None:
                dtypes = [self.dtype] * len(self.inputs)  # _to_tensor casts floats only
            seen = 0
            for batch in batches:
                check_shapes(batch, self.inputs, source)
                if self.program is not None:
                    self._check_batch(batch, source, seen)
                args = [_to_tensor(batch[s.name], dt, device)
                        for s, dt in zip(self.inputs, dtypes, strict=False)]
                named = {s.name: _to_tensor(batch[s.name], dtypes[0] if dtypes else None,
                                            device)
                         for s in self.optional_inputs if s.name in batch}
                if named and self.compile:
                    raise DeadReluError(f"--compile passes the inputs by position only; the "
                                        f"data's {', '.join(map(repr, named))} would be left "
                                        "out: scan without --compile", path=source)
                registry.begin_forward()
                try:
                    fn(*args, **named)
                except DeadReluError:
                    raise
                except AssertionError as exc:
                    # An exported program's guard: a shape its export did not allow.
                    text = first_line(exc)
                    if self.program is None or not text.startswith("Guard failed"):
                        raise
                    shapes = ", ".join(f"{s.name!r} has shape {tuple(a.shape)}"
                                       for s, a in zip(self.inputs, args, strict=False))
                    raise DeadReluError(f"the data does not fit the exported program: input "
                                        f"{shapes} ({text})", path=source) from None
                except (RuntimeError, ValueError, IndexError, TypeError) as exc:
                    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    if _raised_in_deadrelu(exc):
                        raise  # our own capture code failed: an internal error, traceback
                    if any(w in text.lower() for w in _DTYPE_WORDS):
                        kinds = ", ".join(f"{s.name!r} is {str(a.dtype).removeprefix('torch.')}"
                                          for s, a in zip(self.inputs, args, strict=False))
                        raise DeadReluError(f"the data does not fit the model: input {kinds} "
                                            f"({text})", path=source) from None
                    if not any(w in text.lower() for w in _SHAPE_WORDS):
                        raise
                    shapes = ", ".join(f"{s.name!r} has shape {tuple(a.shape)}"
                                       for s, a in zip(self.inputs, args, strict=False))
                    first = tuple(args[0].shape) if args else None
                    hint = _first_layer(self.module, first) if self.module is not None else ""
                    raise DeadReluError(
                        f"the data does not fit the model: input {shapes}{hint} ({text})",
                        path=source) from None
                size = int(args[0].shape[0]) if args and args[0].ndim else 1
                seen += size
                if on_batch is not None:
                    on_batch(size)
        return registry.results()
