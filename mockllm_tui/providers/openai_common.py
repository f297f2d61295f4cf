"""OpenAI's error shape, headers and the shared parsing helpers of its endpoints."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from mockllm_tui.core.conversation import RequestError, ToolCall
from mockllm_tui.providers.base import (
    CLAIM_NONE,
    CLAIM_SHAPE,
    Headers,
    Provider,
    RateLimitReport,
    RenderContext,
    short_duration,
)
from mockllm_tui.providers.parsing import check_type, optional, require, type_name

__all__ = [
    "OpenAIBase",
    "check_type",
    "openai_error",
    "openai_error_type",
    "optional",
    "positive_int",
    "require",
    "stop_list",
    "type_name",
]

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

    timing_header: ClassVar[bytes | None] = b"openai-processing-ms"
    default_shape = True
    system = "openai"
    #: `api-key` is what the openai package's AzureOpenAI client sends.
    credential_headers = frozenset({"authorization", "x-api-key", "api-key"})

    def claims(self, path: str, headers: Mapping[str, str]) -> int:
        """Any `/v1/` path takes OpenAI's shape unless a provider claims it as its own."""
        return CLAIM_SHAPE if path.startswith("/v1/") else CLAIM_NONE

    def auth_refusal(self, missing: bool) -> str:
        """OpenAI's wording for a missing or wrong key."""
        if missing:
            return (
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        return "Incorrect API key provided. (mockllm-tui was started with --api-key; send that key.)"

    def rate_limit_headers(self, report: RateLimitReport) -> Headers:
        """`x-ratelimit-{limit,remaining,reset}-{requests,tokens}`."""
        r, t = report.requests, report.tokens
        return [
            (b"x-ratelimit-limit-requests", str(r.limit).encode()),
            (b"x-ratelimit-limit-tokens", str(t.limit).encode()),
            (b"x-ratelimit-remaining-requests", str(r.remaining).encode()),
            (b"x-ratelimit-remaining-tokens", str(t.remaining).encode()),
            (b"x-ratelimit-reset-requests", short_duration(r.reset_s).encode()),
            (b"x-ratelimit-reset-tokens", short_duration(t.reset_s).encode()),
        ]

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
        """OpenAI's error JSON (an unknown model is an `invalid_request_error`, as OpenAI sends it)."""
        if type is None and code == "model_not_found":
            type = "invalid_request_error"
        return orjson.dumps(openai_error(status, message, type=type, param=param, code=code))

    def stream_error(self, status: int, message: str) -> bytes:
        """A `data: {"error": ...}` line, as OpenAI sends mid-stream."""
        return b"data: " + orjson.dumps(openai_error(status, message)) + b"\n\n"

    def response_headers(self, request_id: str) -> Headers:
        """`x-request-id` and `openai-version` (`openai-processing-ms` is added as the head goes out)."""
        return [(b"x-request-id", request_id.encode()), (b"openai-version", b"2020-10-01")]


# -- parsing helpers ---------------------------------------------------------------------------


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


def derived_id(prefix: str, ctx: RenderContext, *parts: object, nbytes: int = 12) -> str:
    """An id derived from the reply's id, so a re-render (or a stream and its saved copy) agree."""
    seed = ":".join([ctx.id, *map(str, parts)]).encode()
    return prefix + hashlib.blake2b(seed, digest_size=nbytes).hexdigest()


def tool_call_id(ctx: RenderContext, index: int, call: ToolCall) -> str:
    """The call's own id, or a `call_` id derived from the reply's id."""
    return call.id or derived_id("call_", ctx, "call", index)


def split_fixed(text: str, size: int) -> list[str]:
    """Text cut into pieces of `size` characters (one empty piece for empty text)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
