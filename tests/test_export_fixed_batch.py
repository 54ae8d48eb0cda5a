"""torch.export programs exported without dynamic_shapes: their batch size is fixed (a guard
refuses any other), so the scan takes it, and a batch size, sample count or data that cannot
fit it is one clear line (exit 2), as for an ONNX model with a fixed batch dimension."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deadrelu import scan
from deadrelu.errors import DeadReluError
from tests.test_cli import assert_user_error, run
from tests.test_onnx_fixed_batch import _assert_same_as_eager, _Net, write_data


def _export(model: nn.Module, batch: int, path: Path, *, dynamic: bool = False) -> str:
    example = (torch.zeros(batch, 3, 6, 6),)
    shapes = ({0: torch.export.Dim("n", min=2, max=1024)},) if dynamic else None
    torch.export.save(torch.export.export(model, example, dynamic_shapes=shapes), str(path))
    return str(path)


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return _Net().eval()


@pytest.fixture
def data(tmp_path: Path) -> str:
    return write_data(tmp_path)


@pytest.mark.parametrize("batch", [1, 4])
def test_a_static_batch_is_the_scans_batch_size(net: nn.Module, data: str, tmp_path: Path,
                                                batch: int) -> None:
    model = _export(net, batch, tmp_path / f"b{batch}.pt2")
    r = run("scan", model, "--data", data, "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""
    report = json.loads(r.stdout)
    assert report["model"]["format"] == "torch-export"
    assert report["data"]["samples"] == 40
    _assert_same_as_eager(report, scan(net, data, batch_size=batch))
    same = run("scan", model, "--data", data, "-f", "json", "-b", str(batch))
    assert same.exit_code == 0, same.stderr
    assert json.loads(same.stdout)["sites"] == report["sites"]


def test_the_library_takes_the_static_batch_and_a_dynamic_one_takes_32(
        net: nn.Module, data: str, tmp_path: Path) -> None:
    fixed = _export(net, 4, tmp_path / "b4.pt2")
    dynamic = _export(net, 4, tmp_path / "dyn.pt2", dynamic=True)
    for model, batches in ((fixed, [4] * 10), (dynamic, [32, 8])):
        seen: list[int] = []
        assert scan(model, data, on_batch=seen.append).data.samples == 40
        assert seen == batches
    assert scan(dynamic, data, batch_size=8).data.samples == 40  # any batch size
    with pytest.raises(DeadReluError, match="fixed batch size of 4"):
        scan(fixed, data, batch_size=32)


def test_an_explicit_other_batch_size_is_one_line(net: nn.Module, data: str,
                                                  tmp_path: Path) -> None:
    model = _export(net, 4, tmp_path / "b4.pt2")
    assert_user_error(run("scan", model, "--data", data, "-b", "8"), "b4.pt2", "'x'",
                      "fixed batch size of 4 (torch.export without dynamic_shapes), not 8",
                      "--batch-size 4")


@pytest.mark.parametrize(("batch", "samples"), [(2, 64), (3, 63)])
def test_synthetic_inputs_come_in_whole_static_batches(net: nn.Module, tmp_path: Path,
                                                       batch: int, samples: int) -> None:
    model = _export(net, batch, tmp_path / f"b{batch}.pt2")
    r = run("scan", model, "-f", "json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["data"]["synthetic"] is True
    assert report["data"]["samples"] == samples
    assert report["sites"][0]["dead_indices"] == [0, 1]


@pytest.mark.parametrize(("fn", "fragments"), [
    ("irregular", ("short batch of 1 sample after 2 (3 so far)", "--samples 2")),
    ("big", ("a batch of 4 samples",)),
    ("small", ("a first batch of 1 sample",)),
])
def test_a_batch_of_another_size_from_a_data_function_is_one_line(
        net: nn.Module, tmp_path: Path, fn: str, fragments: tuple[str, ...]) -> None:
    # A function's batches are not counted up front: the program's guard would refuse the
    # odd one with an AssertionError; it is refused on arrival instead.
    model = _export(net, 2, tmp_path / "b2.pt2")
    (tmp_path / "batches.py").write_text(
        "import numpy as np\n"
        "def _x(n):\n"
        "    return {'x': np.ones((n, 3, 6, 6), dtype=np.float32)}\n"
        "def irregular():\n"
        "    return [_x(2), _x(1), _x(2)]\n"
        "def big():\n"
        "    return [_x(4)]\n"
        "def small():\n"
        "    return [_x(1)]\n")
    assert_user_error(run("scan", model, "--data", f"{tmp_path / 'batches.py'}:{fn}"),
                      "batches.py", "input 'x' has a fixed batch size of 2 (torch.export "
                      "without dynamic_shapes)", "feed batches of exactly 2",
                      "or export with dynamic_shapes", *fragments)


def test_the_batch_error_names_the_model_file_when_the_backend_knows_it(
        net: nn.Module, tmp_path: Path) -> None:
    from deadrelu.backends.sites import SiteRegistry
    from deadrelu.backends.torch_backend import TorchBackend, export_inputs
    from deadrelu.stats import Settings

    model = _export(net, 2, tmp_path / "b2.pt2")
    program = torch.export.load(model)
    backend = TorchBackend("torch-export", export_inputs(program), program=program, path=model)
    fixed = backend.fixed_batch()
    assert fixed is not None and fixed.common == ("x", 2)
    registry = SiteRegistry(Settings(), None, torch.device("cpu"))
    batches = [{"x": np.ones((n, 3, 6, 6), dtype=np.float32)} for n in (2, 3)]
    with pytest.raises(DeadReluError) as info:
        backend.run(batches, registry, source="fn.py:f")
    assert str(info.value) == (
        f"{model}: input 'x' has a fixed batch size of 2 (torch.export without "
        "dynamic_shapes) but the data (fn.py:f) gave a batch of 3 samples: feed batches of "
        "exactly 2, or export with dynamic_shapes")
