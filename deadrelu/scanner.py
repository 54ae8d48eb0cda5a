"""scan(): load a model, run data through it, return a ScanResult. The library's front door."""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from deadrelu.batching import batch_plan, check_whole_batches, fixed_batch
from deadrelu.data import DataSource, InputSpec, open_data, parse_input_shapes
from deadrelu.data.synthetic import NoSyntheticInput
from deadrelu.devices import torch_device
from deadrelu.distributed import launched
from deadrelu.errors import DeadReluError
from deadrelu.formats import BackgroundSha256
from deadrelu.report.model import DataInfo, ModelInfo, ScanResult
from deadrelu.stats import Settings


def load_backend(model: Any, *, arch: str | None = None, arch_kwargs: str | None = None,
                 trust_pickle: bool = False, hash_later: bool = False
                 ) -> tuple[Any, ModelInfo, BackgroundSha256 | None]:
    """The backend for ``model`` (a path or an ``nn.Module``), what the report says of it, and
    the model file's sha256 being computed: with ``hash_later`` the caller fills
    ``ModelInfo.sha256`` from it when it needs it, else it is already filled in."""
    import torch

    from deadrelu.backends.torch_backend import TorchBackend, eager_inputs, eager_optional_inputs

    if isinstance(model, torch.jit.ScriptModule):  # scripted or traced: no hooks, its graph
        import io

        from deadrelu.backends.torchscript import TorchScriptBackend

        # Through an archive, as from a file: a loaded module has every method's graph (an
        # in-memory traced one has Python wrappers), and the caller's own stays untouched.
        archive = io.BytesIO()
        torch.jit.save(model, archive)
        archive.seek(0)
        loaded = torch.jit.load(archive, map_location="cpu").eval()
        return TorchScriptBackend(loaded, None), ModelInfo(
            f"<{type(model).__name__}>", "torchscript"), None
    if isinstance(model, torch.nn.Module):
        name = type(model).__name__
        backend = TorchBackend("torch-module", eager_inputs(model), module=model,
                               optional_inputs=eager_optional_inputs(model))
        return backend, ModelInfo(f"<{name}>", "torch-module"), None
    from deadrelu.formats import detect

    path = Path(model)
    fmt = detect(path)
    digest = BackgroundSha256(path)
    info = ModelInfo(str(path), fmt)
    backend = _load_file(path, fmt, info, arch, arch_kwargs, trust_pickle)
    if not hash_later:
        info.sha256 = digest.result()
    return backend, info, digest


def _load_file(path: Path, fmt: str, info: ModelInfo, arch: str | None,
               arch_kwargs: str | None, trust_pickle: bool) -> Any:
    from deadrelu.backends.torch_backend import (
        TorchBackend,
        eager_inputs,
        eager_optional_inputs,
        export_inputs,
    )
    if fmt == "torch-save":
        from deadrelu.backends.torch_loading import load_torch_save

        module, info.format = load_torch_save(path, arch=arch, arch_kwargs=arch_kwargs,
                                              trust_pickle=trust_pickle)
        return TorchBackend(info.format, eager_inputs(module), module=module,
                            optional_inputs=eager_optional_inputs(module))
    if fmt == "torch-export":
        from deadrelu.backends.torch_loading import load_export

        program = load_export(path)
        return TorchBackend(fmt, export_inputs(program), program=program, path=str(path))
    if fmt == "onnx":
        from deadrelu.backends.onnx_backend import load_onnx_backend

        return load_onnx_backend(path)
    from deadrelu.backends.torchscript import load_torchscript_backend

    return load_torchscript_backend(path)


