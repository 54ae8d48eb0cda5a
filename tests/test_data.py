"""deadrelu.data: every source, the samples cap, re-iteration and every user error."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from deadrelu.data import DataSource, InputSpec, open_data, parse_input_shapes
from deadrelu.data.common import Slicer
from deadrelu.errors import DeadReluError

X = [InputSpec("x", None)]
XM = [InputSpec("x", None), InputSpec("mask", None)]


def collect(src: DataSource) -> list[dict[str, np.ndarray]]:
    return list(src.batches())


def cat(src: DataSource, name: str = "x") -> np.ndarray:
    return np.concatenate([b[name] for b in src.batches()])


def error(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(DeadReluError) as info:
        result = fn(*args, **kwargs)
        if isinstance(result, DataSource):
            collect(result)
    return str(info.value)


# --------------------------------------------------------------------------- --input-shape

def test_input_shape_unnamed_goes_to_first_input() -> None:
    assert parse_input_shapes("1,3,32,32", X) == {"x": (1, 3, 32, 32)}
    assert parse_input_shapes(" 1, 3, 32 ,32 ", XM) == {"x": (1, 3, 32, 32)}
    assert parse_input_shapes("1x3x32x32", X) == {"x": (1, 3, 32, 32)}


def test_input_shape_named_entries() -> None:
    want = {"x": (1, 3, 224, 224), "mask": (1, 128)}
    assert parse_input_shapes("x=1,3,224,224;mask=1,128", XM) == want
    assert parse_input_shapes("x=1,3,224,224   mask = 1,128", XM) == want
    assert parse_input_shapes("x=1,3,224,224; mask=1,128;", XM) == want


def test_input_shape_empty() -> None:
    assert parse_input_shapes(None, X) == {}
    assert parse_input_shapes("  ", X) == {}


@pytest.mark.parametrize(("text", "words"), [
    ("y=1,2", ["no input named 'y'", "x, mask"]),
    ("x=1,a,3", ["'x=1,a,3'", "'a'", "positive"]),
    ("x=1,0", ["'0'"]),
    ("x=", ["'x='", "a dimension is missing"]),
    ("1,2;mask=1,3", ["'1,2' has no input name"]),
    ("x=1,2;x=1,3", ["'x' is given twice"]),
])
def test_input_shape_errors(text: str, words: list[str]) -> None:
    msg = error(parse_input_shapes, text, XM)
    assert msg.startswith("--input-shape")
    for w in words:
        assert w in msg


# --------------------------------------------------------------------------- common errors

def test_missing_path(tmp_path: Path) -> None:
    p = tmp_path / "nope.npy"
    assert error(open_data, str(p), X) == f"{p}: no such file or directory"


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "e.npz"
    p.touch()
    assert error(open_data, str(p), X) == f"{p}: empty file"


def test_unknown_suffix_lists_supported(tmp_path: Path) -> None:
    p = tmp_path / "d.txt"
    p.write_text("1 2 3")
    msg = error(open_data, str(p), X)
    assert "'.txt'" in msg and ".npy" in msg and ".csv" in msg and "module:function" in msg
    img = tmp_path / "a.png"
    Image.new("RGB", (2, 2)).save(img)
    assert "folder" in error(open_data, str(img), X)


def test_bad_batch_size_and_samples(tmp_path: Path) -> None:
    assert "--batch-size" in error(open_data, None, X, batch_size=0)
    assert "--samples" in error(open_data, None, X, samples=0)


def test_flags_for_other_sources_are_errors(tmp_path: Path) -> None:
    p = tmp_path / "a.npy"
    np.save(p, np.zeros((2, 3), np.float32))
    assert "--mean applies to an image folder" in error(open_data, str(p), X, mean=[0.5])
    assert "--drop-columns applies to a .csv" in error(open_data, str(p), X, drop_columns=["1"])
    assert "--image-size" in error(open_data, None, [InputSpec("x", (None, 3))], image_size=8)


def test_accepts_pathlike(tmp_path: Path) -> None:
    p = tmp_path / "a.npy"
    np.save(p, np.ones((3, 2), np.float32))
    assert cat(open_data(p, X)).shape == (3, 2)


# --------------------------------------------------------------------------- .npy

@pytest.fixture
def npy(tmp_path: Path) -> tuple[Path, np.ndarray]:
    a = np.arange(100 * 6, dtype=np.float32).reshape(100, 6)
    p = tmp_path / "val.npy"
    np.save(p, a)
    return p, a


def test_npy_is_memory_mapped(npy: tuple[Path, np.ndarray], monkeypatch: Any) -> None:
    p, _ = npy
    calls = []
    real = np.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    src = open_data(str(p), X, batch_size=32)
    assert calls and all(c.get("mmap_mode") == "r" for c in calls)
    assert all(c.get("allow_pickle") is False for c in calls)
    assert isinstance(src.loader, Slicer)
    arrays = src.loader.arrays
    assert isinstance(arrays, dict) and isinstance(arrays["x"], np.memmap)


def test_npy_batches_equal_the_array(npy: tuple[Path, np.ndarray]) -> None:
    p, a = npy
    src = open_data(str(p), X, batch_size=32)
    batches = collect(src)
    assert [len(b["x"]) for b in batches] == [32, 32, 32, 4]
    assert np.array_equal(np.concatenate([b["x"] for b in batches]), a)
    # Real copies: plain, writable, C-contiguous arrays, not views of the mapped file.
    for b in batches:
        assert type(b["x"]) is np.ndarray and b["x"].flags.writeable
        assert b["x"].flags.c_contiguous
    assert src.samples == 100 and not src.synthetic
    assert src.description == "val.npy (100 samples)"


def test_npy_samples_cap(npy: tuple[Path, np.ndarray]) -> None:
    p, a = npy
    src = open_data(str(p), X, batch_size=32, samples=40)
    assert [len(b["x"]) for b in collect(src)] == [32, 8]
    assert np.array_equal(cat(src), a[:40])
    assert src.samples == 40 and src.description == "val.npy (40 of 100 samples)"
    assert len(cat(open_data(str(p), X, samples=1000))) == 100


def test_npy_reiteration_repeats(npy: tuple[Path, np.ndarray]) -> None:
    src = open_data(str(npy[0]), X, batch_size=7)
    assert np.array_equal(cat(src), cat(src))


def test_npy_dtypes(tmp_path: Path) -> None:
    p = tmp_path / "f64.npy"
    np.save(p, np.ones((4, 3), np.float64))
    assert cat(open_data(str(p), X)).dtype == np.float32
    assert cat(open_data(str(p), [InputSpec("x", None, "float16")])).dtype == np.float16
    q = tmp_path / "ids.npy"
    np.save(q, np.ones((4, 3), np.int64))
    assert cat(open_data(str(q), X)).dtype == np.int64  # ints stay ints


def test_npy_multi_input_model(npy: tuple[Path, np.ndarray]) -> None:
    msg = error(open_data, str(npy[0]), XM)
    assert ".npz" in msg and "x, mask" in msg and str(npy[0]) in msg


def test_npy_rank_mismatch(npy: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    p = tmp_path / "val.npy"
    np.save(p, np.zeros((100, 64), np.float32))
    msg = error(open_data, str(p), [InputSpec("x", (None, 3, 32, 32))])
    assert msg == f"{p}: input 'x' expects shape (N, 3, 32, 32) but val.npy has (100, 64)"


def test_npy_fixed_dim_mismatch_and_wildcards(tmp_path: Path) -> None:
    p = tmp_path / "a.npy"
    np.save(p, np.zeros((5, 3, 8, 8), np.float32))
    assert "(N, 1, ?, ?)" in error(open_data, str(p), [InputSpec("x", (1, 1, None, None))])
    # dim 0 and None dims are wildcards
    assert cat(open_data(str(p), [InputSpec("x", (1, 3, None, 8))])).shape == (5, 3, 8, 8)
    # --input-shape counts as the expected shape
    assert "(N, 4)" in error(open_data, str(p), X, input_shapes={"x": (1, 4)})


def test_npy_channels_last_hint(tmp_path: Path) -> None:
    p = tmp_path / "nhwc.npy"
    np.save(p, np.zeros((2, 8, 8, 3), np.float32))
    assert "channels-last" in error(open_data, str(p), [InputSpec("x", (None, 3, 8, 8))])


@pytest.mark.parametrize(("array", "words"), [
    (np.zeros((0, 3), np.float32), "no samples"),
    (np.array(3.0), "single value"),
    (np.array(["a", "b"]), "not numbers"),
])
def test_npy_bad_contents(tmp_path: Path, array: np.ndarray, words: str) -> None:
    p = tmp_path / "a.npy"
    np.save(p, array)
    assert words in error(open_data, str(p), X)


def test_npy_not_an_array(tmp_path: Path) -> None:
    p = tmp_path / "a.npy"
    p.write_bytes(b"this is not numpy")
    msg = error(open_data, str(p), X)
    assert msg.startswith(f"{p}: not a readable .npy")


# --------------------------------------------------------------------------- .npz

def test_npz_named_inputs(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    x, m = np.random.rand(10, 4), np.ones((10, 7), np.int64)
    np.savez(p, mask=m, x=x, y=np.arange(10))
    src = open_data(str(p), XM, batch_size=4)
    batches = collect(src)
    assert [sorted(b) for b in batches] == [["mask", "x"]] * 3
    assert np.allclose(cat(src, "x"), x) and cat(src, "x").dtype == np.float32
    assert np.array_equal(cat(src, "mask"), m)
    assert src.samples == 10


def test_npz_positional(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, np.ones((3, 2)), np.zeros((3, 5)))
    src = open_data(str(p), XM)
    assert cat(src, "x").shape == (3, 2) and cat(src, "mask").shape == (3, 5)
    assert cat(open_data(str(p), X)).shape == (3, 2)  # (x, y) saved positionally


@pytest.mark.parametrize(("arrays", "picked"), [
    ({"features": 1, "labels": 2}, 1),
    ({"data": 1, "other": 2, "y": 3}, 1),
    ({"inp": 1, "x": 2}, 2),
    ({"whatever": 1}, 1),
    ({"input": 1, "x": 2}, 1),  # named after the input wins
])
def test_npz_single_input_picks(tmp_path: Path, arrays: dict[str, int], picked: int) -> None:
    p = tmp_path / "d.npz"
    named: dict[str, Any] = {k: np.full((2, 2), v, np.float32) for k, v in arrays.items()}
    np.savez(p, **named)
    assert np.all(cat(open_data(str(p), [InputSpec("input", None)]), "input") == picked)


def test_npz_ambiguous(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, a=np.ones((2, 2)), b=np.ones((2, 2)))
    msg = error(open_data, str(p), X)
    assert "'a', 'b'" in msg and "'x'" in msg and "name the arrays after the inputs" in msg
    assert "'mask'" in error(open_data, str(p), [InputSpec("a", None), InputSpec("mask", None)])


def test_npz_lengths_differ(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.ones((5, 2)), mask=np.ones((4, 2)))
    msg = error(open_data, str(p), XM)
    assert "differ in length" in msg and "has 5" in msg and "has 4" in msg


def test_npz_reads_only_used_arrays_and_never_unpickles(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    # A pickled object array next to the data: left alone unless the model needs it.
    np.savez(p, x=np.ones((3, 2), np.float32), meta=np.array([{"a": 1}], dtype=object))
    assert cat(open_data(str(p), X)).shape == (3, 2)
    msg = error(open_data, str(p), [InputSpec("meta", None)])
    assert str(p) in msg and "meta" in msg


def test_npz_empty_and_broken(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.ones((0, 2)))
    assert "no samples" in error(open_data, str(p), X)
    np.savez(p)
    assert "holds no arrays" in error(open_data, str(p), X)
    p.write_bytes(b"garbage garbage")
    assert "not a readable .npz" in error(open_data, str(p), X)


def test_npz_rank_checked_from_header(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez_compressed(p, x=np.ones((4, 64), np.float32))
    msg = error(open_data, str(p), [InputSpec("x", (None, 3, 32, 32))])
    assert "expects shape (N, 3, 32, 32)" in msg and "(4, 64)" in msg


# --------------------------------------------------------------------------- .pt / .pth

def test_pt_tensor(tmp_path: Path) -> None:
    p = tmp_path / "d.pt"
    t = torch.randn(10, 3)
    torch.save(t, p)
    src = open_data(str(p), X, batch_size=4)
    assert np.array_equal(cat(src), t.numpy()) and src.samples == 10


def test_pt_dict_list_and_bfloat16(tmp_path: Path) -> None:
    p = tmp_path / "d.pth"
    torch.save({"x": torch.ones(4, 2), "mask": torch.zeros(4, 3, dtype=torch.long)}, p)
    src = open_data(str(p), XM)
    assert cat(src, "mask").dtype == np.int64 and cat(src, "x").shape == (4, 2)
    torch.save((torch.ones(5, 2, dtype=torch.bfloat16), torch.arange(5)), p)
    got = cat(open_data(str(p), X))
    assert got.shape == (5, 2) and got.dtype == np.float32


def test_pt_list_of_alike_tensors_is_refused_not_cut_to_its_first(tmp_path: Path) -> None:
    """A list of batches would be read as (inputs, labels…): only its first batch scanned."""
    p = tmp_path / "d.pt"
    torch.save([torch.ones(4, 2), torch.ones(3, 2)], p)
    msg = error(open_data, str(p), X)
    assert msg.startswith(f"{p}: holds a list of 2 tensors of shape (4, 2) (axis 0 aside)")
    assert "torch.cat" in msg
    # Inputs and labels of another shape stay (inputs, labels).
    torch.save([torch.ones(4, 2), torch.zeros(4)], p)
    assert cat(open_data(str(p), X)).shape == (4, 2)


def test_pt_state_dict(tmp_path: Path) -> None:
    p = tmp_path / "model.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 3)).state_dict(), p)
    msg = error(open_data, str(p), X)
    assert "looks like a model state dict, not data" in msg and str(p) in msg
    torch.save(torch.nn.Linear(2, 3).state_dict(), p)  # top-level "weight"/"bias" keys
    assert "state dict" in error(open_data, str(p), X)


def test_pt_pickled_module_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 3), p)
    msg = error(open_data, str(p), X)
    assert msg.startswith(f"{p}: ") and "weights_only" in msg and "\n" not in msg


@pytest.mark.parametrize(("obj", "words"), [
    (3, "holds an int, not data"),
    ({"model": {"w": torch.ones(1)}, "epoch": 3}, "checkpoint"),
    ({"x": "text"}, "is a str, not a tensor"),
    ([torch.ones(2, 2)], "a list of 1 tensor but the model has 2 inputs"),
])
def test_pt_bad_contents(tmp_path: Path, obj: Any, words: str) -> None:
    p = tmp_path / "d.pt"
    torch.save(obj, p)
    inputs = XM if isinstance(obj, list) else X
    assert words in error(open_data, str(p), inputs)


def test_pt_garbage(tmp_path: Path) -> None:
    p = tmp_path / "d.pt"
    p.write_bytes(b"\x00not a torch file")
    assert error(open_data, str(p), X).startswith(f"{p}: ")


# --------------------------------------------------------------------------- .csv

def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_csv_with_header_and_drop(tmp_path: Path) -> None:
    p = write(tmp_path / "d.csv", """
        id,a,b,label
        1,0.5,1.5,cat
        2,2.5,3.5,dog
        """)
    src = open_data(str(p), X, drop_columns=["id", "3"])
    got = cat(src)
    assert got.dtype == np.float32 and np.array_equal(got, [[0.5, 1.5], [2.5, 3.5]])
    assert src.samples == 2


def test_csv_without_header(tmp_path: Path) -> None:
    p = write(tmp_path / "d.csv", "1,2,3\n4,5,6\n\n7,8,9\n")
    assert np.array_equal(cat(open_data(str(p), X, batch_size=2)), np.arange(1, 10).reshape(3, 3))
    assert np.array_equal(cat(open_data(str(p), X, drop_columns=["0"])), [[2, 3], [5, 6], [8, 9]])
    assert "0-based number" in error(open_data, str(p), X, drop_columns=["a"])


def test_csv_semicolons(tmp_path: Path) -> None:
    p = write(tmp_path / "d.csv", "a;b\n1;2\n")
    assert np.array_equal(cat(open_data(str(p), X)), [[1, 2]])


def test_csv_non_numeric_cell(tmp_path: Path) -> None:
    p = write(tmp_path / "d.csv", "a,b,label\n1,2,3\n4,5,dog\n")
    msg = error(open_data, str(p), X)
    assert "line 3" in msg and "column 'label'" in msg and "'dog'" in msg
    assert "--drop-columns" in msg
    q = write(tmp_path / "e.csv", "1,2\n3,\n")
    msg = error(open_data, str(q), X)
    assert "line 2" in msg and "column 1 (0-based)" in msg and "empty" in msg


def test_csv_drop_errors(tmp_path: Path) -> None:
    p = write(tmp_path / "d.csv", "a,b\n1,2\n")
    msg = error(open_data, str(p), X, drop_columns=["c"])
    assert "no column named 'c'" in msg and "a, b" in msg
    assert "out of range" in error(open_data, str(p), X, drop_columns=["5"])
    assert "drops every column" in error(open_data, str(p), X, drop_columns=["a", "b"])


def test_csv_ragged_and_empty(tmp_path: Path) -> None:
    p = write(tmp_path / "d.csv", "a,b\n1,2\n3\n")
    assert "line 3 has 1 columns" in error(open_data, str(p), X)
    q = write(tmp_path / "h.csv", "a,b\n")
    assert "no samples" in error(open_data, str(q), X)


def test_csv_reshaped_to_input(tmp_path: Path) -> None:
    p = write(tmp_path / "d.csv", "1,2,3,4\n5,6,7,8\n")
    got = cat(open_data(str(p), [InputSpec("x", (None, 1, 2, 2))]))
    assert got.shape == (2, 1, 2, 2) and got[1, 0, 1, 1] == 8
    got = cat(open_data(str(p), X, input_shapes={"x": (1, 2, 2)}))
    assert got.shape == (2, 2, 2)
    msg = error(open_data, str(p), [InputSpec("x", (None, 3, 32, 32))])
    assert "expects shape (N, 3, 32, 32) but d.csv has (2, 4)" in msg
    assert "multi" not in error(open_data, str(p), XM) and ".npz" in error(open_data, str(p), XM)


# --------------------------------------------------------------------------- image folders

def image(path: Path, value: int | tuple[int, ...], size: tuple[int, int] = (4, 3),
          mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def test_images_rgb_sorted_recursive(tmp_path: Path) -> None:
    image(tmp_path / "b.png", (255, 0, 0))
    image(tmp_path / "a.png", (0, 255, 0))
    image(tmp_path / "sub" / "c.bmp", (0, 0, 255))
    image(tmp_path / ".hidden" / "d.png", (9, 9, 9))
    (tmp_path / "notes.txt").write_text("not an image")
    src = open_data(str(tmp_path), X, batch_size=2)
    batches = collect(src)
    assert [b["x"].shape for b in batches] == [(2, 3, 3, 4), (1, 3, 3, 4)]
    got = cat(src)
    assert got.dtype == np.float32 and got.min() == 0 and got.max() == 1
    assert got[0, 1].mean() == 1 and got[1, 0].mean() == 1 and got[2, 2].mean() == 1  # a, b, c
    assert src.samples == 3 and "3 images" in src.description


def test_images_grayscale_from_channels_or_shape(tmp_path: Path) -> None:
    image(tmp_path / "a.png", (255, 255, 255))
    assert cat(open_data(str(tmp_path), X, channels=1)).shape == (1, 1, 3, 4)
    assert cat(open_data(str(tmp_path), [InputSpec("x", (None, 1, None, None))])).shape == (
        1, 1, 3, 4)


def test_images_16_bit_grayscale_keep_their_values(tmp_path: Path) -> None:
    """Pillow's convert("L") clips 16-bit values to 255: nearly every pixel became 1.0."""
    values = (np.arange(12, dtype=np.uint16) * 5000 + 7).reshape(3, 4)
    Image.fromarray(values).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode.startswith("I")
    expected = values.astype(np.float32) / 65535
    gray = cat(open_data(str(tmp_path), X, channels=1))
    np.testing.assert_allclose(gray[0, 0], expected, rtol=1e-6)
    rgb = cat(open_data(str(tmp_path), X, channels=3))  # gray in each colour plane
    for plane in rgb[0]:
        np.testing.assert_allclose(plane, expected, rtol=1e-6)
    half = cat(open_data(str(tmp_path), X, channels=1, image_size=(6, 8)))
    assert half.shape == (1, 1, 6, 8) and 0 < half.min() and half.max() < 1


