"""Tell a model file's format from its bytes, not its suffix."""

from __future__ import annotations

import hashlib
import threading
import zipfile
from pathlib import Path
from typing import Literal

from deadrelu.errors import DeadReluError

Format = Literal["torch-save", "torch-export", "torchscript", "onnx"]

_PICKLE_PROTOCOL_2_TO_5 = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class BackgroundSha256:
    """sha256 of a file computed on a thread while the model loads and its session starts.

    File reads and hashlib release the GIL, so on a ResNet-50 (100 MB) the 0.08 s of hashing
    hides behind onnxruntime's session set-up instead of adding to every scan.
    """

    def __init__(self, path: Path) -> None:
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(path,), daemon=True)
        self._thread.start()

    def _work(self, path: Path) -> None:
        try:
            self._digest = sha256(path)
        except BaseException as exc:  # re-raised in the caller's thread by result()
            self._error = exc

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._digest is not None
        return self._digest


def detect(path: Path) -> Format:
    """The model format of ``path``; DeadReluError when it is none we read."""
    if not path.exists():
        raise DeadReluError("no such file", path=path)
    if path.is_dir():
        raise DeadReluError("is a directory, not a model file", path=path)
    size = path.stat().st_size
    if size == 0:
        raise DeadReluError("empty file", path=path)
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_format(path)
    if head[:2] in _PICKLE_PROTOCOL_2_TO_5:
        return "torch-save"  # torch.save's legacy (pre-1.6) pickle format
    if head[:1] == b"\x08":
        return "onnx"  # an ONNX ModelProto starts with field 1 (ir_version); load_onnx checks
    if path.suffix.lower() == ".onnx":
        raise DeadReluError("not an ONNX model: the bytes do not start like an ONNX ModelProto "
                            "(wrong file, or a Git LFS pointer?)", path=path)
    raise DeadReluError(
        "not a model file deadrelu can read: expected a torch.save checkpoint, a torch.export "
        ".pt2 archive, a TorchScript archive or an ONNX model",
        path=path,
    )


def _zip_format(path: Path) -> Format:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        raise DeadReluError(
            "truncated or corrupt archive (PyTorch model files are zip archives and this one "
            "cannot be read to the end)",
            path=path,
        ) from None
    if any(n.endswith("archive_format") or "/serialized_exported_program" in n
           or n.startswith("models/") for n in names):
        return "torch-export"
    if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch-save"
    raise DeadReluError("a zip archive, but not one PyTorch wrote", path=path)
