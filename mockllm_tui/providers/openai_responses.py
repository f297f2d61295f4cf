"""OpenAI Responses API: `POST /v1/responses` (JSON and SSE), `GET` and `DELETE /v1/responses/{id}`."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from mockllm_tui.core.conversation import (
    Conversation,
    Message,
    Reply,
    RequestError,
    ToolCall,
    ToolSpec,
    preview,
)
from mockllm_tui.core.tokens import count_tokens
from mockllm_tui.engine.limits import LimitBreach
from mockllm_tui.providers.base import (
    ChatEndpoint,
    Endpoint,
    Frame,
    Query,
    RenderContext,
    ReplyReader,
    Request,
    parse_arguments,
)
from mockllm_tui.providers.openai_chat import (
    ARGUMENT_CHUNK,
    content_text,
    parse_response_format,
    parse_tool_choice,
)
from mockllm_tui.providers.openai_common import (
    OpenAIBase,
    check_type,
    derived_id,
    optional,
    positive_int,
    require,
    split_fixed,
    tool_call_id,
)
from mockllm_tui.providers.registry import register_provider

MESSAGE_ROLES = ("user", "assistant", "system", "developer")
SKIPPED_ITEMS = ("reasoning", "item_reference")
SAVED_RESPONSES = 1000


@dataclass(slots=True)
class ResponsesConversation(Conversation):
    """A Responses request: the neutral conversation plus what the Response object echoes back."""

    instructions: str | None = None
    tools_echo: list[dict[str, Any]] = field(default_factory=list)
    tool_choice_echo: Any = "auto"
    text_echo: dict[str, Any] = field(default_factory=lambda: {"format": {"type": "text"}, "verbosity": "medium"})
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    store: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    metadata: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    reasoning_effort: str | None = None
    reasoning_summary: str | None = None


@dataclass(slots=True)
class SavedResponse:
    """A response kept for `GET /responses/{id}`, with its conversation for `previous_response_id`."""

    body: dict[str, Any]
    history: list[Message]


def parse_input(value: Any, history: list[Message]) -> tuple[list[Message], list[str]]:
    """`input` (a string or a list of items) as messages after `history`, and any system texts in it."""
    if isinstance(value, str):
        return [*history, Message(role="user", content=value)], []
    items = check_type(value, list, "input")
    messages = list(history)
    system: list[str] = []
    tool_names = {call.id: call.name for m in history for call in m.tool_calls}
    for i, raw in enumerate(items):
        name = f"input[{i}]"
        item = check_type(raw, dict, name)
        kind = optional(item, "type", str, "message", f"{name}.")
        if kind == "message":
            role = require(item, "role", str, f"{name}.")
            if role not in MESSAGE_ROLES:
                raise RequestError(
                    f"{name}.role: unknown role {role!r} (expected one of {', '.join(MESSAGE_ROLES)})",
                    param=f"{name}.role",
                )
            text = content_text(require(item, "content", (str, list), f"{name}."), f"{name}.content")
            if role in ("system", "developer"):
                system.append(text)
            else:
                messages.append(Message(role="assistant" if role == "assistant" else "user", content=text))
        elif kind == "function_call":
            call = ToolCall(
                name=require(item, "name", str, f"{name}."),
                arguments=parse_arguments(require(item, "arguments", str, f"{name}.")),
                id=require(item, "call_id", str, f"{name}."),
            )
            tool_names[call.id] = call.name
            if len(messages) > len(history) and messages[-1].role == "assistant":
                messages[-1].tool_calls.append(call)
            else:
                messages.append(Message(role="assistant", tool_calls=[call]))
        elif kind == "function_call_output":
            call_id = require(item, "call_id", str, f"{name}.")
            output = content_text(require(item, "output", (str, list), f"{name}."), f"{name}.output")
            messages.append(Message(role="tool", content=output, tool_call_id=call_id, name=tool_names.get(call_id)))
        elif kind not in SKIPPED_ITEMS:
            raise RequestError(f"{name}.type: unsupported input item type {kind!r}", param=f"{name}.type")
    return messages, system


def parse_tools(body: dict[str, Any]) -> tuple[list[ToolSpec], list[dict[str, Any]]]:
    """Function tools (flat: `{"type": "function", "name", "parameters"}`), and every tool as echoed."""
    specs: list[ToolSpec] = []
    echo: list[dict[str, Any]] = []
    for i, raw in enumerate(optional(body, "tools", list, [])):
        name = f"tools[{i}]"
        tool = check_type(raw, dict, name)
        kind = require(tool, "type", str, f"{name}.")
        if kind != "function":
            echo.append(tool)
            continue
        spec = ToolSpec(
            name=require(tool, "name", str, f"{name}."),
            description=optional(tool, "description", str, "", f"{name}."),
            parameters=optional(tool, "parameters", dict, {}, f"{name}."),
        )
        specs.append(spec)
        echo.append(
            {
                "type": "function",
                "name": spec.name,
                "description": spec.description or None,
                "parameters": spec.parameters,
                "strict": optional(tool, "strict", bool, True, f"{name}."),
            }
        )
    return specs, echo


def parse_text(body: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """`text.format` as the neutral response format, and the `text` object as echoed."""
    text = optional(body, "text", dict, {})
    fmt = optional(text, "format", dict, {"type": "text"}, "text.")
    verbosity = optional(text, "verbosity", str, "medium", "text.")
    neutral = parse_response_format(fmt, "text.format")
    if fmt.get("type") == "json_schema":
        name = require(fmt, "name", str, "text.format.")
        require(fmt, "schema", dict, "text.format.")
        fmt = {
            "type": "json_schema",
            "name": name,
            "schema": fmt["schema"],
            "strict": optional(fmt, "strict", bool, None, "text.format."),
            "description": optional(fmt, "description", str, None, "text.format."),
        }
    return neutral, {"format": fmt, "verbosity": verbosity}


def parse_choice(value: Any, tools: list[ToolSpec]) -> tuple[str, Any]:
    """`tool_choice` as the neutral choice, and as echoed (hosted-tool choices are echoed, and act as auto)."""
    if isinstance(value, dict) and value.get("type") != "function":
        return "auto", value
    choice = parse_tool_choice(value, tools, "tool_choice.name")
    if choice in ("none", "auto", "required"):
        return choice, choice
    return choice, {"type": "function", "name": choice}


class SavedResponses:
    """The last responses made, by id (bounded: the oldest go first)."""

    def __init__(self, limit: int = SAVED_RESPONSES) -> None:
        self.limit = limit
        self._items: OrderedDict[str, SavedResponse] = OrderedDict()

    def put(self, saved: SavedResponse) -> None:
        """Keep a response."""
        self._items[saved.body["id"]] = saved
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> SavedResponse | None:
        """A kept response, or None."""
        return self._items.get(response_id)

    def pop(self, response_id: str) -> SavedResponse | None:
        """Forget a response; return it if it was kept."""
        return self._items.pop(response_id, None)

    def __len__(self) -> int:
        return len(self._items)


class KeepsResponses:
    """A provider that serves the Responses API keeps the responses it made (for GET and DELETE)."""

    saved: SavedResponses


def _saved(endpoint: Endpoint) -> SavedResponses:
    return cast(KeepsResponses, endpoint.provider).saved


class CreateResponse(ChatEndpoint):
    """`POST /v1/responses`."""

    paths = ("/v1/responses", "/responses")
    name = "responses"
    operation = "chat"
    id_prefix = "resp_"

    def parse(self, body: dict[str, Any]) -> Conversation:
        """Parse a Responses request."""
        model = require(body, "model", str)
        previous = optional(body, "previous_response_id", str)
        history: list[Message] = []
        if previous is not None:
            saved = _saved(self).get(previous)
            if saved is None:
                raise RequestError(
                    f"Previous response with id '{previous}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            history = saved.history
        if "input" not in body or body["input"] is None:
            raise RequestError("input: field required", param="input")
        messages, system = parse_input(body["input"], history)
        if not any(m.role in ("user", "tool") for m in messages) and not system:
            raise RequestError("input: must contain at least one message", param="input")
        instructions = optional(body, "instructions", str)
        tools, tools_echo = parse_tools(body)
        choice, choice_echo = parse_choice(body.get("tool_choice"), tools)
        fmt, text_echo = parse_text(body)
        max_tokens = positive_int(body, "max_output_tokens")
        metadata = optional(body, "metadata", dict, {})
        for key, value in metadata.items():
            check_type(value, str, f"metadata.{key}")
        reasoning = optional(body, "reasoning", dict, {}) or {}
        effort = optional(reasoning, "effort", str, None, "reasoning.")
        summary = optional(reasoning, "summary", str, None, "reasoning.")
        summary = summary or optional(reasoning, "generate_summary", str, None, "reasoning.")
        return ResponsesConversation(
            provider="openai",
            endpoint=self.name,
            model=model,
            messages=messages,
            system="\n".join([instructions, *system] if instructions else system),
            tools=tools,
            tool_choice=choice,
            response_format=fmt,
            stream=bool(optional(body, "stream", bool, False)),
            max_tokens=max_tokens,
            max_tokens_param="max_output_tokens",
            thinking="off" if effort == "none" else "auto",
            reasoning_effort=effort,
            reasoning_summary=summary,
            instructions=instructions,
            tools_echo=tools_echo,
            tool_choice_echo=choice_echo,
            text_echo=text_echo,
            parallel_tool_calls=optional(body, "parallel_tool_calls", bool, True),
            previous_response_id=previous,
            store=optional(body, "store", bool, True),
            temperature=optional(body, "temperature", float, 1.0),
            top_p=optional(body, "top_p", float, 1.0),
            metadata=metadata,
            user=optional(body, "user", str),
        )

    def render(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> dict[str, Any]:
        """A complete `response` object."""
        conv = _as_responses(conversation)
        return response_object(conv, reply, ctx, output_items(conv, reply, ctx, done=True))

    def render_stream(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> Iterator[Frame]:
        """The Responses event sequence, each event with the next `sequence_number`."""
        conv = _as_responses(conversation)
        seq = itertools.count()

        def event(kind: str, payload: dict[str, Any], text: str = "", tokens: int = 0) -> Frame:
            data = orjson.dumps({"type": kind, "sequence_number": next(seq), **payload})
            return Frame(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n", text, tokens)

        snapshot = response_object(conv, reply, ctx, [], in_progress=True)
        yield event("response.created", {"response": snapshot})
        yield event("response.in_progress", {"response": snapshot})
        done_items = output_items(conv, reply, ctx, done=True)
        for index, item in enumerate(done_items):
            where = {"output_index": index, "item_id": item["id"]}
            if item["type"] == "reasoning":
                yield event("response.output_item.added", {"output_index": index, "item": {**item, "summary": []}})
                for at, part in enumerate(item["summary"]):
                    summary = {**where, "summary_index": at}
                    yield event("response.reasoning_summary_part.added", {**summary, "part": {**part, "text": ""}})
                    for piece, tokens in zip(ctx.thinking_pieces, ctx.thinking_piece_tokens, strict=True):
                        yield event("response.reasoning_summary_text.delta", {**summary, "delta": piece}, "", tokens)
                    yield event("response.reasoning_summary_text.done", {**summary, "text": part["text"]})
                    yield event("response.reasoning_summary_part.done", {**summary, "part": part})
                # Hidden thinking takes its time too, before the answer.
                hidden = 0 if item["summary"] else reply.usage.reasoning_tokens
                yield event("response.output_item.done", {"output_index": index, "item": item}, tokens=hidden)
                continue
            if item["type"] == "message":
                part = item["content"][0]
                yield event("response.output_item.added", {"output_index": index, "item": _started(item)})
                empty_part = {**part, "text": ""}
                yield event("response.content_part.added", {**where, "content_index": 0, "part": empty_part})
                for piece, tokens in zip(ctx.pieces, ctx.piece_tokens, strict=True):
                    delta = {**where, "content_index": 0, "delta": piece, "logprobs": []}
                    yield event("response.output_text.delta", delta, piece, tokens)
                text_done = {**where, "content_index": 0, "text": part["text"], "logprobs": []}
                yield event("response.output_text.done", text_done)
                yield event("response.content_part.done", {**where, "content_index": 0, "part": part})
            else:
                yield event("response.output_item.added", {"output_index": index, "item": _started(item)})
                for piece in split_fixed(item["arguments"], ARGUMENT_CHUNK):
                    delta = {**where, "delta": piece}
                    yield event("response.function_call_arguments.delta", delta, piece, count_tokens(piece))
                yield event("response.function_call_arguments.done", {**where, "arguments": item["arguments"]})
            yield event("response.output_item.done", {"output_index": index, "item": item})
        final = response_object(conv, reply, ctx, done_items)
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        yield event(kind, {"response": final})

    def remember(self, conversation: Conversation, reply: Reply, ctx: RenderContext, body: Any) -> None:
        """Keep the response for GET and `previous_response_id` (unless the request said `store: false`)."""
        conv = _as_responses(conversation)
        if not conv.store:
            return
        if body is None:
            body = self.render(conv, reply, ctx)
        calls = [
            ToolCall(name=c.name, arguments=c.arguments, id=tool_call_id(ctx, i, c))
            for i, c in enumerate(reply.tool_calls)
        ]
        self._keep(conv, body, reply.text, calls)

    def _keep(self, conv: ResponsesConversation, body: dict[str, Any], text: str, calls: list[ToolCall]) -> None:
        answer = Message(role="assistant", content=text, tool_calls=calls)
        _saved(self).put(SavedResponse(body=body, history=[*conv.messages, answer]))

    def reply_reader(self, conversation: Conversation) -> ReplyReader:
        """Reads an upstream's response (or its events) back into a Reply."""
        return ResponseReader(conversation.stream)

    def remember_upstream(self, conversation: Conversation, reader: ReplyReader) -> None:
        """Keep an upstream's response under its own id, with its calls' own ids, so that the next
        request of a `previous_response_id` chain parses here (and is recorded turn by turn)."""
        conv = _as_responses(conversation)
        body = reader.response if isinstance(reader, ResponseReader) else None
        if not conv.store or body is None or not isinstance(body.get("id"), str):
            return
        calls = [
            ToolCall(name=item["name"], arguments=parse_arguments(item.get("arguments") or ""), id=item["call_id"])
            for item in body.get("output") or []
            if item.get("type") == "function_call"
        ]
        self._keep(conv, body, reader.text, calls)


