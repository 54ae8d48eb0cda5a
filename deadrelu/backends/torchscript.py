"""TorchScript archives (``torch.jit.save``): loaded with torch.jit and measured as they run.

Forward hooks and function modes do not see inside a ScriptModule; the dispatcher does (see
:mod:`deadrelu.backends.torchscript_dispatch`), so the archive runs on torch's own kernels and
its statistics equal the eager model's bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deadrelu.backends.sites import SiteRegistry, SiteResult
from deadrelu.data import InputSpec
from deadrelu.errors import DeadReluError, first_line


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


@dataclass
class TorchScriptBackend:
    module: Any
    path: Path | None  # None: a ScriptModule handed to the library
    format: str = "torchscript"
    inputs: list[InputSpec] = field(init=False)

    def __post_init__(self) -> None:
        self.inputs = script_inputs(self.module)

    def image_channels(self) -> int | None:
        for _, mod in self.module.named_modules():
            if str(getattr(mod, "original_name", "")) == "Conv2d":
                # A scripted Conv2d keeps in_channels; a traced one keeps only its weight,
                # (out, in / groups, kH, kW): the first convolution is rarely grouped.
                channels = getattr(mod, "in_channels", None)
                if channels is None:
                    weight = getattr(mod, "weight", None)
                    return int(weight.shape[1]) if weight is not None else None
                return int(channels)
        return None

    def run(self, batches: Iterable[Mapping[str, np.ndarray]], registry: SiteRegistry, *,
            source: str, on_batch: Callable[[int], None] | None = None, fast_path: bool = True
            ) -> list[SiteResult]:
        from deadrelu.backends.torchscript_dispatch import run_dispatch

        del fast_path  # TorchScript runs the scripted code as it is
        return run_dispatch(self.module, [s.name for s in self.inputs], batches, registry,
                            source, on_batch)


def load_torchscript_backend(path: Path) -> TorchScriptBackend:
    return TorchScriptBackend(load_script_module(path), path)
