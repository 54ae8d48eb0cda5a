"""Read a JSON scan report back (check --scan/--baseline, merge, diff), with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from deadrelu.errors import DeadReluError
from deadrelu.report.model import SCHEMA_VERSION, ScanResult, json_schema
from deadrelu.report.validate import first_error


def load_report(path: str | Path) -> ScanResult:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeadReluError("no such scan report", path=p) from None
    except UnicodeDecodeError:
        raise DeadReluError("not a deadrelu JSON report: the file is not text (a model or "
                            "data file?)", path=p) from None
    except OSError as exc:
        raise DeadReluError(f"cannot read the scan report: {exc}", path=p) from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeadReluError(f"not a deadrelu JSON report: invalid JSON at line {exc.lineno} "
                            f"column {exc.colno}: {exc.msg}", path=p) from None
    if not isinstance(d, dict) or "schema_version" not in d:
        raise DeadReluError("not a deadrelu JSON report (no schema_version); write one with "
                            "`deadrelu scan … --format json -o FILE`", path=p)
    version = d["schema_version"]
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise DeadReluError(
            f"report schema_version {version} was written by a newer deadrelu "
            f"({d.get('deadrelu_version', '?')}); this one reads version {SCHEMA_VERSION}: "
            "upgrade deadrelu", path=p)
    error = first_error(d, json_schema())
    if error is not None:
        raise DeadReluError(f"not a valid deadrelu report: {error}", path=p)
    return ScanResult.from_dict(d, source=str(p))