class ResponseReader(ReplyReader):
    """A `response` object (or its events, up to `response.completed`) read back into a Reply."""

    #: The whole `response` object, once read.
    response: dict[str, Any] | None = None

    def read_body(self, body: Any) -> None:
        """The output items: message text and function calls."""
        self.response = body
        self.text, self.calls = "", []
        for item in body.get("output") or []:
            if item.get("type") == "message":
                parts = item.get("content") or []
                self.text += "".join(p.get("text", "") for p in parts if p.get("type") == "output_text")
            elif item.get("type") == "function_call":
                self.calls.append([item["name"], item.get("arguments") or ""])
        self.finish_reason = "length" if body.get("status") == "incomplete" else "tool_calls" if self.calls else "stop"

    def read_event(self, event: str, data: Any) -> str:
        """Deltas carry the text as it comes; the final response carries the whole reply."""
        kind = data.get("type", event) if isinstance(data, dict) else event
        if kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
            return str(data.get("delta") or "")
        if kind in ("response.completed", "response.incomplete"):
            self.read_body(data["response"])
            self.done = True
        return ""


def _as_responses(conversation: Conversation) -> ResponsesConversation:
    if isinstance(conversation, ResponsesConversation):
        return conversation
    return ResponsesConversation(
        provider=conversation.provider, endpoint=conversation.endpoint, model=conversation.model
    )


