"""ONNX and TorchScript: one model, one answer in all five formats; statistics computed inside
the graph agree with the naive copy-everything reference; only per-neuron numbers leave
onnxruntime; the hand-written graphs (PaddleOCR HardSwish, contrib GELUs, If, int64 +
float16 inputs, external data) give the sites and dead units computed independently."""

from __future__ import annotations

import itertools
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from deadrelu import scan
from deadrelu.errors import DeadReluError
from tests.conftest import FIXTURES, GENERATED, MANIFEST, WITH_SITES, scan_fixture
from tests.onnx_reference import naive_calls
from tests.reference import reference_sites

ALL_FORMATS = ("state_dict", "pickle", "export", "onnx", "torchscript")
GRAPHS: dict[str, Any] = MANIFEST["graphs"]
# Eval-mode RReLU is a LeakyReLU with the mean slope; ONNX has only the latter op.
ONNX_KIND = {"rrelu": "leaky_relu"}


def _scan(name: str, fmt: str) -> Any:
    if fmt in ("onnx", "torchscript"):
        f = FIXTURES[name]
        return scan(str(GENERATED / f["files"][fmt]), str(GENERATED / f["data"]))
    return scan_fixture(name, fmt)


def _idx(mask: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(mask)]


@pytest.mark.parametrize("name", WITH_SITES)
def test_every_format_gives_the_same_sites_and_dead_units(name: str) -> None:
    expected = FIXTURES[name]["sites"]
    for fmt in ALL_FORMATS:
        result = _scan(name, fmt)
        assert [s.name for s in result.sites] == [e["name"] for e in expected], fmt
        for site, e in zip(result.sites, expected, strict=True):
            kind = ONNX_KIND.get(e["kind"], e["kind"]) if fmt == "onnx" else e["kind"]
            where = (fmt, site.name)
            assert site.info.kind == kind, where
            assert site.info.neurons == e["neurons"], where
            assert site.info.channel_axis == e["channel_axis"], where
            assert site.dead_indices() == e["dead"], where
            assert _idx(site.figures.dead_low) == e["dead_low"], where
            assert _idx(site.figures.dead_high) == e["dead_high"], where
            if kind in ("leaky_relu", "prelu", "rrelu"):
                assert _idx(site.figures.negative_only) == e["negative_only"], where


@pytest.mark.parametrize("name", WITH_SITES)
def test_torchscript_statistics_equal_the_eager_models_bit_for_bit(name: str) -> None:
    """TorchScript runs torch's own kernels: every accumulator equals the eager scan's."""
    script, eager = _scan(name, "torchscript"), scan_fixture(name, "state_dict")
    assert [s.name for s in script.sites] == [s.name for s in eager.sites]
    for a, b in zip(script.sites, eager.sites, strict=True):
        assert a.stats == b.stats, a.name
        assert a.info.module == b.info.module and a.info.call == b.info.call, a.name


INTEGER_FIELDS = ("active", "active_samples", "positive", "finite", "at_cap")


@pytest.mark.parametrize("name", WITH_SITES)
def test_onnx_counts_exactly_what_torch_export_counts(name: str) -> None:
    """The same pre-activations give the same counts; onnxruntime's kernels may round the
    extremes differently from torch's in the last bits."""
    graph, torch_result = _scan(name, "onnx"), scan_fixture(name, "export")
    for a, b in zip(graph.sites, torch_result.sites, strict=True):
        assert a.stats.samples == b.stats.samples and a.stats.elements == b.stats.elements
        for field in INTEGER_FIELDS:
            np.testing.assert_array_equal(a.stats.arrays[field], b.stats.arrays[field],
                                          err_msg=f"{a.name} {field}")
        for field in ("max_pre", "min_pre", "abs_sum"):
            np.testing.assert_allclose(a.stats.arrays[field], b.stats.arrays[field],
                                       rtol=1e-4, atol=1e-5, err_msg=f"{a.name} {field}")