def test_images_resize(tmp_path: Path) -> None:
    image(tmp_path / "a.png", 10, (8, 8))
    image(tmp_path / "b.png", 10, (5, 7))
    msg = error(open_data, str(tmp_path), X)
    assert str(tmp_path / "b.png") in msg and "--image-size" in msg
    assert cat(open_data(str(tmp_path), X, image_size=6)).shape == (2, 3, 6, 6)
    assert cat(open_data(str(tmp_path), X, image_size=(2, 3))).shape == (2, 3, 2, 3)
    spec = [InputSpec("x", (None, 3, 4, 5))]
    assert cat(open_data(str(tmp_path), spec)).shape == (2, 3, 4, 5)


def test_images_mean_std(tmp_path: Path) -> None:
    image(tmp_path / "a.png", (255, 0, 51))
    got = cat(open_data(str(tmp_path), X, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.1]))
    assert np.allclose(got[0, :, 0, 0], [1, -1, -3])
    assert "--mean has 2 values" in error(open_data, str(tmp_path), X, mean=[0.1, 0.2])
    assert "--std must not be 0" in error(open_data, str(tmp_path), X, std=[0.0])


def test_images_flattened_for_mlp(tmp_path: Path) -> None:
    image(tmp_path / "a.png", 100, (4, 4), mode="L")
    got = cat(open_data(str(tmp_path), [InputSpec("x", (None, 16))], channels=1))
    assert got.shape == (1, 16)


