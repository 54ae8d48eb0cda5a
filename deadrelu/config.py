"""Project configuration: `[tool.deadrelu]` in pyproject.toml, or a deadrelu.toml.

Discovery (as ruff does it): from the current directory upwards, the first directory with a
``deadrelu.toml`` (keys at top level) or a ``pyproject.toml`` that has a ``[tool.deadrelu]``
table wins; deadrelu.toml before pyproject.toml in one directory. ``--config FILE`` names one
explicitly. Keys are the flag names of `scan` and `check` without the dashes in front; a flag on
the command line overrides its key. Relative paths are relative to the config file's folder.
Unknown keys and wrongly typed values are errors naming the key and the file.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deadrelu.errors import DeadReluError
from deadrelu.gate import SiteLimits, SiteOverride

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


@dataclass(frozen=True)
class Key:
    kind: str  # path | data | arch | str | csv | int | posint | bool | float | rate | count
    #            | format | globs | device | dtype | size
    commands: tuple[str, ...] = ("scan", "check")
    param: str | None = None  # the command's parameter name, when not the key with underscores

    def param_name(self, key: str) -> str:
        return self.param or key.replace("-", "_")


CHECK = ("check",)
KEYS: dict[str, Key] = {
    # model and data (scan and check)
    "model": Key("path"),
    "data": Key("data"),
    "arch": Key("arch"),
    "arch-kwargs": Key("str"),
    "trust-pickle": Key("bool"),
    "input-shape": Key("str"),
    "batch-size": Key("posint"),
    "samples": Key("posint"),
    "device": Key("device"),
    "eps": Key("eps"),
    "tau": Key("rate"),
    "min-active": Key("rate"),
    "channel-axis": Key("int"),
    "image-size": Key("size"),
    "mean": Key("csv"),
    "std": Key("csv"),
    "drop-columns": Key("csv"),
    "fast-path": Key("bool"),
    "distributed": Key("bool"),
    "dtype": Key("dtype"),
    "num-workers": Key("count"),
    "compile": Key("bool", param="compile_model"),
    # output
    "format": Key("format", param="output_format"),
    "output": Key("path"),
    "per-neuron": Key("str", ("scan",)),
    "html": Key("path", ("scan",)),
    "plot": Key("bool", ("scan",)),
    # check: thresholds, baseline, CI outputs
    "scan": Key("path", CHECK, param="scan_report"),
    "max-dead-rate": Key("rate", CHECK),
    "max-dead": Key("count", CHECK),
    "max-dormant-rate": Key("rate", CHECK),
    "max-saturation": Key("rate", CHECK),
    "max-site-dead-rate": Key("rate", CHECK),
    "max-site-dead": Key("count", CHECK),
    "max-site-dormant-rate": Key("rate", CHECK),
    "max-site-saturation": Key("rate", CHECK),
    "ignore": Key("globs", CHECK),
    "baseline": Key("path", CHECK),
    "max-new-dead": Key("count", CHECK),
    "max-dead-rate-increase": Key("rate", CHECK),
    "junit": Key("path", CHECK),
}
# Keys of one [[tool.deadrelu.site]] table, besides `match`.
SITE_KEYS: dict[str, str] = {"max-dead-rate": "rate", "max-dead": "count",
                             "max-dormant-rate": "rate", "max-saturation": "rate",
                             "ignore": "bool"}
FORMATS = ("table", "json", "markdown")


@dataclass
class Config:
    path: Path | None  # None: no config file found
    values: dict[str, Any] = field(default_factory=dict)  # key -> validated value
    sites: list[SiteOverride] = field(default_factory=list)

    @property
    def where(self) -> str:
        if self.path is None:
            return "no config"
        return f"{self.path} [tool.deadrelu]" if self.path.name == "pyproject.toml" \
            else str(self.path)

    def defaults_for(self, command: str) -> dict[str, Any]:
        """parameter name -> default, for the keys a command takes (a Typer default map)."""
        return {KEYS[k].param_name(k): v for k, v in self.values.items()
                if command in KEYS[k].commands}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise DeadReluError("no such config file", path=path) from None
    except OSError as exc:
        raise DeadReluError(f"cannot read the config file: {exc.strerror}", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise DeadReluError(f"invalid TOML: {exc}", path=path) from None


def _table(path: Path, doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The deadrelu table of a parsed file: [tool.deadrelu] of a pyproject, else the root."""
    if path.name == "pyproject.toml":
        tool = doc.get("tool")
        table = tool.get("deadrelu") if isinstance(tool, Mapping) else None
        if table is not None and not isinstance(table, Mapping):
            raise DeadReluError("[tool.deadrelu] must be a table", path=path)
        return table
    return doc


