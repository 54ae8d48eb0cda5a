"""`deadrelu patch` end to end: table and JSON record, --scan, --dry-run, safety, bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deadrelu.cli import app
from tests.conftest import FIXTURES, GENERATED

runner = CliRunner()
RELU = FIXTURES["planted_relu"]
RELU_PT = str(GENERATED / RELU["files"]["state_dict"])
RELU_PT2 = str(GENERATED / RELU["files"]["export"])
RELU_ONNX = str(GENERATED / RELU["files"]["onnx"])
RELU_DATA = str(GENERATED / RELU["data"])
RELU_ARCH = RELU["arch"]


def run(*args: str):
    return runner.invoke(app, list(args))


def assert_user_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("deadrelu: error: ")
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_table_shows_before_after_and_drift(tmp_path: Path) -> None:
    out = tmp_path / "fixed.pt2"
    r = run("patch", RELU_PT, "--arch", RELU_ARCH, "--data", RELU_DATA, "--to", "prelu",
            "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert "act1" in r.stdout and "2 → 0" in r.stdout and "3 → " in r.stdout
    assert "PReLU(0.01) on 2" in r.stdout
    assert "output drift: max |Δ|" in r.stdout and "relative L2" in r.stdout
    assert "argmax agreement" in r.stdout
    assert files_in(tmp_path) == {"fixed.pt2"}  # no temporary file left behind
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_json_record_has_plan_changes_and_drift(tmp_path: Path) -> None:
    out = tmp_path / "fixed.onnx"
    r = run("patch", RELU_ONNX, "--data", RELU_DATA, "--to", "leaky", "--alpha", "0",
            "-f", "json", "-o", str(out))
    assert r.exit_code == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["status"] == "patched" and rec["output"] == {"path": str(out), "format": "onnx"}
    assert rec["plan"]["target"] == "leaky" and rec["plan"]["scope"] == "layers"
    assert [s["name"] for s in rec["changed_sites"]] == ["act1", "act2"]
    assert [s["dead_before"] for s in rec["changed_sites"]] == [2, 3]
    assert rec["drift"]["max_abs"] == 0.0 and rec["drift"]["argmax_agreement"] == 1.0
    assert rec["model"]["sha256"] and rec["drift_without_compensation"] is None


def test_record_to_file(tmp_path: Path) -> None:
    out, record = tmp_path / "fixed.pt2", tmp_path / "record.json"
    r = run("patch", RELU_PT2, "--data", RELU_DATA, "-o", str(out), "-f", "json",
            "--record", str(record))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "" and json.loads(record.read_text())["status"] == "patched"


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "fixed.pt2"
    r = run("patch", RELU_PT2, "--data", RELU_DATA, "--to", "prelu", "--dry-run", "-o",
            str(out))
    assert r.exit_code == 0, r.stderr
    assert "dry run" in r.stdout and "PReLU (slope 0.01 on 2 of 8 channels" in r.stdout
    assert not out.exists() and files_in(tmp_path) == set()


def test_plan_from_a_saved_scan_report(tmp_path: Path) -> None:
    # The report names its data file; patch finds it next to the report and verifies on it.
    data = tmp_path / "relu.npz"
    shutil.copy(RELU_DATA, data)
    report = tmp_path / "scan.json"
    r = run("scan", RELU_PT, "--arch", RELU_ARCH, "--data", str(data), "-f", "json", "-o",
            str(report))
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "fixed.pt"
    r = run("patch", RELU_PT, "--arch", RELU_ARCH, "--scan", str(report), "--to", "prelu",
            "-f", "json", "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert f"verifying on the scan report's data, {data}" in r.stderr
    rec = json.loads(r.stdout)
    assert rec["data"]["source"].startswith("relu.npz") and not rec["data"]["synthetic"]
    assert [s["kind_after"] for s in rec["changed_sites"]] == ["prelu", "prelu"]
    assert [s["dead_before"] for s in rec["changed_sites"]] == [2, 3]


def test_a_scan_of_the_first_samples_is_verified_on_the_same_samples(tmp_path: Path) -> None:
    # A report scanned with --samples names its data "relu.npz (N of M samples)".
    data = tmp_path / "relu.npz"
    shutil.copy(RELU_DATA, data)
    report = tmp_path / "scan.json"
    r = run("scan", RELU_ONNX, "--data", str(data), "-n", "40", "-f", "json", "-o",
            str(report))
    assert r.exit_code == 0, r.stderr
    r = run("patch", RELU_ONNX, "--scan", str(report), "-f", "json", "-o",
            str(tmp_path / "fixed.onnx"))
    assert r.exit_code == 0, r.stderr
    assert f"verifying on the scan report's data, {data}" in r.stderr
    rec = json.loads(r.stdout)
    assert not rec["data"]["synthetic"] and rec["data"]["samples"] == 40


def test_scan_report_without_its_data_verifies_on_synthetic_inputs_and_says_so(
        tmp_path: Path) -> None:
    report = tmp_path / "scan.json"
    run("scan", RELU_ONNX, "--data", RELU_DATA, "-f", "json", "-o", str(report))
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(report, moved / "scan.json")
    r = run("patch", RELU_ONNX, "--scan", str(moved / "scan.json"), "--to", "elu", "-f",
            "json", "-o", str(tmp_path / "fixed.onnx"))
    assert r.exit_code == 0, r.stderr
    assert ("the data file the scan report names is in neither the current folder nor the "
            "report's: the before / after table compares scans on synthetic inputs") in r.stderr
    rec = json.loads(r.stdout)
    assert rec["data"]["synthetic"] and rec["changed_sites"]


def test_sites_glob_and_min_dead_rate_select(tmp_path: Path) -> None:
    out = tmp_path / "fixed.pt2"
    r = run("patch", RELU_PT2, "--data", RELU_DATA, "--sites", "act2", "-f", "json", "-o",
            str(out))
    assert [s["name"] for s in json.loads(r.stdout)["changed_sites"]] == ["act2"]
    # act1: 2/8 dead = 25 %, act2: 3/16 = 18.75 %
    r = run("patch", RELU_PT2, "--data", RELU_DATA, "--min-dead-rate", "0.2", "-f", "json",
            "-o", str(out))
    assert [s["name"] for s in json.loads(r.stdout)["changed_sites"]] == ["act1"]


def test_nothing_to_patch_exits_0_and_says_so(tmp_path: Path) -> None:
    gelu = FIXTURES["planted_gelu"]
    out = tmp_path / "x.pt2"
    r = run("patch", str(GENERATED / gelu["files"]["export"]), "--data",
            str(GENERATED / gelu["data"]), "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert "nothing to patch" in r.stdout and not out.exists()


def test_refuses_to_write_over_the_input_unless_in_place(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(RELU_ONNX, model)
    before = model.read_bytes()
    r = run("patch", str(model), "--data", RELU_DATA, "-o", str(model))
    assert_user_error(r, "refusing to write over the input", "--in-place")
    assert model.read_bytes() == before
    r = run("patch", str(model), "--data", RELU_DATA, "-o", str(model), "--in-place")
    assert r.exit_code == 0, r.stderr
    assert model.read_bytes() != before and files_in(tmp_path) == {"m.onnx"}


@pytest.mark.parametrize("args, fragments", [
    (["--sites", "layer3.*"], ["--sites 'layer3.*' matches no site", "act1"]),
    (["--kinds", "gelu"], ["patch rewrites ReLU and ReLU6 sites only"]),
    (["--to", "elu", "--scope", "neurons"], ["ELU has no per-channel form"]),
    (["--alpha", "1.5"], ["slope must be below 1"]),
    (["--min-dead-rate", "2"], ["--min-dead-rate must be in [0, 1]"]),
])
def test_bad_requests_are_one_line(tmp_path: Path, args: list[str], fragments: list[str]
                                   ) -> None:
    out = tmp_path / "x.pt2"
    r = run("patch", RELU_PT2, "--data", RELU_DATA, "-o", str(out), *args)
    assert_user_error(r, *fragments)
    assert files_in(tmp_path) == set()


def test_scan_report_of_another_model_is_refused(tmp_path: Path) -> None:
    report = tmp_path / "scan.json"
    other = FIXTURES["planted_relu6"]
    run("scan", str(GENERATED / other["files"]["onnx"]), "--data",
        str(GENERATED / other["data"]), "-f", "json", "-o", str(report))
    r = run("patch", RELU_ONNX, "--scan", str(report), "-o", str(tmp_path / "x.onnx"))
    assert_user_error(r, "scan report is from another model", "sha256")
    # Same file, edited site list: the sites check catches it.
    run("scan", RELU_ONNX, "--data", RELU_DATA, "-f", "json", "-o", str(report))
    data = json.loads(report.read_text())
    data["sites"] = data["sites"][:1]
    report.write_text(json.dumps(data))
    r = run("patch", RELU_ONNX, "--scan", str(report), "-o", str(tmp_path / "x.onnx"))
    assert_user_error(r, "sites do not match the model")
    assert files_in(tmp_path) == {"scan.json"}


def test_unwritable_output_and_wrong_suffix(tmp_path: Path) -> None:
    r = run("patch", RELU_PT2, "--data", RELU_DATA, "-o", str(tmp_path / "no" / "x.pt2"))
    assert_user_error(r, "cannot write")
    r = run("patch", RELU_PT2, "--data", RELU_DATA, "-o", str(tmp_path / "x.h5"))
    assert_user_error(r, "must end in .pt2")
    r = run("patch", RELU_ONNX, "--data", RELU_DATA, "-o", str(tmp_path / "x.pt2"))
    assert_user_error(r, "ONNX model is patched into an ONNX file")
    r = run("patch", RELU_PT2, "--data", RELU_DATA)
    assert_user_error(r, "-o FILE.pt2")


def test_pickled_output_of_an_unpatchable_site_points_to_pt2(tmp_path: Path) -> None:
    relu6 = FIXTURES["planted_relu6"]
    r = run("patch", str(GENERATED / relu6["files"]["pickle"]), "--trust-pickle", "--data",
            str(GENERATED / relu6["data"]), "-o", str(tmp_path / "x.pt"))
    assert_user_error(r, "no built-in torch module computes a capped", ".pt2")


def test_compensate_reports_drift_with_and_without(tmp_path: Path) -> None:
    r = run("patch", RELU_PT2, "--data", RELU_DATA, "--to", "prelu", "--compensate", "-o",
            str(tmp_path / "x.pt2"))
    assert r.exit_code == 0, r.stderr
    assert "without --compensate:" in r.stdout
    assert "compensate act1: bias of fc1 absorbed the mean shift" in r.stdout


def test_help_has_an_example() -> None:
    r = run("patch", "--help")
    assert r.exit_code == 0 and "Example: deadrelu patch" in r.stdout


def test_sites_of_a_kind_patch_cannot_rewrite_are_refused(tmp_path: Path) -> None:
    func = FIXTURES["functional"]
    r = run("patch", str(GENERATED / func["files"]["export"]), "--data",
            str(GENERATED / func["data"]), "--sites", "mlp/gelu", "-o", str(tmp_path / "x.pt2"))
    assert_user_error(r, "--sites 'mlp/gelu' matches only gelu sites", "ReLU and ReLU6")


def test_readme_shows_the_real_output_of_its_patch_command(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Patch dead ReLUs", 1)[1]
    command, rest = section.split("```bash\n", 1)[1].split("\n```\n", 1)
    shown = rest.split("```\n", 1)[1].split("\n```", 1)[0]
    args = command.split()
    assert args[:2] == ["deadrelu", "patch"]
    args = [str(ROOT / a) if a.startswith("fixtures/generated") else a for a in args[1:]]
    monkeypatch.chdir(tmp_path)  # -o digits_fixed.pt2 lands here
    (tmp_path / "fixtures").symlink_to(ROOT / "fixtures")  # --arch fixtures/nets.py:…
    r = run(*args)
    assert r.exit_code == 0, r.stderr
    got = "\n".join(line.rstrip() for line in r.stdout.strip().splitlines())
    assert got == shown.strip()
