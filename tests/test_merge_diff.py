"""`deadrelu merge` is exactly the scan of all the data; it refuses other models / settings /
sites. `deadrelu diff` lists per-site before / after, the neurons that died and revived."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deadrelu.merge import merge_results
from deadrelu.report.load import load_report
from tests.conftest import FIXTURES, GENERATED
from tests.gate_helpers import cli, data_path, expected_dead, model_args, report, revive, shards

# Different activation families, a module called several times, functional sites.
TORCH = ["planted_relu", "planted_sigmoid", "reuse_relu", "functional"]


def _scan_json(model: list[str], data: Path, out: Path) -> dict[str, Any]:
    res = cli("scan", *model, "--data", data, "--format", "json", "-o", out)
    if res.exit_code != 0:
        raise AssertionError(res.stderr)
    d: dict[str, Any] = json.loads(out.read_text())
    return d


def _without_data_source(d: dict[str, Any]) -> dict[str, Any]:
    d = json.loads(json.dumps(d))
    d["data"].pop("source")
    d["data"].pop("files", None)
    return d


def _assert_merge_equals_whole(model: list[str], name: str, tmp_path: Path) -> None:
    first, second = shards(name, tmp_path, 32)  # the default batch size: same batches
    whole = _scan_json(model, GENERATED / FIXTURES[name]["data"], tmp_path / "all.json")
    _scan_json(model, first, tmp_path / "s1.json")
    _scan_json(model, second, tmp_path / "s2.json")
    res = cli("merge", tmp_path / "s1.json", tmp_path / "s2.json", "-o", tmp_path / "m.json")
    assert res.exit_code == 0, res.stderr
    merged = json.loads((tmp_path / "m.json").read_text())
    # every statistic, accumulator and derived figure, summary included: identical
    assert _without_data_source(merged) == _without_data_source(whole)
    assert merged["data"]["source"].count("+") == 1
    assert [s["dead"] for s in merged["sites"]] == list(expected_dead(name).values())


@pytest.mark.parametrize("name", TORCH)
def test_merge_of_shards_equals_the_scan_of_all_data_torch(name: str, tmp_path: Path) -> None:
    _assert_merge_equals_whole(model_args(name), name, tmp_path)


@pytest.mark.parametrize("name", ["planted_relu", "reuse_relu"])
def test_merge_of_shards_equals_the_scan_of_all_data_onnx(name: str, tmp_path: Path) -> None:
    onnx = GENERATED / FIXTURES[name]["files"]["onnx"]
    _assert_merge_equals_whole([str(onnx)], name, tmp_path)


def test_uneven_shards_merge_to_the_same_statistics(tmp_path: Path) -> None:
    name = "planted_sigmoid"  # float abs_sum sums in another order: equal up to rounding
    first, second = shards(name, tmp_path, 20)
    whole = load_report(report(name, tmp_path))
    _scan_json(model_args(name), first, tmp_path / "a.json")
    _scan_json(model_args(name), second, tmp_path / "b.json")
    merged = merge_results([load_report(tmp_path / "a.json"), load_report(tmp_path / "b.json")])
    assert merged.data.samples == whole.data.samples
    for m, w in zip(merged.sites, whole.sites, strict=True):
        for key, value in w.stats.arrays.items():
            if key == "abs_sum":
                np.testing.assert_allclose(m.stats.arrays[key], value, rtol=1e-12)
            else:
                np.testing.assert_array_equal(m.stats.arrays[key], value, err_msg=key)
        assert (m.stats.samples, m.stats.elements) == (w.stats.samples, w.stats.elements)
        assert m.dead_indices() == w.dead_indices()


def test_merge_refuses_other_models_settings_and_sites(tmp_path: Path) -> None:
    name = "planted_relu"
    first, _ = shards(name, tmp_path, 32)
    _scan_json(model_args(name), first, tmp_path / "a.json")
    res = cli("scan", *model_args(name), "--data", first, "--eps", "0.01", "-f", "json",
              "-o", tmp_path / "eps.json")
    assert res.exit_code == 0
    cases = [
        (report("planted_relu6", tmp_path), "different model"),
        (tmp_path / "eps.json", "other settings"),
    ]
    renamed = json.loads((tmp_path / "a.json").read_text())
    renamed["sites"][0]["name"] = "other"
    (tmp_path / "sites.json").write_text(json.dumps(renamed))
    cases.append((tmp_path / "sites.json", "has other sites (1 of 2 match"))
    for other, words in cases:
        res = cli("merge", tmp_path / "a.json", other)
        assert res.exit_code == 2, words
        assert words in res.stderr and str(other) in res.stderr
        assert res.stderr.count("\n") == 1 and res.stdout == ""


def test_diff_lists_died_and_revived_neurons(tmp_path: Path) -> None:
    now = report("planted_relu", tmp_path)
    d = json.loads(now.read_text())
    site = d["sites"][0]
    neuron = site["dead_indices"][0]
    before = revive(now, site["name"], neuron, tmp_path / "before.json")
    res = cli("diff", before, now, "--format", "json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["died"], out["revived"]) == (1, 0)
    first = out["sites"][0]
    assert first["died"] == [neuron] and first["dead_after"] == first["dead_before"] + 1
    back = json.loads(cli("diff", now, before, "--format", "json").stdout)
    assert back["sites"][0]["revived"] == [neuron]
    md = cli("diff", before, now, "--format", "markdown").stdout
    assert md.startswith("## deadrelu diff") and f"| `{site['name']}` |" in md
    table = cli("diff", before, now).stdout
    assert "1 died, 0 revived" in table


def test_diff_of_different_architectures_shows_added_and_removed(tmp_path: Path) -> None:
    res = cli("diff", report("planted_relu", tmp_path), report("conv1d", tmp_path),
              "--format", "json")
    assert res.exit_code == 0
    status = {(s["name"], s["status"]) for s in json.loads(res.stdout)["sites"]}
    assert ("act1", "removed") in status and ("relu1", "added") in status


@pytest.mark.parametrize("command", ["diff", "report", "sites"])
def test_output_never_replaces_an_input(tmp_path: Path, command: str) -> None:
    """-o naming a file the command reads is refused before anything is written."""
    name = "planted_relu"
    scan = report(name, tmp_path)
    model = tmp_path / "model.pt"
    model.write_bytes(Path(model_args(name)[0]).read_bytes())
    args = {"diff": [scan, scan], "report": [scan],
            "sites": [model, *model_args(name)[1:]]}[command]
    target = model if command == "sites" else scan
    before = target.read_bytes()
    res = cli(command, *args, "-o", target)
    assert res.exit_code == 2 and "would overwrite the input" in res.stderr, res.stderr
    assert target.read_bytes() == before


def test_merge_refuses_one_report_given_twice(tmp_path: Path) -> None:
    one = tmp_path / "s.json"
    _scan_json(model_args("planted_relu"), data_path("planted_relu"), one)
    other = tmp_path / ".." / tmp_path.name / "s.json"
    res = cli("merge", one, other, "-o", tmp_path / "all.json")
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1
    assert f"is given twice (as {one} and {other})" in res.stderr
    # The same spelling twice is not quoted twice.
    res = cli("merge", one, one, "-o", tmp_path / "all.json")
    assert res.exit_code == 2
    assert res.stderr == f"deadrelu: error: {one}: is given twice: merging a scan with itself " \
        "would count its samples twice\n"
    assert not (tmp_path / "all.json").exists()


def test_merge_refuses_reports_that_scanned_the_same_data_file(tmp_path: Path) -> None:
    name = "planted_relu"
    first, second = shards(name, tmp_path, 32)
    _scan_json(model_args(name), first, tmp_path / "s1.json")
    _scan_json(model_args(name), second, tmp_path / "s2.json")
    assert cli("merge", tmp_path / "s1.json", tmp_path / "s2.json", "-o",
               tmp_path / "all.json").exit_code == 0
    # A merged report and one of its shards; one shard scanned twice; two prefixes of one
    # file (--samples 8 and 16: the first 8 samples twice).
    _scan_json(model_args(name), first, tmp_path / "again.json")
    for n in (8, 16):
        res = cli("scan", *model_args(name), "--data", first, "-n", n, "-f", "json", "-o",
                  tmp_path / f"n{n}.json")
        assert res.exit_code == 0, res.stderr
    for pair in [("all.json", "s1.json"), ("s1.json", "again.json"), ("n8.json", "n16.json")]:
        res = cli("merge", *(tmp_path / p for p in pair), "-o", tmp_path / "m.json")
        assert res.exit_code == 2 and res.stdout == ""
        assert res.stderr == (f"deadrelu: error: {tmp_path / pair[1]}: scanned "
                              f"{first.resolve()}, as {tmp_path / pair[0]} did: merging them "
                              "would count its samples twice\n")
    assert not (tmp_path / "m.json").exists()


def test_merge_takes_shards_of_one_name_in_different_folders(tmp_path: Path) -> None:
    """Compared by resolved path, not by the name a report shows (val.npz in s0/ and s1/)."""
    import shutil

    name = "planted_relu"
    first, second = shards(name, tmp_path, 32)
    for i, shard in enumerate((first, second)):
        (tmp_path / f"s{i}").mkdir()
        shutil.copy(shard, tmp_path / f"s{i}" / "val.npz")
        _scan_json(model_args(name), tmp_path / f"s{i}" / "val.npz", tmp_path / f"r{i}.json")
    res = cli("merge", tmp_path / "r0.json", tmp_path / "r1.json", "-f", "json")
    assert res.exit_code == 0, res.stderr
    whole = load_report(report(name, tmp_path))
    assert json.loads(res.stdout)["data"]["samples"] == whole.data.samples


def test_merge_of_in_memory_scans_is_not_refused() -> None:
    """Data handed to the library has no file name to compare: shards may share a label."""
    import deadrelu
    from tests.conftest import build_eager, fixture_data

    model, x = build_eager("planted_relu"), fixture_data("planted_relu").numpy()
    parts = [deadrelu.scan(model, x[:32]), deadrelu.scan(model, x[32:])]
    whole = deadrelu.scan(model, x)
    merged = merge_results(parts)
    assert merged.data.samples == whole.data.samples
    assert [s.dead_indices() for s in merged.sites] == [s.dead_indices() for s in whole.sites]
