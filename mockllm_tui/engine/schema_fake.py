"""Deterministic JSON values valid against a JSON Schema, for forced tool calls and json_schema replies."""

from __future__ import annotations

import hashlib
from typing import Any

MAX_DEPTH = 12


def fake_from_schema(schema: Any, hint: str = "", *, _root: Any = None, _depth: int = 0) -> Any:
    """A value valid against `schema` (the common subset: types, enums, const, required properties,
    nested objects and arrays, anyOf/oneOf/allOf, local $ref, string formats and length bounds).
    `hint` makes strings vary with the prompt, deterministically."""
    root = schema if _root is None else _root
    if not isinstance(schema, dict) or _depth > MAX_DEPTH:
        return None if _depth > MAX_DEPTH else {}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return fake_from_schema(target, hint, _root=root, _depth=_depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema and _depth > 0:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return fake_from_schema((non_null or options)[0], hint, _root=root, _depth=_depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged = _merge(merged, part)
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return fake_from_schema(_merge(merged, rest), hint, _root=root, _depth=_depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else "object")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        out: dict[str, Any] = {}
        for name, sub in props.items():
            out[name] = fake_from_schema(sub, f"{hint}:{name}", _root=root, _depth=_depth + 1)
        return out
    if kind == "array":
        items = schema.get("items", {})
        count = max(int(schema.get("minItems", 1) or 0), 1)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        if isinstance(schema.get("prefixItems"), list):
            return [fake_from_schema(s, hint, _root=root, _depth=_depth + 1) for s in schema["prefixItems"]]
        return [fake_from_schema(items, f"{hint}[{i}]", _root=root, _depth=_depth + 1) for i in range(count)]
    if kind == "integer":
        return int(_number(schema, 1))
    if kind == "number":
        return _number(schema, 1.5)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, hint)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if key == "properties" and isinstance(value, dict):
            out["properties"] = {**out.get("properties", {}), **value}
        elif key == "required" and isinstance(value, list):
            out["required"] = list(dict.fromkeys([*out.get("required", []), *value]))
        else:
            out[key] = value
    return out


def _number(schema: dict[str, Any], fallback: float) -> float:
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    value = fallback
    if isinstance(lo, int | float):
        value = lo + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
    if isinstance(hi, int | float) and value >= hi:
        value = hi - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0)
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and step > 0:
        value = step * max(1, round(value / step))
    return value


_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "12:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "hostname": "example.com",
}


def _string(schema: dict[str, Any], hint: str) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return _FORMATS[fmt]
    word = "mock-" + hashlib.blake2s(hint.encode(), digest_size=3).hexdigest()
    lo = int(schema.get("minLength", 0) or 0)
    hi = schema.get("maxLength")
    if len(word) < lo:
        word = word + "x" * (lo - len(word))
    if isinstance(hi, int) and len(word) > hi:
        word = word[:hi]
    return word