def test_images_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert error(open_data, str(empty), X).startswith(f"{empty}: the folder holds no images")
    image(tmp_path / "ok" / "a.png", 1)
    bad = tmp_path / "ok" / "b.jpg"
    bad.write_bytes(b"not a jpeg")
    msg = error(open_data, str(tmp_path / "ok"), X)
    assert msg.startswith(f"{bad}: cannot read this image")
    assert ".npz" in error(open_data, str(tmp_path / "ok"), XM)
    assert "5 channels" in error(open_data, str(tmp_path / "ok"),
                                 [InputSpec("x", (None, 5, 3, 4))])


def test_images_samples_cap(tmp_path: Path) -> None:
    for i in range(5):
        image(tmp_path / f"{i}.png", i)
    src = open_data(str(tmp_path), X, samples=3, batch_size=2)
    assert len(cat(src)) == 3 and src.samples == 3


# --------------------------------------------------------------------------- callables

def test_callable_file_with_pairs(tmp_path: Path, monkeypatch: Any) -> None:
    f = write(tmp_path / "loader.py", """
        import numpy as np
        import torch

        def batches():
            for i in range(3):
                yield torch.full((4, 2), float(i)), torch.zeros(4)
        """)
    src = open_data(f"{f}:batches", X)
    got = collect(src)
    assert len(got) == 3 and all(type(b["x"]) is np.ndarray for b in got)
    assert np.array_equal(cat(src), np.repeat(np.arange(3.0), 8).reshape(12, 2))
    assert src.samples is None and not src.synthetic


