"""--compile: the statistics computed inside a torch.compile'd graph equal the eager scan's.

Counts, samples and every derived figure (dead, dormant, saturation, …) are identical. Float
extremes and |h| sums are those of the compiled model: inductor computes the layer feeding an
activation (a convolution in another layout, a BatchNorm decomposed) with other rounding than
eager, so they agree to float32 precision, not bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from deadrelu import scan
from deadrelu.backends import torch_compile
from deadrelu.cli import app
from deadrelu.data import DataSource
from deadrelu.errors import DeadReluError
from tests.conftest import FIXTURES, GENERATED, fixture_args

INTEGER_FIELDS = ("active", "active_samples", "positive", "finite", "at_cap")
FLOAT_FIELDS = ("max_pre", "min_pre", "abs_sum")


def assert_same_scan(eager, compiled) -> None:
    assert [s.info for s in compiled.sites] == [s.info for s in eager.sites]
    for a, b in zip(eager.sites, compiled.sites, strict=True):
        assert (a.stats.samples, a.stats.elements) == (b.stats.samples, b.stats.elements)
        for field in INTEGER_FIELDS:
            np.testing.assert_array_equal(a.stats.arrays[field], b.stats.arrays[field],
                                          err_msg=f"{a.name} {field}")
        for field in FLOAT_FIELDS:
            np.testing.assert_allclose(a.stats.arrays[field], b.stats.arrays[field],
                                       rtol=1e-5, err_msg=f"{a.name} {field}")
        for field, value in vars(a.figures).items():  # dead, dormant, …: identical
            other = getattr(b.figures, field)
            if np.asarray(value).dtype.kind == "f":  # scores and margins: float32 precision
                np.testing.assert_allclose(value, other, rtol=1e-5, err_msg=f"{a.name} {field}")
            else:
                np.testing.assert_array_equal(value, other, err_msg=f"{a.name} {field}")
    assert compiled.extra_settings.get("compile") is True


@pytest.mark.parametrize(("name", "fmt", "batch_size"), [
    ("planted_relu", "export", 24),  # 64 samples: two batches of 24 and a tail of 16
    ("reuse_relu", "pickle", 32),  # one nn.ReLU called three times per block
])
def test_compiled_scan_equals_the_eager_scan(name: str, fmt: str, batch_size: int) -> None:
    path, kwargs = fixture_args(name, fmt)
    data = str(GENERATED / FIXTURES[name]["data"])
    eager = scan(path, data, batch_size=batch_size, **kwargs)
    compiled = scan(path, data, batch_size=batch_size, compile=True, **kwargs)
    assert_same_scan(eager, compiled)
    expected = FIXTURES[name]["sites"]
    assert [s.dead_indices() for s in compiled.sites] == [e["dead"] for e in expected]


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16, 6)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return torch.nn.functional.gelu(self.act(self.fc(h.flatten(1)) * 3))


def _source(x: np.ndarray, batch: int = 8, name: str = "x") -> DataSource:
    def batches():
        for i in range(0, len(x), batch):
            yield {name: x[i:i + batch]}
    return DataSource(f"{len(x)} samples", False, len(x), batches)


def test_nan_and_inf_are_counted_apart_as_in_the_eager_scan() -> None:
    torch.manual_seed(0)
    model = _Net().eval()
    x = np.random.default_rng(0).standard_normal((16, 2, 4, 4)).astype(np.float32)
    x[3, 0, 1, 1] = np.nan
    x[9, 1, 2, 3] = np.inf
    eager = scan(model, _source(x))
    compiled = scan(model, _source(x), compile=True)
    assert_same_scan(eager, compiled)
    assert sum(int(s.stats.arrays["finite"].sum()) for s in compiled.sites) < \
        sum(s.stats.elements * s.info.neurons for s in compiled.sites)


def test_a_module_scanned_again_reuses_its_graph_until_its_weights_change() -> None:
    torch.manual_seed(1)
    model = _Net().eval()
    x = np.random.default_rng(1).standard_normal((16, 2, 4, 4)).astype(np.float32)
    first = scan(model, _source(x), compile=True)
    entries = torch_compile._CACHE[model][1]
    assert len(entries) == 1
    again = scan(model, _source(x), compile=True)
    assert torch_compile._CACHE[model][1] is entries  # same weights: the same compiled step
    assert [s.dead_indices() for s in again.sites] == [s.dead_indices() for s in first.sites]
    with torch.no_grad():
        model.conv.bias.fill_(-1e4)  # every conv channel dies
    after = scan(model, _source(x), compile=True)
    assert torch_compile._CACHE[model][1] is not entries
    assert after.sites[0].dead_indices() == [0, 1, 2, 3]
    assert_same_scan(scan(model, _source(x)), after)


class _DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # control flow on a value: torch.export cannot capture it
            return torch.relu(x)
        return torch.sigmoid(x)


def test_a_model_export_cannot_capture_is_a_user_error() -> None:
    x = np.ones((4, 3), dtype=np.float32)
    with pytest.raises(DeadReluError, match=r"--compile: torch\.export cannot capture"):
        scan(_DataDependent(), _source(x), compile=True)


@pytest.mark.parametrize("suffix", ["onnx", "ts"])
def test_compile_refuses_onnx_and_torchscript_in_one_line(suffix: str) -> None:
    model = str(GENERATED / f"planted_relu.{suffix}")
    result = CliRunner().invoke(app, ["scan", model, "--compile", "--data",
                                      str(GENERATED / "planted_relu.npz")])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--compile applies to PyTorch models" in lines[0], lines
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_many_models_compile_independently() -> None:
    # torch.compile keeps at most 8 graphs per code object; more models than that must not
    # hit its limit (a hard error under fullgraph=True).
    x = np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)
    for i in range(10):
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU()).eval()
        with torch.no_grad():
            model[0].bias.fill_(10.0)
            model[0].bias[i % 4] = -1e4  # one dead neuron, a different one each time
        result = scan(model, _source(x, name="input"), compile=True)
        assert result.sites[0].dead_indices() == [i % 4]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_scan_on_cuda_equals_the_eager_scan() -> None:
    torch.manual_seed(3)
    model = _Net().eval()
    x = np.random.default_rng(3).standard_normal((64, 2, 4, 4)).astype(np.float32)
    x[5, 1, 0, 0] = np.nan
    eager = scan(model, _source(x, batch=16), device="cuda")
    compiled = scan(model, _source(x, batch=16), device="cuda", compile=True)
    assert_same_scan(eager, compiled)
