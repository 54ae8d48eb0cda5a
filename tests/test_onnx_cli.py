"""ONNX / TorchScript from the command line: scans, `deadrelu sites`, and one clean line with
exit 2 for every bad model or data file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import FIXTURES, GENERATED, MANIFEST
from tests.test_cli import assert_user_error, run

GRAPHS = MANIFEST["graphs"]
MULTI = str(GENERATED / GRAPHS["multi_input"]["file"])
PADDLE = str(GENERATED / GRAPHS["paddle_hardswish"]["file"])


def _save(model: onnx.ModelProto, path: Path) -> str:
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def _relu_graph(nodes: list[onnx.NodeProto], extra_opsets: dict[str, int] | None = None
                ) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    imports = [helper.make_opsetid("", 17)] + [
        helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
    return helper.make_model(graph, opset_imports=imports)


def test_onnx_scan_json_names_module_paths_and_format() -> None:
    f = FIXTURES["reuse_relu"]
    r = run("scan", str(GENERATED / f["files"]["onnx"]), "--data", str(GENERATED / f["data"]),
            "-f", "json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["model"]["format"] == "onnx"
    assert [s["name"] for s in report["sites"]] == [s["name"] for s in f["sites"]]
    assert [s["dead_indices"] for s in report["sites"]] == [s["dead"] for s in f["sites"]]


def test_torchscript_scan_from_the_cli() -> None:
    f = FIXTURES["functional"]
    r = run("scan", str(GENERATED / f["files"]["torchscript"]), "--data",
            str(GENERATED / f["data"]), "-f", "json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["model"]["format"] == "torchscript"
    assert [s["name"] for s in report["sites"]] == [s["name"] for s in f["sites"]]


def test_sites_lists_without_data() -> None:
    r = run("sites", PADDLE, "-f", "json")
    assert r.exit_code == 0, r.stderr
    listed = json.loads(r.stdout)
    assert [(s["name"], s["kind"], s["measured"]) for s in listed] == [
        ("hs/Div", "hardswish", True), ("relu6/Clip", "relu6", True)]
    assert listed[0]["ops"] == "hs/Add hs/Clip hs/Mul hs/Div"


def test_sites_of_an_eager_model_needs_only_its_input_shape() -> None:
    f = FIXTURES["reuse_relu"]
    r = run("sites", str(GENERATED / f["files"]["state_dict"]), "--arch", f["arch"],
            "--input-shape", "1,3,8,8", "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert [s["name"] for s in json.loads(r.stdout)] == [s["name"] for s in f["sites"]]


def test_sites_without_an_input_shape_asks_for_one_not_for_data() -> None:
    """sites has no --data: its message must not offer one."""
    f = FIXTURES["reuse_relu"]
    r = run("sites", str(GENERATED / f["files"]["state_dict"]), "--arch", f["arch"])
    assert_user_error(r, "has an unknown shape: pass its shape with --input-shape")
    assert "--data" not in r.stderr


@pytest.mark.parametrize("fmt", ["onnx", "export", "torchscript"])
def test_sites_refuses_an_input_shape_for_an_input_the_model_lacks(fmt: str) -> None:
    # ONNX and .pt2 list their sites without running, but a wrong name is still a mistake.
    f = FIXTURES["digits_cnn"]
    r = run("sites", str(GENERATED / f["files"][fmt]), "--input-shape", "nosuch=1,1,8,8")
    assert_user_error(r, "no input named 'nosuch'")


def test_a_malformed_input_shape_says_what_is_wrong() -> None:
    r = run("scan", str(GENERATED / FIXTURES["digits_cnn"]["files"]["onnx"]),
            "--input-shape", "1,2,x")
    assert_user_error(r, "'1,2,x'", "a dimension is missing")


def test_input_shape_fixes_dynamic_dims_for_synthetic_data() -> None:
    r = run("scan", MULTI, "--input-shape", "ids=1,5;feats=1,5,8", "-f", "json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["data"]["synthetic"] is True
    assert report["sites"][0]["neurons"] == 8
    assert "synthetic" in r.stderr  # the visible warning


def test_dynamic_dim_without_data_says_which_and_how(tmp_path: Path) -> None:
    assert_user_error(run("scan", MULTI), "'ids'", "dynamic dimension 1", "--input-shape")


def test_truncated_onnx(tmp_path: Path) -> None:
    data = (GENERATED / FIXTURES["digits_cnn"]["files"]["onnx"]).read_bytes()
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(data[: len(data) // 3])
    assert_user_error(run("scan", str(bad)), "cut.onnx", "truncated or not an ONNX model")


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    assert_user_error(run("scan", str(bad)), "model.onnx", "not an ONNX model")


def test_checker_rejects_the_graph(tmp_path: Path) -> None:
    path = _save(_relu_graph([helper.make_node("Relu", ["missing"], ["y"])]),
                 tmp_path / "bad.onnx")
    assert_user_error(run("scan", path, "--input-shape", "x=1,4"), "bad.onnx",
                      "onnx.checker rejects the model")


def test_an_op_onnxruntime_cannot_run(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["h"]),
             helper.make_node("Frobnicate", ["h"], ["y"], domain="my.ops")]
    path = _save(_relu_graph(nodes, {"my.ops": 1}), tmp_path / "custom.onnx")
    assert_user_error(run("scan", path, "--input-shape", "x=1,4"), "custom.onnx",
                      "onnxruntime cannot load the model", "Frobnicate")


def test_data_missing_an_input_names_it(tmp_path: Path) -> None:
    data = tmp_path / "ids_only.npz"
    np.savez(data, ids=np.zeros((4, 5), dtype=np.int64))
    assert_user_error(run("scan", MULTI, "--data", str(data)), "ids_only.npz", "'feats'")


def test_wrong_dtype_names_both(tmp_path: Path) -> None:
    data = tmp_path / "float_ids.npz"
    np.savez(data, ids=np.zeros((4, 5), dtype=np.float32),
             feats=np.zeros((4, 5, 8), dtype=np.float16))
    assert_user_error(run("scan", MULTI, "--data", str(data)), "float_ids.npz", "'ids'",
                      "int64", "float32")


def test_wrong_rank_names_both(tmp_path: Path) -> None:
    data = tmp_path / "rank.npz"
    np.savez(data, x=np.zeros((4, 16, 1), dtype=np.float32))
    assert_user_error(run("scan", PADDLE, "--data", str(data)), "rank.npz", "(N, 16)",
                      "(4, 16, 1)")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_nothing_written_on_error(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "scan.json"
    f = FIXTURES["planted_relu"]
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 5), dtype=np.float32))
    r = run("scan", str(GENERATED / f["files"][fmt]), "--data", str(bad), "-f", "json",
            "-o", str(out))
    assert r.exit_code == 2, r.stderr
    assert not out.exists()


def test_node_names_cannot_break_the_markdown(tmp_path: Path) -> None:
    # An ONNX node may be named anything: a pipe, a line break, backticks or a tag in a site
    # name must stay inside its cell of every markdown table (scan, check, step summary).
    name = "evil|name\nwith `ticks` <b>bold</b>"
    path = _save(_relu_graph([helper.make_node("Relu", ["x"], ["y"], name=name)]),
                 tmp_path / "hostile.onnx")
    x = tmp_path / "x.npy"
    np.save(x, np.concatenate([np.full((8, 2), -1.0), np.ones((8, 2))], axis=1)
            .astype(np.float32))
    for args in (["scan", path], ["check", path, "--max-dead", "0"]):
        r = run(*args, "--data", str(x), "-f", "markdown")
        assert r.exit_code in (0, 1), r.stderr
        rows = [ln for ln in r.stdout.splitlines() if ln.startswith("| ``")]
        assert rows, r.stdout
        for row in rows:  # as many cells as the header: no pipe escaped the cell
            header = next(ln for ln in r.stdout.splitlines() if ln.startswith("| site"))
            cells = row.replace("\\|", "").count("|")
            assert cells == header.count("|"), row
        # Outside a code span a tag is escaped; inside one it is shown as written.
        worst = next(ln for ln in r.stdout.splitlines() if ln.startswith("- worst sites"))
        assert "&lt;b>bold&lt;/b>" in worst and "\n" not in worst