def test_callable_module_from_cwd(tmp_path: Path, monkeypatch: Any) -> None:
    write(tmp_path / "my_data_mod_1.py", """
        import numpy as np

        def make():
            return [{"x": np.ones((2, 3)), "mask": np.zeros((2, 1), np.int64), "y": 1}]
        """)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        src = open_data("my_data_mod_1:make", XM)
        (batch,) = collect(src)
    finally:
        sys.modules.pop("my_data_mod_1", None)
    assert batch["x"].dtype == np.float32 and batch["mask"].dtype == np.int64


def test_callable_whole_array_is_cut(tmp_path: Path) -> None:
    f = write(tmp_path / "whole.py", """
        import numpy as np

        def all_of_it():
            return np.arange(10.0).reshape(5, 2)
        """)
    src = open_data(f"{f}:all_of_it", X, batch_size=2)
    assert [len(b["x"]) for b in collect(src)] == [2, 2, 1]


def test_callable_samples_cap_stops_early(tmp_path: Path) -> None:
    f = write(tmp_path / "endless.py", """
        import numpy as np

        pulled = []

        def forever():
            while True:
                pulled.append(1)
                yield np.zeros((4, 2))
        """)
    src = open_data(f"{f}:forever", X, samples=10)
    assert [len(b["x"]) for b in collect(src)] == [4, 4, 2]
    assert len(sys.modules["_deadrelu_data_endless"].pulled) == 3


