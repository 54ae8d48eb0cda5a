"""ONNX models exported with a fixed batch dimension: the scan takes that batch size, and a
batch size, sample count or data that cannot fit it is one clear line (exit 2)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deadrelu import scan
from deadrelu.errors import DeadReluError
from tests.test_cli import assert_user_error, run

INTS = ("samples", "elements", "active", "active_samples", "positive", "finite", "at_cap")
FLOATS = ("abs_sum", "max_pre", "min_pre")


class _Net(nn.Module):
    """conv -> ReLU (channels 0, 1 dead) -> flatten -> fc -> GELU -> head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 6 * 6, 8)
        self.gelu = nn.GELU()
        self.head = nn.Linear(8, 2)
        with torch.no_grad():
            for c in (0, 1):
                self.conv.weight[c].zero_()
                self.conv.bias[c] = -1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv(x))
        return self.head(self.gelu(self.fc(h.flatten(1))))


def _export(model: nn.Module, batch: int, path: Path) -> str:
    # No dynamic_axes: the legacy exporter writes the example's batch size into the graph.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(batch, 3, 6, 6),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], opset_version=17)
    return str(path)


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return _Net().eval()


def write_data(folder: Path) -> str:
    """40 samples for _Net in folder/data.npz (the .pt2 tests use them too)."""
    x = np.random.default_rng(1).standard_normal((40, 3, 6, 6)).astype(np.float32)
    np.savez(folder / "data.npz", x=x)
    return str(folder / "data.npz")


@pytest.fixture
def data(tmp_path: Path) -> str:
    return write_data(tmp_path)


def _assert_same_as_eager(report: dict, eager: object) -> None:
    sites = report["sites"]
    assert [s["name"] for s in sites] == [s.name for s in eager.sites]  # type: ignore[attr-defined]
    assert sites[0]["dead_indices"] == [0, 1]
    for got, want in zip(sites, eager.sites, strict=True):  # type: ignore[attr-defined]
        assert got["dead_indices"] == want.dead_indices()
        ref = want.to_dict()["accumulators"]
        for field in INTS:
            assert got["accumulators"][field] == ref[field], (got["name"], field)
        for field in FLOATS:
            np.testing.assert_allclose(got["accumulators"][field], ref[field], rtol=1e-5,
                                       atol=1e-5)


@pytest.mark.parametrize("batch", [1, 4])
def test_a_fixed_batch_is_the_scans_batch_size(net: nn.Module, data: str, tmp_path: Path,
                                               batch: int) -> None:
    model = _export(net, batch, tmp_path / f"b{batch}.onnx")
    r = run("scan", model, "--data", data, "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""  # nothing alarming: the model's own batch size is simply used
    report = json.loads(r.stdout)
    assert report["data"]["samples"] == 40
    _assert_same_as_eager(report, scan(net, data, batch_size=batch))
    same = run("scan", model, "--data", data, "-f", "json", "-b", str(batch))
    assert same.exit_code == 0, same.stderr
    assert json.loads(same.stdout)["sites"] == report["sites"]


def test_the_library_takes_the_fixed_batch_and_else_32(net: nn.Module, data: str,
                                                        tmp_path: Path) -> None:
    fixed = _export(net, 4, tmp_path / "b4.onnx")
    dynamic = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(2, 3, 6, 6),), str(dynamic), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}}, opset_version=17)
    for model, batches in ((fixed, [4] * 10), (str(dynamic), [32, 8])):
        seen: list[int] = []
        assert scan(model, data, on_batch=seen.append).data.samples == 40
        assert seen == batches
    with pytest.raises(DeadReluError, match="fixed batch size of 4"):
        scan(fixed, data, batch_size=32)


def test_an_explicit_other_batch_size_is_one_line(net: nn.Module, data: str,
                                                  tmp_path: Path) -> None:
    model = _export(net, 4, tmp_path / "b4.onnx")
    assert_user_error(run("scan", model, "--data", data, "-b", "8"), "b4.onnx", "'x'",
                      "fixed batch size of 4", "--batch-size 4", "dynamic batch axis")


