"""Load a PyTorch model file into an ``nn.Module`` (or an ExportedProgram), safely.

* state dict / training checkpoint + ``--arch module:factory``: ``torch.load(weights_only=True)``;
* a pickled whole module: only with ``trust_pickle`` (unpickling runs arbitrary code);
* a ``torch.export`` archive: ``torch.export.load``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pickletools
import re
import sys
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deadrelu.errors import DeadReluError, a_type, first_line, user_code_failure

CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
STRIP_PREFIXES = ("module.", "_orig_mod.")


def load_torch_save(path: Path, *, arch: str | None, arch_kwargs: str | None,
                    trust_pickle: bool) -> tuple[torch.nn.Module, str]:
    """A module and its format name ("torch-checkpoint" or "torch-pickle")."""
    try:
        with warnings.catch_warnings():
            # torch warns on stderr about pickle protocols its safe loader may not read; the
            # outcome is reported below, as one line.
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, zip errors …
        if not _is_weights_only_refusal(exc):
            raise DeadReluError(f"cannot read the checkpoint: {first_line(exc)}",
                                path=path) from None
        opcode = re.search(r"Unsupported operand (\d+)", str(exc))
        if opcode and not trust_pickle:
            raise DeadReluError(
                f"torch's safe loader cannot read this pickle (opcode {opcode.group(1)}; "
                "a file saved with pickle_protocol >= 4?): re-save it with torch.save's "
                "default protocol, or pass --trust-pickle if you trust this file",
                path=path) from None
        obj = _load_pickled_module(path, trust_pickle)
        if isinstance(obj, torch.nn.Module):
            return obj, "torch-pickle"
        # A trusted pickle of weights the safe loader could not read: a checkpoint after all.
    state = extract_state_dict(obj, path)
    if arch is None:
        raise DeadReluError(
            "holds a state dict (weights only, no architecture): pass --arch module:factory "
            "or --arch path/to/file.py:factory that builds the model",
            path=path,
        )
    model = build_arch(arch, arch_kwargs)
    load_weights(model, state, path)
    return model, "torch-checkpoint"


def _is_weights_only_refusal(exc: Exception) -> bool:
    return "Weights only load failed" in str(exc) or "weights_only" in str(exc)


def pickled_globals(path: Path) -> list[str]:
    """The classes and functions a torch.save pickle refers to, read without unpickling."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("data.pkl"))
            data = z.read(name)
    except Exception:
        return []
    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings.append(str(arg))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
    except Exception:
        pass
    return [g for g in dict.fromkeys(found) if not g.startswith(("torch._utils", "collections"))]


def _load_pickled_module(path: Path, trust_pickle: bool) -> Any:
    """The unpickled object (with --trust-pickle only): a module, or weights."""
    classes = [g for g in pickled_globals(path)
               if not g.startswith(("torch.", "builtins.", "__builtin__."))]
    what = f" (refers to {', '.join(classes[:3])})" if classes else ""
    if not trust_pickle:
        raise DeadReluError(
            f"is a pickled Python object{what}, and unpickling can run arbitrary code: "
            "pass --trust-pickle if you trust this file, or save model.state_dict() and "
            "pass --arch",
            path=path,
        )
    _ensure_cwd_importable()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        raise DeadReluError(
            f"the pickled model needs the module {exc.name!r}, which cannot be imported: run "
            "deadrelu from the directory that holds it, or add it to PYTHONPATH",
            path=path,
        ) from None
    except Exception as exc:
        raise DeadReluError(f"cannot unpickle: {first_line(exc)}", path=path) from None
    if isinstance(obj, torch.nn.Module | Mapping):
        return obj
    raise DeadReluError(f"unpickles to {a_type(obj)}, not an nn.Module or a state "
                        "dict", path=path)


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The weights inside a state dict or a training checkpoint, prefixes stripped."""
    if isinstance(obj, Mapping):
        for key in CHECKPOINT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and _all_tensors(inner):
                obj = inner
                break
    # An empty mapping is the state dict of a model without weights (activations only).
    if not isinstance(obj, Mapping) or not _all_tensors(obj):
        raise DeadReluError(
            f"holds {a_type(obj)}, not a state dict or a checkpoint with one of the keys "
            f"{', '.join(CHECKPOINT_KEYS)}",
            path=path,
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        k = str(key)
        changed = True
        while changed:
            changed = False
            for prefix in STRIP_PREFIXES:
                if k.startswith(prefix):
                    k, changed = k[len(prefix):], True
        state[k] = value
    return state


def _all_tensors(d: Mapping[Any, Any]) -> bool:
    return all(isinstance(v, torch.Tensor) for v in d.values())


def _ensure_cwd_importable() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def import_object(spec: str, what: str) -> Any:
    """``module:attr`` or ``path/to/file.py:attr``; the current directory is importable."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise DeadReluError(f"{what} {spec!r} must look like module:name or path/to/file.py:name")
    _ensure_cwd_importable()
    try:
        if target.endswith(".py") or os.sep in target or "/" in target:
            file = Path(target)
            if not file.is_file():
                raise DeadReluError(f"{what} {spec!r}: no such file {target}")
            mod_name = "_deadrelu_user_" + "".join(c if c.isalnum() else "_" for c in
                                                   str(file.resolve()))
            module = sys.modules.get(mod_name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(mod_name, file)
                if loader_spec is None or loader_spec.loader is None:
                    raise DeadReluError(f"{what} {spec!r}: cannot import {target}")
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[mod_name] = module
                loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except DeadReluError:
        raise
    except (Exception, SystemExit) as exc:  # SystemExit: user code must not end deadrelu
        raise DeadReluError(f"{what} {spec!r} does not import: it "
                            f"{user_code_failure(exc)}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise DeadReluError(f"{what} {spec!r}: {target} has no attribute {attr!r}") from None


def build_arch(arch: str, arch_kwargs: str | None = None) -> torch.nn.Module:
    factory = import_object(arch, "--arch")
    kwargs: dict[str, Any] = {}
    if arch_kwargs:
        try:
            kwargs = json.loads(arch_kwargs)
        except json.JSONDecodeError as exc:
            raise DeadReluError(f"--arch-kwargs is not valid JSON: {exc}") from None
        if not isinstance(kwargs, dict):
            raise DeadReluError("--arch-kwargs must be a JSON object, e.g. '{\"classes\": 10}'")
    try:
        model = factory(**kwargs)
    except (Exception, SystemExit) as exc:
        raise DeadReluError(f"--arch {arch!r} failed to build the model: it "
                            f"{user_code_failure(exc)}") from None
    if not isinstance(model, torch.nn.Module):
        raise DeadReluError(f"--arch {arch!r} returned {a_type(model)}, not an nn.Module")
    return model


def load_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_some(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_some(unexpected)}")
        raise DeadReluError(
            f"the weights do not match --arch: {'; '.join(parts)} "
            f"({len(state)} keys in the file, {len(expected)} in the model)",
            path=path,
        )
    for k, v in expected.items():
        if tuple(v.shape) != tuple(state[k].shape):
            raise DeadReluError(
                f"the weights do not match --arch: {k} has shape {tuple(state[k].shape)} in "
                f"the file but {tuple(v.shape)} in the model",
                path=path,
            )
    model.load_state_dict(state, strict=True)


def _some(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def load_export(path: Path) -> Any:
    try:
        return torch.export.load(str(path))
    except Exception as exc:
        raise DeadReluError(f"cannot load the torch.export archive: {first_line(exc)}",
                            path=path) from None
