"""Helpers for the check / config / merge / diff / JUnit tests: CLI calls and fixture reports."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner, Result

from deadrelu.cli import app
from tests.conftest import FIXTURES, GENERATED, ROOT


def cli(*args: object, env: dict[str, str] | None = None) -> Result:
    # GITHUB_ACTIONS is cleared so the tests behave alike on a laptop and in Actions.
    base = {"GITHUB_ACTIONS": None, "GITHUB_STEP_SUMMARY": None}
    return CliRunner(env={**base, **(env or {})}).invoke(app, [str(a) for a in args])


def model_args(name: str) -> list[str]:
    """MODEL --arch … for a fixture's state dict (absolute: usable from any folder)."""
    f = FIXTURES[name]
    file, factory = f["arch"].rsplit(":", 1)
    return [str(GENERATED / f["files"]["state_dict"]), "--arch", f"{ROOT / file}:{factory}"]


def data_path(name: str) -> Path:
    return GENERATED / FIXTURES[name]["data"]


def expected_dead(name: str) -> dict[str, int]:
    """site -> planted dead count, from the manifest."""
    return {s["name"]: len(s["dead"]) for s in FIXTURES[name]["sites"]}


def expected_neurons(name: str) -> dict[str, int]:
    return {s["name"]: s["neurons"] for s in FIXTURES[name]["sites"]}


@cache
def _report_text(name: str) -> str:
    res = cli("scan", *model_args(name), "--data", data_path(name), "--format", "json")
    assert res.exit_code == 0, res.stderr
    return res.stdout


def report(name: str, tmp: Path) -> Path:
    """A JSON scan report of a fixture on its data, written into tmp."""
    path = tmp / f"{name}.json"
    path.write_text(_report_text(name))
    return path


def report_dict(name: str) -> dict[str, Any]:
    d: dict[str, Any] = json.loads(_report_text(name))
    return d


def shards(name: str, tmp: Path, split: int) -> tuple[Path, Path]:
    """The fixture's data cut into two .npz files at sample ``split``."""
    with np.load(data_path(name)) as z:
        arrays = {k: z[k] for k in z.files}
    first, second = tmp / f"{name}-1.npz", tmp / f"{name}-2.npz"
    np.savez(first, **{k: v[:split] for k, v in arrays.items()})
    np.savez(second, **{k: v[split:] for k, v in arrays.items()})
    return first, second


def revive(report_path: Path, site: str, neuron: int, out: Path) -> Path:
    """A copy of a report in which one dead neuron was alive (a baseline where it had not
    died yet)."""
    d = json.loads(report_path.read_text())
    for s in d["sites"]:
        if s["name"] == site:
            s["accumulators"]["active"][neuron] = 1
            s["accumulators"]["active_samples"][neuron] = 1
    out.write_text(json.dumps(d))
    return out