def _reference_check(path: Path, data: dict[str, np.ndarray], result: Any,
                     extremes_rtol: float = 0.0) -> None:
    calls, sites = naive_calls(path, data)
    assert [s.name for s in sites] == [s.name for s in result.sites]
    reference = reference_sites(calls, [s.info.channel_axis for s in result.sites])
    for site, ref in zip(result.sites, reference, strict=True):
        a = site.stats.arrays
        assert site.info.neurons == ref.neurons, site.name
        assert site.stats.samples == ref.samples, site.name
        for field in ("active", "active_samples", "positive", "finite"):
            np.testing.assert_array_equal(a[field], getattr(ref, field),
                                          err_msg=f"{site.name} {field}")
        for field in ("max_pre", "min_pre"):
            np.testing.assert_allclose(a[field], getattr(ref, field), rtol=extremes_rtol,
                                       atol=0, err_msg=f"{site.name} {field}")
        np.testing.assert_allclose(a["abs_sum"], ref.abs_sum, rtol=max(1e-6, extremes_rtol),
                                   atol=1e-6)


@pytest.mark.parametrize("name", WITH_SITES)
def test_in_graph_statistics_match_the_mark_every_output_reference(name: str) -> None:
    f = FIXTURES[name]
    with np.load(GENERATED / f["data"]) as z:
        data = {f["input"]: z[f["input"]]}
    _reference_check(GENERATED / f["files"]["onnx"], data, _scan(name, "onnx"))


@pytest.mark.parametrize("name", ["paddle_hardswish", "ms_gelus", "multi_input"])
def test_hand_written_graphs_match_the_reference(name: str) -> None:
    g = GRAPHS[name]
    with np.load(GENERATED / g["data"]) as z:
        data = {k: z[k] for k in z.files}
    result = scan(str(GENERATED / g["file"]), str(GENERATED / g["data"]))
    # onnxruntime's CPU runs float16 ops in float32 and drops the Cast pairs between them, so
    # inside the graph a float16 value may not be rounded to float16 where the naive graph
    # output is: extremes agree to float16 resolution, counts exactly.
    _reference_check(GENERATED / g["file"], data, result,
                     extremes_rtol=1e-3 if name == "multi_input" else 0.0)


def test_only_per_neuron_statistics_leave_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    seen: list[tuple[list[str], list[int]]] = []
    real_run = ort.InferenceSession.run

    def spy(self: Any, names: Any, feed: Any, *args: Any) -> Any:
        out = real_run(self, names, feed, *args)
        seen.append((list(names or []), [np.asarray(o).size for o in out]))
        return out

    monkeypatch.setattr(ort.InferenceSession, "run", spy)
    f = FIXTURES["reuse_relu"]
    result = scan(str(GENERATED / f["files"]["onnx"]), str(GENERATED / f["data"]))
    model = onnx.load(str(GENERATED / f["files"]["onnx"]))
    own_outputs = {o.name for o in model.graph.output}
    site_values = {v.name for v in model.graph.value_info} | {
        o for n in model.graph.node for o in n.output}
    assert len(seen) == 2  # one run per batch of 32 over the 64 samples
    # Image ReLUs come back as four figures per (sample, channel) in one array, so a site
    # returns 4 * batch * channels numbers, against batch * channels * H * W in the activation.
    expected = sorted(4 * 32 * s.info.neurons for s in result.sites)
    assert all(4 < math.prod(s.info.shape[2:]) for s in result.sites)
    for names, sizes in seen:
        assert names, "the session must be asked for the statistics only"
        assert not set(names) & (own_outputs | site_values), "model values were fetched"
        assert len(names) == len(result.sites)
        assert sorted(sizes) == expected


def test_hardswish_written_out_is_one_site_and_relu6_clip_another() -> None:
    g = GRAPHS["paddle_hardswish"]
    result = scan(str(GENERATED / g["file"]), str(GENERATED / g["data"]))
    assert [(s.name, s.info.kind, s.info.neurons) for s in result.sites] == [
        (e["name"], e["kind"], e["neurons"]) for e in g["sites"]]
    assert [s.dead_indices() for s in result.sites] == [e["dead"] for e in g["sites"]]
    assert result.sites[0].dead_indices() == [2, 9]  # the planted channels