def test_callable_empty(tmp_path: Path) -> None:
    f = write(tmp_path / "nothing.py", "def none_at_all():\n    return iter([])\n")
    spec = f"{f}:none_at_all"
    src = open_data(spec, X)
    assert error(collect, src) == f"{spec}: the data set has no samples"


@pytest.mark.parametrize(("code", "words"), [
    ("import no_such_module_xyz\n", "No module named 'no_such_module_xyz'"),
    ("def other():\n    pass\n", "has no function 'fn' (it has: other)"),
    ("fn = 3\n", "not a function"),
    ("def fn():\n    raise ValueError('boom')\n", "raised ValueError: boom"),
    ("def fn():\n    return None\n", "returned NoneType"),
    ("def fn():\n    return [('a', 'b')]\n", "not numbers"),
    ("import numpy as np\ndef fn():\n    return [np.ones((2, 5))]\n", "expects shape (N, 3)"),
    ("import numpy as np\ndef fn():\n    return [np.ones((2, 3))]\n", "one input"),
    ("def fn(:\n", "SyntaxError"),
])
def test_callable_errors(tmp_path: Path, code: str, words: str) -> None:
    f = tmp_path / "bad_mod.py"
    f.write_text(code)
    spec = f"{f}:fn"
    inputs = XM if words == "one input" else [InputSpec("x", (None, 3))]
    msg = error(open_data, spec, inputs)
    assert msg.startswith(f"{spec}: ") and words in msg


