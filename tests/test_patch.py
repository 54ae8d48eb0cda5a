"""deadrelu patch on the planted fixtures: every format, revived neurons, exactness at alpha 0,
plain-torch loading without deadrelu, the trained digits model's accuracy, compensation."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import FIXTURES, GENERATED, ROOT, build_eager, fixture_args, fixture_data

PATCHABLE = sorted(n for n, f in FIXTURES.items()
                   if any(s["kind"] in ("relu", "relu6") and s["dead"] for s in f["sites"]))
# input format -> output suffix
ROUTES = {"state_dict": ".pt2", "export": ".pt2", "onnx": ".onnx"}
OUT = Path(__import__("tempfile").mkdtemp(prefix="deadrelu-patch-tests-"))


def _data(name: str) -> str:
    return str(GENERATED / FIXTURES[name]["data"])


@cache
def patched(name: str, fmt: str, suffix: str, to: str = "prelu", alpha: float | None = None,
            scope: str | None = None, compensate: bool = False) -> Any:
    from deadrelu import patch

    if fmt == "onnx":
        path, kwargs = str(GENERATED / FIXTURES[name]["files"]["onnx"]), {}
    else:
        path, kwargs = fixture_args(name, fmt)
    out = OUT / f"{name}-{fmt}-{to}-{alpha}-{scope}-{compensate}{suffix}"
    result = patch(path, _data(name), output=str(out), to=to, alpha=alpha, scope=scope,
                   compensate=compensate, **kwargs)
    return result, out


def test_patchable_fixtures_are_the_planted_relu_ones() -> None:
    assert {"planted_relu", "planted_relu6", "relu6_dead_high", "reuse_relu", "functional",
            "digits_cnn"} <= set(PATCHABLE)


@pytest.mark.parametrize("fmt", sorted(ROUTES))
@pytest.mark.parametrize("name", PATCHABLE)
def test_prelu_neurons_revives_exactly_the_dead_channels(name: str, fmt: str) -> None:
    result, out = patched(name, fmt, ROUTES[fmt])
    assert result.status == "patched" and out.is_file()
    planted = {s["name"]: set(s["dead"]) for s in FIXTURES[name]["sites"]
               if s["kind"] in ("relu", "relu6") and s["dead"]}
    assert {c.name for c in result.changes} == set(planted)
    for site in result.plan.active:
        assert set(site.rewrite.channels) == planted[site.name]
        slopes = site.rewrite.slopes
        assert all((s == 0.01) == (i in planted[site.name]) for i, s in enumerate(slopes))
    for change in result.changes:
        assert change.kind_after == "prelu" and change.dead_before == len(planted[change.name])
        assert change.dead_after is not None


@pytest.mark.parametrize("fmt", sorted(ROUTES))
@pytest.mark.parametrize("name", PATCHABLE)
def test_leaky_layers_leaves_no_dead_neuron_at_changed_sites(name: str, fmt: str) -> None:
    result, _ = patched(name, fmt, ROUTES[fmt], to="leaky")
    assert result.changes
    for change in result.changes:
        assert change.kind_after == "leaky_relu"
        assert change.dead_before > 0 and change.dead_after == 0, change


@pytest.mark.parametrize("fmt", sorted(ROUTES))
@pytest.mark.parametrize("name", PATCHABLE)
@pytest.mark.parametrize("to", ["prelu", "leaky"])
def test_alpha_zero_reproduces_the_original_exactly(name: str, fmt: str, to: str) -> None:
    result, out = patched(name, fmt, ROUTES[fmt], to=to, alpha=0.0)
    assert result.drift is not None and result.drift.max_abs == 0.0
    assert result.drift.samples == FIXTURES[name]["num_samples"] or name == "digits_cnn"
    if fmt == "onnx":
        import onnxruntime as ort

        x = fixture_data(name).numpy()
        feed = {FIXTURES[name]["input"]: x}
        opts = ort.SessionOptions()  # no fusions: fused Conv+Relu rounds differently
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        before = ort.InferenceSession(str(GENERATED / FIXTURES[name]["files"]["onnx"]), opts)
        after = ort.InferenceSession(str(out), opts)
        assert np.array_equal(before.run(None, feed)[0], after.run(None, feed)[0])
    else:
        x = fixture_data(name)
        with torch.no_grad():
            want = build_eager(name)(x)
            got = torch.export.load(str(out)).module()(x)
        assert torch.equal(want, got)


def test_patched_onnx_passes_the_full_checker_and_keeps_site_names() -> None:
    import onnx

    from deadrelu import scan

    for name in ("planted_relu", "relu6_dead_high", "reuse_relu"):
        _, out = patched(name, "onnx", ".onnx")
        model = onnx.load(str(out))
        onnx.checker.check_model(model, full_check=True)
        ops = [n.op_type for n in model.graph.node]
        assert "Relu" not in ops or name == "reuse_relu"
        sites = [s.name for s in scan(str(out), _data(name)).sites]
        assert sites == [s.name for s in scan(str(GENERATED / f"{name}.onnx"),
                                              _data(name)).sites]
        prelu = [n for n in model.graph.node if n.op_type == "PRelu"]
        slopes = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        for node in prelu:
            shape = slopes[node.input[1]].shape
            assert len(shape) in (1, 3) and (len(shape) == 1 or shape[1:] == (1, 1))


def test_relu6_revives_dead_low_and_dead_high_and_keeps_the_cap() -> None:
    result, _ = patched("relu6_dead_high", "export", ".pt2", to="leaky")
    assert any(s["dead_high"] for s in FIXTURES["relu6_dead_high"]["sites"])
    assert [c.kind_after for c in result.changes] == ["leaky_relu", "leaky_relu"]
    assert all(c.dead_before > 0 and c.dead_after == 0 for c in result.changes)


def test_relu6_function_values() -> None:
    """min(h, 6 + s (h - 6)) with h = leaky(z): slope s outside [0, 6], identity inside."""
    from deadrelu.patch.plan import Plan, PlannedSite, Rewrite
    from deadrelu.patch.torch_graph import rewrite_graph

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = torch.nn.ReLU6()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(x)

    z = torch.tensor([[-10.0, -1.0, 0.0, 3.0, 6.0, 8.0, 100.0]])
    ep = torch.export.export(Net(), (z,))
    gm = ep.module()
    site = PlannedSite("act", "relu6", 7, 1, 2, "module", "act", [0], 1 / 7)
    site.rewrite = Rewrite("leaky_relu", 0.1, cap=6.0, cap_slopes=[0.1] * 7)
    rewrite_graph(gm, Plan("leaky", "layers", 0.1, [site]))
    want = torch.tensor([[-1.0, -0.1, 0.0, 3.0, 6.0, 6.2, 15.4]])
    assert torch.allclose(gm(z), want)


def test_pickled_output_swaps_modules_and_refuses_what_a_swap_cannot_do() -> None:
    result, out = patched("reuse_relu", "pickle", ".pt")
    skipped = {s.name: s.skipped for s in result.plan.sites if s.skipped}
    # PReLU per-channel cannot be shared by three calls with 8, 8 and 32 channels.
    assert set(skipped) == {"layer1.0.relu", "layer1.0.relu#2", "layer1.0.relu#3"}
    assert all("called at 3 sites" in r and ".pt2" in r for r in skipped.values())
    assert [c.name for c in result.changes] == ["stem.2"]
    model = torch.load(out, weights_only=False)
    assert isinstance(model.stem[2], torch.nn.PReLU)
    assert isinstance(model.layer1[0].relu, torch.nn.ReLU)
    # Layer-wide LeakyReLU is the same at every call: the shared module may be swapped.
    result, out = patched("reuse_relu", "pickle", ".pt", to="leaky")
    assert not [s for s in result.plan.sites if s.skipped]
    assert isinstance(torch.load(out, weights_only=False).layer1[0].relu, torch.nn.LeakyReLU)


def test_functional_calls_are_refused_for_pickled_output_with_the_reason() -> None:
    from deadrelu import DeadReluError

    with pytest.raises(DeadReluError, match=r"functional call.*pt2"):
        patched("functional", "pickle", ".pt")
    result, _ = patched("inplace", "pickle", ".pt")
    assert [c.name for c in result.changes] == ["act"]
    assert {s.name for s in result.plan.sites if s.skipped} == {"root/relu", "root/relu#2"}


def test_outputs_load_with_plain_torch_without_deadrelu() -> None:
    jobs = []
    for name in PATCHABLE:
        _, out = patched(name, "state_dict", ".pt2", alpha=0.0)
        jobs.append(("pt2", str(out), name))
        _, out = patched(name, "export", ".pt2")
        jobs.append(("pt2", str(out), name))
    for name in ("planted_relu", "reuse_relu", "inplace", "digits_cnn"):
        _, out = patched(name, "pickle", ".pt", alpha=0.0)
        jobs.append(("pt", str(out), name))
    # From a state dict + --arch fixtures/nets.py:f: pickled as the importable fixtures.nets.
    for name in ("planted_relu", "conv1d"):
        _, out = patched(name, "state_dict", ".pt", alpha=0.0)
        jobs.append(("pt", str(out), name))
        _, out = patched(name, "state_dict", ".pt")
        jobs.append(("pt", str(out), name))
    for _, path, name in jobs:
        expected = OUT / f"{Path(path).name}.expected.npy"
        with torch.no_grad():
            np.save(expected, build_eager(name)(fixture_data(name)).numpy())
    spec = [(k, p, _data(n), FIXTURES[n]["input"], str(OUT / f"{Path(p).name}.expected.npy"),
             "-0.0-" in Path(p).name) for k, p, n in jobs]
    script = (
        "import json, sys\n"
        "sys.modules['deadrelu'] = None  # any import of deadrelu now fails\n"
        "import numpy as np, torch\n"
        "for kind, path, data, key, expected, exact in json.loads(sys.argv[1]):\n"
        "    x = torch.from_numpy(np.load(data)[key])\n"
        "    m = torch.export.load(path).module() if kind == 'pt2' else "
        "torch.load(path, weights_only=False)\n"
        "    with torch.no_grad():\n"
        "        y = m(x).numpy()\n"
        "    want = np.load(expected)\n"
        "    assert y.shape == want.shape and np.isfinite(y).all(), path\n"
        "    assert not exact or np.array_equal(y, want), path\n"
        "print('ok', len(sys.argv[1]))\n")
    done = subprocess.run([sys.executable, "-c", script, json.dumps(spec)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


def test_digits_prelu_neurons_keeps_accuracy() -> None:
    result, _ = patched("digits_cnn", "state_dict", ".pt2", to="prelu", scope="neurons")
    d = result.drift
    assert d is not None and d.samples == 500
    # The accuracy before is the model's own accuracy on the labelled test set.
    with np.load(_data("digits_cnn")) as z:
        x, y = torch.from_numpy(z["x"]), z["y"]
    with torch.no_grad():
        acc = float((build_eager("digits_cnn")(x).argmax(1).numpy() == y).mean())
    assert d.accuracy_before == pytest.approx(acc)
    assert d.accuracy_after is not None
    assert abs(d.accuracy_after - d.accuracy_before) <= 0.005
    assert [c.dead_after for c in result.changes] == [0, 0]


def test_compensate_folds_the_mean_shift_and_cuts_the_drift() -> None:
    figures = []
    for fmt, suffix in (("export", ".pt2"), ("state_dict", ".pt2"), ("pickle", ".pt"),
                        ("onnx", ".onnx")):
        result, _ = patched("planted_relu", fmt, suffix, compensate=True)
        assert result.drift_uncompensated is not None and result.drift is not None
        assert result.drift.rel_l2 < 0.01 * result.drift_uncompensated.rel_l2, fmt
        assert all(c.compensation and "absorbed" in c.compensation for c in result.changes)
        figures.append(result.drift.rel_l2)
    # One rewrite, one correction: every format lands on the same model.
    assert max(figures) - min(figures) < 1e-5, figures


def test_compensated_consumer_output_mean_is_restored() -> None:
    """The mean of fc1's output over the data is the original's after --compensate."""
    _, out = patched("planted_relu", "pickle", ".pt", compensate=True)
    x = fixture_data("planted_relu")
    original = build_eager("planted_relu")
    model = torch.load(out, weights_only=False)
    with torch.no_grad():
        want = original.fc1(original.act1(original.conv(x)).flatten(1)).double().mean(0)
        got = model.fc1(model.act1(model.conv(x)).flatten(1)).double().mean(0)
    assert torch.allclose(want, got, atol=1e-4)


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("onnx-external", ".onnx"),
                                         ("state_dict", ".pt2")])
def test_a_patch_stopped_before_its_check_leaves_no_model(fmt: str, suffix: str,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """Ctrl-C during the re-scan of the written model left it, unverified, under -o."""
    import onnx

    import deadrelu.scanner
    from deadrelu import patch

    real = deadrelu.scanner.scan
    name = "planted_relu"
    src = tmp_path.parent / f"{tmp_path.name}-src"
    src.mkdir()
    if fmt == "onnx-external":  # weights in model.onnx.data: the patched model's go to .data
        model = onnx.load(str(GENERATED / FIXTURES[name]["files"]["onnx"]))
        onnx.save_model(model, str(src / "model.onnx"), save_as_external_data=True,
                        all_tensors_to_one_file=True, location="model.onnx.data",
                        size_threshold=256)
        path, kwargs = str(src / "model.onnx"), {}
    elif fmt == "onnx":
        path, kwargs = str(GENERATED / FIXTURES[name]["files"]["onnx"]), {}
    else:
        path, kwargs = fixture_args(name, fmt)
    out = tmp_path / f"fixed{suffix}"

    def interrupted(model: Any, *args: Any, **kwargs: Any) -> Any:
        if str(model) != path:  # the written model, being verified
            assert Path(model).exists() and Path(model).parent.parent == tmp_path
            raise KeyboardInterrupt
        return real(model, *args, **kwargs)

    monkeypatch.setattr(deadrelu.scanner, "scan", interrupted)
    with pytest.raises(KeyboardInterrupt):
        patch(path, _data(name), output=str(out), **kwargs)
    assert list(tmp_path.iterdir()) == []
    # A file that was there before is replaced only by a verified model.
    out.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        patch(path, _data(name), output=str(out), **kwargs)
    assert list(tmp_path.iterdir()) == [out] and out.read_bytes() == b"old"
    monkeypatch.setattr(deadrelu.scanner, "scan", real)
    assert patch(path, _data(name), output=str(out), **kwargs).status == "patched"
    assert sorted(tmp_path.iterdir()) == sorted(
        [out, *([tmp_path / "fixed.onnx.data"] if fmt == "onnx-external" else [])])
    assert out.read_bytes() != b"old"


@pytest.mark.parametrize("threshold", [256, 1 << 20], ids=["weights-outside", "all-inline"])
def test_patching_an_external_data_onnx_twice_into_one_output(
        threshold: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-running into an existing OUT (and OUT.data, also in the cwd) failed with 'cannot
    write: None'; a model whose weights all fit inline failed on a missing OUT.data."""
    import onnx

    from deadrelu import patch, scan

    name = "planted_relu"
    model = onnx.load(str(GENERATED / FIXTURES[name]["files"]["onnx"]))
    src = tmp_path / "src"
    src.mkdir()
    onnx.save_model(model, str(src / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data",
                    size_threshold=threshold)
    out = tmp_path / "fixed.onnx"
    monkeypatch.chdir(tmp_path)  # onnx tests a relative location against the cwd
    first = patch(str(src / "model.onnx"), _data(name), output=str(out))
    second = patch(str(src / "model.onnx"), _data(name), output=str(out))
    assert first.status == second.status == "patched"
    names = sorted(p.name for p in tmp_path.iterdir())
    weights = ["fixed.onnx.data"] if threshold == 256 else []
    assert names == sorted(["src", "fixed.onnx", *weights])  # no temporary folder left
    assert (out.stat().st_mode & 0o777) == (0o666 & ~_umask())
    assert sum(s.dead_count for s in scan(str(out), _data(name)).sites) == 0


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