def test_external_data_model_gives_the_same_statistics(tmp_path: Path) -> None:
    g, inline = GRAPHS["external_data"], GRAPHS["paddle_hardswish"]
    data = str(GENERATED / g["data"])
    outside = scan(str(GENERATED / g["file"]), data)
    assert [s.stats for s in outside.sites] == [
        s.stats for s in scan(str(GENERATED / inline["file"]), data).sites]
    lonely = tmp_path / "external_data.onnx"
    shutil.copy(GENERATED / g["file"], lonely)  # without its weights file
    with pytest.raises(DeadReluError, match=r"external_data\.onnx\.data"):
        scan(str(lonely), data)


def test_contrib_gelus_are_sites_and_run() -> None:
    g = GRAPHS["ms_gelus"]
    result = scan(str(GENERATED / g["file"]), str(GENERATED / g["data"]))
    assert [(s.name, s.info.kind) for s in result.sites] == [
        (e["name"], e["kind"]) for e in g["sites"]]
    assert result.sites[0].dead_indices() == [1, 6]
    assert 3 in result.sites[1].dead_indices()  # BiasGelu's bias planted at -100


def test_int64_and_float16_inputs() -> None:
    g = GRAPHS["multi_input"]
    result = scan(str(GENERATED / g["file"]), str(GENERATED / g["data"]))
    assert [s.dead_indices() for s in result.sites] == [e["dead"] for e in g["sites"]]
    assert result.sites[0].dead_indices() == [2]
    assert result.sites[0].info.channel_axis == 2


def test_sites_inside_if_branches_are_measured_and_a_branch_never_taken_is_said() -> None:
    from deadrelu.sites import list_sites

    g = GRAPHS["if_subgraph"]
    listed = list_sites(str(GENERATED / g["file"]))
    assert sorted((s.name, s.kind) for s in listed) == sorted(
        (e["name"], e["kind"]) for e in g["sites"])
    assert all(s.measured for s in listed)
    result = scan(str(GENERATED / g["file"]), str(GENERATED / g["data"]))
    ran = [e for e in g["sites"] if e["runs"]]
    assert [s.name for s in result.sites] == [e["name"] for e in ran]
    assert [s.dead_indices() for s in result.sites] == [e["dead"] for e in ran]
    assert all(s.stats.samples == 64 for s in result.sites)
    assert [n for n in result.notes if "never ran" in n] == [
        "site sr_switch.else_branch/else/Tanh never ran on this data (its If branch was "
        "never taken)"]


