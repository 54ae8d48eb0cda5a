"""JUnit XML of a check: one testcase per site and per model-level limit.

The layout common CI viewers read (Jenkins, GitLab, GitHub test reporters, Azure):
``<testsuites><testsuite><testcase classname name time><failure message type>text``; one
``<failure>`` per failing testcase (several limits of one site are joined into it) and
``<skipped>`` for sites left out by --ignore.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from deadrelu.gate import GateResult


def render_junit(gate: GateResult, duration_s: float = 0.0) -> str:
    cases = gate.cases
    failures = sum(1 for c in cases if c.failures)
    skipped = sum(1 for c in cases if c.skipped)
    counts = {"tests": str(len(cases)), "failures": str(failures), "errors": "0",
              "skipped": str(skipped), "time": f"{duration_s:.3f}"}
    root = ET.Element("testsuites", {"name": "deadrelu", **counts})
    suite = ET.SubElement(root, "testsuite", {
        "name": f"deadrelu check {gate.result.model.path}", **counts,
        "timestamp": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "hostname": socket.gethostname()})
    props = ET.SubElement(suite, "properties")
    for name, value in (("model", gate.result.model.path),
                        ("model.sha256", gate.result.model.sha256 or ""),
                        ("data", gate.result.data.source),
                        ("samples", str(gate.result.data.samples)),
                        ("synthetic", str(gate.result.data.synthetic).lower())):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for case in cases:
        classname = "deadrelu.site" if case.site is not None else "deadrelu.model"
        el = ET.SubElement(suite, "testcase", {"classname": classname, "name": case.name,
                                               "time": "0"})
        if case.skipped:
            ET.SubElement(el, "skipped", {"message": case.skipped})
        elif case.failures:
            failure = ET.SubElement(el, "failure", {
                "message": "; ".join(f.message() for f in case.failures),
                "type": "deadrelu.threshold"})
            failure.text = "\n".join(
                f"{f.metric}: figure {f.figure:g}, limit {f.limit:g}"
                + (f" ({f.detail})" if f.detail else "") for f in case.failures)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
