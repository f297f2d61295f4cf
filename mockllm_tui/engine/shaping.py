"""Fit a chosen reply to what the request asked for: tool choice, JSON formats, stop, max tokens and
thinking (capped by the thinking budget and by max tokens, which counts the thinking too)."""

from __future__ import annotations

from typing import Any

import orjson

from mockllm_tui.core.conversation import Conversation, Reply, ToolCall, Usage
from mockllm_tui.core.tokens import count_conversation, count_json, count_tokens, truncate_tokens
from mockllm_tui.engine.schema_fake import fake_from_schema

PREVIEW_CHARS = 120


def shape_reply(conversation: Conversation, reply: Reply, *, input_tokens: int | None = None) -> Reply:
    """Return the reply as the request's options require, with usage counted (`input_tokens`: the
    conversation's count, when already known)."""
    thinking = think(conversation, reply)
    reasoning = count_tokens(thinking)
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
            text, cut = truncate_tokens(text, conversation.max_tokens - reasoning)
            if cut:
                finish, stop_sequence = "length", None

    output = reasoning + count_tokens(text) + sum(count_tokens(c.name) + count_json(c.arguments) for c in calls)
    if input_tokens is None:
        input_tokens = count_conversation(conversation)
    usage = Usage(input_tokens=input_tokens, output_tokens=output, reasoning_tokens=reasoning)
    return Reply(
        text=text,
        thinking=thinking,
        tool_calls=calls,
        finish_reason=finish,
        stop_sequence=stop_sequence,
        usage=usage,
        rule=reply.rule,
        error=reply.error,
        latency_ms=reply.latency_ms,
        stream_speed=reply.stream_speed,
    )


def think(conversation: Conversation, reply: Reply) -> str:
    """The thinking sent before the answer: the rule's, or a short generated one, cut to the
    thinking budget and to max tokens; "" when the request does not think."""
    if conversation.thinking != "on":
        return ""
    text = reply.thinking or generated_thinking(conversation.last_user_text())
    for cap in (conversation.thinking_budget, conversation.max_tokens):
        if cap is not None:
            text, _ = truncate_tokens(text, cap)
    return text


def generated_thinking(prompt: str) -> str:
    """A short, deterministic line of thinking about the prompt."""
    line = " ".join(prompt.split())
    if not line:
        return "There is no question to think about, so I will answer briefly."
    if len(line) > PREVIEW_CHARS:
        line = line[: PREVIEW_CHARS - 1] + "…"
    return f'The user asks: "{line}". I will answer that directly and briefly.'


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
