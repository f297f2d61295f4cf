"""Anthropic Messages: `POST /v1/messages` (JSON and SSE), `POST /v1/messages/count_tokens`, and
`GET /v1/models[/{id}]` in Anthropic's shape for the anthropic SDK."""

from __future__ import annotations

import base64
import hashlib
import math
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from mockllm_tui.core.conversation import (
    Conversation,
    FinishReason,
    Message,
    Reply,
    RequestError,
    Thinking,
    ToolCall,
    ToolSpec,
)
from mockllm_tui.core.models import ModelInfo
from mockllm_tui.core.tokens import count_tokens, split_tokens
from mockllm_tui.engine.limits import LimitBreach
from mockllm_tui.providers.base import (
    CLAIM_NONE,
    CLAIM_OWN,
    ChatEndpoint,
    Frame,
    Headers,
    Provider,
    RateLimitReport,
    RenderContext,
    ReplyReader,
    Request,
    TokenCountEndpoint,
    new_id,
)
from mockllm_tui.providers.model_routes import ModelListing, ModelLookup
from mockllm_tui.providers.parsing import append_turn, check_type, optional, require
from mockllm_tui.providers.registry import register_provider

ROLES = ("user", "assistant")
TOOL_CHOICES = ("auto", "any", "tool", "none")
THINKING_TYPES = ("enabled", "disabled", "adaptive", "between_tools")
MIN_THINKING_BUDGET = 1024
JSON_FRAGMENT_TOKENS = 4

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "stop_sequence": "stop_sequence",
    "content_filter": "refusal",
}

NEUTRAL_STOP: dict[str, FinishReason] = {
    "end_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "stop_sequence": "stop_sequence",
    "refusal": "content_filter",
}

#: Paths that are Anthropic's own (its 404s and 405s there take its shape).
OWN_PREFIXES = ("/v1/messages", "/messages/", "/v1/complete")
VERSION_HEADER = "anthropic-version"


def anthropic_error_type(status: int) -> str:
    """Anthropic's error type for a status."""
    return ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def anthropic_error(status: int, message: str, *, type: str | None = None) -> dict[str, Any]:
    """The `{"type": "error", "error": {...}}` object (without the request id)."""
    return {"type": "error", "error": {"type": type or anthropic_error_type(status), "message": message}}


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One SSE event with its `event:` line, as Anthropic sends them."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# -- parsing -----------------------------------------------------------------------------------


def content_blocks(value: Any, name: str) -> list[dict[str, Any]]:
    """Content as a list of typed blocks (a string is one text block)."""
    blocks = check_type(value, (str, list), name)
    if isinstance(blocks, str):
        return [{"type": "text", "text": blocks}]
    for i, block in enumerate(blocks):
        require(check_type(block, dict, f"{name}.{i}"), "type", str, f"{name}.{i}.")
    return list(blocks)


def blocks_text(value: Any, name: str) -> str:
    """The text blocks of a content value, joined (images and other blocks are ignored)."""
    if value is None:
        return ""
    texts = [
        require(block, "text", str, f"{name}.{i}.")
        for i, block in enumerate(content_blocks(value, name))
        if block["type"] == "text"
    ]
    return "\n".join(texts)


def parse_messages(value: list[Any]) -> list[Message]:
    """Messages; a user turn's `tool_result` blocks become role "tool" messages before its text."""
    messages: list[Message] = []
    tool_names: dict[str, str] = {}
    for i, raw in enumerate(value):
        name = f"messages.{i}"
        raw = check_type(raw, dict, name)
        role = require(raw, "role", str, f"{name}.")
        if role not in ROLES:
            raise RequestError(f"{name}.role: unknown role {role!r} (expected user or assistant)", param=f"{name}.role")
        blocks = content_blocks(require(raw, "content", (str, list), f"{name}."), f"{name}.content")
        texts: list[str] = []
        calls: list[ToolCall] = []
        results: list[Message] = []
        for j, block in enumerate(blocks):
            where = f"{name}.content.{j}."
            kind = block["type"]
            if kind == "text":
                texts.append(require(block, "text", str, where))
            elif kind == "tool_use":
                if role != "assistant":
                    raise RequestError(
                        f"{where}type: tool_use blocks belong in assistant messages", param=where + "type"
                    )
                call = ToolCall(
                    name=require(block, "name", str, where),
                    arguments=require(block, "input", dict, where),
                    id=require(block, "id", str, where),
                )
                tool_names[call.id] = call.name
                calls.append(call)
            elif kind == "tool_result":
                if role != "user":
                    raise RequestError(f"{where}type: tool_result blocks belong in user messages", param=where + "type")
                call_id = require(block, "tool_use_id", str, where)
                optional(block, "is_error", bool, prefix=where)
                text = blocks_text(block.get("content"), where + "content")
                results.append(Message(role="tool", content=text, tool_call_id=call_id, name=tool_names.get(call_id)))
        append_turn(messages, role, texts, calls, results)
    return messages


