"""--junit FILE: valid JUnit XML (parsed with xml.etree) with one testcase per site and per
model-level limit, failures carrying the figures, ignored sites skipped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import FIXTURES
from tests.gate_helpers import cli, expected_dead, report, revive

NAME = "planted_relu"


def _junit(tmp_path: Path, *args: object) -> tuple[int, ET.Element]:
    out = tmp_path / "report.xml"
    res = cli("check", "--scan", report(NAME, tmp_path), "--junit", out, *args)
    return res.exit_code, ET.parse(out).getroot()


def test_junit_has_a_testcase_per_site_and_model_limit(tmp_path: Path) -> None:
    dead = expected_dead(NAME)
    worst = max(dead.values())
    code, root = _junit(tmp_path, "--max-dead", sum(dead.values()) - 1,
                        "--max-dead-rate", 1.0, "--max-site-dead", worst - 1)
    assert code == 1
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    names = [c.get("name") for c in cases]
    assert names == [*dead, "model max-dead-rate", "model max-dead"]
    assert all(c.get("classname") in ("deadrelu.site", "deadrelu.model") for c in cases)
    failed = {c.get("name", ""): c.find("failure") for c in cases
              if c.find("failure") is not None}
    expected = {s for s, d in dead.items() if d > worst - 1} | {"model max-dead"}
    assert set(failed) == expected
    for name, failure in failed.items():
        assert failure is not None
        message = failure.get("message") or ""
        if name == "model max-dead":
            assert f"dead neurons {sum(dead.values())} exceeds --max-dead" in message
        else:
            assert f"site {name}: dead neurons {dead[name]} exceeds --max-site-dead" in message
    for el in (root, suite):
        assert el.get("tests") == str(len(cases))
        assert el.get("failures") == str(len(expected))
        assert el.get("errors") == "0"


def test_junit_of_a_passing_check_and_ignored_sites(tmp_path: Path) -> None:
    dead = expected_dead(NAME)
    ignored = next(iter(dead))
    code, root = _junit(tmp_path, "--max-site-dead", max(dead.values()), "--ignore", ignored)
    assert code == 0
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("failures") == "0" and suite.get("skipped") == "1"
    skipped = [c.get("name") for c in suite.iter("testcase") if c.find("skipped") is not None]
    assert skipped == [ignored]


def test_junit_includes_baseline_checks(tmp_path: Path) -> None:
    now = report(NAME, tmp_path)
    site = FIXTURES[NAME]["sites"][0]
    neuron = site["dead"][0]
    base = revive(now, site["name"], neuron, tmp_path / "base.json")  # alive in the baseline
    code, root = _junit(tmp_path, "--baseline", base, "--max-new-dead", 0)
    assert code == 1
    case = root.find(".//testcase[@name='model max-new-dead']")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None and f"{site['name']}: [{neuron}]" in (failure.get("message") or "")
