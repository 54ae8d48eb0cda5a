"""Every planted fixture reports exactly its planted units, per site, in every torch format,
and every fixture agrees with the brute-force reference and across formats."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deadrelu import scan
from tests.conftest import (
    FIXTURES,
    GENERATED,
    TORCH_FORMATS,
    WITH_SITES,
    build_eager,
    fixture_args,
    fixture_data,
    scan_fixture,
)
from tests.reference import record, reference_sites


def _indices(mask: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(mask)]


@pytest.mark.parametrize("fmt", TORCH_FORMATS)
@pytest.mark.parametrize("name", WITH_SITES)
def test_reports_exactly_the_planted_units(name: str, fmt: str) -> None:
    result = scan_fixture(name, fmt)
    expected = FIXTURES[name]["sites"]
    assert [s.name for s in result.sites] == [e["name"] for e in expected]
    for site, e in zip(result.sites, expected, strict=True):
        assert site.info.kind == e["kind"], site.name
        assert site.info.neurons == e["neurons"], site.name
        assert site.info.channel_axis == e["channel_axis"], site.name
        assert site.dead_indices() == e["dead"], site.name
        assert _indices(site.figures.dead_low) == e["dead_low"], site.name
        assert _indices(site.figures.dead_high) == e["dead_high"], site.name
        if site.info.kind in ("leaky_relu", "prelu", "rrelu"):
            assert _indices(site.figures.negative_only) == e["negative_only"], site.name


INTEGER_FIELDS = ("active", "active_samples", "positive", "finite", "at_cap")


@pytest.mark.parametrize("name", WITH_SITES)
def test_formats_give_identical_statistics(name: str) -> None:
    """Counts and dead sets are identical. Float extremes are identical too unless the format
    itself computes differently: a .pt2 runs attention as decomposed ops, eager MHA does not,
    and their pre-activations differ in the last bits."""
    results = [scan_fixture(name, fmt) for fmt in TORCH_FORMATS]
    first = results[0]
    for other in results[1:]:
        assert [s.name for s in other.sites] == [s.name for s in first.sites]
        for a, b in zip(first.sites, other.sites, strict=True):
            for field in INTEGER_FIELDS:
                np.testing.assert_array_equal(a.stats.arrays[field], b.stats.arrays[field])
            for field in ("max_pre", "min_pre", "abs_sum"):
                np.testing.assert_allclose(a.stats.arrays[field], b.stats.arrays[field],
                                           rtol=1e-5)
            assert a.dead_indices() == b.dead_indices(), (other.model.format, a.name)
            if name != "transformer_mlp":
                assert a.stats == b.stats, (other.model.format, a.name)


@pytest.mark.parametrize("name", WITH_SITES)
def test_statistics_match_the_brute_force_reference(name: str) -> None:
    # The reference's function mode switches off MHA's fused fast path, which changes the
    # attention numerics; compare with the fast path off on both sides (--no-fast-path).
    fast_path = name != "transformer_mlp"
    path, kwargs = fixture_args(name, "state_dict")
    result = scan(path, str(GENERATED / FIXTURES[name]["data"]), fast_path=fast_path, **kwargs)
    model = build_eager(name)
    x = fixture_data(name)
    batches = list(x.split(32))  # the scan's default batch size
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(fast_path)
    try:
        calls = record(model, batches)
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)
    reference = reference_sites(calls, [s.info.channel_axis for s in result.sites])
    assert len(reference) == len(result.sites)
    for site, ref in zip(result.sites, reference, strict=True):
        a = site.stats.arrays
        assert site.info.neurons == ref.neurons
        assert site.stats.samples == ref.samples
        for field in ("active", "active_samples", "positive", "finite"):
            np.testing.assert_array_equal(a[field], getattr(ref, field), err_msg=site.name)
        np.testing.assert_array_equal(a["max_pre"], ref.max_pre, err_msg=site.name)
        np.testing.assert_array_equal(a["min_pre"], ref.min_pre, err_msg=site.name)
        np.testing.assert_allclose(a["abs_sum"], ref.abs_sum, rtol=1e-6, atol=1e-6)
        assert site.dead_indices() == ref.dead, site.name


def test_in_place_activations_give_the_out_of_place_numbers() -> None:
    inplace = scan_fixture("inplace", "state_dict")
    outofplace = scan_fixture("outofplace", "state_dict")
    assert [s.name for s in inplace.sites] == [s.name for s in outofplace.sites]
    for a, b in zip(inplace.sites, outofplace.sites, strict=True):
        assert a.stats == b.stats, a.name


def test_reused_module_is_one_site_per_call_with_its_own_width() -> None:
    result = scan_fixture("reuse_relu", "state_dict")
    calls = {s.name: s.info.neurons for s in result.sites if s.name.startswith("layer1.0.relu")}
    assert calls == {"layer1.0.relu": 8, "layer1.0.relu#2": 8, "layer1.0.relu#3": 32}


def test_trained_digits_model_has_really_dead_units() -> None:
    result = scan_fixture("digits_cnn", "state_dict")
    expected = {e["name"]: e["dead"] for e in FIXTURES["digits_cnn"]["sites"]}
    assert {s.name: s.dead_indices() for s in result.sites} == expected
    assert result.dead > 0


@pytest.mark.parametrize("fmt", [*TORCH_FORMATS, "onnx"])
def test_the_report_names_the_model_files_sha256(fmt: str) -> None:
    """The digest is computed on a thread while the model loads and runs: it must still be
    the whole file's, in every format."""
    import hashlib

    result = scan_fixture("digits_cnn", fmt)
    path = GENERATED / FIXTURES["digits_cnn"]["files"][fmt]
    assert result.model.path == str(path)
    assert result.model.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
