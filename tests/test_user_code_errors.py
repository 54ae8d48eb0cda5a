"""Failures of the user's code and data reach the user as one line and exit 2: a --data
generator that raises or calls sys.exit() midway, an --arch factory that calls sys.exit(),
and integer or bool data on a float PyTorch model (eager, .pt2, TorchScript)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, GENERATED
from tests.test_cli import assert_user_error, run

DIGITS = FIXTURES["digits_cnn"]
DIGITS_PT = str(GENERATED / DIGITS["files"]["state_dict"])
DIGITS_DATA = GENERATED / DIGITS["data"]

FEEDS = '''
import sys
import numpy as np

def _first():
    d = np.load(r"{data}")
    return {{k: d[k][:8] for k in d.files}}

def midway():
    yield _first()
    raise RuntimeError("midway boom")

def exits_midway():
    yield _first()
    sys.exit(0)

def exits():
    sys.exit(3)

def arch_exits():
    sys.exit(0)
'''


@pytest.fixture
def feeds(tmp_path: Path) -> Path:
    path = tmp_path / "feeds.py"
    path.write_text(FEEDS.format(data=DIGITS_DATA))
    return path


@pytest.mark.parametrize("fn,fragments", [
    ("midway", ["midway() raised RuntimeError: midway boom while producing batch 1"]),
    ("exits_midway", ["exits_midway() called sys.exit(0) while producing batch 1"]),
    ("exits", ["exits() called sys.exit(3)"]),
])
@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_failing_data_function_is_one_line(feeds: Path, fn: str, fragments: list[str],
                                             workers: str) -> None:
    r = run("scan", DIGITS_PT, "--arch", DIGITS["arch"], "--data", f"{feeds}:{fn}",
            "--num-workers", workers)
    assert_user_error(r, f"{feeds}:{fn}", *fragments)


def test_an_arch_factory_calling_sys_exit_fails_the_check(feeds: Path) -> None:
    r = run("check", DIGITS_PT, "--arch", f"{feeds}:arch_exits", "--data", str(DIGITS_DATA),
            "--max-dead", "0")
    assert_user_error(r, "called sys.exit(0)")


@pytest.mark.parametrize("fmt", ["state_dict", "export", "torchscript"])
@pytest.mark.parametrize("dtype", ["int64", "bool"])
def test_integer_or_bool_data_on_a_float_model(fmt: str, dtype: str, tmp_path: Path) -> None:
    d = np.load(DIGITS_DATA)
    data = tmp_path / f"{dtype}.npz"
    np.savez(data, **{k: (d[k] * 10).astype(dtype) for k in d.files})
    extra = ["--arch", DIGITS["arch"]] if fmt == "state_dict" else []
    r = run("scan", str(GENERATED / DIGITS["files"][fmt]), *extra, "--data", str(data))
    assert_user_error(r, str(data), "bias type (float) should be the same")


@pytest.mark.parametrize("fmt", ["state_dict", "torchscript"])
@pytest.mark.parametrize("shape,words,not_words", [
    # wrong channel count: the first layer is named
    ((8, 3, 8, 8), ["expected input[8, 3, 8, 8] to have 1 channels"], []),
    # wrong spatial size: the channels fit, so no first-layer hint that would mislead
    ((8, 1, 16, 16), ["mat1 and mat2 shapes cannot be multiplied"], ["expects 1 channels"]),
])
def test_data_of_the_wrong_shape_gets_torchs_reason(fmt: str, shape: tuple[int, ...],
                                                    words: list[str], not_words: list[str],
                                                    tmp_path: Path) -> None:
    data = tmp_path / "wrong.npz"
    np.savez(data, x=np.random.default_rng(0).random(shape, dtype=np.float32))
    extra = ["--arch", DIGITS["arch"]] if fmt == "state_dict" else []
    r = run("scan", str(GENERATED / DIGITS["files"][fmt]), *extra, "--data", str(data))
    assert_user_error(r, str(data), *words)
    for w in not_words:
        assert w not in r.stderr
    if fmt == "state_dict" and shape[1] == 3:
        assert "its first layer features.0 (Conv2d) expects 1 channels" in r.stderr


def test_ctrl_c_is_exit_130_with_one_line_even_inside_an_extensions_import(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGINT while onnxruntime initialises surfaces as 'ImportError: initialization failed'
    (a traceback and exit 1, the code check uses for a failed limit)."""
    import typer

    from deadrelu.cli import common

    def run(error: BaseException, sigint: bool) -> int | None:
        monkeypatch.setattr(common._SIGINT, "seen", sigint)
        try:
            with common.user_errors():
                raise error
        except typer.Exit as exc:
            return exc.exit_code
        return None

    assert run(KeyboardInterrupt(), False) == 130
    assert run(ImportError("initialization failed"), True) == 130
    assert capsys.readouterr().err == "deadrelu: interrupted\ndeadrelu: interrupted\n"
    with pytest.raises(ImportError):  # without a Ctrl-C it is a real failure: a traceback
        run(ImportError("initialization failed"), False)
    with pytest.raises(KeyboardInterrupt):
        common.on_sigint(2, None)
    assert common._SIGINT.seen


def test_ctrl_c_during_a_scan_exits_130(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import FIXTURES, GENERATED, ROOT

    code = ("import time\n"
            "def slow():\n"
            "    import numpy as np\n"
            "    while True:\n"
            "        time.sleep(0.05)\n"
            "        yield np.zeros((4, 1, 8, 8), np.float32)\n")
    (tmp_path / "slowdata.py").write_text(code)
    f = FIXTURES["digits_cnn"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "deadrelu", "scan", str(GENERATED / f["files"]["onnx"]),
         "--data", f"{tmp_path / 'slowdata.py'}:slow", "-o", str(tmp_path / "out.json")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)  # imports, model load, a few batches
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "deadrelu: interrupted" and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()