@pytest.mark.parametrize("image", [False, True])  # image: (N, 3, 4, 4), the pooled statistics
def test_if_branches_taken_by_different_batches_count_only_their_batches(tmp_path: Path,
                                                                         image: bool) -> None:
    from onnx import TensorProto, helper

    dims: list[Any] = ["N", 3, 4, 4] if image else ["N", 3]
    trail = (1, 1) if image else ()

    def branch(name: str) -> Any:
        return helper.make_graph(
            [helper.make_node("Add", ["x", f"{name}_shift"], [f"{name}_z"], name=f"{name}/Add"),
             helper.make_node("Relu", [f"{name}_z"], [f"{name}_y"], name=f"{name}/Relu")],
            name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, dims)])

    shifts = {"then": np.asarray([1.0, -50.0, 0.0], np.float32).reshape(3, *trail),
              "else": np.asarray([-50.0, 1.0, 0.0], np.float32).reshape(3, *trail)}
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0),
         helper.make_node("Greater", ["top", "zero"], ["cond"]),
         helper.make_node("If", ["cond"], ["y"], name="switch",
                          then_branch=branch("then"), else_branch=branch("else"))],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
        [onnx.numpy_helper.from_array(np.float32(0.0), "zero"),
         *(onnx.numpy_helper.from_array(v, f"{k}_shift") for k, v in shifts.items())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "branches.onnx"
    onnx.save(model, str(path))
    rng = np.random.default_rng(0)
    low = -np.abs(rng.standard_normal((4, 3, *trail))).astype(np.float32) - 0.1  # else-branch
    high = np.abs(rng.standard_normal((6, 3, *trail))).astype(np.float32) + 0.1  # then-branch
    if image:
        low, high = np.tile(low, (1, 1, 4, 4)), np.tile(high, (1, 1, 4, 4))
    axes = (0, 2, 3) if image else (0,)
    data = tmp_path / "x.npy"
    np.save(data, np.concatenate([low, high]))
    result = scan(str(path), str(data), batch_size=4)  # batches: 4 low, 4 high, 2 high
    by_name = {s.name: s for s in result.sites}
    then, other = by_name["switch.then_branch/then/Relu"], by_name["switch.else_branch/else/Relu"]
    assert then.stats.samples == 6 and other.stats.samples == 4
    np.testing.assert_array_equal(then.stats.arrays["active"],
                                  ((high + shifts["then"]) > 0).sum(axis=axes))
    np.testing.assert_array_equal(other.stats.arrays["active"],
                                  ((low + shifts["else"]) > 0).sum(axis=axes))
    np.testing.assert_array_equal(then.stats.arrays["max_pre"],
                                  (high + shifts["then"]).max(axis=axes))
    np.testing.assert_array_equal(other.stats.arrays["min_pre"],
                                  (low + shifts["else"]).min(axis=axes))


def test_module_paths_are_recovered_from_torch_onnx_export() -> None:
    result = _scan("reuse_relu", "onnx")
    assert [s.name for s in result.sites] == ["stem.2", "layer1.0.relu", "layer1.0.relu#2",
                                              "layer1.0.relu#3"]
    assert all(s.info.module.startswith("node_") for s in result.sites)  # the ONNX node names


@pytest.mark.parametrize("name", ["planted_relu", "planted_gelu", "conv1d"])
def test_batches_with_nan_or_inf_take_the_exact_graph_and_agree_with_torch(
        name: str, tmp_path: Path) -> None:
    """The fast graph assumes finite pre-activations; a batch whose sum says otherwise is
    rerun through the exact graph, so the figures match torch's with NaN / Inf present."""
    f = FIXTURES[name]
    with np.load(GENERATED / f["data"]) as z:
        x = z[f["input"]].copy()
    x[40, 0] = np.nan  # second batch of 32
    x[41, 1] = np.inf
    x[5, 0] = -np.inf  # first batch
    data = tmp_path / "poisoned.npy"
    np.save(data, x)
    graph = scan(str(GENERATED / f["files"]["onnx"]), str(data))
    torch_result = scan(str(GENERATED / f["files"]["export"]), str(data))
    assert any(int(s.stats.arrays["finite"].min()) < s.stats.elements for s in graph.sites)
    for a, b in zip(graph.sites, torch_result.sites, strict=True):
        for field in INTEGER_FIELDS:
            np.testing.assert_array_equal(a.stats.arrays[field], b.stats.arrays[field],
                                          err_msg=f"{a.name} {field}")
        np.testing.assert_allclose(a.stats.arrays["max_pre"], b.stats.arrays["max_pre"],
                                   rtol=1e-4, atol=1e-5)


def test_activations_in_a_loop_body_are_listed_as_not_measured(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    from deadrelu.sites import list_sites

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Relu", ["state_in"], ["state_out"], name="body/Relu")],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("state_in", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_out", TensorProto.FLOAT, ["N", 3])])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"], name="main/Relu"),
         helper.make_node("Loop", ["trips", "", "h"], ["y"], name="repeat", body=body)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [onnx.numpy_helper.from_array(np.asarray(2, dtype=np.int64), "trips")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "loop.onnx"
    onnx.save(model, str(path))
    listed = {s.name: s for s in list_sites(str(path))}
    assert listed["main/Relu"].measured
    inner = listed["repeat.body/body/Relu"]
    assert not inner.measured and "Loop" in inner.reason
    data = tmp_path / "x.npy"
    np.save(data, np.ones((4, 3), dtype=np.float32))
    result = scan(str(path), str(data))
    assert [s.name for s in result.sites] == ["main/Relu"]
    assert any("repeat.body/body/Relu is not measured" in n for n in result.notes)


def _conv_stack(path: Path, layers: int = 4, channels: int = 32) -> np.ndarray:
    """Conv+ReLU layers with channels a multiple of the NCHWc block (8 or 16), so that
    onnxruntime's CPU provider runs them in its blocked layout; returns a batch for it."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        c_in = 3 if i == 0 else channels
        w = numpy_helper.from_array(
            (rng.standard_normal((channels, c_in, 3, 3)) / 4).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"z{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"z{i}"], [f"h{i}"])]
        x = f"h{i}"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["y"]))
    graph = helper.make_graph(
        nodes, "stack", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, 1, 1])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return rng.standard_normal((8, 3, 16, 16)).astype(np.float32)


@pytest.mark.parametrize("model", ["digits_cnn", "nchwc_stack"])
@pytest.mark.parametrize("fast", [True, False])
def test_onnxruntime_takes_each_sites_statistics_before_running_on(tmp_path: Path, fast: bool,
                                                                   model: str) -> None:
    """Execution order, read from onnxruntime's own profile: site k's statistics run before
    site k+1's, and before the model's last node. Were every reduction left to the end,
    every activation would stay alive for the whole run. The NCHWc stack checks the same of
    the pooled statistics, whose outputs onnxruntime reorders out of its blocked layout."""
    import json

    import onnxruntime as ort

    from deadrelu.backends.onnx_backend import load_onnx_backend
    from deadrelu.backends.onnx_instrument import instrument, layouts

    if model == "nchwc_stack":
        path = tmp_path / "stack.onnx"
        batch = _conv_stack(path)
    else:
        path = GENERATED / FIXTURES["digits_cnn"]["files"]["onnx"]
        x = np.load(GENERATED / FIXTURES["digits_cnn"]["data"])
        batch = next(iter(x.values()))[:8].astype(np.float32)
    backend = load_onnx_backend(path)
    inst = instrument(backend.model, backend.sites, layouts(backend.model, backend.sites, None),
                      1e-3, fast=fast)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp_path / "profile")
    # The loaded model leaves its weights in the file, as external data next to it.
    opts.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                  str(path.parent))
    session = ort.InferenceSession(inst.model.SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    session.run(None, {backend.inputs[0].name: batch})
    events = json.loads(Path(session.end_profiling()).read_text())
    order = [e["name"].removesuffix("_kernel_time") for e in events
             if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    groups: dict[int, list[int]] = {}
    for pos, name in enumerate(order):
        if name.startswith("deadrelu/"):
            groups.setdefault(int(name.split("/")[1]), []).append(pos)
    assert sorted(groups) == list(range(len(backend.sites))) and len(groups) > 1
    spans = [(min(groups[k]), max(groups[k])) for k in sorted(groups)]
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end < start, spans
    # ...and not after the whole model: only the last site's may follow its final node.
    last_model_node = max(i for i, n in enumerate(order) if not n.startswith("deadrelu/"))
    assert spans[-2][1] < last_model_node


def _images(name: str) -> bool:
    from tests.conftest import fixture_data

    return fixture_data(name).ndim == 4  # (N, C, H, W): the model has a Conv2d


@pytest.mark.parametrize("name", [n for n in WITH_SITES if _images(n)])
def test_traced_torchscript_equals_the_eager_model(name: str, tmp_path: Any) -> None:
    """torch.jit.trace, the common way to make TorchScript, keeps no Conv2d attributes; the
    bundled .ts files are scripted. A traced model scans like its eager model."""
    from tests.conftest import build_eager, fixture_data

    path = tmp_path / "traced.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values
        torch.jit.save(torch.jit.trace(build_eager(name), fixture_data(name)[:2]), str(path))
    traced = scan(str(path), str(GENERATED / FIXTURES[name]["data"]))
    eager = scan_fixture(name, "state_dict")
    assert [s.name for s in traced.sites] == [s.name for s in eager.sites]
    for a, b in zip(traced.sites, eager.sites, strict=True):
        assert a.stats == b.stats, a.name