def parse_tools(value: list[Any]) -> list[ToolSpec]:
    """Client tools with an `input_schema`; server tools (web search, bash...) are accepted and skipped."""
    tools = []
    for i, raw in enumerate(value):
        where = f"tools.{i}."
        raw = check_type(raw, dict, f"tools.{i}")
        if optional(raw, "type", str, "custom", where) != "custom" and "input_schema" not in raw:
            continue
        tools.append(
            ToolSpec(
                name=require(raw, "name", str, where),
                description=optional(raw, "description", str, "", where),
                parameters=require(raw, "input_schema", dict, where),
            )
        )
    return tools


def parse_tool_choice(value: Any, tools: list[ToolSpec]) -> str:
    """`tool_choice` as Conversation.tool_choice: auto -> "auto", any -> "required", tool -> its name, none."""
    if value is None:
        return "auto"
    value = check_type(value, dict, "tool_choice")
    kind = require(value, "type", str, "tool_choice.")
    optional(value, "disable_parallel_tool_use", bool, prefix="tool_choice.")
    if kind not in TOOL_CHOICES:
        raise RequestError(
            f"tool_choice.type: expected one of {', '.join(TOOL_CHOICES)}, got {kind!r}", param="tool_choice.type"
        )
    if kind in ("any", "tool") and not tools:
        raise RequestError("tool_choice: may only be specified while providing tools", param="tool_choice")
    if kind == "any":
        return "required"
    if kind == "tool":
        name = require(value, "name", str, "tool_choice.")
        if not any(t.name == name for t in tools):
            raise RequestError(f"tool_choice.name: no tool named {name!r} in tools", param="tool_choice.name")
        return str(name)
    return str(kind)


def parse_request(body: dict[str, Any], endpoint: str, *, need_max_tokens: bool) -> Conversation:
    """A Messages (or count_tokens) request body as a Conversation."""
    model = require(body, "model", str)
    raw_messages = require(body, "messages", list)
    if not raw_messages:
        raise RequestError("messages: at least one message is required", param="messages")
    max_tokens = require(body, "max_tokens", int) if need_max_tokens else optional(body, "max_tokens", int)
    if max_tokens is not None and max_tokens < 1:
        raise RequestError(f"max_tokens: must be at least 1, got {max_tokens}", param="max_tokens")
    stop = optional(body, "stop_sequences", list, [])
    for i, item in enumerate(stop):
        check_type(item, str, f"stop_sequences.{i}")
    for key in ("temperature", "top_p"):
        optional(body, key, float)
    optional(body, "top_k", int)
    optional(body, "metadata", dict)
    thinking, budget = parse_thinking(body.get("thinking"), max_tokens)
    tools = parse_tools(optional(body, "tools", list, []))
    tool_choice = parse_tool_choice(body.get("tool_choice"), tools)
    if thinking == "on" and tool_choice not in ("auto", "none"):
        raise RequestError("Thinking may not be enabled when tool_choice forces tool use.", param="tool_choice")
    return Conversation(
        provider="anthropic",
        endpoint=endpoint,
        model=model,
        messages=parse_messages(raw_messages),
        system=blocks_text(body.get("system"), "system"),
        tools=tools,
        tool_choice=tool_choice,
        stream=bool(optional(body, "stream", bool, False)),
        max_tokens=max_tokens,
        stop=list(stop),
        thinking=thinking,
        thinking_budget=budget,
    )


