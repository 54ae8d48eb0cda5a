"""Reports read back are checked against deadrelu's report schema without the jsonschema
package (report/validate.py): it must accept exactly what jsonschema accepts, and every
command that reads a report turns a malformed one into one line and exit 2."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from deadrelu.report.compact import pack
from deadrelu.report.model import json_schema
from deadrelu.report.validate import first_error
from tests.conftest import FIXTURES, GENERATED
from tests.test_cli import assert_user_error, run

DIGITS = FIXTURES["digits_cnn"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("r") / "scan.json"
    r = run("scan", str(GENERATED / DIGITS["files"]["state_dict"]), "--arch", DIGITS["arch"],
            "--data", str(GENERATED / DIGITS["data"]), "-n", "64", "-f", "json", "-o", str(out))
    assert r.exit_code == 0, r.output
    d: dict[str, Any] = json.loads(out.read_text())
    # One accumulator in the packed form very wide sites use.
    acc = d["sites"][0]["accumulators"]
    acc["active"] = pack(np.asarray(acc["active"], dtype="<i8"))
    return d


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:2]):  # the first two items of each list are enough
            yield from _paths(v, (*path, i))


def _set(d: Any, path: tuple[Any, ...], value: Any) -> Any:
    d = copy.deepcopy(d)
    if not path:
        return value
    target = d
    for p in path[:-1]:
        target = target[p]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


_DELETE = object()
REPLACEMENTS = [None, "x", -1, 0, 1.5, True, [], {}, _DELETE]


def test_the_validator_accepts_exactly_what_jsonschema_accepts(report: dict[str, Any]) -> None:
    schema = json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    assert first_error(report, schema) is None
    checked = rejected = 0
    for path in _paths(report):
        for value in REPLACEMENTS:
            if value is _DELETE and (not path or isinstance(path[-1], int)):
                continue
            mutated = _set(report, path, value)
            ours = first_error(mutated, schema)
            theirs = validator.is_valid(mutated)
            assert (ours is None) == theirs, (path, value, ours)
            checked += 1
            rejected += ours is not None
    assert checked > 1000 and rejected > checked // 2


@pytest.mark.parametrize("command", ["report", "check", "diff", "merge"])
def test_a_malformed_report_is_one_line(command: str, report: dict[str, Any],
                                        tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    good = tmp_path / "good.json"
    bad.write_text(json.dumps(_set(report, ("sites", 0, "accumulators"), None)))
    good.write_text(json.dumps(report))
    args = {"report": ["report", str(bad)], "check": ["check", "--scan", str(bad),
                                                      "--max-dead", "1000"],
            "diff": ["diff", str(good), str(bad)], "merge": ["merge", str(good), str(bad)]}
    assert_user_error(run(*args[command]), str(bad), "sites[0].accumulators",
                      "is not an object")


def test_accumulators_must_have_one_value_per_neuron(report: dict[str, Any],
                                                     tmp_path: Path) -> None:
    short = _set(report, ("sites", 1, "accumulators", "positive"),
                 report["sites"][1]["accumulators"]["positive"][:-1])
    bad = tmp_path / "short.json"
    bad.write_text(json.dumps(short))
    assert_user_error(run("report", str(bad)), "neurons but", "positive values")


@pytest.mark.parametrize("field, value, words", [
    ("max_pre", float("nan"), "site 'features.3' has a NaN max_pre value"),
    ("abs_sum", float("nan"), "site 'features.3' has a NaN abs_sum value"),
    ("positive", -1, "sites[1].accumulators.positive"),  # the schema's minimum
    ("active", 10**9, "site 'features.3' has an impossible active count"),
    ("active_samples", 65, "site 'features.3' has an impossible active_samples count"),
    ("abs_sum", -1.0, "site 'features.3' has a negative abs_sum"),
])
@pytest.mark.parametrize("command", ["report", "merge"])
def test_accumulators_no_scan_can_make_are_refused(report: dict[str, Any], tmp_path: Path,
                                                    field: str, value: float, words: str,
                                                    command: str) -> None:
    """NaN (which JSON parsers accept) made merge crash writing its output; negative or
    too-large counts were accepted."""
    values = list(report["sites"][1]["accumulators"][field])
    values[0] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_set(report, ("sites", 1, "accumulators", field), values)))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(report))
    args = ["report", str(bad)] if command == "report" else ["merge", str(good), str(bad)]
    assert_user_error(run(*args), str(bad), words)
