"""Initializer offsets read from the protobuf wire format (deadrelu/backends/onnx_offsets.py)
point at exactly each tensor's bytes; anything that does not parse gives no offsets; and a
scan whose weights onnxruntime reads from the file gives the numbers of one that hands them
over in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from deadrelu import scan
from deadrelu.backends import onnx_backend
from deadrelu.backends.onnx_graph import load_onnx_light
from deadrelu.backends.onnx_offsets import raw_data_offsets
from deadrelu.errors import DeadReluError
from tests.conftest import FIXTURES, GENERATED

ONNX_FILES = sorted({GENERATED / f["files"]["onnx"] for f in FIXTURES.values()
                     if "onnx" in f.get("files", {})})


@pytest.mark.parametrize("path", ONNX_FILES, ids=lambda p: p.name)
def test_offsets_hold_each_initializers_bytes(path: Path) -> None:
    model = onnx.load(str(path), load_external_data=False)
    data = path.read_bytes()
    offsets = raw_data_offsets(path)
    with_raw = {t.name: t.raw_data for t in model.graph.initializer if t.HasField("raw_data")}
    assert set(offsets) == set(with_raw) and offsets
    for name, raw in with_raw.items():
        start, length = offsets[name]
        assert data[start:start + length] == raw, name


def test_a_truncated_or_foreign_file_gives_no_offsets(tmp_path: Path) -> None:
    data = (GENERATED / FIXTURES["digits_cnn"]["files"]["onnx"]).read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    assert raw_data_offsets(cut) == {}
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x0f" * 64)  # wire type 7 does not exist
    assert raw_data_offsets(junk) == {}
    assert raw_data_offsets(tmp_path / "missing.onnx") == {}


def test_weights_read_from_the_file_give_the_in_memory_numbers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Three ways to give onnxruntime the weights, one set of numbers: the light model built
    from the wire format (the default), offsets set on the parsed model, and arrays handed
    over in memory."""
    f = FIXTURES["digits_cnn"]
    path, data = str(GENERATED / f["files"]["onnx"]), str(GENERATED / f["data"])
    light = scan(path, data)
    monkeypatch.setattr(onnx_backend, "load_onnx_light", lambda p: None)
    moved: list[int] = []
    real = onnx_backend.point_weights_at_file
    monkeypatch.setattr(onnx_backend, "point_weights_at_file",
                        lambda model, p: moved.append(real(model, p)) or moved[-1])
    from_file = scan(path, data)
    assert moved and moved[0] >= 2  # the conv and linear weights are read from the file
    monkeypatch.setattr(onnx_backend, "point_weights_at_file", lambda model, p: 0)
    in_memory = scan(path, data)
    for other in (from_file, in_memory):
        for a, b in zip(light.sites, other.sites, strict=True):
            for field in a.stats.arrays:
                np.testing.assert_array_equal(a.stats.arrays[field], b.stats.arrays[field])


@pytest.mark.parametrize("path", ONNX_FILES, ids=lambda p: p.name)
def test_the_light_model_is_the_model_with_its_weights_left_in_the_file(path: Path) -> None:
    light = load_onnx_light(path)
    assert light is not None
    full = onnx.load(str(path), load_external_data=False)
    assert [t.name for t in light.graph.initializer] == [t.name for t in full.graph.initializer]
    for a, b in zip(light.graph.initializer, full.graph.initializer, strict=True):
        assert (a.data_location == onnx.TensorProto.EXTERNAL) == (len(b.raw_data) > 1024)
        want = onnx.numpy_helper.to_array(b)
        got = onnx.numpy_helper.to_array(a, str(path.parent))
        assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True), a.name
    del light.graph.initializer[:], full.graph.initializer[:]
    assert light.SerializeToString() == full.SerializeToString()  # all else byte for byte


def test_the_weights_of_a_scanned_file_are_never_read_into_python(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path) -> None:
        raise AssertionError(f"{path} was loaded whole")

    monkeypatch.setattr(onnx_backend, "load_onnx", refuse)
    f = FIXTURES["digits_cnn"]
    assert scan(str(GENERATED / f["files"]["onnx"]), str(GENERATED / f["data"])).sites


def test_files_the_light_load_does_not_handle_are_loaded_whole(tmp_path: Path) -> None:
    digits = GENERATED / FIXTURES["digits_cnn"]["files"]["onnx"]
    link = tmp_path / "linked.onnx"
    link.symlink_to(digits.resolve())
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(digits.read_bytes()[:5000])
    model = onnx.load(str(digits))
    model.graph.node[0].input[0] = "nowhere"  # the checker rejects it
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    external = GENERATED / "external_data.onnx"  # weights in a file of their own
    for path in (link, cut, broken, external):
        assert load_onnx_light(path) is None, path.name
    with pytest.raises(DeadReluError, match=r"onnx\.checker rejects the model"):
        scan(str(broken), str(GENERATED / FIXTURES["digits_cnn"]["data"]))


def test_a_symlinked_model_file_scans_like_the_file(tmp_path: Path) -> None:
    """onnxruntime refuses external data whose resolved path leaves the model's folder, as
    the target of a symlink does: such a model hands its weights over in memory instead."""
    f = FIXTURES["digits_cnn"]
    target, data = GENERATED / f["files"]["onnx"], str(GENERATED / f["data"])
    link = tmp_path / "linked.onnx"
    link.symlink_to(target.resolve())
    direct, linked = scan(str(target), data), scan(str(link), data)
    for a, b in zip(direct.sites, linked.sites, strict=True):
        for field in a.stats.arrays:
            np.testing.assert_array_equal(a.stats.arrays[field], b.stats.arrays[field])


def test_weights_handed_over_in_memory_are_read_again_for_a_nan_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A symlinked model hands its weights over in memory and releases them once the scan's
    session exists; a batch holding NaN needs the exact graph's session, which reads them
    from the file again."""
    f = FIXTURES["digits_cnn"]
    target = GENERATED / f["files"]["onnx"]
    with np.load(GENERATED / f["data"]) as z:
        arrays = {k: z[k].copy() for k in z.files}
    name = next(iter(arrays))
    arrays[name] = arrays[name].astype(np.float32)
    arrays[name].reshape(-1)[5] = np.nan
    data = tmp_path / "with_nan.npz"
    np.savez(data, **arrays)
    link = tmp_path / "linked.onnx"
    link.symlink_to(target.resolve())
    direct = scan(str(target), str(data))
    taken: list[int] = []
    real = onnx_backend.OnnxBackend._take
    monkeypatch.setattr(onnx_backend.OnnxBackend, "_take",
                        lambda self, model: taken.append(1) or real(self, model))
    linked = scan(str(link), str(data))
    assert len(taken) == 2  # once at the start, once more for the exact graph's session
    assert any(s.figures.nonfinite for s in direct.sites)  # the exact graph did run
    for a, b in zip(direct.sites, linked.sites, strict=True):
        for field in a.stats.arrays:
            np.testing.assert_array_equal(a.stats.arrays[field], b.stats.arrays[field])