def scan(
    model: Any,
    data: str | DataSource | None = None,
    *,
    arch: str | None = None,
    arch_kwargs: str | None = None,
    trust_pickle: bool = False,
    input_shape: str | None = None,
    batch_size: int | None = None,
    samples: int | None = None,
    device: str = "cpu",
    settings: Settings | None = None,
    channel_axis: int | None = None,
    image_size: int | tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    drop_columns: Sequence[str] = (),
    fast_path: bool = True,
    distributed: bool | None = None,
    dtype: str | None = None,
    num_workers: int = 0,
    compile: bool = False,
    on_start: Callable[[int | None], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    count_at_cap: Mapping[int, float] | None = None,
) -> ScanResult:
    """Scan ``model`` (a file path or an ``nn.Module``) on ``data`` (see :func:`open_data`).

    Every number in the result is a statement about the scanned data.

    ``batch_size``: samples per forward pass; None: the model's fixed batch size where its
    graph has one (an ONNX export without a dynamic batch axis), else 32.
    ``distributed``: shard the batches over the torchrun process group and combine the
    statistics (None: when launched by torchrun with two or more processes; see
    :mod:`deadrelu.distributed`). ``dtype``: ``float16`` / ``bfloat16`` weights and inputs
    (torch models). ``num_workers``: batches a background thread prepares ahead (0: none).
    ``compile``: run a PyTorch model through ``torch.compile`` with the statistics computed
    inside the compiled graph (see :mod:`deadrelu.backends.torch_compile`).
    ``count_at_cap`` (``{k: c}``): the k-th site also counts its elements >= c, for patch's
    re-scan of a rewritten ReLU6 (see ``SiteRegistry.count_at_cap``).
    """

    input_shape, arch_kwargs = _check_arguments(model, arch, input_shape, arch_kwargs,
                                                batch_size, samples, channel_axis)
    # numpy integers pass the checks; the report's JSON takes Python ints.
    batch_size, samples, channel_axis = (None if v is None else int(v)
                                         for v in (batch_size, samples, channel_axis))
    settings = settings or Settings()
    _check_settings(settings)
    if channel_axis == 0:
        raise DeadReluError("--channel-axis 0 is the batch axis: a neuron is a channel (axis 1 "
                            "of images and (N, C, L), the last axis of (N, S, F))")
    dev = torch_device(device)  # before any loading: a machine without it fails at once
    # The file's sha256 is computed while the model loads and runs, filled in at the end.
    backend, model_info, digest = load_backend(model, arch=arch, arch_kwargs=arch_kwargs,
                                               trust_pickle=trust_pickle, hash_later=True)
    if compile:
        if not hasattr(backend, "compile"):
            raise DeadReluError(f"--compile applies to PyTorch models (a module, a checkpoint "
                                f"or a .pt2), not to {backend.format} models")
        backend.compile = True
    inputs: list[InputSpec] = backend.inputs
    fixed = fixed_batch(backend)
    if isinstance(data, DataSource):
        source = data
    else:
        batch_size, samples = batch_plan(fixed, data is not None, batch_size, samples, model)
        shapes = parse_input_shapes(input_shape, inputs) if input_shape else None
        try:
            source = open_data(data, inputs, batch_size=batch_size, samples=samples,
                               input_shapes=shapes, image_size=image_size, mean=mean,
                               std=std, drop_columns=drop_columns,
                               channels=_image_channels(backend),
                               optional=getattr(backend, "optional_inputs", ()))
        except NoSyntheticInput as exc:
            if exc.path is not None or not isinstance(model, str | Path):
                raise
            # Synthetic inputs failed on what the model says of its inputs: name the model.
            raise exc.at(model) from None
    check_whole_batches(fixed, source.samples, model)
    low_precision = _set_dtype(backend, dtype)
    group = None
    if distributed or (distributed is None and launched()):
        from deadrelu.distributed import join, local_device

        dev = local_device(dev)
        group = join(dev)
    try:
        result = _run(backend, source, data, dev, settings, channel_axis, fast_path, group,
                      num_workers, low_precision, model_info, on_start, on_batch,
                      count_at_cap)
        if digest is not None:
            model_info.sha256 = digest.result()
        return result
    finally:
        if group is not None:
            group.close()


def _set_dtype(backend: Any, dtype: str | None) -> str | None:
    """--dtype on a torch backend; returns the precision caveat for the report's notes."""
    if dtype is None:
        return None
    import torch

    if dtype not in ("float16", "bfloat16"):
        raise DeadReluError(f"--dtype {dtype!r}: choose float16 or bfloat16")
    if not hasattr(backend, "dtype"):
        article = "an" if backend.format[0] in "aeiou" else "a"
        raise DeadReluError(f"--dtype applies to PyTorch models; {article} {backend.format} "
                            "model runs in the precision it was saved in")
    backend.dtype = getattr(torch, dtype)
    return (f"Scanned in {dtype}: lower precision rounds small pre-activations, so an element "
            "can become exactly zero or change sign; dead counts can differ from a float32 "
            "scan, most of all for neurons whose margin is tiny.")


def _run(backend: Any, source: DataSource, data: Any, dev: Any, settings: Settings,
         channel_axis: int | None, fast_path: bool, group: Any, num_workers: int,
         low_precision: str | None, model_info: ModelInfo,
         on_start: Callable[[int | None], None] | None,
         on_batch: Callable[[int], None] | None,
         count_at_cap: Mapping[int, float] | None = None) -> ScanResult:
    from deadrelu.backends.sites import SiteRegistry
    from deadrelu.loader import prefetch

    registry = SiteRegistry(settings, channel_axis, dev, count_at_cap)
    seen = 0

    def count(n: int) -> None:
        nonlocal seen
        seen += n
        if on_batch is not None:
            on_batch(n)

    if on_start is not None:
        on_start(source.samples)
    label = str(data) if isinstance(data, str) else source.description
    batches = source.batches()
    if group is not None:
        batches = group.shard(batches)
    pin = dev.type == "cuda" and hasattr(backend, "dtype")  # torch backends take tensors
    results = backend.run(prefetch(batches, num_workers, pin=pin), registry, source=label,
                          on_batch=count, fast_path=fast_path)
    notes = list(registry.notes)
    if group is not None:
        from deadrelu.distributed import reduce_results

        results, seen, notes = reduce_results(group, results, seen, notes)
    if seen == 0:
        raise DeadReluError("the data set has no samples", path=label)
    if low_precision:
        notes.append(low_precision)
    if source.synthetic:
        notes.insert(0, "No --data given: the model ran on synthetic inputs "
                        f"({source.description}). Dead counts describe that noise, not your "
                        "data; pass --data for real figures.")
    if not results:
        notes.append("The model has no activation sites deadrelu knows (ReLU family, GELU, "
                     "SiLU, Sigmoid, Tanh, …): nothing to report.")
    extra: dict[str, Any] = {"channel_axis": channel_axis, "device": str(dev)}
    if getattr(backend, "compile", False):
        extra["compile"] = True
    if low_precision:
        extra["dtype"] = str(getattr(backend, "dtype", "")).replace("torch.", "")
    files = (os.path.realpath(source.path),) if source.path and not source.synthetic \
        and os.path.exists(source.path) else ()
    return ScanResult.build(model_info, DataInfo(source.description, seen, source.synthetic,
                                                 files),
                            settings, results, notes, extra)


def _image_channels(backend: Any) -> int | None:
    guess = getattr(backend, "image_channels", None)
    return guess() if callable(guess) else None


def _check_arguments(model: Any, arch: Any, input_shape: Any, arch_kwargs: Any,
                     batch_size: Any, samples: Any, channel_axis: Any
                     ) -> tuple[str | None, str | None]:
    """The library's arguments, checked as the CLI's flags are, so that a wrong type is a
    DeadReluError and not a TypeError deep inside; returns input_shape and arch_kwargs in
    their flag form (a shape tuple and a kwargs dict are accepted too)."""
    import json

    import torch

    if model is None or not isinstance(model, str | os.PathLike | torch.nn.Module):
        raise DeadReluError(f"model must be a path or an nn.Module, not {type(model).__name__}")
    if isinstance(model, torch.nn.Module) and (arch is not None or arch_kwargs is not None):
        raise DeadReluError("arch and arch_kwargs build a model for a state dict file; this "
                            "model is an nn.Module already")
    for name, value in (("batch_size", batch_size), ("samples", samples)):
        if value is not None and (not _whole(value) or value < 1):
            raise DeadReluError(f"{name} must be a whole number >= 1, got {value!r}")
    if channel_axis is not None and not _whole(channel_axis):
        raise DeadReluError(f"channel_axis must be a whole number, got {channel_axis!r}")
    if isinstance(input_shape, tuple | list):
        if not all(_whole(d) for d in input_shape):
            raise DeadReluError(f"input_shape must be dims like (1, 3, 32, 32) or a string "
                                f"like '1,3,32,32', got {input_shape!r}")
        input_shape = ",".join(str(int(d)) for d in input_shape)
    elif input_shape is not None and not isinstance(input_shape, str):
        raise DeadReluError(f"input_shape must be a string or a tuple of dims, not "
                            f"{type(input_shape).__name__}")
    if isinstance(arch_kwargs, Mapping):
        arch_kwargs = json.dumps(dict(arch_kwargs))
    elif arch_kwargs is not None and not isinstance(arch_kwargs, str):
        raise DeadReluError(f"arch_kwargs must be a dict or a JSON string, not "
                            f"{type(arch_kwargs).__name__}")
    return input_shape, arch_kwargs


def _whole(value: Any) -> bool:
    """An int, a numpy integer or another integral number; not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_settings(s: Settings) -> None:
    for flag, value in (("--eps", s.eps), ("--tau", s.tau), ("--min-active", s.min_active)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise DeadReluError(f"{flag} must be a number, got {value!r}")
    if not 0 < s.eps < 1:
        raise DeadReluError(f"--eps must be in (0, 1), got {s.eps}")
    if not 0 <= s.tau <= 1:
        raise DeadReluError(f"--tau must be in [0, 1], got {s.tau}")
    if not 0 <= s.min_active <= 1:
        raise DeadReluError(f"--min-active must be in [0, 1], got {s.min_active}")
