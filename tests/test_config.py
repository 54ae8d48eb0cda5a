"""[tool.deadrelu] / deadrelu.toml: discovery, precedence (flag > config > default), relative
paths, validation of every key (unknown key, wrong type, out of range -> one line, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deadrelu.config import KEYS, find_config, load_config
from deadrelu.errors import DeadReluError
from tests.gate_helpers import cli, data_path, expected_dead, model_args, report

NAME = "planted_relu"


def _model_keys() -> str:
    model, _, arch = model_args(NAME)
    return f'model = "{model}"\narch = "{arch}"\ndata = "{data_path(NAME)}"\n'


def _dead() -> int:
    return sum(expected_dead(NAME).values())


def test_pyproject_is_found_from_a_subfolder_and_flags_override(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "x"\n\n[tool.deadrelu]\n{_model_keys()}max-dead = {_dead() - 1}\n')
    sub = tmp_path / "src" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    res = cli("check")  # model, arch, data and the limit all come from the config
    assert res.exit_code == 1, res.stderr
    assert f"--max-dead {_dead() - 1}" in res.stdout
    assert cli("check", "--max-dead", _dead()).exit_code == 0  # the flag wins
    scan = cli("scan")  # scan takes its model/data keys and ignores check's limits
    assert scan.exit_code == 0 and "act1" in scan.stdout


def test_deadrelu_toml_beats_pyproject_in_one_folder_and_pyproject_without_table_is_skipped(
        tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.deadrelu]\nmax-dead = 1\n")
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "x"\n')  # no [tool.deadrelu]
    assert find_config(inner) == tmp_path / "pyproject.toml"
    (inner / "deadrelu.toml").write_text("max-dead = 2\n")
    (inner / "pyproject.toml").write_text("[tool.deadrelu]\nmax-dead = 3\n")
    assert find_config(inner) == inner / "deadrelu.toml"
    assert load_config(start=inner).values == {"max-dead": 2}


def test_explicit_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deadrelu.toml").write_text("max-dead = 1000\n")  # discovered, but not used
    strict = tmp_path / "ci.toml"
    strict.write_text("max-dead = 0\n")
    scan = report(NAME, tmp_path)
    assert cli("check", "--scan", scan).exit_code == 0
    assert cli("check", "--scan", scan, "--config", strict).exit_code == 1
    res = cli("check", "--scan", scan, "--config", tmp_path / "missing.toml")
    assert res.exit_code == 2 and "no such config file" in res.stderr


def test_relative_paths_are_relative_to_the_config_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report(NAME, tmp_path)
    (tmp_path / "deadrelu.toml").write_text(
        f'scan = "{NAME}.json"\nmax-dead = {_dead()}\nformat = "json"\njunit = "out/j.xml"\n')
    (tmp_path / "out").mkdir()
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    res = cli("check")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["passed"] is True
    assert (tmp_path / "out" / "j.xml").is_file()


def test_scan_takes_its_flag_defaults_from_the_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "deadrelu.toml").write_text(_model_keys() + 'format = "json"\nbatch-size = 16\n'
                                            "eps = 0.002\n")
    monkeypatch.chdir(tmp_path)
    res = cli("scan")
    assert res.exit_code == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["settings"]["eps"] == 0.002
    assert d["sites"][0]["shape"][0] == 16
    assert json.loads(cli("scan", "--eps", "0.003").stdout)["settings"]["eps"] == 0.003


@pytest.mark.parametrize("text, words", [
    ("max-dead-rat = 0.1\n", "unknown key 'max-dead-rat' (did you mean 'max-dead-rate'?)"),
    ("max-dead-rate = 1.5\n", "key 'max-dead-rate' must be a rate in [0, 1], got 1.5"),
    ("max-dead = -1\n", "key 'max-dead' must be a count >= 0"),
    ("batch-size = \"big\"\n", "key 'batch-size' must be an integer"),
    ("format = \"html\"\n", "key 'format' must be table or json or markdown"),
    ("ignore = 3\n", "key 'ignore' must be a glob or an array of globs"),
    ("[[site]]\nmax-dead-rate = 0.1\n", "site table #1 needs match"),
    ("[[site]]\nmatch = \"a\"\nmax-site-dead = 1\n", "unknown key 'max-site-dead' in site"),
    ("[[site]]\nmatch = \"a\"\nmax-dead-rate = 2\n", "must be a rate in [0, 1]"),
    ("max-dead = [\n", "invalid TOML"),
    ("eps = -1\n", "key 'eps' must be a number in (0, 1), got -1"),
    ("eps = 1\n", "key 'eps' must be a number in (0, 1), got 1"),
    ("tau = 3\n", "key 'tau' must be a rate in [0, 1], got 3"),
    ('dtype = "float64"\n', "key 'dtype' must be float16 or bfloat16, got 'float64'"),
    ('device = "tpu"\n', "key 'device' must be cpu, cuda, cuda:N or mps, got 'tpu'"),
    ("image-size = [8, 8, 8]\n", "key 'image-size' must be S, \"H,W\" or [H, W]"),
    ('image-size = "8,x"\n', "key 'image-size' must be S, \"H,W\" or [H, W]"),
])
def test_bad_config_exits_2_naming_key_and_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, words: str) -> None:
    (tmp_path / "deadrelu.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    for command in ("check", "scan"):
        res = cli(command, "--max-dead", 1) if command == "check" else cli(command, "m.pt")
        assert res.exit_code == 2, (command, res.stdout)
        assert words in res.stderr and "deadrelu.toml" in res.stderr
        assert res.stderr.count("\n") == 1


def test_pyproject_errors_name_the_table(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.deadrelu]\nmodle = 'm.pt'\n")
    with pytest.raises(DeadReluError, match=r"pyproject.toml \[tool.deadrelu\]: unknown key "
                                            r"'modle' \(did you mean 'model'\?\)"):
        load_config(path)
    path.write_text("[tool.other]\n")
    with pytest.raises(DeadReluError, match=r"has no \[tool.deadrelu\] table"):
        load_config(path)


def test_every_flag_of_scan_and_check_is_a_key() -> None:
    from typer.main import get_command

    from deadrelu.cli import app

    group = get_command(app)
    for command in ("scan", "check"):
        cmd = group.commands[command]  # type: ignore[attr-defined]
        params = {p.name for p in cmd.params} - {"config"}
        keys = {spec.param_name(k) for k, spec in KEYS.items() if command in spec.commands}
        assert params == keys, command


def test_site_overrides_and_csv_keys_parse(tmp_path: Path) -> None:
    path = tmp_path / "deadrelu.toml"
    path.write_text('mean = [0.5, 0.4, 0.3]\nignore = "head.*"\n'
                    '[[site]]\nmatch = "body.*"\nmax-dead-rate = 0.8\n'
                    '[[site]]\nmatch = "aux"\nignore = true\n')
    cfg = load_config(path)
    assert cfg.values == {"mean": "0.5,0.4,0.3", "ignore": ["head.*"]}
    assert [(o.match, o.limits.max_dead_rate, o.ignore) for o in cfg.sites] == [
        ("body.*", 0.8, False), ("aux", None, True)]
