"""No output replaces a file the command reads, two outputs never share a file, and a
report written to a symlink or a pipe goes through it instead of replacing the node.

Every refusal is one line on stderr, exit 2, before any work, and the file is unchanged.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deadrelu.cli import app
from tests.conftest import FIXTURES, GENERATED, ROOT

runner = CliRunner()
DIGITS = FIXTURES["digits_cnn"]
ARCH_FILE, ARCH_NAME = DIGITS["arch"].split(":")


def run(*args: str):
    return runner.invoke(app, list(args))


def assert_refused(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deadrelu: error: "), result.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """Copies of the digits model, its arch source, its data, and a tiny data module."""
    shutil.copy(GENERATED / DIGITS["files"]["state_dict"], tmp_path / "model.pt")
    shutil.copy(ROOT / ARCH_FILE, tmp_path / "nets.py")
    shutil.copy(GENERATED / DIGITS["data"], tmp_path / "data.npz")
    x = np.load(tmp_path / "data.npz")
    name = next(iter(x.files))
    np.save(tmp_path / "x.npy", x[name][:8])
    (tmp_path / "feed.py").write_text(
        "import numpy as np\n"
        f"def batches():\n    return [{{'{name}': np.load(r'{tmp_path / 'x.npy'}')}}]\n")
    return tmp_path


def _scan(work: Path, *extra: str, data: str | None = None):
    return run("scan", str(work / "model.pt"), "--arch", f"{work / 'nets.py'}:{ARCH_NAME}",
               "--data", data or str(work / "data.npz"), "-f", "json", *extra)


@pytest.mark.parametrize("victim", ["nets.py", "feed.py", "deadrelu.toml"])
def test_scan_never_writes_over_its_sources(work: Path, victim: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (work / "deadrelu.toml").write_text("eps = 0.001\n")
    monkeypatch.chdir(work)  # the config is found from the current folder up
    target = work / victim
    before = target.read_bytes()
    r = _scan(work, "-o", str(target), data=f"{work / 'feed.py'}:batches")
    assert_refused(r, "would overwrite the input")
    assert target.read_bytes() == before


def test_no_output_over_a_file_of_the_image_folder(work: Path) -> None:
    from PIL import Image

    folder = work / "images"
    (folder / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(folder / "a" / "0.png")
    before = (folder / "a" / "0.png").read_bytes()
    r = _scan(work, "-o", str(folder / "a" / "0.png"), data=str(folder))
    assert_refused(r, "input folder")
    assert (folder / "a" / "0.png").read_bytes() == before


def test_no_output_over_an_onnx_models_external_weights(tmp_path: Path) -> None:
    model = tmp_path / "external_data.onnx"
    shutil.copy(GENERATED / "external_data.onnx", model)
    shutil.copy(GENERATED / "external_data.onnx.data", tmp_path / "external_data.onnx.data")
    before = (tmp_path / "external_data.onnx.data").read_bytes()
    for command in ("scan", "sites"):
        r = run(command, str(model), "-o", str(tmp_path / "external_data.onnx.data"))
        assert_refused(r, "would overwrite the input")
        assert (tmp_path / "external_data.onnx.data").read_bytes() == before, command


def test_two_outputs_never_share_a_file(work: Path) -> None:
    out = work / "same.out"
    assert_refused(_scan(work, "-o", str(out), "--html", str(out)), "--output and --html")
    assert not out.exists()
    r = run("check", str(work / "model.pt"), "--arch", f"{work / 'nets.py'}:{ARCH_NAME}",
            "--data", str(work / "data.npz"), "--max-dead-rate", "1", "-o", str(out),
            "--junit", str(out))
    assert_refused(r, "--output and --junit")
    assert not out.exists()


@pytest.mark.parametrize("victim", ["model.pt", "data.npz", "nets.py", "patched.pt2"])
def test_patch_record_never_replaces_an_input_or_the_patched_model(work: Path,
                                                                   victim: str) -> None:
    target = work / victim
    if not target.exists():
        target.write_bytes(b"an earlier patched model")
    before = target.read_bytes()
    r = run("patch", str(work / "model.pt"), "--arch", f"{work / 'nets.py'}:{ARCH_NAME}",
            "--data", str(work / "data.npz"), "-o", str(work / "patched.pt2"),
            "--record", str(target))
    assert_refused(r)
    assert target.read_bytes() == before


def test_a_symlinked_output_keeps_the_link(work: Path, tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    r = _scan(work, "-o", str(link))
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text().startswith("{")


def test_a_pipe_as_output_is_written_through(work: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    report = tmp_path / "scan.json"
    assert _scan(work, "-o", str(report)).exit_code == 0
    r = run("report", str(report), "-f", "json", "-o", str(fifo))
    assert r.exit_code == 0, r.output
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # the node itself is untouched
    reader.join(timeout=30)
    assert got and got[0].startswith(b"{")


def test_a_symlinked_patch_output_keeps_the_link(work: Path, tmp_path: Path) -> None:
    real = tmp_path / "real.pt2"
    real.write_bytes(b"an older patched model")
    link = tmp_path / "link.pt2"
    link.symlink_to(real)
    r = run("patch", str(work / "model.pt"), "--arch", f"{work / 'nets.py'}:{ARCH_NAME}",
            "--data", str(work / "data.npz"), "-n", "32", "-o", str(link))
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() != b"an older patched model"
