"""Fit a chosen reply to what the request asked for: tool choice, JSON formats, stop and max tokens."""

from __future__ import annotations

from typing import Any

import orjson

from mockllm_tui.core.conversation import Conversation, Reply, ToolCall, Usage
from mockllm_tui.core.tokens import count_conversation, count_json, count_tokens, truncate_tokens
from mockllm_tui.engine.schema_fake import fake_from_schema


def shape_reply(conversation: Conversation, reply: Reply) -> Reply:
    """Return the reply as the request's options require, with usage counted."""
    text = reply.text
    calls = list(reply.tool_calls)
    finish = reply.finish_reason
    stop_sequence: str | None = None
    choice = conversation.tool_choice

    if choice == "none" or not conversation.tools:
        calls = [] if choice == "none" else calls
    elif not calls and choice != "auto":
        tool = conversation.tool_named(choice) if choice != "required" else conversation.tools[0]
        tool = tool or conversation.tools[0]
        hint = conversation.last_user_text()
        calls = [ToolCall(name=tool.name, arguments=_as_object(fake_from_schema(tool.parameters, hint)))]
    elif calls and choice not in ("auto", "required"):
        calls = [c for c in calls if c.name == choice] or calls[:1]

    if calls:
        finish = "tool_calls"
        text = text if reply.text and reply.tool_calls else ""
    else:
        finish = "stop" if finish == "tool_calls" else finish
        text = _json_text(conversation.response_format, text, conversation.last_user_text())
        for stop in conversation.stop:
            at = text.find(stop) if stop else -1
            if at >= 0:
                text, finish, stop_sequence = text[:at], "stop_sequence", stop
                break
        if conversation.max_tokens is not None:
            text, cut = truncate_tokens(text, conversation.max_tokens)
            if cut:
                finish, stop_sequence = "length", None

    output = count_tokens(text) + sum(count_tokens(c.name) + count_json(c.arguments) for c in calls)
    usage = Usage(input_tokens=count_conversation(conversation), output_tokens=output)
    return Reply(
        text=text,
        tool_calls=calls,
        finish_reason=finish,
        stop_sequence=stop_sequence,
        usage=usage,
        rule=reply.rule,
        error=reply.error,
        latency_ms=reply.latency_ms,
        stream_speed=reply.stream_speed,
    )


def _as_object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"value": value}


def _json_text(fmt: dict[str, Any] | None, text: str, hint: str) -> str:
    """JSON content when a JSON response format was asked for: the reply itself if it already is."""
    if not fmt:
        return text
    try:
        parsed = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        parsed = None
    if fmt.get("type") == "json_schema":
        schema = fmt.get("schema") or {}
        if parsed is not None and _valid(parsed, schema):
            return text
        return orjson.dumps(fake_from_schema(schema, hint)).decode()
    if isinstance(parsed, dict):
        return text
    return orjson.dumps({"response": text}).decode()


def _valid(value: Any, schema: dict[str, Any]) -> bool:
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema is a dependency
        return False
    try:
        return bool(jsonschema.Draft202012Validator(schema).is_valid(value))
    except Exception:
        return False
