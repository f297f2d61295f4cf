"""OpenAI Chat Completions: `POST /v1/chat/completions`, JSON and SSE."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import orjson

from mockllm_tui.core.conversation import (
    Conversation,
    FinishReason,
    Message,
    Reply,
    RequestError,
    ToolCall,
    ToolSpec,
)
from mockllm_tui.core.tokens import count_tokens
from mockllm_tui.engine.limits import LimitBreach
from mockllm_tui.providers.base import ChatEndpoint, Frame, RenderContext, ReplyReader, parse_arguments
from mockllm_tui.providers.openai_common import (
    OpenAIBase,
    check_type,
    optional,
    positive_int,
    require,
    split_fixed,
    stop_list,
    tool_call_id,
)
from mockllm_tui.providers.registry import register_provider

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
DONE = b"data: [DONE]\n\n"
ARGUMENT_CHUNK = 16


def content_text(value: Any, name: str) -> str:
    """Message content as text: a string, or an array of parts whose text parts are joined."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for i, part in enumerate(value):
            part = check_type(part, dict, f"{name}[{i}]")
            kind = part.get("type")
            if kind in ("text", "input_text", "output_text", "refusal"):
                texts.append(check_type(part.get("text", part.get("refusal", "")), str, f"{name}[{i}].text"))
            elif not isinstance(kind, str):
                raise RequestError(f"{name}[{i}].type: field required", param=f"{name}[{i}].type")
        return "\n".join(texts)
    raise RequestError(f"{name}: expected a string or an array of content parts", param=name)


def parse_tool_calls(value: Any, name: str) -> list[ToolCall]:
    """Assistant `tool_calls` from a request."""
    calls = []
    for i, raw in enumerate(check_type(value, list, name)):
        raw = check_type(raw, dict, f"{name}[{i}]")
        fn = require(raw, "function", dict, f"{name}[{i}].")
        calls.append(
            ToolCall(
                name=require(fn, "name", str, f"{name}[{i}].function."),
                arguments=parse_arguments(optional(fn, "arguments", str, "{}", f"{name}[{i}].function.")),
                id=optional(raw, "id", str, ""),
            )
        )
    return calls


def parse_messages(value: Any) -> tuple[list[Message], str]:
    """Chat messages, and the system prompt gathered from system/developer messages."""
    messages: list[Message] = []
    system: list[str] = []
    tool_names: dict[str, str] = {}
    for i, raw in enumerate(value):
        name = f"messages[{i}]"
        raw = check_type(raw, dict, name)
        role = require(raw, "role", str, f"{name}.")
        if role not in ROLES:
            raise RequestError(
                f"{name}.role: unknown role {role!r} (expected one of {', '.join(ROLES)})", param=f"{name}.role"
            )
        text = content_text(raw.get("content"), f"{name}.content")
        if role in ("system", "developer"):
            system.append(text)
        elif role == "assistant":
            calls = parse_tool_calls(raw["tool_calls"], f"{name}.tool_calls") if raw.get("tool_calls") else []
            for call in calls:
                tool_names[call.id] = call.name
            messages.append(Message(role="assistant", content=text, tool_calls=calls))
        elif role in ("tool", "function"):
            call_id = optional(raw, "tool_call_id", str, "", f"{name}.")
            if role == "tool" and not call_id:
                raise RequestError(f"{name}.tool_call_id: field required", param=f"{name}.tool_call_id")
            tool = tool_names.get(call_id) or optional(raw, "name", str, None, f"{name}.")
            messages.append(Message(role="tool", content=text, tool_call_id=call_id, name=tool))
        else:
            messages.append(Message(role="user", content=text))
    return messages, "\n".join(system)


