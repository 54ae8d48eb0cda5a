"""`deadrelu check`: thresholds, per-site overrides, ignore, baselines, exit codes 0 / 1 / 2,
GitHub and markdown output — expectations derived from the fixture manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from tests.gate_helpers import (
    cli,
    data_path,
    expected_dead,
    expected_neurons,
    model_args,
    report,
    revive,
)

NAME = "planted_relu"


def _totals(name: str = NAME) -> tuple[int, int]:
    return sum(expected_dead(name).values()), sum(expected_neurons(name).values())


def _site_rates(name: str = NAME) -> dict[str, float]:
    n = expected_neurons(name)
    return {s: d / n[s] for s, d in expected_dead(name).items()}


def _failures(res: Result) -> list[dict[str, Any]]:
    failures: list[dict[str, Any]] = json.loads(res.stdout)["failures"]
    return failures


def test_running_the_model_passes_and_fails_on_the_model_dead_rate() -> None:
    dead, neurons = _totals()
    rate = dead / neurons
    ok = cli("check", *model_args(NAME), "--data", data_path(NAME), "--max-dead-rate", rate)
    assert ok.exit_code == 0, ok.stderr
    assert "passed" in ok.stdout
    bad = cli("check", *model_args(NAME), "--data", data_path(NAME),
              "--max-dead-rate", rate - 0.01, "--format", "json")
    assert bad.exit_code == 1
    (f,) = _failures(bad)
    assert (f["site"], f["metric"], f["limit"]) == (None, "max-dead-rate", rate - 0.01)
    assert f["figure"] == pytest.approx(rate)


@pytest.mark.parametrize("slack, code", [(0, 0), (-1, 1)])
def test_absolute_model_dead_count(tmp_path: Path, slack: int, code: int) -> None:
    dead, _ = _totals()
    res = cli("check", "--scan", report(NAME, tmp_path), "--max-dead", dead + slack)
    assert res.exit_code == code, res.stderr


def test_site_dead_rate_lists_exactly_the_sites_over_the_limit(tmp_path: Path) -> None:
    rates = _site_rates()
    limit = min(rates.values())  # the least-dead site holds, every worse site fails
    res = cli("check", "--scan", report(NAME, tmp_path), "--max-site-dead-rate", limit,
              "--format", "json")
    over = sorted(s for s, r in rates.items() if r > limit)
    assert over, "the fixture needs sites with different dead rates"
    assert res.exit_code == 1
    assert sorted(f["site"] for f in _failures(res)) == over
    assert {f["metric"] for f in _failures(res)} == {"max-site-dead-rate"}
    ok = cli("check", "--scan", report(NAME, tmp_path), "--max-site-dead-rate", max(rates.values()))
    assert ok.exit_code == 0


def test_site_dead_count(tmp_path: Path) -> None:
    dead = expected_dead(NAME)
    res = cli("check", "--scan", report(NAME, tmp_path), "--max-site-dead",
              max(dead.values()) - 1, "--format", "json")
    assert res.exit_code == 1
    worst = [s for s, d in dead.items() if d == max(dead.values())]
    assert [f["site"] for f in _failures(res)] == worst
    assert _failures(res)[0]["figure"] == max(dead.values())


def test_dormant_and_saturation_limits(tmp_path: Path) -> None:
    scan = report(NAME, tmp_path)
    d = json.loads(scan.read_text())
    dormant_rate = d["summary"]["dormant"] / d["summary"]["neurons"]
    for flag, figure in (("--max-dormant-rate", dormant_rate),
                         ("--max-site-saturation", max(s["saturation"] for s in d["sites"]))):
        assert cli("check", "--scan", scan, flag, figure).exit_code == 0
        assert cli("check", "--scan", scan, flag, figure * 0.99).exit_code == 1
    # model saturation: inactive / finite elements over all sites
    acc = [s["accumulators"] for s in d["sites"]]
    sat = 1 - sum(sum(a["active"]) for a in acc) / sum(sum(a["finite"]) for a in acc)
    res = cli("check", "--scan", scan, "--max-saturation", 0.0, "--format", "json")
    assert res.exit_code == 1
    assert _failures(res)[0]["figure"] == pytest.approx(sat)


def test_saturated_sigmoid_neurons_count_as_dead(tmp_path: Path) -> None:
    dead, _ = _totals("planted_sigmoid")
    scan = report("planted_sigmoid", tmp_path)
    assert cli("check", "--scan", scan, "--max-dead", dead).exit_code == 0
    assert cli("check", "--scan", scan, "--max-dead", dead - 1).exit_code == 1


def test_ignore_leaves_sites_out_of_site_and_model_figures(tmp_path: Path) -> None:
    dead = expected_dead(NAME)
    worst = max(dead, key=lambda s: dead[s])
    rest = sum(d for s, d in dead.items() if s != worst)
    scan = report(NAME, tmp_path)
    assert cli("check", "--scan", scan, "--max-dead", rest).exit_code == 1
    res = cli("check", "--scan", scan, "--max-dead", rest, "--ignore", worst,
              "--format", "json")
    assert res.exit_code == 0, res.stdout
    cases = {c["name"]: c for c in json.loads(res.stdout)["cases"]}
    assert cases[worst]["skipped"]
    warn = cli("check", "--scan", scan, "--max-dead", 100, "--ignore", "nothing.*")
    assert warn.exit_code == 0 and "matches no site" in warn.stderr


def test_per_site_override_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rates = _site_rates()
    worst = max(rates, key=lambda s: rates[s])
    limit = min(rates.values())
    (tmp_path / "deadrelu.toml").write_text(
        f'max-site-dead-rate = {limit}\n[[site]]\nmatch = "{worst}"\n'
        f"max-dead-rate = {rates[worst]}\n")
    monkeypatch.chdir(tmp_path)
    scan = report(NAME, tmp_path)
    res = cli("check", "--scan", scan, "--format", "json")
    assert res.exit_code == 0, res.stdout
    # the override sets the site limit; the flag sets the default for all the others
    res = cli("check", "--scan", scan, "--max-site-dead-rate", 0.0, "--format", "json")
    failing = {f["site"] for f in _failures(res)}
    assert res.exit_code == 1 and worst not in failing
    assert failing == set(rates) - {worst}


@pytest.mark.parametrize("args, words", [
    (["--max-dead-rate", "1.5"], "--max-dead-rate 1.5 is out of range"),
    (["--max-site-saturation", "-0.1"], "--max-site-saturation -0.1 is out of range"),
    (["--max-dead", "-1"], "--max-dead -1 is out of range"),
    (["--max-new-dead", "0"], "need --baseline"),
    (["--max-dead", "1", "--junit", "/no/such/dir/j.xml"], "the directory does not exist"),
    (["--max-dead", "1", "-o", "/no/such/dir/c.json"], "the directory does not exist"),
    (["--max-dead", "1", "-o", "."], "it is a directory"),
])
def test_bad_limits_exit_2_with_one_line(tmp_path: Path, args: list[str], words: str) -> None:
    res = cli("check", "--scan", report(NAME, tmp_path), *args)
    assert res.exit_code == 2
    assert words in res.stderr
    assert res.stderr.count("\n") == 1 and res.stdout == ""


def test_output_never_replaces_the_checked_report(tmp_path: Path) -> None:
    scan = report(NAME, tmp_path)
    before = scan.read_bytes()
    res = cli("check", "--scan", scan, "--max-dead", 1, "-o", scan)
    assert res.exit_code == 2 and "would overwrite the input" in res.stderr
    assert scan.read_bytes() == before


def test_no_model_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = cli("check", "--max-dead", 0)
    assert res.exit_code == 2 and "no model to check" in res.stderr


def test_baseline_new_dead_and_dead_rate_increase(tmp_path: Path) -> None:
    dead, neurons = _totals()
    now = report(NAME, tmp_path)
    site, neuron = next((s["name"], s["dead_indices"][0])
                        for s in json.loads(now.read_text())["sites"] if s["dead"])
    base = revive(now, site, neuron, tmp_path / "base.json")  # that neuron was alive then
    fail = cli("check", "--scan", now, "--baseline", base, "--max-new-dead", 0,
               "--format", "json")
    assert fail.exit_code == 1
    (f,) = _failures(fail)
    assert (f["metric"], f["figure"], f["limit"]) == ("max-new-dead", 1, 0)
    assert isinstance(f["figure"], int) and isinstance(f["limit"], int)  # counts, not 1.0
    assert f"{site}: [{neuron}]" in f["detail"]
    assert json.loads(fail.stdout)["baseline"]["died"][site] == [neuron]
    assert cli("check", "--scan", now, "--baseline", base, "--max-new-dead", 1).exit_code == 0
    rise = dead / neurons - (dead - 1) / neurons
    args = ["check", "--scan", now, "--baseline", base, "--max-dead-rate-increase"]
    assert cli(*args, rise * 1.01).exit_code == 0
    assert cli(*args, rise * 0.99).exit_code == 1
    # A figure equal to its limit passes: one neuron more is exactly 1/neurons.
    assert cli(*args, 1 / neurons).exit_code == 0
    # the same scan as its own baseline: nothing new
    assert cli("check", "--scan", now, "--baseline", now, "--max-new-dead", 0).exit_code == 0


def test_baseline_of_another_architecture_says_how_many_sites_match(tmp_path: Path) -> None:
    res = cli("check", "--scan", report(NAME, tmp_path), "--baseline",
              report("conv1d", tmp_path), "--max-new-dead", 0)
    assert res.exit_code == 2
    assert "different architecture: 0 of 2 sites match" in res.stderr


@pytest.mark.parametrize("content, words", [
    ("{not json", "invalid JSON"),
    ('{"schema_version": 99, "deadrelu_version": "9.0"}', "newer deadrelu"),
    ('{"schema_version": 1, "sites": []}', "not a valid deadrelu report"),
    ("[1, 2]", "not a deadrelu JSON report"),
])
def test_malformed_or_future_reports_exit_2(tmp_path: Path, content: str, words: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    for args in (["--scan", bad], ["--scan", report(NAME, tmp_path), "--baseline", bad]):
        res = cli("check", *args, "--max-dead", 100)
        assert res.exit_code == 2, res.stdout
        assert words in res.stderr and str(bad) in res.stderr
        assert res.stderr.count("\n") == 1


def test_github_annotations_and_step_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    res = cli("check", "--scan", report(NAME, tmp_path), "--max-dead", 0, "--format", "json",
              env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert res.exit_code == 1
    json.loads(res.stdout)  # annotations stay off stdout
    errors = [line for line in res.stderr.splitlines() if line.startswith("::error ")]
    assert len(errors) == 1 and "--max-dead 0" in errors[0]
    # Attached to the model file, so the annotation shows on it in the pull request.
    model = json.loads(Path(report(NAME, tmp_path)).read_text())["model"]["path"]
    assert errors[0].startswith(f"::error file={model.replace(':', '%3A')},title=")
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "deadrelu check FAILED" in text
    quiet = cli("check", "--scan", report(NAME, tmp_path), "--max-dead", 0)
    assert "::error" not in quiet.stderr


def test_an_unwritable_step_summary_is_a_warning_not_the_verdict(tmp_path: Path) -> None:
    # The runner's file, not the gate: a passing check stays exit 0, a failing one exit 1.
    missing = tmp_path / "no-such-folder" / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(missing)}
    for limit, code in ((100, 0), (0, 1)):
        res = cli("check", "--scan", report(NAME, tmp_path), "--max-dead", limit, env=env)
        assert res.exit_code == code, res.stderr
        assert f"warning: {missing}: cannot append the step summary" in res.stderr


def test_markdown_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "check.md"
    res = cli("check", "--scan", report(NAME, tmp_path), "--max-dead", 0, "--format",
              "markdown", "-o", out)
    assert res.exit_code == 1 and res.stdout == ""
    text = out.read_text()
    assert text.startswith("## ❌ deadrelu check FAILED")
    assert "| model | --max-dead | " in text


@pytest.mark.parametrize("args,words", [
    ([], "no model to check"),
    (["--baseline", "README.md"], "not a deadrelu JSON report"),
])
def test_a_bad_input_is_the_only_line_even_without_limits(args: list[str], words: str) -> None:
    res = cli("check", *args)
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and words in res.stderr, res.stderr


def test_settings_flags_on_a_saved_scan_are_not_applied_and_it_says_so(tmp_path) -> None:
    saved = tmp_path / "scan.json"
    assert cli("scan", *model_args(NAME), "--data", data_path(NAME), "-f", "json", "-o",
               saved).exit_code == 0
    res = cli("check", "--scan", saved, "--max-dead", 1000, "--eps", 0.01)
    assert res.exit_code == 0
    assert "--eps 0.01 (the scan used 0.001)" in res.stderr
    assert "warning" not in cli("check", "--scan", saved, "--max-dead", 1000).stderr


def test_check_takes_the_scan_pipeline_flags(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    dead, neurons = _totals()
    args = ["check", *model_args(NAME), "--data", data_path(NAME), "--max-dead-rate",
            dead / neurons, "--format", "json"]
    plain = cli(*args)
    assert plain.exit_code == 0, plain.stderr
    # A background loader changes nothing in the verdict, as a flag or from the config.
    assert json.loads(cli(*args, "--num-workers", 2).stdout) == json.loads(plain.stdout)
    (tmp_path / "deadrelu.toml").write_text("num-workers = 2\ndistributed = false\n")
    monkeypatch.chdir(tmp_path)
    from_config = cli(*args)
    assert from_config.exit_code == 0, from_config.stderr
    assert json.loads(from_config.stdout) == json.loads(plain.stdout)
    bad = cli(*args, "--dtype", "float8")
    assert bad.exit_code == 2 and bad.stdout == ""
    assert bad.stderr.strip() == "deadrelu: error: --dtype 'float8': choose float16 or bfloat16"


def test_neurons_that_saw_only_nan_are_not_passed_silently(tmp_path: Path) -> None:
    """All-NaN data makes no neuron dead: the check used to pass without a word."""
    import numpy as np

    with np.load(data_path(NAME)) as z:
        x = z[z.files[0]]
    bad = tmp_path / "nan.npy"
    np.save(bad, np.full_like(x, np.nan))
    res = cli("check", *model_args(NAME), "--data", bad, "--max-dead", 0, "--format", "json",
              env={"GITHUB_ACTIONS": "true"})
    _, neurons = _totals()
    assert res.exit_code == 0  # no limit judges them; the warning says so
    assert "warning: some neurons saw only NaN/Inf pre-activations" in res.stderr
    assert "::warning file=" in res.stderr and "unobserved" in res.stderr
    scan = cli("scan", *model_args(NAME), "--data", bad, "--format", "json")
    assert json.loads(scan.stdout)["summary"]["unobserved"] == neurons
    table = cli("scan", *model_args(NAME), "--data", bad)
    assert f"; {neurons} neurons saw nothing else (unobserved)" in " ".join(table.stdout.split())
    # Merged with a shard of real data, every neuron is observed: the note goes.
    good = tmp_path / "good.npy"
    np.save(good, x)
    for path, out in ((bad, "a.json"), (good, "b.json")):
        assert cli("scan", *model_args(NAME), "--data", path, "-f", "json", "-o",
                   tmp_path / out).exit_code == 0
    merged = json.loads(cli("merge", tmp_path / "a.json", tmp_path / "b.json").stdout)
    assert merged["summary"]["unobserved"] == 0 and merged["notes"] == []