def parse_thinking(value: Any, max_tokens: int | None) -> tuple[Thinking, int | None]:
    """`thinking` as (on or off, budget): `enabled` needs a `budget_tokens` of at least 1024 and
    below `max_tokens`; `adaptive` thinks without a budget; absent or `disabled` does not think."""
    if value is None:
        return "off", None
    config = check_type(value, dict, "thinking")
    kind = require(config, "type", str, "thinking.")
    if kind not in THINKING_TYPES:
        raise RequestError(
            f"thinking.type: expected one of {', '.join(THINKING_TYPES)}, got {kind!r}", param="thinking.type"
        )
    optional(config, "display", str, prefix="thinking.")
    if kind == "disabled":
        return "off", None
    if kind != "enabled":
        return "on", None
    budget = int(require(config, "budget_tokens", int, "thinking."))
    if budget < MIN_THINKING_BUDGET:
        raise RequestError(
            f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_THINKING_BUDGET}",
            param="thinking.budget_tokens",
        )
    if max_tokens is not None and max_tokens <= budget:
        raise RequestError("`max_tokens` must be greater than `thinking.budget_tokens`.", param="max_tokens")
    return "on", budget


# -- rendering ---------------------------------------------------------------------------------


def stop_reason(reply: Reply) -> str:
    """Anthropic's stop reason for a reply."""
    return STOP_REASONS.get(reply.finish_reason, "end_turn")


