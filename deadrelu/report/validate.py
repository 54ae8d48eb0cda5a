"""Check a loaded JSON report against deadrelu's own report schema (report/schema.json).

A report read back (check --scan, --baseline, merge, diff, report, patch --scan) may have
been edited or written by another tool; a wrong type deep inside would otherwise surface as
a Python error far from its cause. This covers exactly the JSON Schema keywords that
schema.json uses (type, required, properties, items, enum, const, minimum,
exclusiveMinimum, maximum, minLength, pattern, oneOf, $ref to $defs), so the runtime needs
no jsonschema package; tests check the schema itself with jsonschema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}

_NAMES = {"object": "an object", "array": "a list", "string": "a string", "boolean":
          "true or false", "null": "null", "integer": "a whole number", "number": "a number"}


def first_error(value: Any, schema: Mapping[str, Any]) -> str | None:
    """The first place where ``value`` breaks ``schema``, as "where: what", or None."""
    return _check(value, schema, schema, "report")


def _check(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], where: str
           ) -> str | None:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _check(value, root["$defs"][name], root, where)
    if "oneOf" in schema:
        fits = [s for s in schema["oneOf"] if _check(value, s, root, where) is None]
        if len(fits) != 1:
            return f"{where}: {_short(value)} does not match exactly one allowed form"
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_TYPES[k](value) for k in kinds):
            return f"{where}: {_short(value)} is not {' or '.join(_NAMES[k] for k in kinds)}"
    if "const" in schema and not _equal(value, schema["const"]):
        return f"{where}: {_short(value)} is not {schema['const']!r}"
    if "enum" in schema and not any(_equal(value, e) for e in schema["enum"]):
        return f"{where}: {_short(value)} is not one of {', '.join(map(str, schema['enum']))}"
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where}: {value} is below {schema['minimum']}"
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return f"{where}: {value} must be above {schema['exclusiveMinimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where}: {value} is above {schema['maximum']}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{where}: the string is too short"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{where}: {_short(value)} is not of the expected form"
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                return f"{where}: the key {key!r} is missing"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                error = _check(value[key], sub, root, f"{where}.{key}")
                if error:
                    return error
    if isinstance(value, list) and "items" in schema:
        items = schema["items"]
        if set(items) == {"type"} and isinstance(items["type"], str):
            # Per-neuron arrays can hold millions of numbers: one pass, no recursion.
            test = _TYPES[items["type"]]
            if all(test(v) for v in value):
                return None
        for i, item in enumerate(value):
            error = _check(item, schema["items"], root, f"{where}[{i}]")
            if error:
                return error
    return None


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, as in JSON Schema (Python says True == 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _short(value: Any) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