def test_callable_missing_module_and_file(tmp_path: Path) -> None:
    assert "No module named" in error(open_data, "no_such_pkg_xyz.data:load", X)
    assert "no such file" in error(open_data, str(tmp_path / "gone.py") + ":load", X)
    assert "file.py:function" in error(open_data, str(tmp_path / "gone.py"), X)


# --------------------------------------------------------------------------- synthetic

def test_synthetic_shapes_and_count() -> None:
    src = open_data(None, [InputSpec("x", (1, 3, 8, 8))])
    batches = collect(src)
    assert [b["x"].shape for b in batches] == [(32, 3, 8, 8)] * 2
    assert src.synthetic and src.samples == 64
    assert src.description == "synthetic N(0,1) inputs, 64 samples"
    src = open_data(None, [InputSpec("x", (None, 4))], samples=10, batch_size=4)
    assert [len(b["x"]) for b in collect(src)] == [4, 4, 2] and src.samples == 10


def test_synthetic_is_seeded_and_normal() -> None:
    spec = [InputSpec("x", (None, 1000))]
    a, b = cat(open_data(None, spec)), cat(open_data(None, spec))
    assert np.array_equal(a, b) and a.dtype == np.float32
    assert not np.array_equal(a, cat(open_data(None, spec, seed=1)))
    assert abs(a.mean()) < 0.05 and abs(a.std() - 1) < 0.05
    src = open_data(None, spec)
    assert np.array_equal(cat(src), cat(src))