def usage_object(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    """A `Usage` object as the API sends it (no prompt caching in a mock)."""
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def tool_uses(reply: Reply) -> list[dict[str, Any]]:
    """The reply's tool calls as `tool_use` blocks, each with a `toolu_` id."""
    return [
        {"type": "tool_use", "id": call.id or new_id("toolu_"), "name": call.name, "input": call.arguments}
        for call in reply.tool_calls
    ]


def signature(ctx: RenderContext, thinking: str) -> str:
    """An opaque signature for a thinking block, derived from the reply's id and the thinking."""
    digest = hashlib.blake2b(f"{ctx.id}:{thinking}".encode(), digest_size=64).digest()
    return base64.b64encode(digest + hashlib.blake2b(digest, digest_size=32).digest()).decode()


def thinking_blocks(reply: Reply, ctx: RenderContext) -> list[dict[str, Any]]:
    """The reply's thinking as a `thinking` block with its signature (none when it does not think)."""
    if not reply.thinking:
        return []
    return [{"type": "thinking", "thinking": reply.thinking, "signature": signature(ctx, reply.thinking)}]


def has_text_block(reply: Reply) -> bool:
    """A text block is sent when there is text, or when there is nothing else."""
    return bool(reply.text) or not reply.tool_calls


class Messages(ChatEndpoint):
    """`POST /v1/messages`."""

    paths = ("/v1/messages", "/messages")
    name = "messages"
    operation = "chat"
    id_prefix = "msg_"

    def parse(self, body: dict[str, Any]) -> Conversation:
        """Parse a Messages request (`max_tokens` is required)."""
        return parse_request(body, self.name, need_max_tokens=True)

    def message(self, conversation: Conversation, ctx: RenderContext, content: list[dict[str, Any]]) -> dict[str, Any]:
        """The `message` object around some content."""
        return {
            "id": ctx.id,
            "type": "message",
            "role": "assistant",
            "model": conversation.model,
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
        }

    def render(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> dict[str, Any]:
        """A `message` object."""
        content = [{"type": "text", "text": reply.text}] if has_text_block(reply) else []
        body = self.message(conversation, ctx, thinking_blocks(reply, ctx) + content + tool_uses(reply))
        body["stop_reason"] = stop_reason(reply)
        body["stop_sequence"] = reply.stop_sequence
        body["usage"] = usage_object(reply.usage.input_tokens, reply.usage.output_tokens)
        return body

    def render_stream(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> Iterator[Frame]:
        """message_start, ping, per block start/deltas/stop, message_delta, message_stop."""
        for event, text, tokens in self.stream_events(conversation, reply, ctx):
            yield Frame(sse(event["type"], event), text, tokens)

    def stream_events(
        self, conversation: Conversation, reply: Reply, ctx: RenderContext
    ) -> Iterator[tuple[dict[str, Any], str, int]]:
        """The stream's events as (event object, reply text it carries, its tokens), in order."""
        usage = reply.usage
        start = self.message(conversation, ctx, [])
        start["usage"] = usage_object(usage.input_tokens, min(1, usage.output_tokens))
        yield {"type": "message_start", "message": start}, "", 0
        yield {"type": "ping"}, "", 0
        index = 0
        for block in thinking_blocks(reply, ctx):
            yield block_start(index, {**block, "thinking": "", "signature": ""}), "", 0
            for piece, tokens in zip(ctx.thinking_pieces, ctx.thinking_piece_tokens, strict=True):
                yield block_delta(index, {"type": "thinking_delta", "thinking": piece}), "", tokens
            yield block_delta(index, {"type": "signature_delta", "signature": block["signature"]}), "", 0
            yield block_stop(index), "", 0
            index += 1
        if has_text_block(reply):
            yield block_start(index, {"type": "text", "text": ""}), "", 0
            for piece, tokens in zip(ctx.pieces, ctx.piece_tokens, strict=True):
                yield block_delta(index, {"type": "text_delta", "text": piece}), piece, tokens
            yield block_stop(index), "", 0
            index += 1
        for block in tool_uses(reply):
            name = block["name"]
            yield block_start(index, {**block, "input": {}}), f"[tool {name}]", count_tokens(name)
            for fragment, tokens in json_fragments(block["input"]):
                yield block_delta(index, {"type": "input_json_delta", "partial_json": fragment}), fragment, tokens
            yield block_stop(index), "", 0
            index += 1
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(reply), "stop_sequence": reply.stop_sequence},
            "usage": {
                "input_tokens": usage.input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": usage.output_tokens,
            },
        }
        yield delta, "", 0
        yield {"type": "message_stop"}, "", 0

    def reply_reader(self, conversation: Conversation) -> ReplyReader:
        """Reads an upstream's message (or its events) back into a Reply."""
        return MessageReader(conversation.stream)


class MessageReader(ReplyReader):
    """A `message` (or its events, up to `message_stop`) read back into a Reply."""

    def read_body(self, body: Any) -> None:
        """Text blocks and tool_use blocks."""
        for block in body["content"]:
            if block.get("type") == "text":
                self.text += block.get("text", "")
            elif block.get("type") == "tool_use":
                self.calls.append([block["name"], orjson.dumps(block.get("input") or {}).decode()])
        self.finish_reason = NEUTRAL_STOP.get(body.get("stop_reason") or "", "stop")

    def read_event(self, event: str, data: Any) -> str:
        """Block starts and deltas; `message_stop` ends the stream."""
        kind = data.get("type", event) if isinstance(data, dict) else event
        if kind == "content_block_start" and data["content_block"].get("type") == "tool_use":
            self.calls.append([data["content_block"]["name"], ""])
        elif kind == "content_block_delta":
            delta = data["delta"]
            if delta.get("type") == "text_delta":
                self.text += delta["text"]
                return str(delta["text"])
            if delta.get("type") == "input_json_delta" and self.calls:
                self.calls[-1][1] += delta["partial_json"]
                return str(delta["partial_json"])
        elif kind == "message_delta":
            self.finish_reason = NEUTRAL_STOP.get(data["delta"].get("stop_reason") or "", "stop")
        elif kind == "message_stop":
            self.done = True
        return ""


def json_fragments(value: Any) -> Iterator[tuple[str, int]]:
    """A JSON value's compact text cut into stream fragments of a few tokens each, with their tokens."""
    pieces = split_tokens(orjson.dumps(value).decode())
    for at in range(0, len(pieces), JSON_FRAGMENT_TOKENS):
        group = pieces[at : at + JSON_FRAGMENT_TOKENS]
        yield "".join(group), len(group)


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    """A `content_block_start` event."""
    return {"type": "content_block_start", "index": index, "content_block": block}


def block_delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    """A `content_block_delta` event."""
    return {"type": "content_block_delta", "index": index, "delta": delta}


def block_stop(index: int) -> dict[str, Any]:
    """A `content_block_stop` event."""
    return {"type": "content_block_stop", "index": index}


class CountTokens(TokenCountEndpoint):
    """`POST /v1/messages/count_tokens`: the input tokens /v1/messages would report."""

    paths = ("/v1/messages/count_tokens", "/messages/count_tokens")
    name = "messages.count_tokens"

    def parse(self, body: dict[str, Any]) -> Conversation:
        """Parse like Messages, without requiring `max_tokens`."""
        return parse_request(body, self.name, need_max_tokens=False)

    def parse_conversation(self, request: Request) -> Conversation:
        """The body, parsed like Messages without requiring `max_tokens`."""
        return self.parse(request.json())

    def render_count(self, tokens: int) -> dict[str, Any]:
        """`{"input_tokens": n}`."""
        return {"input_tokens": tokens}


def model_info(model: ModelInfo, name: str | None = None) -> dict[str, Any]:
    """An Anthropic `ModelInfo` object (what the anthropic SDK's `models.list()` reads)."""
    created = datetime.fromtimestamp(model.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    model_id = name or model.id
    return {
        "type": "model",
        "id": model_id,
        "display_name": model_id.replace("-", " ").title(),
        "created_at": created,
        "lifecycle": "active",
        "max_input_tokens": model.context_window,
        "max_tokens": model.max_output_tokens,
    }


class ListModels(ModelListing):
    """`GET /v1/models` for the anthropic SDK: its models as one page."""

    paths = ("/v1/models", "/models")

    def listing(self, models: list[ModelInfo]) -> dict[str, Any]:
        """The registry's Anthropic models."""
        data = [model_info(m) for m in models if m.owned_by == "anthropic"]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return {"data": data, "has_more": False, "first_id": first, "last_id": last}


class RetrieveModel(ModelLookup):
    """`GET /v1/models/{id}` for the anthropic SDK."""

    paths = ("/v1/models/{id}", "/models/{id}")

    def describe(self, model: ModelInfo, name: str) -> dict[str, Any]:
        """A ModelInfo object."""
        return model_info(model, name)


def rfc3339(epoch_s: float) -> str:
    """A UTC time as RFC 3339 with whole seconds (rounded up), as Anthropic's reset headers."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.ceil(epoch_s)))


def limit_message(breach: LimitBreach) -> str:
    """Anthropic's three wordings: too many output tokens, the prompt too long, or both too many."""
    if breach.kind == "output_limit":
        return (
            f"max_tokens: {breach.requested} > {breach.limit}, "
            f"which is the maximum allowed number of output tokens for {breach.model}"
        )
    if breach.kind == "context_with_output":
        return (
            f"input length and `max_tokens` exceed context limit: {breach.input_tokens} + {breach.requested} "
            f"> {breach.limit}, decrease input length or `max_tokens` and try again"
        )
    return f"prompt is too long: {breach.input_tokens} tokens > {breach.limit} maximum"


class Anthropic(Provider):
    """Anthropic's Messages API."""

    name = "anthropic"
    system = "anthropic"
    endpoint_classes = (Messages, CountTokens, ListModels, RetrieveModel)

    def claims(self, path: str, headers: Mapping[str, str]) -> int:
        """Its own paths, and any request from the anthropic SDK (it sends `anthropic-version`)."""
        return CLAIM_OWN if path.startswith(OWN_PREFIXES) or VERSION_HEADER in headers else CLAIM_NONE

    def auth_refusal(self, missing: bool) -> str:
        """Anthropic's wording for a missing or wrong key."""
        return "x-api-key header is required" if missing else "invalid x-api-key"

    def rate_limit_headers(self, report: RateLimitReport) -> Headers:
        """`anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}` (resets in RFC 3339)."""
        r, t, now = report.requests, report.tokens, report.now
        return [
            (b"anthropic-ratelimit-requests-limit", str(r.limit).encode()),
            (b"anthropic-ratelimit-requests-remaining", str(r.remaining).encode()),
            (b"anthropic-ratelimit-requests-reset", rfc3339(now + r.reset_s).encode()),
            (b"anthropic-ratelimit-tokens-limit", str(t.limit).encode()),
            (b"anthropic-ratelimit-tokens-remaining", str(t.remaining).encode()),
            (b"anthropic-ratelimit-tokens-reset", rfc3339(now + t.reset_s).encode()),
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
        """Anthropic's error JSON, with the request id that the `request-id` header also carries."""
        return orjson.dumps({**anthropic_error(status, message, type=type), "request_id": request_id or None})

    def stream_error(self, status: int, message: str) -> bytes:
        """An `event: error` SSE event, as Anthropic sends after a 200 start."""
        return sse("error", anthropic_error(status, message))

    def response_headers(self, request_id: str) -> Headers:
        """`request-id`."""
        return [(b"request-id", request_id.encode())]

    def limit_error(self, breach: LimitBreach) -> RequestError:
        """Anthropic's wording (see `limit_message`)."""
        return RequestError(limit_message(breach))

    def upstream_auth(self, key: str, *, method: str, url: str, body: bytes) -> Headers:
        """The key in `x-api-key`, as the anthropic SDK sends it."""
        return [(b"x-api-key", key.encode("latin-1"))]


register_provider(Anthropic)