def find_config(start: Path | None = None) -> Path | None:
    """The nearest deadrelu.toml, or pyproject.toml with [tool.deadrelu], from start upwards."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        own = directory / "deadrelu.toml"
        if own.is_file():
            return own
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file() and _table(pyproject, _read_toml(pyproject)) is not None:
            return pyproject
    return None


def load_config(path: Path | None = None, start: Path | None = None) -> Config:
    """The config named by ``path``, else the discovered one, else an empty Config."""
    if path is None:
        path = find_config(start)
        if path is None:
            return Config(None)
    elif path.is_dir():
        raise DeadReluError("--config must name a file (pyproject.toml or deadrelu.toml), not a "
                            "folder", path=path)
    table = _table(path, _read_toml(path))
    if table is None:
        raise DeadReluError("has no [tool.deadrelu] table", path=path)
    return parse_config(table, path)


def parse_config(table: Mapping[str, Any], path: Path) -> Config:
    cfg = Config(path)
    base = path.parent
    where = cfg.where
    for key, value in table.items():
        if key == "site":
            cfg.sites = _parse_sites(value, where)
            continue
        spec = KEYS.get(key)
        if spec is None:
            hint = _hint(key, [*KEYS, "site"])
            raise DeadReluError(f"unknown key {key!r}{hint}", path=where)
        cfg.values[key] = _convert(value, spec.kind, f"key {key!r}", where, base)
    return cfg


def _parse_sites(value: Any, where: str) -> list[SiteOverride]:
    if not isinstance(value, list) or not all(isinstance(t, Mapping) for t in value):
        raise DeadReluError("'site' must be an array of tables: [[tool.deadrelu.site]]",
                            path=where)
    out = []
    base = Path(".")  # site tables hold no paths
    for i, table in enumerate(value, 1):
        label = f"site table #{i}"
        match = table.get("match")
        if not isinstance(match, str) or not match:
            raise DeadReluError(f"{label} needs match = \"GLOB\" (a site-name pattern)",
                                path=where)
        limits: dict[str, Any] = {}
        ignore = False
        for key, v in table.items():
            if key == "match":
                continue
            kind = SITE_KEYS.get(key)
            if kind is None:
                raise DeadReluError(f"unknown key {key!r} in {label} (match {match!r})"
                                    + _hint(key, ["match", *SITE_KEYS]), path=where)
            v = _convert(v, kind, f"key {key!r} in {label} (match {match!r})", where, base)
            if key == "ignore":
                ignore = bool(v)
            else:
                limits[key.replace("-", "_")] = v
        out.append(SiteOverride(match, SiteLimits(**limits), ignore))
    return out


def _hint(key: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _resolve(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base / p)


def _convert(value: Any, kind: str, label: str, where: str, base: Path) -> Any:
    def bad(expected: str) -> DeadReluError:
        return DeadReluError(f"{label} must be {expected}, got {value!r}", path=where)

    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind in ("path", "data", "arch", "str", "format"):
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
        if kind == "path":
            return _resolve(value, base)
        if kind == "format" and value not in FORMATS:
            raise bad(" or ".join(FORMATS))
        if kind in ("data", "arch"):
            target, sep, attr = value.rpartition(":")
            if not sep:  # a file or folder (data only; --arch always has a colon)
                return _resolve(value, base) if kind == "data" else value
            if target.endswith(".py") or "/" in target:  # path/to/file.py:name
                return f"{_resolve(target, base)}:{attr}"
        return value
    if kind == "device":  # the form only: whether this machine has it is the flag's check
        if not isinstance(value, str) or not re.fullmatch(r"(cpu|cuda|mps)(:\d+)?", value):
            raise bad("cpu, cuda, cuda:N or mps")
        return value
    if kind == "dtype":
        if value not in ("float16", "bfloat16"):
            raise bad("float16 or bfloat16")
        return value
    if kind == "size":  # S, "H,W" or [H, W]: whole numbers >= 1
        items = value.split(",") if isinstance(value, str) else \
            value if isinstance(value, list) else [value]
        dims = [int(v) if isinstance(v, int) and not isinstance(v, bool)
                else int(v.strip()) if isinstance(v, str) and v.strip().isdigit() else 0
                for v in items]
        if len(dims) not in (1, 2) or min(dims) < 1:
            raise bad("S, \"H,W\" or [H, W] (whole numbers >= 1)")
        return ",".join(map(str, dims))
    if kind == "csv":  # "a,b" or [a, b] -> "a,b" (the flag's form)
        if isinstance(value, list) and value and all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
            return ",".join(str(v) for v in value)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
        raise bad("a string or an array")
    if kind == "globs":
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise bad("a glob or an array of globs")
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind in ("int", "posint", "count"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("an integer")
        if kind == "posint" and value < 1:
            raise bad("an integer >= 1")
        if kind == "count" and value < 0:
            raise bad("a count >= 0")
        return value
    if not is_number:
        raise bad("a number")
    if kind == "rate" and not 0.0 <= value <= 1.0:
        raise bad("a rate in [0, 1]")
    if kind == "eps" and not 0.0 < value < 1.0:
        raise bad("a number in (0, 1)")
    return float(value)
