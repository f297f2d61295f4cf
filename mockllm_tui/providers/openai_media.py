"""What OpenAI's media endpoints (images, audio, moderations) share: reading a JSON or multipart
body, the form-field parsers and OpenAI's wording of bad values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from mockllm_tui.core.conversation import RequestError
from mockllm_tui.providers.multipart import Form, Upload, parse_form

#: What the journal, metrics and rules call the provider of every media endpoint.
PROVIDER = "openai"
SSE = b"text/event-stream; charset=utf-8"


def invalid_value(message: str, param: str) -> RequestError:
    """A 400 for a bad value, naming its field, as OpenAI words it."""
    return RequestError(message, param=param, code="invalid_value")


def one_of(value: Any, allowed: tuple[str, ...], param: str) -> str:
    """A value that must be one of `allowed`."""
    if value not in allowed:
        listed = ", ".join(f"'{a}'" for a in allowed)
        raise invalid_value(f"Invalid value: '{value}'. Supported values are: {listed}.", param)
    return str(value)


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event with a name and a JSON payload."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def read_fields(headers: Mapping[str, str], body: bytes, *, multipart: bool) -> tuple[dict[str, Any], Form | None]:
    """The request's fields: a JSON object, or (for a multipart endpoint) the form's text fields
    (their last values; lists are read with `Form.texts`) and its files. A body of the other kind
    is a 400."""
    ctype = headers.get("content-type", "application/json" if not multipart else "")
    if not multipart:
        return json_object(ctype, body), None
    form = parse_form(body, ctype)
    return {k: v[-1] for k, v in form.fields.items()}, form


def json_object(ctype: str, body: bytes) -> dict[str, Any]:
    """A JSON object body, or a 400 saying why it is not one."""
    if "json" not in ctype.lower():
        raise RequestError(f"unsupported content type {ctype!r}: send application/json")
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    return data


def form_int(fields: dict[str, Any], key: str, lo: int, hi: int, default: int | None = None) -> int | None:
    """An integer field (a JSON number or a form's text) within bounds."""
    value = fields.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise invalid_value(f"Invalid value for '{key}': expected an integer, got '{value}'.", key) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_value(f"Invalid type for '{key}': expected an integer.", key)
    if not lo <= value <= hi:
        raise invalid_value(f"Invalid '{key}': must be between {lo} and {hi}, got {value}.", key)
    return int(value)


def form_float(fields: dict[str, Any], key: str, lo: float, hi: float, default: float) -> float:
    """A number field within bounds."""
    value = fields.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise invalid_value(f"Invalid value for '{key}': expected a number, got '{value}'.", key) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_value(f"Invalid type for '{key}': expected a number.", key)
    if not lo <= value <= hi:
        raise invalid_value(f"Invalid '{key}': must be between {lo:g} and {hi:g}, got {value:g}.", key)
    return float(value)


def form_bool(fields: dict[str, Any], key: str) -> bool:
    """A boolean field (JSON true/false, or the form's `true`/`false`)."""
    value = fields.get(key)
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise invalid_value(f"Invalid value for '{key}': expected a boolean.", key)


def form_str(fields: dict[str, Any], key: str, default: str | None = None, *, required: bool = False) -> str | None:
    """A text field; a missing required one is a 400 naming it."""
    value = fields.get(key)
    if value is None or (required and value == ""):
        if required:
            raise RequestError(f"Missing required parameter: '{key}'.", param=key, code="missing_required_parameter")
        return default
    if not isinstance(value, str):
        raise invalid_value(f"Invalid type for '{key}': expected a string.", key)
    return value


def required_upload(form: Form, key: str) -> Upload:
    """The file under `key`; a 400 naming it when none was sent."""
    upload = form.file(key)
    if upload is None:
        raise RequestError(f"Missing required parameter: '{key}'.", param=key, code="missing_required_parameter")
    return upload