def test_a_config_batch_size_counts_as_given(net: nn.Module, data: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    model = _export(net, 4, tmp_path / "b4.onnx")
    (tmp_path / "deadrelu.toml").write_text("batch-size = 16\n")
    monkeypatch.chdir(tmp_path)
    # Named as the key of that file: the user passed no 16 on the command line.
    assert_user_error(run("scan", model, "--data", data), "b4.onnx", "fixed batch size of 4",
                      f"not 16 (batch-size = 16 in {tmp_path / 'deadrelu.toml'})",
                      "--batch-size 4")
    assert run("scan", model, "--data", data, "-b", "4").exit_code == 0  # the flag wins


class _TwoInputs(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).sum() + torch.relu(y).sum()


@pytest.mark.parametrize("flags", [[], ["-b", "2"], ["-b", "3"]])
def test_inputs_that_fix_different_batch_sizes_are_named_together(
        tmp_path: Path, flags: list[str]) -> None:
    # Each input's own message would send the user from one size to the other and back.
    model = tmp_path / "two.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_TwoInputs(), (torch.zeros(2, 4), torch.zeros(3, 4)), str(model),
                          dynamo=False, input_names=["x", "y"], opset_version=17)
    data = tmp_path / "xy.npz"
    np.savez(data, x=np.ones((6, 4), np.float32), y=np.ones((6, 4), np.float32))
    assert_user_error(run("scan", str(model), "--data", str(data), *flags), "two.onnx",
                      "the inputs fix different batch sizes ('x': 2, 'y': 3)",
                      "--data function", "dynamic batch axis")


@pytest.mark.parametrize(("samples", "fragments"), [
    ("10", ("10 samples", "short last batch", "--samples 8")),
    ("3", ("3 samples", "at least 4")),
])
@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_a_sample_count_that_is_not_whole_batches_is_refused_before_running(
        net: nn.Module, data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        samples: str, fragments: tuple[str, ...], fmt: str) -> None:
    """ONNX, and a .pt2 exported without dynamic_shapes (tests/test_export_fixed_batch.py)."""
    from deadrelu.backends.onnx_backend import OnnxBackend
    from deadrelu.backends.torch_backend import TorchBackend
    from tests.test_export_fixed_batch import _export as export_pt2

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model ran")

    monkeypatch.setattr(OnnxBackend if fmt == "onnx" else TorchBackend, "run", must_not_run)
    model = (_export if fmt == "onnx" else export_pt2)(net, 4, tmp_path / f"b4.{fmt}")
    assert_user_error(run("scan", model, "--data", data, "-n", samples), f"b4.{fmt}",
                      "'x'", "fixed batch size of 4", *fragments)


def test_a_short_batch_from_a_data_function_is_named_when_it_comes(
        net: nn.Module, tmp_path: Path) -> None:
    # A function's batches are not counted up front: the short one is refused on arrival.
    model = _export(net, 4, tmp_path / "b4.onnx")
    (tmp_path / "batches.py").write_text(
        "import numpy as np\n"
        "def ten():\n"
        "    x = np.ones((10, 3, 6, 6), dtype=np.float32)\n"
        "    return [{'x': x[i:i + 4]} for i in range(0, 10, 4)]\n")
    assert_user_error(run("scan", model, "--data", f"{tmp_path / 'batches.py'}:ten"),
                      "b4.onnx", "fixed batch size of 4", "short batch of 2",
                      "10 so far", "--samples 8")


@pytest.mark.parametrize(("batch", "samples"), [(4, 64), (3, 63), (100, 100)])
@pytest.mark.parametrize("shape", [None, "1,3,6,6"])
def test_synthetic_inputs_come_in_whole_fixed_batches(net: nn.Module, tmp_path: Path,
                                                      batch: int, samples: int,
                                                      shape: str | None) -> None:
    model = _export(net, batch, tmp_path / f"b{batch}.onnx")
    args = ["--input-shape", shape] if shape else []
    r = run("scan", model, "-f", "json", *args)
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["data"]["synthetic"] is True
    assert report["data"]["samples"] == samples
    assert report["sites"][0]["dead_indices"] == [0, 1]


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_patch_takes_the_fixed_batch_and_refuses_a_short_one(net: nn.Module, data: str,
                                                             tmp_path: Path, fmt: str) -> None:
    from tests.test_export_fixed_batch import _export as export_pt2

    model = (_export if fmt == "onnx" else export_pt2)(net, 4, tmp_path / f"b4.{fmt}")
    out = tmp_path / f"patched.{fmt}"
    r = run("patch", model, "--data", data, "-o", out)
    assert r.exit_code == 0, r.stderr
    assert out.exists() and "2 → 0" in r.stdout  # both planted channels revived
    out.unlink()
    assert_user_error(run("patch", model, "--data", data, "-n", "10", "-o", out),
                      "use --samples 8 (a multiple of 4)")
    assert not out.exists()
