"""Site names of models from the TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``): read from the node names' module scopes, they equal the eager model's, so
reports of the .pt and the .onnx line up; where the scopes leave it open, the node name."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deadrelu import scan
from deadrelu.backends.onnx_sites import find_sites
from tests.conftest import FIXTURES, GENERATED, build_eager, fixture_data
from tests.test_cli import run

# A reused nn.ReLU (3 calls), functional calls only, the transformer MLP (F.gelu inside a
# module), written-out SiLU / Mish / tanh-GELU modules, Sequential paths, Clip forms.
LEGACY = ["reuse_relu", "functional", "transformer_mlp", "inplace", "planted_silu",
          "planted_mish", "planted_gelu_tanh", "planted_relu6", "planted_hardtanh",
          "planted_prelu", "conv1d", "digits_cnn"]


def _export_legacy(model: nn.Module, example: torch.Tensor, path: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}}, opset_version=17)
    return str(path)


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_export_names_equal_the_eager_models(name: str, tmp_path: Path) -> None:
    model = build_eager(name)
    path = _export_legacy(model, fixture_data(name)[:2], tmp_path / f"{name}.onnx")
    eager = scan(model, str(GENERATED / FIXTURES[name]["data"]))
    got = scan(path, str(GENERATED / FIXTURES[name]["data"]))
    assert [s.name for s in got.sites] == [s.name for s in eager.sites]
    assert [s.name for s in got.sites] == [s["name"] for s in FIXTURES[name]["sites"]]
    assert [s.dead_indices() for s in got.sites] == [s.dead_indices() for s in eager.sites]
    assert [s.info.module for s in got.sites] == [s.node for s in find_sites(onnx.load(path))
                                                  if s.scanned]  # node names are kept


class _Mixed(nn.Module):
    """QA's model: a GELU module, functional SiLU / sigmoid / tanh in the root, a ReLU module."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.gelu = nn.GELU()
        self.fc1 = nn.Linear(6 * 8 * 8, 12)
        self.fc2 = nn.Linear(12, 10)
        self.fc3 = nn.Linear(10, 8)
        self.relu = nn.ReLU()
        self.out = nn.Linear(8, 3)
        with torch.no_grad():
            self.fc3.bias[:2] = -50.0  # dead ReLUs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.gelu(self.conv(x))
        h = torch.sigmoid(self.fc2(F.silu(self.fc1(h.flatten(1)))))
        return self.out(self.relu(self.fc3(torch.tanh(h))))


def test_the_qa_models_onnx_and_pt_reports_diff_site_by_site(tmp_path: Path) -> None:
    model = _Mixed().eval()
    x = np.random.default_rng(1).standard_normal((40, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x)
    path = _export_legacy(model, torch.from_numpy(x[:2]), tmp_path / "mixed.onnx")
    eager = scan(model, str(tmp_path / "data.npz"))
    assert [s.name for s in eager.sites] == ["gelu", "root/silu", "root/sigmoid", "root/tanh",
                                             "relu"]
    (tmp_path / "pt.json").write_text(json.dumps(eager.to_dict()))
    r = run("scan", path, "--data", str(tmp_path / "data.npz"), "-f", "json", "-o",
            str(tmp_path / "onnx.json"))
    assert r.exit_code == 0, r.stderr
    r = run("diff", str(tmp_path / "pt.json"), str(tmp_path / "onnx.json"), "-f", "json")
    assert r.exit_code == 0, r.stderr
    sites = json.loads(r.stdout)["sites"]
    assert [(s["name"], s["status"]) for s in sites] == [
        (n, "same-shape") for n in ("gelu", "root/silu", "root/sigmoid", "root/tanh", "relu")]
    assert [s["dead_after"] for s in sites] == [len(s.dead_indices()) for s in eager.sites]
    assert {0, 1} <= set(eager.sites[-1].dead_indices())


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(x)) + self.act(x)


class _Reused(nn.Module):
    """A block called twice (functional relu and a GELU module inside), nested Sequentials,
    and two ReLU modules named relu and relu_1, relu called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.blk = _Block()
        self.seq = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.ReLU6()), nn.Tanh())
        self.relu = nn.ReLU()
        self.relu_1 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.seq(self.blk(self.blk(x)))
        return self.relu(self.relu_1(self.relu(x)))


def test_repeated_calls_nested_paths_and_what_the_scopes_leave_open(tmp_path: Path) -> None:
    model = _Reused().eval()
    path = _export_legacy(model, torch.randn(2, 4), tmp_path / "reused.onnx")
    eager = scan(model, None, input_shape="1,4", samples=8)
    names = [s.name for s in find_sites(onnx.load(path))]
    assert [s.name for s in eager.sites][:6] == names[:6] == [
        "blk/relu", "blk.act", "blk/relu#2", "blk.act#2", "seq.0.1", "seq.1"]
    # The exporter puts relu_1's call and relu's second call into one scope, "/relu_1/":
    # which is which cannot be told, so those two keep their node names.
    assert names[6:] == ["relu", "/relu_1/Relu", "/relu_1/Relu_1"]


def test_node_names_of_other_producers_are_kept(tmp_path: Path) -> None:
    model = _Mixed().eval()
    path = _export_legacy(model, torch.randn(2, 3, 8, 8), tmp_path / "m.onnx")
    proto = onnx.load(path)
    proto.producer_name = "some-converter"
    assert [s.name for s in find_sites(proto)] == [
        "/gelu/Mul_1", "/Mul", "/Sigmoid_1", "/Tanh", "/relu/Relu"]
    proto.producer_name = "pytorch"
    assert [s.name for s in find_sites(proto)] == [
        "gelu", "root/silu", "root/sigmoid", "root/tanh", "relu"]