def parse_tools(body: dict[str, Any]) -> list[ToolSpec]:
    """Function tools (`tools[].function`)."""
    tools = []
    for i, raw in enumerate(optional(body, "tools", list, [])):
        raw = check_type(raw, dict, f"tools[{i}]")
        if raw.get("type", "function") != "function":
            continue
        fn = require(raw, "function", dict, f"tools[{i}].")
        tools.append(
            ToolSpec(
                name=require(fn, "name", str, f"tools[{i}].function."),
                description=optional(fn, "description", str, "", f"tools[{i}].function."),
                parameters=optional(fn, "parameters", dict, {}, f"tools[{i}].function."),
            )
        )
    return tools


def parse_tool_choice(value: Any, tools: list[ToolSpec], name_field: str = "tool_choice.function.name") -> str:
    """`tool_choice` as "auto" | "none" | "required" | a tool name.

    A named choice is `{"type": "function", "function": {"name": ...}}` (chat) or
    `{"type": "function", "name": ...}` (responses); `name_field` is where the name belongs.
    """
    if value is None:
        return "auto"
    if isinstance(value, str):
        if value not in ("none", "auto", "required"):
            raise RequestError("tool_choice: expected none, auto, required or a named function", param="tool_choice")
        choice = value
    elif isinstance(value, dict):
        fn = value.get("function")
        named = fn.get("name") if isinstance(fn, dict) else value.get("name")
        if not isinstance(named, str):
            raise RequestError(f"{name_field}: field required", param=name_field)
        choice = named
        if tools and not any(t.name == choice for t in tools):
            raise RequestError(f"tool_choice: no tool named {choice!r} in tools", param="tool_choice")
    else:
        raise RequestError("tool_choice: expected a string or an object", param="tool_choice")
    if not tools and choice not in ("none", "auto"):
        raise RequestError("tool_choice: only allowed when tools are specified", param="tool_choice")
    return choice


def parse_response_format(value: Any, name: str = "response_format") -> dict[str, Any] | None:
    """`response_format` as None, json_object, or json_schema with its schema."""
    if value is None:
        return None
    value = check_type(value, dict, name)
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = value.get("json_schema", value)
        spec = check_type(spec, dict, f"{name}.json_schema")
        schema = spec.get("schema", {})
        return {"type": "json_schema", "schema": check_type(schema, dict, f"{name}.json_schema.schema")}
    raise RequestError(f"{name}.type: expected text, json_object or json_schema", param=f"{name}.type")


class FirstChoiceReader(ReplyReader):
    """OpenAI's chunk streams read back for the first choice only, up to `[DONE]`."""

    def read_event(self, event: str, data: Any) -> str:
        """A chunk: its first choice goes to `read_choice`; `[DONE]` ends the stream."""
        if data == "[DONE]":
            self.done = True
            return ""
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices or choices[0].get("index", 0) != 0:
            return ""
        if choices[0].get("finish_reason"):
            self.finish_reason = neutral_finish(choices[0]["finish_reason"])
        return self.read_choice(choices[0])

    def read_choice(self, choice: dict[str, Any]) -> str:
        """Take one streamed choice; return the text it carries."""
        raise NotImplementedError


class ChatReader(FirstChoiceReader):
    """A `chat.completion` (or its chunks) read back into a Reply."""

    def read_body(self, body: Any) -> None:
        """The first choice's message: its content and tool calls."""
        choice = body["choices"][0]
        message = choice["message"]
        self.text = message.get("content") or ""
        for call in message.get("tool_calls") or []:
            self.calls.append([call["function"]["name"], call["function"].get("arguments") or ""])
        self.finish_reason = neutral_finish(choice.get("finish_reason"))

    def read_choice(self, choice: dict[str, Any]) -> str:
        """A delta: content, or a tool call's start and argument text."""
        delta = choice.get("delta") or {}
        piece = str(delta.get("content") or "")
        self.text += piece
        for call in delta.get("tool_calls") or []:
            fn = call.get("function") or {}
            if fn.get("name"):
                self.calls.append([fn["name"], ""])
            if self.calls and fn.get("arguments"):
                self.calls[-1][1] += fn["arguments"]
                piece += fn["arguments"]
        return piece


