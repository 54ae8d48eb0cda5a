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
