"""OpenAI's error shape, headers and the shared parsing helpers of its endpoints."""

from __future__ import annotations

from typing import Any

import orjson

from mockllm_tui.conversation import RequestError
from mockllm_tui.exchange import Exchange
from mockllm_tui.providers.base import Provider

OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "service_unavailable_error",
    504: "server_error",
    529: "service_unavailable_error",
}


def openai_error_type(status: int) -> str:
    """OpenAI's error type for a status."""
    return OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def openai_error(
    status: int, message: str, *, type: str | None = None, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The `{"error": {...}}` object."""
    return {"error": {"message": message, "type": type or openai_error_type(status), "param": param, "code": code}}


class OpenAIBase(Provider):
    """What every OpenAI-format provider shares: the error shape and the headers."""

    def owns_path(self, path: str) -> bool:
        """Everything that is not Anthropic's is answered in OpenAI's shape."""
        return True

    def error_body(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        request_id: str = "",
    ) -> bytes:
        """OpenAI's error JSON."""
        return orjson.dumps(openai_error(status, message, type=type, param=param, code=code))

    def stream_error(self, status: int, message: str) -> bytes:
        """A `data: {"error": ...}` line, as OpenAI sends mid-stream."""
        return b"data: " + orjson.dumps(openai_error(status, message)) + b"\n\n"

    def response_headers(self, ex: Exchange, request_id: str) -> list[tuple[bytes, bytes]]:
        """`x-request-id` and `openai-processing-ms`."""
        return [
            (b"x-request-id", request_id.encode()),
            (b"openai-processing-ms", str(int(ex.elapsed_ms())).encode()),
            (b"openai-version", b"2020-10-01"),
        ]


# -- parsing helpers ---------------------------------------------------------------------------


def require(body: dict[str, Any], key: str, kind: type | tuple[type, ...], prefix: str = "") -> Any:
    """A required field of the right JSON type, or RequestError("key: field required")."""
    name = prefix + key
    if key not in body or body[key] is None:
        raise RequestError(f"{name}: field required", param=name)
    return check_type(body[key], kind, name)


def optional(body: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None, prefix: str = "") -> Any:
    """An optional field of the right JSON type (None means absent)."""
    value = body.get(key)
    if value is None:
        return default
    return check_type(value, kind, prefix + key)


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array", dict: "an object"}


def check_type(value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    """Value if it has the JSON type, else RequestError naming the field."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        wanted = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise RequestError(f"{name}: expected {wanted}, got {type_name(value)}", param=name)
    return value


def type_name(value: Any) -> str:
    """A JSON type name for a Python value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def positive_int(body: dict[str, Any], key: str, lo: int = 1, hi: int | None = None) -> int | None:
    """An optional integer within bounds."""
    value = optional(body, key, int)
    if value is None:
        return None
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise RequestError(f"{key}: must be {bound}, got {value}", param=key)
    return int(value)


def stop_list(value: Any, name: str = "stop") -> list[str]:
    """`stop` as a list of strings (it may be a string, a list or null)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise RequestError(f"{name}: expected a string or an array of strings", param=name)