def test_synthetic_dtypes() -> None:
    inputs = [InputSpec("x", (None, 5), "float16"), InputSpec("ids", (None, 7), "int64"),
              InputSpec("m", (None, 7), "bool"), InputSpec("h", (None, 2), "bfloat16")]
    src = open_data(None, inputs, samples=50)
    b = next(iter(src.batches()))
    assert b["x"].dtype == np.float16 and b["h"].dtype == np.float32
    assert b["ids"].dtype == np.int64 and set(np.unique(b["ids"])) <= {0, 1}
    assert b["m"].dtype == np.bool_
    assert "ids: integers in [0, 2)" in src.description


def test_synthetic_dynamic_dim_error() -> None:
    msg = error(open_data, None, [InputSpec("x", (None, 3, None, 32))])
    assert msg.startswith("input 'x' has a dynamic dimension 2 and no --data: pass "
                          "--input-shape x=1,3,?,32")


@pytest.mark.parametrize(("spec", "for_scan", "for_sites"), [
    (InputSpec("x", ()), "input 'x' is a scalar, which cannot be batched: pass --data",
     "input 'x' is a scalar, which cannot be batched: only a scan with --data can run this "
     "model"),
    (InputSpec("x", (None, 3), "complex64"),
     "input 'x' has dtype complex64, which deadrelu cannot make synthetic values for: pass "
     "--data", "complex64, which deadrelu cannot make synthetic values for: only a scan"),
    (InputSpec("x", (None, None)), "input 'x' has a dynamic dimension 1 and no --data: pass "
     "--input-shape x=1,? with each ? filled in, or --data", "input 'x' has a dynamic "
     "dimension 1: pass --input-shape x=1,? with each ? filled in"),
])
def test_no_synthetic_input_is_worded_with_and_without_data(spec: InputSpec, for_scan: str,
                                                            for_sites: str) -> None:
    # scan offers --data; `deadrelu sites` has none to offer (NoSyntheticInput.without_data).
    from deadrelu.data.synthetic import NoSyntheticInput

    with pytest.raises(NoSyntheticInput) as info:
        collect(open_data(None, [spec]))
    assert str(info.value) == for_scan
    sites = str(info.value.at("m.pt").without_data())
    assert sites.startswith("m.pt: ") and for_sites in sites and "--data" not in \
        sites.replace("with --data can run", "")


def test_synthetic_unknown_shape_and_override() -> None:
    msg = error(open_data, None, X)
    assert "input 'x' has an unknown shape" in msg and "--input-shape" in msg
    shapes = parse_input_shapes("9,3,5", X)
    assert [b["x"].shape for b in collect(open_data(None, X, input_shapes=shapes))] == [
        (32, 3, 5)] * 2
    dyn = [InputSpec("x", (None, None))]
    assert cat(open_data(None, dyn, input_shapes={"x": (1, 6)}, samples=3)).shape == (3, 6)
    assert "dtype complex64" in error(open_data, None, [InputSpec("x", (1, 2), "complex64")])


# --------------------------------------------------------------------------- DataSource

def test_datasource_with_own_loader() -> None:
    src = DataSource("mine", False, None, lambda: iter([{"x": np.ones((5, 1))}] * 3), limit=7)
    assert [len(b["x"]) for b in src.batches()] == [5, 2]
    empty = DataSource("nothing", False, 0, lambda: [])
    assert error(collect, empty) == "nothing: the data set has no samples"
