"""Very wide sites: exact, compact per-neuron arrays in the JSON report; --dtype runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import deadrelu
from deadrelu.data import DataSource
from deadrelu.report.compact import PACK_ABOVE
from deadrelu.report.model import ScanResult, json_schema


def _wide_scan() -> ScanResult:
    torch.manual_seed(0)
    width = PACK_ABOVE + 4096
    model = nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 4), nn.Tanh())
    with torch.no_grad():
        model[0].bias[:5000] = -100.0  # planted dead neurons 0..4999
    x = np.random.default_rng(0).standard_normal((64, 8), dtype=np.float32)
    return deadrelu.scan(model, DataSource("x", False, 64, lambda: iter([{"input": x}])))


def test_wide_site_is_packed_exactly_and_read_back() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    result = _wide_scan()
    text = result.to_json(indent=None)
    doc = json.loads(text)
    jsonschema.validate(doc, json_schema())
    wide, narrow = doc["sites"]
    assert wide["accumulators"]["active"]["packed"] == "zlib+base64"
    assert isinstance(narrow["accumulators"]["active"], list)  # small sites stay plain
    assert wide["dead_indices"][:3] == [0, 1, 2] and wide["dead"] >= 5000
    # Far smaller than plain JSON lists of eight arrays (~10+ characters per value).
    assert len(text) < 8 * wide["neurons"] * 4
    back = ScanResult.from_dict(doc)
    for a, b in zip(back.sites, result.sites, strict=True):
        assert a.stats == b.stats  # bit-exact, infinities included
        assert a.dead_indices() == b.dead_indices()
    assert back.to_dict() == doc


def test_dtype_bfloat16_scans_and_says_so_without_touching_the_callers_model() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 3),
                          nn.GELU())
    before = [p.detach().clone() for p in model.parameters()]
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8), dtype=np.float32)
    source = DataSource("x", False, 16, lambda: iter([{"input": x}]))
    low = deadrelu.scan(model, source, dtype="bfloat16")
    full = deadrelu.scan(model, source)
    assert all(p.dtype == torch.float32 and torch.equal(p, q)
               for p, q in zip(model.parameters(), before, strict=True))
    assert [s.name for s in low.sites] == [s.name for s in full.sites]
    assert any("bfloat16" in n and "exactly zero" in n for n in low.notes)
    assert low.to_dict()["settings"]["dtype"] == "bfloat16"
    # Coarser, but the same picture: per-neuron activity within a few percent.
    for a, b in zip(low.sites, full.sites, strict=True):
        np.testing.assert_allclose(a.figures.active_fraction, b.figures.active_fraction,
                                   atol=0.1)


def test_dtype_is_refused_for_onnx_and_unknown_types() -> None:
    from deadrelu.errors import DeadReluError
    from tests.conftest import GENERATED

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    source = DataSource("x", False, 4, lambda: iter([{"input": np.ones((4, 4), np.float32)}]))
    with pytest.raises(DeadReluError, match="float16 or bfloat16"):
        deadrelu.scan(model, source, dtype="int8")
    with pytest.raises(DeadReluError, match="--dtype applies to PyTorch models"):
        deadrelu.scan(str(GENERATED / "digits_cnn.onnx"), source, dtype="float16")


def _corrupt(acc: dict, how: str) -> None:
    import base64
    import zlib

    raw = zlib.decompress(base64.b64decode(acc["data"]))
    if how == "dtype":  # the same bytes read as floats would be other numbers
        acc["dtype"] = "<f8"
    elif how == "truncated":
        acc["data"] = base64.b64encode(zlib.compress(raw)[:-40]).decode()
    elif how == "longer":
        acc["data"] = base64.b64encode(zlib.compress(raw + raw[:8])).decode()
    elif how == "bomb":  # a stream far longer than length says: stops at length + 1 byte
        acc["data"] = base64.b64encode(zlib.compress(bytes(2**26))).decode()
    elif how == "base64":
        acc["data"] = "*" + acc["data"][1:]
    elif how == "zlib":
        acc["data"] = base64.b64encode(b"not zlib" + raw[:64]).decode()


@pytest.mark.parametrize("how, words", [
    ("dtype", "accumulator 'active': packed dtype '<f8' is not this field's '<i8'"),
    ("truncated", "accumulator 'active': packed data does not hold 69632 values"),
    ("longer", "packed data does not hold"),
    ("bomb", "packed data does not hold"),
    ("base64", "packed data is not base64"),
    ("zlib", "packed data is not a zlib stream"),
])
def test_a_corrupt_packed_accumulator_is_one_line(tmp_path, how: str, words: str) -> None:
    from deadrelu.errors import DeadReluError
    from deadrelu.report.load import load_report

    doc = json.loads(_wide_scan_json())
    _corrupt(doc["sites"][0]["accumulators"]["active"], how)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DeadReluError) as info:
        load_report(path)
    assert words in str(info.value)
    assert str(info.value).startswith(f"{path}: not a valid deadrelu report")


_CACHE: dict[str, str] = {}


def _wide_scan_json() -> str:
    if "doc" not in _CACHE:
        _CACHE["doc"] = _wide_scan().to_json(indent=None)
    return _CACHE["doc"]
