"""TorchScript archives: converted to ONNX in memory, then scanned by the ONNX backend.

Forward hooks and function modes do not see inside a ScriptModule, but the TorchScript ONNX
exporter walks its whole graph — module activations and functional calls alike — and keeps
each op's module scope in the node name (``/layer1/0/relu_1/Relu``). With the archive's module
tree that gives the sites the same names as the ``.pt`` and ``.pt2`` of the model
(``layer1.0.relu#2``). The export needs example inputs, so it happens on the first batch.
"""

from __future__ import annotations

import itertools
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deadrelu.backends.onnx_graph import first_line
from deadrelu.backends.sites import SiteRegistry, SiteResult
from deadrelu.data import InputSpec
from deadrelu.errors import DeadReluError

EXPORT_OPSET = 17


def load_script_module(path: Path) -> Any:
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated
            return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError, OSError) as exc:
        raise DeadReluError(f"cannot load the TorchScript archive: {first_line(exc)}",
                            path=path) from None


def script_inputs(module: Any) -> list[InputSpec]:
    """Input names of ``forward`` from its TorchScript schema (shapes are not recorded)."""
    try:
        args = module.forward.schema.arguments[1:]
    except (AttributeError, RuntimeError):
        return [InputSpec("input", None)]
    return [InputSpec(a.name, None) for a in args if a.default_value is None] or [
        InputSpec("input", None)]


def to_onnx(module: Any, example: list[Any], names: list[str], path: Path) -> Any:
    """The ScriptModule as an ONNX ModelProto, batch axis dynamic."""
    import onnx
    import torch

    with tempfile.TemporaryDirectory(prefix="deadrelu-") as scratch:
        target = Path(scratch) / "model.onnx"
        try:
            with warnings.catch_warnings(), _quiet_fds():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, tuple(example), str(target), dynamo=False,
                                  input_names=names,
                                  dynamic_axes={n: {0: "batch"} for n in names},
                                  opset_version=EXPORT_OPSET)
        except Exception as exc:  # the exporter raises many types; any of them means "cannot"
            raise DeadReluError(
                f"cannot convert this TorchScript model to a graph deadrelu can measure "
                f"({first_line(exc)}); scan its state dict with --arch, a torch.export .pt2 or "
                "an ONNX export instead", path=path) from None
        return onnx.load(str(target))


@contextmanager
def _quiet_fds() -> Iterator[None]:
    """Silence the exporter's C++ output (it prints whole IR graphs when it fails)."""
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@dataclass
class TorchScriptBackend:
    module: Any
    path: Path
    format: str = "torchscript"
    inputs: list[InputSpec] = field(init=False)
    module_types: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.inputs = script_inputs(self.module)
        self.module_types = {name: str(getattr(m, "original_name", type(m).__name__))
                             for name, m in self.module.named_modules()}

    def image_channels(self) -> int | None:
        return None

    def onnx_backend(self, batch: Mapping[str, np.ndarray]) -> Any:
        import torch

        from deadrelu.backends.onnx_backend import OnnxBackend

        missing = [s.name for s in self.inputs if s.name not in batch]
        if missing:
            raise DeadReluError(f"the data has no array for the model input {missing[0]!r}",
                                path=self.path)
        example = [torch.from_numpy(np.ascontiguousarray(batch[s.name])) for s in self.inputs]
        model = to_onnx(self.module, example, [s.name for s in self.inputs], self.path)
        return OnnxBackend(model, None, format="torchscript", module_types=self.module_types)

    def run(self, batches: Iterable[Mapping[str, np.ndarray]], registry: SiteRegistry, *,
            source: str, on_batch: Callable[[int], None] | None = None, fast_path: bool = True
            ) -> list[SiteResult]:
        it = iter(batches)
        first = next(it, None)
        if first is None:
            return []
        backend = self.onnx_backend(first)
        return list(backend.run(itertools.chain([first], it), registry, source=source,
                                on_batch=on_batch, fast_path=fast_path))


def load_torchscript_backend(path: Path) -> TorchScriptBackend:
    return TorchScriptBackend(load_script_module(path), path)
