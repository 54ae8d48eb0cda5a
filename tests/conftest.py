"""Shared test helpers: the fixture manifest, scans of fixtures (cached), a CLI runner."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "fixtures" / "generated"
MANIFEST: dict[str, Any] = json.loads((GENERATED / "manifest.json").read_text())
FIXTURES: dict[str, Any] = MANIFEST["fixtures"]
TORCH_FORMATS = ("state_dict", "pickle", "export")
WITH_SITES = sorted(n for n, f in FIXTURES.items() if f["sites"])

torch.set_num_threads(1)  # deterministic and fair on the 2-core CI machine


@pytest.fixture(autouse=True)
def _repo_root_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    # --arch fixtures/nets.py:… paths and `fixtures.nets` pickles resolve from the repo root,
    # as they do for a user who runs deadrelu from their project.
    monkeypatch.chdir(ROOT)


def fixture_args(name: str, fmt: str) -> tuple[str, dict[str, Any]]:
    f = FIXTURES[name]
    path = str(GENERATED / f["files"][fmt])
    if fmt == "state_dict":
        return path, {"arch": f["arch"]}
    if fmt == "pickle":
        return path, {"trust_pickle": True}
    return path, {}


@cache
def scan_fixture(name: str, fmt: str) -> Any:
    from deadrelu import scan

    old = os.getcwd()
    os.chdir(ROOT)
    try:
        path, kwargs = fixture_args(name, fmt)
        return scan(path, str(GENERATED / FIXTURES[name]["data"]), **kwargs)
    finally:
        os.chdir(old)


def build_eager(name: str) -> torch.nn.Module:
    from deadrelu.backends.torch_loading import build_arch

    f = FIXTURES[name]
    model = build_arch(f["arch"])
    state = torch.load(GENERATED / f["files"]["state_dict"], weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def fixture_data(name: str) -> torch.Tensor:
    import numpy as np

    with np.load(GENERATED / FIXTURES[name]["data"]) as z:
        return torch.from_numpy(z[FIXTURES[name]["input"]])
