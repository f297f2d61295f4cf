"""What OpenAI's media endpoints (images, audio, moderations) share: reading a JSON or multipart
body, the rules and the knobs for a media request, a rule's file, and the form-field parsers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from mockllm_tui.core.conversation import Reply, RequestError
from mockllm_tui.core.media import MediaRequest
from mockllm_tui.engine.answer import ErrorAnswer, answer_faults, preview, record_conversation, require_known_model
from mockllm_tui.engine.exchange import Exchange
from mockllm_tui.providers.base import Endpoint
from mockllm_tui.providers.multipart import Form, Upload, is_multipart, parse_form

T = TypeVar("T")
#: The largest body a media endpoint reads (uploads), unless the configured limit is larger.
MEDIA_MAX_BODY = 64 * 1024 * 1024
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


class MediaEndpoint(Endpoint):
    """A media endpoint: reads its body, asks the rules and the knobs, and answers in `handle`."""

    async def read_fields(self, ex: Exchange, *, multipart: bool) -> tuple[dict[str, Any], Form | None]:
        """The request's fields: a JSON object, or (for a multipart endpoint) the form's text fields
        and its files. A body of the other kind is a 400."""
        await ex.read_body(max(ex.store.config.max_body, MEDIA_MAX_BODY))
        ex.entry.provider = PROVIDER
        if not multipart:
            return ex.read_json_object(), None
        ctype = ex.headers.get("content-type", "")
        if not is_multipart(ctype):
            parse_form(b"", ctype)  # raises the API's complaint about the content type
        form = parse_form(ex.body, ctype)
        # Only the final values of text fields; lists are read with Form.texts.
        return {k: v[-1] for k, v in form.fields.items()}, form

    async def decide(self, ex: Exchange, request: MediaRequest, shown: str = "") -> Reply | None:
        """Record the request, pick the reply by the rules and carry out the knobs (an error raises,
        the latency is waited out). None when the request was answered some other way."""
        record_conversation(ex, request)
        if shown:
            ex.entry.preview = preview(shown)
        require_known_model(ex, request.model)
        reply = ex.store.rules.choose(request)
        ex.entry.rule = reply.rule
        if await answer_faults(ex, reply) is None:
            return None
        return reply

    async def work(self, job: Callable[[], T]) -> T:
        """Run CPU-heavy work (encoding pictures and audio) off the event loop."""
        return await asyncio.to_thread(job)


def rule_file(path: str) -> bytes:
    """The bytes of a rule's `image:` or `audio:` file; a 500 naming the path when it is gone."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ErrorAnswer(500, f"mockllm-tui: the rule's file {path} cannot be read ({exc.strerror})") from None


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
