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


def _scan_both(model: nn.Module, x: np.ndarray, tmp_path: Path) -> tuple[list[str], list[str]]:
    """The site names of the eager model's scan and of its legacy export's, checking that
    the dead indices agree site by site."""
    np.savez(tmp_path / "data.npz", x=x)
    path = _export_legacy(model, torch.from_numpy(x[:2]), tmp_path / "model.onnx")
    eager = scan(model, str(tmp_path / "data.npz"))
    got = scan(path, str(tmp_path / "data.npz"))
    assert [s.dead_indices() for s in got.sites] == [s.dead_indices() for s in eager.sites]
    return [s.name for s in eager.sites], [s.name for s in got.sites]


class _OwnSuffixes(nn.Module):
    """Modules whose own names end in _k, each called before any module of the name without
    it (relu_1, blk_2), and one module called twice (act: its scopes act, act_1)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(4, 6)
        self.relu_1 = nn.ReLU()
        self.fc2 = nn.Linear(6, 6)
        self.relu = nn.ReLU()
        self.blk_2 = _Block()
        self.blk = _Block()
        self.act = nn.Tanh()
        with torch.no_grad():
            self.fc1.bias[:3] = -100.0  # dead in relu_1
            self.fc2.bias[4:] = -100.0  # dead in relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.fc2(self.relu_1(self.fc1(x))))
        x = self.blk(self.blk_2(x[:, :4]))
        return self.act(self.act(x))


def test_module_names_ending_in_k_are_not_taken_for_repeated_calls(tmp_path: Path) -> None:
    model = _OwnSuffixes().eval()
    x = np.random.default_rng(2).standard_normal((32, 4)).astype(np.float32)
    eager, got = _scan_both(model, x, tmp_path)
    assert eager == ["relu_1", "relu", "blk_2/relu", "blk_2.act", "blk/relu", "blk.act",
                     "act", "act#2"]
    assert got == eager
    # The export's scopes: /relu_1/ comes before any /relu/, so it is relu_1's own name;
    # /act_1/ comes after /act/, so it is act's second call.
    nodes = [s.node for s in find_sites(onnx.load(str(tmp_path / "model.onnx")))]
    assert nodes[:2] == ["/relu_1/Relu", "/relu/Relu"]
    assert nodes[-2:] == ["/act/Tanh", "/act_1/Tanh"]


class _Fn(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) * torch.sigmoid(x)


class _Enc(nn.Module):
    """ModuleLists and Sequentials inside a called module."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.ReLU()), _Fn()])
        self.seq = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.ReLU6()))
        self.acts = nn.ModuleList([nn.ReLU(), nn.GELU()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        x = self.seq(x)
        for act in self.acts:
            x = act(x)
        return x


class _Lists(nn.Module):
    """ModuleList items: activation modules (one called twice), modules calling functional
    activations, a nested ModuleList, and the lists of a called module."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fcs = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
        self.acts = nn.ModuleList([nn.ReLU(), nn.ReLU()])
        self.blocks = nn.ModuleList([_Fn(), _Fn()])
        self.nested = nn.ModuleList([nn.ModuleList([nn.ELU()])])
        self.enc = _Enc()
        with torch.no_grad():
            self.fcs[1].bias[:2] = -100.0  # dead in acts.1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fc, act in zip(self.fcs, self.acts, strict=True):
            x = act(fc(x))
        x = self.acts[0](x)
        for block in self.blocks:
            x = block(x)
        return self.enc(self.nested[0][0](x))


def test_module_list_items_are_named_by_their_full_paths(tmp_path: Path) -> None:
    model = _Lists().eval()
    x = np.random.default_rng(3).standard_normal((32, 4)).astype(np.float32)
    eager, got = _scan_both(model, x, tmp_path)
    assert eager == [
        "acts.0", "acts.1", "acts.0#2", "blocks.0/relu", "blocks.0/sigmoid", "blocks.1/relu",
        "blocks.1/sigmoid", "nested.0.0", "enc.layers.0.1", "enc.layers.1/relu",
        "enc.layers.1/sigmoid", "enc.seq.0.1", "enc.acts.0", "enc.acts.1"]
    assert got == eager
    # No scope for a list (never called): its name is in its items' segments.
    nodes = [s.node for s in find_sites(onnx.load(str(tmp_path / "model.onnx")))]
    assert nodes[:3] == ["/acts.0/Relu", "/acts.1/Relu", "/acts.0_1/Relu"]
    assert nodes[8:12] == ["/enc/layers.0/layers.0.1/Relu", "/enc/layers.1/Relu",
                           "/enc/layers.1/Sigmoid", "/enc/seq/seq.0/seq.0.1/Clip"]