def neutral_finish(reason: Any) -> FinishReason:
    """OpenAI's finish reason as the neutral one."""
    return reason if reason in ("stop", "length", "tool_calls", "content_filter") else "stop"


class ChunkExtras:
    """What a service built on OpenAI's chunk streams adds to them (Azure's content filter results):
    nothing in OpenAI's own."""

    #: Fields every streamed choice carries besides OpenAI's own.
    choice_extra: ClassVar[dict[str, Any]] = {}

    def stream_preface(self, conversation: Conversation, head: dict[str, Any]) -> list[Frame]:
        """Frames a stream starts with before its first chunk (`head`: the chunks' id, object, created
        and model)."""
        return []


class ChatCompletions(ChatEndpoint, ChunkExtras):
    """`POST /v1/chat/completions`."""

    paths = ("/v1/chat/completions", "/chat/completions")
    name = "chat.completions"
    operation = "chat"
    id_prefix = "chatcmpl-"

    def parse(self, body: dict[str, Any]) -> Conversation:
        """Parse a chat completion request."""
        model = require(body, "model", str)
        raw_messages = require(body, "messages", list)
        if not raw_messages:
            raise RequestError("messages: must contain at least one message", param="messages")
        messages, system = parse_messages(raw_messages)
        tools = parse_tools(body)
        max_tokens_param = "max_completion_tokens"
        max_tokens = positive_int(body, max_tokens_param)
        if max_tokens is None:
            max_tokens_param = "max_tokens"
            max_tokens = positive_int(body, max_tokens_param)
        effort = optional(body, "reasoning_effort", str)
        stream_options = optional(body, "stream_options", dict, {})
        optional(body, "logprobs", bool)
        optional(body, "temperature", float)
        return Conversation(
            provider="openai",
            endpoint=self.name,
            model=model,
            messages=messages,
            system=system,
            tools=tools,
            tool_choice=parse_tool_choice(body.get("tool_choice"), tools),
            response_format=parse_response_format(body.get("response_format")),
            stream=bool(optional(body, "stream", bool, False)),
            include_usage=bool(optional(stream_options, "include_usage", bool, False, "stream_options.")),
            n=positive_int(body, "n", 1, 128) or 1,
            max_tokens=max_tokens,
            stop=stop_list(body.get("stop")),
            max_tokens_param=max_tokens_param,
            thinking="off" if effort == "none" else "auto",
        )

    def render(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> dict[str, Any]:
        """A `chat.completion` object."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text if (reply.text or not reply.tool_calls) else None,
            "refusal": None,
            "annotations": [],
        }
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": tool_call_id(ctx, i, call),
                    "type": "function",
                    "function": {"name": call.name, "arguments": orjson.dumps(call.arguments).decode()},
                }
                for i, call in enumerate(reply.tool_calls)
            ]
        choices = [
            {"index": i, "message": message, "logprobs": None, "finish_reason": finish_reason(reply)}
            for i in range(conversation.n)
        ]
        return {
            "id": ctx.id,
            "object": "chat.completion",
            "created": ctx.created,
            "model": conversation.model,
            "choices": choices,
            "usage": usage_object(reply, conversation.n),
            "service_tier": "default",
            "system_fingerprint": "fp_mockllm",
        }

    def render_stream(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> Iterator[Frame]:
        """`chat.completion.chunk` lines, then the optional usage chunk, then `[DONE]`."""
        head = {"id": ctx.id, "object": "chat.completion.chunk", "created": ctx.created, "model": conversation.model}
        preface = self.stream_preface(conversation, head)
        if preface:
            yield from preface
        extra: dict[str, Any] = {"service_tier": "default", "system_fingerprint": "fp_mockllm"}
        if conversation.include_usage:
            extra["usage"] = None
        choice_extra = self.choice_extra

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            if choice_extra:
                choice.update(choice_extra)
            return b"data: " + orjson.dumps({**head, **extra, "choices": [choice]}) + b"\n\n"

        calls = [(tool_call_id(ctx, i, c), c) for i, c in enumerate(reply.tool_calls)]
        for n in range(conversation.n):
            # A reasoning model thinks before its first chunk.
            thinking = reply.usage.reasoning_tokens if n == 0 else 0
            yield Frame(chunk(n, {"role": "assistant", "content": "", "refusal": None}), "", thinking)
            for piece, tokens in zip(ctx.pieces, ctx.piece_tokens, strict=True):
                yield Frame(chunk(n, {"content": piece}), piece, tokens)
            for index, (call_id, call) in enumerate(calls):
                fn = {"name": call.name, "arguments": ""}
                start = {"index": index, "id": call_id, "type": "function", "function": fn}
                yield Frame(chunk(n, {"tool_calls": [start]}), f"[tool {call.name}]", 1)
                args = orjson.dumps(call.arguments).decode()
                for part in split_fixed(args, ARGUMENT_CHUNK):
                    delta = {"tool_calls": [{"index": index, "function": {"arguments": part}}]}
                    yield Frame(chunk(n, delta), part, count_tokens(part))
            yield Frame(chunk(n, {}, finish_reason(reply)))
        if conversation.include_usage:
            usage = {**head, **extra, "choices": [], "usage": usage_object(reply, conversation.n)}
            yield Frame(b"data: " + orjson.dumps(usage) + b"\n\n")
        yield Frame(DONE)

    def reply_reader(self, conversation: Conversation) -> ReplyReader:
        """Reads an upstream's chat completion (or its chunks) back into a Reply."""
        return ChatReader(conversation.stream)


def finish_reason(reply: Reply) -> str:
    """OpenAI's finish reason for a reply (a stop sequence is "stop")."""
    return "stop" if reply.finish_reason == "stop_sequence" else reply.finish_reason


def usage_object(reply: Reply, n: int = 1) -> dict[str, Any]:
    """A `CompletionUsage` object."""
    out = reply.usage.output_tokens * n
    return {
        "prompt_tokens": reply.usage.input_tokens,
        "completion_tokens": out,
        "total_tokens": reply.usage.input_tokens + out,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reply.usage.reasoning_tokens * n,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_limit_error(breach: LimitBreach) -> RequestError:
    """OpenAI's wording: `context_length_exceeded` on `messages`, or the max tokens parameter too large."""
    if breach.kind == "output_limit":
        k = breach.requested
        message = (
            f"{breach.param} is too large: {k}. "
            f"This model supports at most {breach.limit} completion tokens, whereas you provided {k}."
        )
        return RequestError(message, param=breach.param, code="invalid_value")
    m = breach.input_tokens
    if breach.kind == "input_limit":
        message = (
            f"Input tokens exceed the configured limit of {breach.limit} tokens. "
            f"Your messages resulted in {m} tokens. Please reduce the length of the messages."
        )
    elif breach.kind == "context":
        message = (
            f"This model's maximum context length is {breach.limit} tokens. "
            f"However, your messages resulted in {m} tokens. Please reduce the length of the messages."
        )
    else:
        message = (
            f"This model's maximum context length is {breach.limit} tokens. However, you requested "
            f"{breach.total} tokens ({m} in the messages, {breach.requested} in the completion). "
            "Please reduce the length of the messages or completion."
        )
    return RequestError(message, param="messages", code="context_length_exceeded")


class OpenAIChat(OpenAIBase):
    """OpenAI's Chat Completions API."""

    name = "openai"
    endpoint_classes = (ChatCompletions,)

    def limit_error(self, breach: LimitBreach) -> RequestError:
        """OpenAI's wording for chat completions (see `chat_limit_error`)."""
        return chat_limit_error(breach)


register_provider(OpenAIChat)
