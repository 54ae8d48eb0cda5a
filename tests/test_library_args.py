"""The library takes data in memory and Python-natural arguments, and turns wrong ones into
DeadReluError (design.md §3: the one user-error exception), as the CLI does for flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import deadrelu
from deadrelu.errors import DeadReluError
from tests.conftest import FIXTURES, GENERATED, ROOT

DIGITS = FIXTURES["digits_cnn"]
MODEL = str(GENERATED / DIGITS["files"]["state_dict"])
ARCH = str(ROOT / DIGITS["arch"].split(":")[0]) + ":" + DIGITS["arch"].split(":")[1]
DATA = GENERATED / DIGITS["data"]


def _x() -> np.ndarray:
    with np.load(DATA) as z:
        return np.asarray(z[DIGITS["input"]][:96])


def _dead(result: Any) -> list[list[int]]:
    return [s.dead_indices() for s in result.sites]


@pytest.mark.parametrize("form", ["array", "tensor", "mapping", "list of batches"])
def test_data_in_memory_equals_the_same_data_from_a_file(form: str, tmp_path: Path) -> None:
    x = _x()
    name = DIGITS["input"]
    path = tmp_path / "x.npz"
    np.savez(path, **{name: x})
    data = {"array": x, "tensor": torch.from_numpy(x), "mapping": {name: x},
            "list of batches": [{name: x[:40]}, {name: x[40:]}]}[form]
    got = deadrelu.scan(MODEL, data, arch=ARCH, batch_size=32)
    want = deadrelu.scan(MODEL, str(path), arch=ARCH, batch_size=32)
    assert got.data.samples == want.data.samples == len(x)
    assert _dead(got) == _dead(want)
    for a, b in zip(got.sites, want.sites, strict=True):
        for field in ("active", "positive", "max_pre", "min_pre"):
            np.testing.assert_array_equal(a.stats.arrays[field], b.stats.arrays[field])


def test_natural_forms_of_shape_and_kwargs() -> None:
    r = deadrelu.scan(MODEL, None, arch=ARCH, arch_kwargs={}, input_shape=(1, 1, 8, 8),
                      samples=8)
    assert r.data.synthetic and r.data.samples == 8


@pytest.mark.parametrize("kwargs,words", [
    ({"model": None}, "model must be a path or an nn.Module"),
    ({"samples": 2.5}, "samples must be a whole number"),
    ({"batch_size": "32"}, "batch_size must be a whole number"),
    ({"input_shape": {"x": 1}}, "input_shape must be a string or a tuple"),
    ({"arch_kwargs": 3}, "arch_kwargs must be a dict"),
    ({"data": 5}, "data must be a path"),
    ({"channel_axis": "1"}, "channel_axis must be a whole number"),
    ({"settings": deadrelu.Settings(eps="0.001")}, "--eps must be a number"),  # type: ignore[arg-type]
    ({"data": [[0.5, 1.0], [2.0, 3.0]]}, "list of 2 numbers, not a batch"),
])
def test_wrong_argument_types_are_deadrelu_errors(kwargs: dict[str, Any], words: str) -> None:
    args = {"model": MODEL, "data": _x(), "arch": ARCH, **kwargs}
    with pytest.raises(DeadReluError, match=words):
        deadrelu.scan(args.pop("model"), args.pop("data"), **args)


def test_numpy_integers_are_whole_numbers() -> None:
    # np.int64 comes out of every array computation; the report must still be plain JSON.
    x = _x()
    r = deadrelu.scan(MODEL, x, arch=ARCH, batch_size=np.int64(32), samples=np.int64(64),
                      channel_axis=np.int64(1))
    assert r.data.samples == 64 and _dead(r) == _dead(deadrelu.scan(MODEL, x[:64], arch=ARCH))
    import json

    json.dumps(r.to_dict())
    s = deadrelu.scan(MODEL, None, arch=ARCH, input_shape=(np.int64(1), 1, 8, 8), samples=8)
    assert s.data.samples == 8


@pytest.mark.parametrize("how", ["script", "trace"])
def test_a_script_module_is_scanned_through_its_graph(how: str) -> None:
    from deadrelu.backends.torch_loading import build_arch

    eager = build_arch(ARCH)
    eager.load_state_dict(torch.load(MODEL, weights_only=True))
    eager.train()
    x = _x()
    module = torch.jit.script(eager) if how == "script" else \
        torch.jit.trace(eager.eval(), torch.from_numpy(x[:2])).train()
    got = deadrelu.scan(module, x)
    assert got.model.format == "torchscript"
    assert _dead(got) == _dead(deadrelu.scan(MODEL, x, arch=ARCH)) and any(_dead(got))
    assert all(m.training for m in module.modules())  # the caller's mode, given back


def test_patch_takes_a_file_not_a_module(tmp_path: Path) -> None:
    from deadrelu.backends.torch_loading import build_arch

    with pytest.raises(DeadReluError, match="patch takes a model file, not a"):
        deadrelu.patch(build_arch(ARCH), str(DATA), output=str(tmp_path / "p.pt2"))
    assert not (tmp_path / "p.pt2").exists()


def test_arch_with_a_built_module_is_refused() -> None:
    from deadrelu.backends.torch_loading import build_arch

    with pytest.raises(DeadReluError, match=r"nn\.Module already"):
        deadrelu.scan(build_arch(ARCH), _x(), arch=ARCH)


def test_patch_takes_one_glob_as_a_string_and_checks_alpha(tmp_path: Path) -> None:
    out = tmp_path / "p.pt2"
    with pytest.raises(DeadReluError, match="--alpha must be a number"):
        deadrelu.patch(MODEL, str(DATA), arch=ARCH, output=str(out), alpha="x")
    r = deadrelu.patch(MODEL, str(DATA), arch=ARCH, output=str(out), sites="features.3",
                       dry_run=True, samples=64)
    assert [c.name for c in r.plan.sites] == ["features.3"]


class _Masked(torch.nn.Module):
    """forward(x, mask=None): a mask of ones kills every neuron."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(4, 6)
        self.act = torch.nn.ReLU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.lin(x)
        if mask is not None:
            h = h - 1000 * mask
        return self.act(h)


def test_an_optional_forward_input_is_fed_when_the_data_names_it(tmp_path: Path) -> None:
    from tests.test_cli import run

    x = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    ones = np.ones((40, 6), np.float32)
    model = _Masked().eval()
    assert deadrelu.scan(model, {"x": x, "mask": ones}).summary()["dead"] == 6
    assert deadrelu.scan(model, {"x": x}).summary()["dead"] == 0  # left to its default
    # An (x, y) pair's second item is a label, never the optional input.
    pairs = [(x[:20], ones[:20]), (x[20:], ones[20:])]
    assert deadrelu.scan(model, pairs).summary()["dead"] == 0
    # The CLI, from an .npz holding both arrays.
    (tmp_path / "masked.py").write_text(
        "from tests.test_library_args import _Masked\n"
        "def build():\n"
        "    return _Masked()\n")
    torch.save(model.state_dict(), tmp_path / "m.pt")
    np.savez(tmp_path / "xm.npz", x=x, mask=ones)
    r = run("scan", str(tmp_path / "m.pt"), "--arch", f"{tmp_path / 'masked.py'}:build",
            "--data", str(tmp_path / "xm.npz"), "-f", "json")
    assert r.exit_code == 0, r.stderr
    import json

    assert json.loads(r.stdout)["summary"]["dead"] == 6
