"""The scan command end to end: formats, outputs, and one clean line for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deadrelu.cli import app
from deadrelu.report.model import json_schema
from tests.conftest import FIXTURES, GENERATED, ROOT

runner = CliRunner()
DIGITS = FIXTURES["digits_cnn"]
DIGITS_PT = str(GENERATED / DIGITS["files"]["state_dict"])
DIGITS_DATA = str(GENERATED / DIGITS["data"])
DIGITS_ARCH = DIGITS["arch"]


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


def test_an_internal_error_keeps_its_traceback_and_is_not_a_failed_gate(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Exit 1 means "a limit failed" to CI; a crash in `check` must not read as that.
    import deadrelu.cli.check as check_cli
    from deadrelu.cli import main

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(check_cli, "run_scan", boom)
    monkeypatch.setattr(sys, "argv", ["deadrelu", "check", DIGITS_PT, "--arch", DIGITS_ARCH,
                                      "--data", DIGITS_DATA, "--max-dead", "0"])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "Traceback" in err and "RuntimeError: boom" in err
    assert err.strip().endswith("deadrelu: internal error (a bug: the traceback above says "
                                "where)")


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_a_stdout_that_cannot_encode_the_glyphs_still_passes(fmt: str) -> None:
    # cp1252 is a redirected stream's encoding on Windows: the bars and check marks of the
    # table and markdown must not end a passing gate with a UnicodeEncodeError (exit 1).
    import os

    env = {**os.environ, "PYTHONIOENCODING": "cp1252"}
    proc = subprocess.run([sys.executable, "-m", "deadrelu", "check", DIGITS_PT, "--arch",
                           DIGITS_ARCH, "--data", DIGITS_DATA, "--max-dead", "1000", "-f",
                           fmt], capture_output=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode("cp1252")
    assert b"features" in proc.stdout and b"Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["scan", "check"])
def test_the_output_suffix_chooses_the_format_unless_one_is_given(command: str,
                                                                  tmp_path: Path) -> None:
    args = [command, DIGITS_PT, "--arch", DIGITS_ARCH, "--data", DIGITS_DATA, "-n", "64"]
    if command == "check":
        args += ["--max-dead", "1000"]
    assert run(*args, "-o", str(tmp_path / "r.json")).exit_code == 0
    json.loads((tmp_path / "r.json").read_text())
    assert run(*args, "-o", str(tmp_path / "r.md")).exit_code == 0
    assert (tmp_path / "r.md").read_text().startswith("## ")
    assert run(*args, "-o", str(tmp_path / "t.json"), "-f", "table").exit_code == 0
    assert not (tmp_path / "t.json").read_text().lstrip().startswith("{")  # the flag wins


def test_json_report_validates_and_goes_to_stdout_alone() -> None:
    r = run("scan", DIGITS_PT, "--arch", DIGITS_ARCH, "--data", DIGITS_DATA, "-f", "json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    jsonschema.validate(report, json_schema())
    assert report["model"]["format"] == "torch-checkpoint"
    assert report["data"] == {"source": "digits_test.npz (500 samples)", "samples": 500,
                              "synthetic": False,
                              "files": [str(Path(DIGITS_DATA).resolve())]}
    assert [s["name"] for s in report["sites"]] == [s["name"] for s in DIGITS["sites"]]
    assert report["summary"]["dead"] == sum(len(s["dead"]) for s in DIGITS["sites"])
    assert report["summary"]["fire_rate_bound_95"] == pytest.approx(3 / 500)


@pytest.mark.parametrize("fmt", ["state_dict", "pickle", "export", "onnx", "torchscript"])
def test_json_report_of_every_format_validates(fmt: str) -> None:
    f = FIXTURES["digits_cnn"]
    extra = {"state_dict": ["--arch", f["arch"]], "pickle": ["--trust-pickle"]}.get(fmt, [])
    r = run("scan", str(GENERATED / f["files"][fmt]), *extra, "--data", DIGITS_DATA, "-n",
            "32", "-f", "json")
    assert r.exit_code == 0, r.stderr
    jsonschema.validate(json.loads(r.stdout), json_schema())


def test_table_shows_sites_summary_and_confidence() -> None:
    r = run("scan", DIGITS_PT, "--arch", DIGITS_ARCH, "--data", DIGITS_DATA)
    assert r.exit_code == 0
    for site in DIGITS["sites"]:
        assert site["name"] in r.stdout
    assert "rule of three" in r.stdout and "worst sites" in r.stdout


def test_markdown_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "scan.md"
    r = run("scan", DIGITS_PT, "--arch", DIGITS_ARCH, "--data", DIGITS_DATA, "-f",
            "markdown", "-o", str(out))
    assert r.exit_code == 0 and r.stdout == ""
    text = out.read_text()
    assert text.startswith("## deadrelu scan") and "| `features.3` | relu |" in text


def test_synthetic_data_warns_on_stderr_and_marks_the_report() -> None:
    path = str(GENERATED / FIXTURES["reuse_relu"]["files"]["pickle"])
    r = run("scan", path, "--trust-pickle", "--input-shape", "1,3,8,8", "-f", "json")
    assert r.exit_code == 0
    assert "synthetic" in r.stderr.lower()
    report = json.loads(r.stdout)
    assert report["data"]["synthetic"] is True and report["data"]["samples"] == 64
    assert "synthetic" in report["notes"][0]


def test_per_neuron_lists_dead_indices_of_a_reused_call(tmp_path: Path) -> None:
    f = FIXTURES["reuse_relu"]
    r = run("scan", str(GENERATED / f["files"]["export"]), "--data",
            str(GENERATED / f["data"]), "--per-neuron", "layer1.0.relu#2", "-f", "json")
    assert r.exit_code == 0, r.stderr
    view = json.loads(r.stdout)
    expected = next(s for s in f["sites"] if s["name"] == "layer1.0.relu#2")
    assert view["dead_indices"] == expected["dead"]
    statuses = [n["status"] for n in view["per_neuron"]]
    assert [i for i, s in enumerate(statuses) if s == "dead"] == expected["dead"]


def test_image_folder_with_module_arch(tmp_path: Path) -> None:
    from PIL import Image

    with np.load(DIGITS_DATA) as z:
        x = z["x"][:20]
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(x):
        Image.fromarray((img[0] * 255).round().astype(np.uint8), "L").save(folder / f"{i}.png")
    r = run("scan", DIGITS_PT, "--arch", "fixtures.nets:digits_cnn", "--data", str(folder),
            "--image-size", "8", "--per-neuron", "features.3")
    assert r.exit_code == 0, r.stderr
    assert "dead indices" in r.stdout


def test_checkpoint_with_wrapped_keys(tmp_path: Path) -> None:
    state = torch.load(DIGITS_PT, weights_only=True)
    ckpt = {"epoch": 3, "model_state_dict": {f"module._orig_mod.{k}": v for k, v in
                                             state.items()}}
    path = tmp_path / "ckpt.pth"
    torch.save(ckpt, path)
    r = run("scan", str(path), "--arch", DIGITS_ARCH, "--data", DIGITS_DATA, "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["dead"] == sum(len(s["dead"])
                                                          for s in DIGITS["sites"])


def test_a_model_without_weights_loads_from_its_empty_state_dict(tmp_path: Path) -> None:
    # An activations-only model saves an empty state dict: that is its whole state, and an
    # empty one is refused only by an --arch that has weights (missing keys).
    (tmp_path / "acts.py").write_text(
        "import torch\n"
        "def make():\n"
        "    return torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Tanh())\n")
    model = tmp_path / "acts.pt"
    torch.save(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Tanh()).state_dict(), model)
    x = tmp_path / "x.npy"
    np.save(x, np.concatenate([np.full((3, 2), -1.0), np.full((3, 2), 1.0)], axis=1)
            .astype(np.float32))
    r = run("scan", str(model), "--arch", f"{tmp_path / 'acts.py'}:make", "--data", str(x),
            "-f", "json")
    assert r.exit_code == 0, r.stderr
    sites = json.loads(r.stdout)["sites"]
    assert [s["name"] for s in sites] == ["0", "1"]
    assert sites[0]["dead_indices"] == [0, 1]  # the two columns held at -1
    assert_user_error(run("scan", str(model), "--arch", DIGITS_ARCH, "--data", str(x)),
                      "acts.pt", "missing keys", "0 keys in the file")


def test_pt_tensor_data_and_csv_data(tmp_path: Path) -> None:
    f = FIXTURES["leaky_negative_only"]
    with np.load(GENERATED / f["data"]) as z:
        x = z["x"]
    torch.save(torch.from_numpy(x), tmp_path / "x.pt")
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", header=",".join(
        f"f{i}" for i in range(x.shape[1])), comments="")
    model = str(GENERATED / f["files"]["state_dict"])
    reports = []
    for data in ("x.pt", "x.csv"):
        r = run("scan", model, "--arch", f["arch"], "--data", str(tmp_path / data), "-f",
                "json")
        assert r.exit_code == 0, r.stderr
        reports.append(json.loads(r.stdout))
    for report in reports:
        got = [s["negative_only_indices"] for s in report["sites"]]
        assert got == [s["negative_only"] for s in f["sites"]]


def test_python_dash_m_runs_the_same_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "deadrelu", "scan", DIGITS_PT, "--arch",
                          DIGITS_ARCH, "--data", DIGITS_DATA, "-f", "json"],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["summary"]["sites"] == len(DIGITS["sites"])


@pytest.mark.parametrize("fmt", ["state_dict", "pickle", "export", "onnx", "torchscript"])
def test_model_without_activations_exits_zero_with_a_note(fmt: str) -> None:
    f = FIXTURES["no_activations"]
    extra = {"state_dict": ["--arch", f["arch"]], "pickle": ["--trust-pickle"]}.get(fmt, [])
    r = run("scan", str(GENERATED / f["files"][fmt]), *extra,
            "--data", str(GENERATED / f["data"]), "-f", "json")
    assert r.exit_code == 0, r.output
    assert "no activation sites" in r.stderr
    report = json.loads(r.stdout)
    assert report["sites"] == [] and report["data"]["samples"] == f["num_samples"]


# ---- bad input: one line on stderr, exit 2, nothing written


@pytest.fixture
def out_file(tmp_path: Path) -> Path:
    return tmp_path / "report.json"


def _scan_to(out: Path, *args: str):
    return run("scan", *args, "-f", "json", "-o", str(out))


def test_missing_file(out_file: Path) -> None:
    assert_user_error(_scan_to(out_file, "nope.pt"), "nope.pt", "no such file")
    assert not out_file.exists()


def test_empty_file(tmp_path: Path, out_file: Path) -> None:
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert_user_error(_scan_to(out_file, str(empty)), "empty.pt", "empty file")
    assert not out_file.exists()


def test_truncated_checkpoint(tmp_path: Path, out_file: Path) -> None:
    data = Path(DIGITS_PT).read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    out_file.write_text("previous")
    assert_user_error(_scan_to(out_file, str(cut), "--arch", DIGITS_ARCH), "cut.pt",
                      "truncated")
    assert out_file.read_text() == "previous"  # never overwritten on error


def test_not_a_model(tmp_path: Path, out_file: Path) -> None:
    junk = tmp_path / "notes.pt"
    junk.write_text("hello, I am a text file\n")
    assert_user_error(_scan_to(out_file, str(junk)), "notes.pt", "not a model file")


def test_state_dict_without_arch(out_file: Path) -> None:
    assert_user_error(_scan_to(out_file, DIGITS_PT, "--data", DIGITS_DATA),
                      "digits_cnn.pt", "--arch")


def test_arch_that_does_not_import(out_file: Path) -> None:
    assert_user_error(_scan_to(out_file, DIGITS_PT, "--arch", "no_such_pkg.nets:Net"),
                      "no_such_pkg.nets:Net", "does not import")


def test_arch_whose_keys_do_not_match(out_file: Path) -> None:
    r = _scan_to(out_file, DIGITS_PT, "--arch", FIXTURES["planted_relu"]["arch"])
    assert_user_error(r, "digits_cnn.pt", "missing keys", "unexpected keys")
    assert "features.0.weight" in r.stderr


def test_data_that_does_not_fit(tmp_path: Path, out_file: Path) -> None:
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 3, 8, 8), dtype=np.float32))
    r = _scan_to(out_file, DIGITS_PT, "--arch", DIGITS_ARCH, "--data", str(bad))
    assert_user_error(r, "bad.npy", "'x'", "(4, 3, 8, 8)", "1 channels")


def test_data_that_does_not_fit_an_exported_model(tmp_path: Path, out_file: Path) -> None:
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 3, 8, 8), dtype=np.float32))
    r = _scan_to(out_file, str(GENERATED / DIGITS["files"]["export"]), "--data", str(bad))
    assert_user_error(r, "bad.npy", "'x'", "(N, 1, 8, 8)", "(4, 3, 8, 8)")


def test_empty_dataset(tmp_path: Path, out_file: Path) -> None:
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 1, 8, 8), dtype=np.float32))
    assert_user_error(_scan_to(out_file, DIGITS_PT, "--arch", DIGITS_ARCH, "--data",
                               str(empty)), "empty.npy", "no samples")


def test_non_numeric_csv(tmp_path: Path, out_file: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("a,b\n1,2\n3,oops\n")
    f = FIXTURES["leaky_negative_only"]
    assert_user_error(_scan_to(out_file, str(GENERATED / f["files"]["state_dict"]), "--arch",
                               f["arch"], "--data", str(csv)), "bad.csv", "oops")


def test_pickle_needs_trust(out_file: Path) -> None:
    path = str(GENERATED / DIGITS["files"]["pickle"])
    r = _scan_to(out_file, path, "--data", DIGITS_DATA)
    assert_user_error(r, "digits_cnn.pickle.pt", "--trust-pickle", "arbitrary code")


def test_unknown_per_neuron_site(out_file: Path) -> None:
    r = _scan_to(out_file, DIGITS_PT, "--arch", DIGITS_ARCH, "--data", DIGITS_DATA,
                 "--per-neuron", "nope")
    assert_user_error(r, "nope", "features.1")
    assert not out_file.exists()


def test_unwritable_output(tmp_path: Path) -> None:
    r = run("scan", DIGITS_PT, "--arch", DIGITS_ARCH, "--data", DIGITS_DATA, "-o",
            str(tmp_path / "missing" / "out.json"))
    assert_user_error(r, "out.json", "directory does not exist")


def test_output_is_checked_before_the_scan(tmp_path: Path) -> None:
    # A data file that does not exist would fail the scan: the output's error comes first.
    r = run("scan", DIGITS_PT, "--arch", DIGITS_ARCH, "--data", str(tmp_path / "none.npz"),
            "-o", str(tmp_path / "missing" / "out.json"))
    assert_user_error(r, "out.json", "directory does not exist")
    r = run("scan", DIGITS_PT, "--arch", DIGITS_ARCH, "--data", DIGITS_DATA, "-o",
            str(tmp_path))
    assert_user_error(r, str(tmp_path), "is a directory")


@pytest.mark.parametrize("which", ["model", "data"])
def test_output_never_replaces_an_input(tmp_path: Path, which: str) -> None:
    model, data = tmp_path / "model.pt", tmp_path / "data.npz"
    model.write_bytes(Path(DIGITS_PT).read_bytes())
    data.write_bytes(Path(DIGITS_DATA).read_bytes())
    target = model if which == "model" else data
    before = target.read_bytes()
    r = run("scan", str(model), "--arch", DIGITS_ARCH, "--data", str(data), "-o", str(target))
    assert_user_error(r, "would overwrite the input")
    assert target.read_bytes() == before


@pytest.mark.parametrize("args,fragment", [
    (["scan", "m.pt", "--batch-size", "0"], "--batch-size"),
    (["scan", "m.pt", "--format", "xml"], "--format"),
    (["scan", "m.pt", "--bogus"], "No such option: --bogus"),
    (["merge"], "Missing argument"),
    (["nosuchcommand"], "No such command"),
])
def test_usage_errors_are_one_line_from_the_console_script(args: list[str],
                                                           fragment: str) -> None:
    out = subprocess.run([sys.executable, "-m", "deadrelu", *args], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deadrelu: error: "), out.stderr
    assert fragment in lines[0] and "--help" in lines[0]
    assert out.stdout == ""


def test_the_console_script_keeps_exit_codes() -> None:
    def code(*args: str) -> int:
        return subprocess.run([sys.executable, "-m", "deadrelu", *args], capture_output=True,
                              text=True, cwd=ROOT, check=False).returncode

    assert code("--version") == 0
    assert code("scan", "--help") == 0
    assert code("scan", "no-such-model.pt") == 2


def test_a_protocol_4_state_dict_needs_trust_and_then_scans(tmp_path: Path) -> None:
    # torch's weights-only loader cannot read pickle protocol 4 (opcode FRAME): the file
    # gets one line saying so, with no torch warning around it, and --trust-pickle reads it.
    state = torch.load(DIGITS_PT, weights_only=True)
    path = tmp_path / "p4.pt"
    torch.save(state, path, pickle_protocol=4)
    r = run("scan", str(path), "--arch", DIGITS_ARCH, "--data", DIGITS_DATA)
    assert_user_error(r, str(path), "safe loader cannot read", "--trust-pickle")
    r = run("scan", str(path), "--arch", DIGITS_ARCH, "--data", DIGITS_DATA, "-n", "16",
            "--trust-pickle", "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["model"]["format"] == "torch-checkpoint"


def test_no_data_and_no_input_shape_names_the_model() -> None:
    r = run("scan", DIGITS_PT, "--arch", DIGITS_ARCH)
    assert_user_error(r, f"{DIGITS_PT}: input 'x' has an unknown shape", "--input-shape")


def test_sites_and_synthetic_scans_feed_token_ids_to_an_embedding(tmp_path: Path) -> None:
    # Synthetic inputs were floats, which nn.Embedding refuses: `sites` (no --data) could
    # not list a language model's sites at all.
    (tmp_path / "tok.py").write_text(
        "import torch\n"
        "def build():\n"
        "    return torch.nn.Sequential(torch.nn.Embedding(20, 8), torch.nn.Linear(8, 6),\n"
        "                               torch.nn.ReLU())\n")
    arch = f"{tmp_path / 'tok.py'}:build"
    torch.manual_seed(0)
    torch.save(torch.nn.Sequential(torch.nn.Embedding(20, 8), torch.nn.Linear(8, 6),
                                   torch.nn.ReLU()).state_dict(), tmp_path / "tok.pt")
    model = str(tmp_path / "tok.pt")
    listed = run("sites", model, "--arch", arch, "--input-shape", "1,7", "-f", "json")
    assert listed.exit_code == 0, listed.stderr
    assert [s["name"] for s in json.loads(listed.stdout)] == ["2"]
    scanned = run("scan", model, "--arch", arch, "--input-shape", "1,7", "-f", "json")
    assert scanned.exit_code == 0, scanned.stderr
    assert json.loads(scanned.stdout)["sites"][0]["neurons"] == 6


@pytest.mark.parametrize("width", [50, 60, 80, 200])
def test_narrow_tables_keep_the_site_column_whole(width: int, tmp_path: Path) -> None:
    # Rich collapsed the site column first when a table was too wide (a CI log is 80
    # columns); now the least useful columns go and every site name stays whole.
    import io

    from rich.console import Console

    from deadrelu.diff import diff_results
    from deadrelu.report import gate_render, render
    from deadrelu.report.load import load_report

    f = FIXTURES["leaky_negative_only"]
    out = tmp_path / "s.json"
    assert run("scan", str(GENERATED / f["files"]["onnx"]), "--data",
               str(GENERATED / f["data"]), "-f", "json", "-o", str(out)).exit_code == 0
    result = load_report(out)
    console = Console(width=width, file=io.StringIO(), record=True)
    render.render_table(result, console)
    gate_render.render_diff_table(diff_results(result, result, "a", "b"), console)
    text = console.export_text()
    for site in result.sites:
        assert text.count(f" {site.name} ") == 2, text  # once per table, not cut
    assert "…" not in text.split("model:")[0]
    if width >= 200:
        assert "active" in text and "dead% before" in text  # nothing dropped when it fits
        assert "not shown at this width" not in text
    else:  # what was left out is said, not silently gone
        assert "(not shown at this width: " in text.split("model:")[0]


@pytest.mark.parametrize("device, words", [
    ("mps", "--device mps: MPS (Apple GPU) is not available on this machine"),
    ("meta", "--device meta: deadrelu runs on cpu, cuda, cuda:1, mps"),
    ("tpu", "--device 'tpu' is not a torch device"),
])
def test_a_device_this_machine_lacks_is_one_line(device: str, words: str) -> None:
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    for command in ("scan", "check"):
        assert_user_error(run(command, DIGITS_PT, "--arch", DIGITS_ARCH, "--data", DIGITS_DATA,
                              "--device", device), words)


def test_cuda_on_a_machine_without_it_is_one_line() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_user_error(run("scan", DIGITS_PT, "--arch", DIGITS_ARCH, "--device", "cuda:1"),
                      "--device cuda:1: CUDA is not available on this machine")


def test_channel_axis_0_the_batch_axis_is_refused() -> None:
    """It counted batch slots as neurons (50 'neurons' at -b 50)."""
    assert_user_error(run("scan", DIGITS_PT, "--arch", DIGITS_ARCH, "--data", DIGITS_DATA,
                          "--channel-axis", "0", "-b", "50"), "--channel-axis 0 is the batch axis")


@pytest.mark.parametrize("fmt", ["state_dict", "export", "onnx", "torchscript"])
def test_a_negative_channel_axis_that_lands_on_the_batch_axis_is_refused(fmt: str) -> None:
    """-2 is a height axis on the conv sites and the batch axis of the Linear one."""
    path = str(GENERATED / DIGITS["files"][fmt])
    arch = ["--arch", DIGITS_ARCH] if fmt == "state_dict" else []
    assert_user_error(run("scan", path, *arch, "--data", DIGITS_DATA, "--channel-axis", "-2"),
                      "site classifier.2: --channel-axis -2 is the batch axis of a rank-2 site")