def _started(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as `output_item.added` shows it: in progress, with nothing in it yet."""
    if item["type"] == "message":
        return {**item, "status": "in_progress", "content": []}
    return {**item, "status": "in_progress", "arguments": ""}


def output_items(conv: ResponsesConversation, reply: Reply, ctx: RenderContext, *, done: bool) -> list[dict[str, Any]]:
    """The output items of a reply: a reasoning item (when it thinks), a message (when there is
    text or no call), then one per call. The reasoning's text is shown only as a summary, when the
    request asked for one (`reasoning.summary`), as the real API does.

    Ids are derived from the response id, so the stream and the saved copy agree.
    """
    items: list[dict[str, Any]] = []
    if reply.thinking:
        shown = [{"type": "summary_text", "text": reply.thinking}] if conv.reasoning_summary else []
        items.append({"id": derived_id("rs_", ctx, "rs", nbytes=24), "type": "reasoning", "summary": shown})
    incomplete = reply.finish_reason == "length"
    if reply.text or not reply.tool_calls:
        part = {"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}
        items.append(
            {
                "id": derived_id("msg_", ctx, "msg", nbytes=24),
                "type": "message",
                "status": "incomplete" if incomplete else "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    for index, call in enumerate(reply.tool_calls):
        items.append(
            {
                "id": derived_id("fc_", ctx, "fc", index, nbytes=24),
                "type": "function_call",
                "status": "completed",
                "call_id": tool_call_id(ctx, index, call),
                "name": call.name,
                "arguments": orjson.dumps(call.arguments).decode(),
            }
        )
    return items


def response_object(
    conv: ResponsesConversation,
    reply: Reply,
    ctx: RenderContext,
    output: list[dict[str, Any]],
    *,
    in_progress: bool = False,
) -> dict[str, Any]:
    """A `response` object; `in_progress` gives the snapshot that starts a stream."""
    incomplete = reply.finish_reason == "length" and not in_progress
    status = "in_progress" if in_progress else "incomplete" if incomplete else "completed"
    usage = None
    if not in_progress:
        usage = {
            "input_tokens": reply.usage.input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": reply.usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": reply.usage.reasoning_tokens},
            "total_tokens": reply.usage.total_tokens,
        }
    return {
        "id": ctx.id,
        "object": "response",
        "created_at": ctx.created,
        "status": status,
        "background": False,
        "completed_at": None if in_progress else ctx.created,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": conv.instructions,
        "max_output_tokens": conv.max_tokens,
        "max_tool_calls": None,
        "model": conv.model,
        "output": output,
        "parallel_tool_calls": conv.parallel_tool_calls,
        "previous_response_id": conv.previous_response_id,
        "reasoning": {
            "effort": conv.reasoning_effort or ("medium" if conv.thinking == "on" else None),
            "summary": conv.reasoning_summary,
        },
        "service_tier": "default",
        "store": conv.store,
        "temperature": conv.temperature,
        "text": conv.text_echo,
        "tool_choice": conv.tool_choice_echo,
        "tools": conv.tools_echo,
        "top_logprobs": 0,
        "top_p": conv.top_p,
        "truncation": "disabled",
        "usage": usage,
        "user": conv.user,
        "metadata": conv.metadata,
    }


class ResponseById(Endpoint):
    """`GET /v1/responses/{id}`: a response this server made."""

    method = "GET"
    paths = ("/v1/responses/{id}", "/responses/{id}")
    name = "responses.retrieve"

    def parse_request(self, request: Request) -> Query:
        """The kept response the path names, or a 404."""
        response_id = request.path.rsplit("/", 1)[-1]
        saved = _saved(self).get(response_id)
        if saved is None:
            raise RequestError(f"Response with id '{response_id}' not found.", status=404, param="response_id")
        return Query(
            model=saved.body["model"], preview=preview(f"{self.method} {response_id}"), params={"saved": saved}
        )

    def render_query(self, query: Query, request: Request) -> Any:
        """The kept response."""
        return query.params["saved"].body


class DeleteResponse(ResponseById):
    """`DELETE /v1/responses/{id}`."""

    method = "DELETE"
    name = "responses.delete"

    def render_query(self, query: Query, request: Request) -> Any:
        """Forget the response."""
        response_id = query.params["saved"].body["id"]
        _saved(self).pop(response_id)
        return {"id": response_id, "object": "response", "deleted": True}


def responses_limit_error(breach: LimitBreach) -> RequestError:
    """The Responses API's wording: `context_length_exceeded` on `input`, or `max_output_tokens` too large."""
    if breach.kind == "output_limit":
        message = (
            f"Invalid '{breach.param}': integer above maximum value. "
            f"Expected a value <= {breach.limit}, but got {breach.requested} instead."
        )
        return RequestError(message, param=breach.param, code="integer_above_max_value")
    message = "Your input exceeds the context window of this model. Please adjust your input and try again."
    return RequestError(message, param="input", code="context_length_exceeded")


class OpenAIResponses(OpenAIBase, KeepsResponses):
    """OpenAI's Responses API."""

    name = "openai-responses"
    endpoint_classes = (CreateResponse, ResponseById, DeleteResponse)

    def __init__(self) -> None:
        self.saved = SavedResponses()
        super().__init__()

    def limit_error(self, breach: LimitBreach) -> RequestError:
        """The Responses API's wording (see `responses_limit_error`)."""
        return responses_limit_error(breach)


register_provider(OpenAIResponses)
