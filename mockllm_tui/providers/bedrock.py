"""AWS Bedrock runtime for boto3's `bedrock-runtime` client: Converse (`/model/{id}/converse` and
`/converse-stream`), CountTokens (`/model/{id}/count-tokens`), and InvokeModel (`/invoke` and
`/invoke-with-response-stream`) with Anthropic bodies (`anthropic_version: bedrock-2023-05-31`);
and, for the `bedrock` control-plane client, the registry's Bedrock models as foundation models
(`GET /foundation-models[/{id}]`).

Streams use the binary `application/vnd.amazon.eventstream` framing: each Frame is one whole message
(prelude, string headers, JSON payload, two CRC32s). Errors are Bedrock's exceptions: the code in the
`x-amzn-ErrorType` header (boto3 reads it from there), `{"message": ...}` as the body; after a stream
has started, an eventstream `exception` message.

Auth: boto3 signs requests (SigV4) with whatever credentials it has, and the mock never has the
secret to check a signature, so with `--api-key` set any `Authorization` header is accepted (a
SigV4 signature, or a Bedrock API key as `Bearer`) and a request without one gets Bedrock's 403
`MissingAuthenticationTokenException`.
"""

from __future__ import annotations

import base64
import binascii
import struct
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

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
from mockllm_tui.core.models import ModelInfo
from mockllm_tui.core.tokens import count_tokens
from mockllm_tui.engine.limits import LimitBreach
from mockllm_tui.providers import anthropic
from mockllm_tui.providers.base import (
    CLAIM_NONE,
    CLAIM_OWN,
    ChatEndpoint,
    Endpoint,
    Frame,
    Headers,
    Provider,
    Query,
    RenderContext,
    ReplyReader,
    Request,
    TokenCountEndpoint,
    bearer_token,
    new_id,
)
from mockllm_tui.providers.parsing import append_turn, check_type, optional, require, type_name
from mockllm_tui.providers.registry import register_provider

EVENTSTREAM_TYPE = b"application/vnd.amazon.eventstream"
MODEL_PREFIX = "/model/"
FOUNDATION_MODELS = "/foundation-models"
#: Registry models with this owner are Bedrock's (their aliases are cross-region inference profiles).
OWNER = "bedrock"
VENDORS = {"anthropic": "Anthropic", "amazon": "Amazon", "meta": "Meta", "mistral": "Mistral AI", "openai": "OpenAI"}
IMAGE_INPUT_VENDORS = frozenset({"anthropic", "amazon"})
#: The namespace real Bedrock appends to its `x-amzn-ErrorType` values (boto3 cuts it off at the `:`).
ERROR_NAMESPACE = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
STRING_HEADER = 7

#: A mock status -> (Bedrock's exception, the status Bedrock answers with it).
EXCEPTIONS: dict[int, tuple[str, int]] = {
    400: ("ValidationException", 400),
    401: ("MissingAuthenticationTokenException", 403),
    403: ("AccessDeniedException", 403),
    404: ("ResourceNotFoundException", 404),
    405: ("UnknownOperationException", 405),
    408: ("ModelTimeoutException", 408),
    413: ("ValidationException", 413),
    424: ("ModelErrorException", 424),
    429: ("ThrottlingException", 429),
    500: ("InternalServerException", 500),
    503: ("ServiceUnavailableException", 503),
    504: ("ModelTimeoutException", 408),
    529: ("ServiceUnavailableException", 503),
}
#: The exceptions each stream can carry (the members of its eventstream shape in botocore's model).
CONVERSE_STREAM_EXCEPTIONS = frozenset(
    {
        "internalServerException",
        "modelStreamErrorException",
        "validationException",
        "throttlingException",
        "serviceUnavailableException",
    }
)
INVOKE_STREAM_EXCEPTIONS = CONVERSE_STREAM_EXCEPTIONS | {"modelTimeoutException"}

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "stop_sequence": "stop_sequence",
    "content_filter": "content_filtered",
}
ROLES = ("user", "assistant")
#: Content blocks a mock has no use for: accepted, not read.
SKIPPED_BLOCKS = frozenset(
    {"image", "document", "video", "audio", "cachePoint", "reasoningContent", "citationsContent", "searchResult"}
)
#: Converse fields accepted and not read.
SKIPPED_FIELDS = {
    "additionalModelRequestFields": dict,
    "additionalModelResponseFieldPaths": list,
    "guardrailConfig": dict,
    "promptVariables": dict,
    "requestMetadata": dict,
    "performanceConfig": dict,
    "serviceTier": dict,
}


def exception_for(status: int, type: str | None = None) -> tuple[str, int]:
    """Bedrock's exception name and status for a mock status (a rule's `type` naming an
    exception, e.g. `ModelNotReadyException`, wins)."""
    name, wire = EXCEPTIONS.get(status, ("InternalServerException" if status >= 500 else "ValidationException", status))
    if type and type.endswith("Exception"):
        name = type
    return name, wire


# -- the eventstream framing --------------------------------------------------------------------


def _string_header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", STRING_HEADER, len(raw_value)) + raw_value


def eventstream_message(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One `application/vnd.amazon.eventstream` message: prelude (total and headers length, their
    CRC32), string headers, payload, and the CRC32 of all before it."""
    raw_headers = b"".join(_string_header(name, value) for name, value in headers)
    prelude = struct.pack(">II", 16 + len(raw_headers) + len(payload), len(raw_headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


#: The sizes of the eventstream header value types that have no length prefix (bool, byte, short,
#: int, long, timestamp, uuid); types 6 (bytes) and 7 (string) carry a two-byte length.
_FIXED_HEADER_SIZES = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
#: Prelude (total length, headers length, prelude CRC) plus the message CRC.
_MESSAGE_OVERHEAD = 16


def eventstream_length(data: bytes, at: int = 0) -> int | None:
    """The length of the eventstream message starting at `at` in `data` (None: fewer than 4 bytes yet)."""
    return int(struct.unpack_from(">I", data, at)[0]) if len(data) >= at + 4 else None


def read_eventstream_message(raw: bytes) -> tuple[dict[str, str], bytes]:
    """One whole eventstream message as its string headers and its payload; ValueError for a
    message whose lengths or CRC32s do not add up."""
    if len(raw) < _MESSAGE_OVERHEAD:
        raise ValueError("eventstream message shorter than its prelude")
    total, headers_length, prelude_crc = struct.unpack_from(">III", raw)
    if total != len(raw) or headers_length > total - _MESSAGE_OVERHEAD:
        raise ValueError("eventstream message lengths do not add up")
    if zlib.crc32(raw[:8]) != prelude_crc or zlib.crc32(raw[:-4]) != struct.unpack_from(">I", raw, total - 4)[0]:
        raise ValueError("eventstream message CRC mismatch")
    headers: dict[str, str] = {}
    at, end = 12, 12 + headers_length
    while at < end:
        size = raw[at]
        name = raw[at + 1 : at + 1 + size].decode()
        kind = raw[at + 1 + size]
        at += 2 + size
        if kind in (6, 7):
            (length,) = struct.unpack_from(">H", raw, at)
            if kind == 7:
                headers[name] = raw[at + 2 : at + 2 + length].decode()
            at += 2 + length
        elif kind in _FIXED_HEADER_SIZES:
            at += _FIXED_HEADER_SIZES[kind]
        else:
            raise ValueError(f"eventstream header {name!r} has an unknown type {kind}")
    return headers, raw[end : total - 4]


def event(event_type: str, body: dict[str, Any]) -> bytes:
    """An `event` message with a JSON payload."""
    headers = [(":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")]
    return eventstream_message(headers, orjson.dumps(body))


def exception_event(status: int, message: str, allowed: frozenset[str]) -> bytes:
    """An `exception` message for an error after the stream started (`modelStreamErrorException`
    when the stream's shape has no member for the status's own exception)."""
    name, _ = exception_for(status)
    member = name[0].lower() + name[1:]
    body: dict[str, Any] = {"message": message}
    if member not in allowed:
        member = "modelStreamErrorException"
    if member == "modelStreamErrorException":
        body |= {"originalStatusCode": status, "originalMessage": message}
    headers = [(":exception-type", member), (":content-type", "application/json"), (":message-type", "exception")]
    return eventstream_message(headers, orjson.dumps(body))


# -- Converse: parsing --------------------------------------------------------------------------


def union_member(value: Any, name: str, known: tuple[str, ...] | frozenset[str] = ()) -> tuple[str, Any]:
    """The one member set in a union object (`{"text": ...}`), or RequestError naming the field."""
    obj = check_type(value, dict, name)
    keys = [k for k, v in obj.items() if v is not None]
    if len(keys) != 1:
        raise RequestError(f"{name}: exactly one member must be set, got {len(keys)}", param=name)
    if known and keys[0] not in known:
        raise RequestError(f"{name}: unknown member {keys[0]!r}", param=name)
    return keys[0], obj[keys[0]]


def tool_result_text(block: dict[str, Any], where: str) -> str:
    """A toolResult's text and JSON contents as one text."""
    parts = []
    for i, item in enumerate(require(block, "content", list, where)):
        kind, value = union_member(item, f"{where}content.{i}")
        if kind == "text":
            parts.append(check_type(value, str, f"{where}content.{i}.text"))
        elif kind == "json":
            parts.append(orjson.dumps(value).decode())
    status = optional(block, "status", str, prefix=where)
    if status not in (None, "success", "error"):
        raise RequestError(f"{where}status: expected success or error, got {status!r}", param=where + "status")
    return "\n".join(parts)


CONTENT_BLOCKS = frozenset({"text", "toolUse", "toolResult", "guardContent", *SKIPPED_BLOCKS})


def parse_messages(value: list[Any]) -> list[Message]:
    """Converse messages; a user turn's toolResult blocks become role "tool" messages before its text."""
    messages: list[Message] = []
    tool_names: dict[str, str] = {}
    for i, raw in enumerate(value):
        name = f"messages.{i}"
        raw = check_type(raw, dict, name)
        role = require(raw, "role", str, f"{name}.")
        if role not in ROLES:
            raise RequestError(f"{name}.role: expected user or assistant, got {role!r}", param=f"{name}.role")
        if i == 0 and role != "user":
            raise RequestError(
                "A conversation must start with a user message. Try again with a conversation that starts with a "
                "user message.",
                param=f"{name}.role",
            )
        texts: list[str] = []
        calls: list[ToolCall] = []
        results: list[Message] = []
        for j, block in enumerate(require(raw, "content", list, f"{name}.")):
            where = f"{name}.content.{j}"
            kind, item = union_member(block, where, CONTENT_BLOCKS)
            if kind == "text":
                texts.append(check_type(item, str, f"{where}.text"))
            elif kind == "guardContent":
                texts.append(guard_text(item, f"{where}.guardContent"))
            elif kind == "toolUse":
                item = check_type(item, dict, f"{where}.toolUse")
                if role != "assistant":
                    raise RequestError(f"{where}: toolUse blocks belong in assistant messages", param=where)
                call = ToolCall(
                    name=require(item, "name", str, f"{where}.toolUse."),
                    arguments=require(item, "input", dict, f"{where}.toolUse."),
                    id=require(item, "toolUseId", str, f"{where}.toolUse."),
                )
                tool_names[call.id] = call.name
                calls.append(call)
            elif kind == "toolResult":
                item = check_type(item, dict, f"{where}.toolResult")
                if role != "user":
                    raise RequestError(f"{where}: toolResult blocks belong in user messages", param=where)
                call_id = require(item, "toolUseId", str, f"{where}.toolResult.")
                text = tool_result_text(item, f"{where}.toolResult.")
                results.append(Message(role="tool", content=text, tool_call_id=call_id, name=tool_names.get(call_id)))
        append_turn(messages, role, texts, calls, results)
    return messages


def guard_text(value: Any, name: str) -> str:
    """The text of a guardContent block (an image guard has none)."""
    kind, item = union_member(value, name, ("text", "image"))
    return str(require(check_type(item, dict, f"{name}.text"), "text", str, f"{name}.text.")) if kind == "text" else ""


def parse_system(value: list[Any]) -> str:
    """The system blocks' texts, joined."""
    texts = []
    for i, block in enumerate(value):
        kind, item = union_member(block, f"system.{i}", ("text", "guardContent", "cachePoint"))
        if kind == "text":
            texts.append(check_type(item, str, f"system.{i}.text"))
        elif kind == "guardContent":
            texts.append(guard_text(item, f"system.{i}.guardContent"))
    return "\n".join(texts)


def parse_tool_config(value: dict[str, Any]) -> tuple[list[ToolSpec], str]:
    """`toolConfig`: the toolSpec tools and the tool choice (auto, "required" for any, or a name)."""
    tools = []
    raw_tools = require(value, "tools", list, "toolConfig.")
    if not raw_tools:
        raise RequestError("toolConfig.tools: at least one tool is required", param="toolConfig.tools")
    for i, raw in enumerate(raw_tools):
        where = f"toolConfig.tools.{i}"
        kind, item = union_member(raw, where, ("toolSpec", "systemTool", "cachePoint"))
        if kind != "toolSpec":
            continue
        spec = check_type(item, dict, f"{where}.toolSpec")
        _, schema = union_member(
            require(spec, "inputSchema", dict, f"{where}.toolSpec."), f"{where}.inputSchema", ("json",)
        )
        tools.append(
            ToolSpec(
                name=require(spec, "name", str, f"{where}.toolSpec."),
                description=optional(spec, "description", str, "", f"{where}.toolSpec."),
                parameters=check_type(schema, dict, f"{where}.toolSpec.inputSchema.json"),
            )
        )
    choice = value.get("toolChoice")
    if choice is None:
        return tools, "auto"
    kind, item = union_member(choice, "toolConfig.toolChoice", ("auto", "any", "tool"))
    if kind == "any":
        return tools, "required"
    if kind == "tool":
        name = require(check_type(item, dict, "toolConfig.toolChoice.tool"), "name", str, "toolConfig.toolChoice.tool.")
        if not any(t.name == name for t in tools):
            raise RequestError(
                f"toolConfig.toolChoice.tool.name: no tool named {name!r}", param="toolConfig.toolChoice"
            )
        return tools, str(name)
    return tools, "auto"


def parse_output_config(value: dict[str, Any]) -> dict[str, Any] | None:
    """`outputConfig.textFormat` (a JSON schema as text) as Conversation.response_format."""
    fmt = optional(value, "textFormat", dict, prefix="outputConfig.")
    if fmt is None:
        return None
    kind = require(fmt, "type", str, "outputConfig.textFormat.")
    if kind != "json_schema":
        raise RequestError(f"outputConfig.textFormat.type: expected json_schema, got {kind!r}", param="outputConfig")
    _, structure = union_member(
        require(fmt, "structure", dict, "outputConfig.textFormat."), "structure", ("jsonSchema",)
    )
    text = require(
        check_type(structure, dict, "jsonSchema"), "schema", str, "outputConfig.textFormat.structure.jsonSchema."
    )
    try:
        schema = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise RequestError("outputConfig.textFormat.structure.jsonSchema.schema: not valid JSON") from None
    if not isinstance(schema, dict):
        raise RequestError(f"jsonSchema.schema: expected a JSON object, got {type_name(schema)}", param="outputConfig")
    return {"type": "json_schema", "schema": schema}


def parse_converse(body: dict[str, Any], model: str, endpoint: str, *, stream: bool) -> Conversation:
    """A Converse (or CountTokens `converse`) body as a Conversation."""
    raw_messages = require(body, "messages", list)
    if not raw_messages:
        raise RequestError("messages: at least one message is required", param="messages")
    config = optional(body, "inferenceConfig", dict, {})
    max_tokens = optional(config, "maxTokens", int, prefix="inferenceConfig.")
    if max_tokens is not None and max_tokens < 1:
        raise RequestError(f"inferenceConfig.maxTokens: must be at least 1, got {max_tokens}", param="maxTokens")
    for key in ("temperature", "topP"):
        optional(config, key, float, prefix="inferenceConfig.")
    stop = optional(config, "stopSequences", list, [], "inferenceConfig.")
    for i, item in enumerate(stop):
        check_type(item, str, f"inferenceConfig.stopSequences.{i}")
    for key, kind in SKIPPED_FIELDS.items():
        optional(body, key, kind)
    tool_config = optional(body, "toolConfig", dict)
    tools, choice = parse_tool_config(tool_config) if tool_config is not None else ([], "auto")
    output = optional(body, "outputConfig", dict)
    return Conversation(
        provider=BedrockProvider.name,
        endpoint=endpoint,
        model=model,
        messages=parse_messages(raw_messages),
        system=parse_system(optional(body, "system", list, [])),
        tools=tools,
        tool_choice=choice,
        response_format=parse_output_config(output) if output is not None else None,
        stream=stream,
        max_tokens=max_tokens,
        stop=list(stop),
    )


# -- Converse: rendering ------------------------------------------------------------------------


def stop_reason(reply: Reply) -> str:
    """Bedrock's stopReason for a reply."""
    return STOP_REASONS.get(reply.finish_reason, "end_turn")


def usage_object(reply: Reply) -> dict[str, int]:
    """A `TokenUsage` object."""
    usage = reply.usage
    return {"inputTokens": usage.input_tokens, "outputTokens": usage.output_tokens, "totalTokens": usage.total_tokens}


def latency_ms(ctx: RenderContext) -> int:
    """Milliseconds since the request arrived."""
    return max(1, round((time.perf_counter() - ctx.t0) * 1000.0)) if ctx.t0 else 1


def tool_uses(reply: Reply) -> list[dict[str, Any]]:
    """The reply's tool calls as `toolUse` contents, each with a `tooluse_` id."""
    return [
        {"toolUseId": call.id or new_id("tooluse_", 11), "name": call.name, "input": call.arguments}
        for call in reply.tool_calls
    ]


# -- Converse: reading an upstream's answer back ----------------------------------------------------

#: Bedrock's stopReason -> the neutral finish reason.
NEUTRAL_STOP: dict[str, FinishReason] = {
    "end_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "stop_sequence": "stop_sequence",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}


class EventStreamReader(ReplyReader):
    """A reader whose streams come in eventstream framing: the stream is cut into its binary
    messages, each event's JSON payload given to `read_event(event_type, payload)`; an `exception`
    message fails the reading (the answer is passed on, not recorded). A whole body is JSON as usual."""

    def __init__(self, stream: bool) -> None:
        super().__init__(stream)
        #: The bytes `pieces` has seen of a message that is not whole yet.
        self._unfinished = b""

    def feed(self, data: bytes) -> str:
        """Take the next bytes; return the reply text their whole messages carry."""
        if not self.stream:
            return super().feed(data)
        self._buffer += data
        out: list[str] = []
        while (size := eventstream_length(self._buffer)) is not None and len(self._buffer) >= size:
            raw, self._buffer = self._buffer[:size], self._buffer[size:]
            headers, payload = read_eventstream_message(raw)
            if headers.get(":message-type") != "event":
                raise ValueError(f"the stream ended with {headers.get(':exception-type', 'an error')}")
            out.append(self.read_event(headers.get(":event-type", ""), orjson.loads(payload or b"{}")))
        return "".join(out)

    def pieces(self, data: bytes) -> list[bytes]:
        """`data` cut after the end of each message in it."""
        if not self.stream:
            return [data]
        seen = self._unfinished + data
        at, ends = 0, []
        while (size := eventstream_length(seen, at)) is not None and size >= _MESSAGE_OVERHEAD:
            if at + size > len(seen):
                break
            at += size
            ends.append(at - len(self._unfinished))
        self._unfinished = seen[at:]
        return [data[a:b] for a, b in zip([0, *ends], [*ends, len(data)], strict=True) if b > a]


class ConverseReader(EventStreamReader):
    """A `ConverseResponse` (or its stream's events, up to `messageStop`) read back into a Reply."""

    def read_body(self, body: Any) -> None:
        """The output message's text and toolUse blocks."""
        for block in body["output"]["message"]["content"]:
            if "text" in block:
                self.text += block["text"]
            elif "toolUse" in block:
                use = block["toolUse"]
                self.calls.append([use["name"], orjson.dumps(use.get("input") or {}).decode()])
        self.finish_reason = NEUTRAL_STOP.get(body.get("stopReason") or "", "stop")

    def read_event(self, event: str, data: Any) -> str:
        """Tool-use starts, text and input deltas; `messageStop` completes the reply."""
        if event == "contentBlockStart":
            use = data["start"].get("toolUse")
            if use is not None:
                self.calls.append([use["name"], ""])
        elif event == "contentBlockDelta":
            delta = data["delta"]
            if "text" in delta:
                self.text += delta["text"]
                return str(delta["text"])
            if "toolUse" in delta and self.calls:
                self.calls[-1][1] += delta["toolUse"]["input"]
                return str(delta["toolUse"]["input"])
        elif event == "messageStop":
            self.finish_reason = NEUTRAL_STOP.get(data.get("stopReason") or "", "stop")
            self.done = True
        return ""


class InvokeReader(EventStreamReader, anthropic.MessageReader):
    """InvokeModel's Anthropic `message` (or the Anthropic events inside its stream's `chunk`s)."""

    def read_event(self, event: str, data: Any) -> str:
        """A `chunk`'s base64 bytes hold one Anthropic event."""
        if event != "chunk":
            return ""
        return anthropic.MessageReader.read_event(self, "", orjson.loads(base64.b64decode(data["bytes"])))


def model_from_path(endpoint: Endpoint, request: Request) -> str:
    """The model id the path names (percent-decoded, as the journal shows it)."""
    return endpoint.path_params(request.path)["id"]


class Converse(ChatEndpoint):
    """`POST /model/{modelId}/converse`."""

    paths = (MODEL_PREFIX + "{id:path}/converse",)
    name = "converse"
    streams = False
    exceptions = CONVERSE_STREAM_EXCEPTIONS

    def parse_conversation(self, request: Request) -> Conversation:
        """The body as a Converse request for the model in the path."""
        return parse_converse(request.json(), model_from_path(self, request), self.name, stream=self.streams)

    def render(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> dict[str, Any]:
        """A `ConverseResponse`."""
        content: list[dict[str, Any]] = [{"text": reply.text}] if anthropic.has_text_block(reply) else []
        content += [{"toolUse": block} for block in tool_uses(reply)]
        return {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason(reply),
            "usage": usage_object(reply),
            "metrics": {"latencyMs": latency_ms(ctx)},
        }

    def render_stream(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> Iterator[Frame]:
        """messageStart; text deltas (no contentBlockStart for text); per tool use a start, input
        deltas and a stop; messageStop; metadata."""
        yield Frame(event("messageStart", {"role": "assistant"}))
        index = 0
        if anthropic.has_text_block(reply):
            for piece, tokens in zip(ctx.pieces or [""], ctx.piece_tokens or [0], strict=True):
                yield Frame(
                    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}), piece, tokens
                )
            yield Frame(event("contentBlockStop", {"contentBlockIndex": 0}))
            index += 1
        for block in tool_uses(reply):
            name = block["name"]
            start = {"toolUse": {"toolUseId": block["toolUseId"], "name": name}}
            yield Frame(
                event("contentBlockStart", {"contentBlockIndex": index, "start": start}),
                f"[tool {name}]",
                count_tokens(name),
            )
            for fragment, tokens in anthropic.json_fragments(block["input"]):
                delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": fragment}}}
                yield Frame(event("contentBlockDelta", delta), fragment, tokens)
            yield Frame(event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        yield Frame(event("messageStop", {"stopReason": stop_reason(reply)}))
        yield Frame(event("metadata", {"usage": usage_object(reply), "metrics": {"latencyMs": latency_ms(ctx)}}))

    def stream_error(self, status: int, message: str, ctx: RenderContext) -> bytes:
        """An eventstream `exception` message."""
        return exception_event(status, message, self.exceptions)

    def reply_reader(self, conversation: Conversation) -> ReplyReader:
        """Reads an upstream's Converse answer (or its eventstream) back into a Reply."""
        return ConverseReader(conversation.stream)


class ConverseStream(Converse):
    """`POST /model/{modelId}/converse-stream`."""

    paths = (MODEL_PREFIX + "{id:path}/converse-stream",)
    name = "converse-stream"
    streams = True


class CountTokens(TokenCountEndpoint):
    """`POST /model/{modelId}/count-tokens`: `{"input": {"converse": {...}} | {"invokeModel": {"body"}}}`."""

    paths = (MODEL_PREFIX + "{id:path}/count-tokens",)
    name = "count-tokens"

    def parse_conversation(self, request: Request) -> Conversation:
        """The input, as Converse or InvokeModel would read it."""
        model = model_from_path(self, request)
        kind, item = union_member(require(request.json(), "input", dict), "input", ("converse", "invokeModel"))
        body = check_type(item, dict, f"input.{kind}")
        if kind == "converse":
            return parse_converse(body, model, self.name, stream=False)
        return parse_invoke(decode_blob(require(body, "body", str, "input.invokeModel.")), model, self.name)

    def render_count(self, tokens: int) -> dict[str, Any]:
        """`{"inputTokens": n}`."""
        return {"inputTokens": tokens}


def decode_blob(value: str) -> dict[str, Any]:
    """A base64 blob holding a JSON object (InvokeModel's body inside CountTokens)."""
    try:
        data = orjson.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        raise RequestError("input.invokeModel.body: expected base64 of a JSON object", param="body") from None
    if not isinstance(data, dict):
        raise RequestError("input.invokeModel.body: expected a JSON object", param="body")
    return data


# -- InvokeModel with Anthropic bodies ----------------------------------------------------------


#: The keys Bedrock's schema for an Anthropic body permits (no `model`, `stream` or `metadata`).
INVOKE_KEYS = frozenset(
    {
        "anthropic_version",
        "anthropic_beta",
        "max_tokens",
        "messages",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "tools",
        "tool_choice",
        "thinking",
    }
)


def parse_invoke(body: dict[str, Any], model: str, endpoint: str) -> Conversation:
    """An Anthropic Messages body for Bedrock (`anthropic_version`, and only the keys it permits)."""
    version = optional(body, "anthropic_version", str)
    if version is None:
        raise RequestError(
            "anthropic_version: field required (this mock serves InvokeModel with Anthropic bodies; "
            "use Converse for other models)",
            param="anthropic_version",
        )
    for key in body:
        if key not in INVOKE_KEYS:
            raise RequestError(
                f"Malformed input request: #: extraneous key [{key}] is not permitted, "
                "please reformat your input and try again.",
                param=key,
            )
    conversation = anthropic.parse_request({**body, "model": model}, endpoint, need_max_tokens=True)
    conversation.provider = BedrockProvider.name
    return conversation


class InvokeModel(ChatEndpoint):
    """`POST /model/{modelId}/invoke`: an Anthropic Messages body; Anthropic's `message` as the body."""

    paths = (MODEL_PREFIX + "{id:path}/invoke",)
    name = "invoke"
    id_prefix = "msg_bdrk_"
    streams = False

    def __init__(self, provider: Provider) -> None:
        super().__init__(provider)
        self.messages = anthropic.Messages(provider)

    def parse_conversation(self, request: Request) -> Conversation:
        """The body (JSON whatever the content type says: boto3 may send none) for the model in the path."""
        ctype = request.headers.get("content-type", "json")
        if "json" not in ctype.lower():
            raise RequestError(f"contentType {ctype!r} is not supported: send application/json")
        conversation = parse_invoke(request.json(), model_from_path(self, request), self.name)
        conversation.stream = self.streams
        return conversation

    def render(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> dict[str, Any]:
        """Anthropic's `message` object."""
        return self.messages.render(conversation, reply, ctx)

    def render_stream(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> Iterator[Frame]:
        """Anthropic's events (no pings), each as a `chunk` whose `bytes` are the event's JSON; the
        last carries Bedrock's `amazon-bedrock-invocationMetrics`."""
        for item, text, tokens in self.messages.stream_events(conversation, reply, ctx):
            if item["type"] == "ping":
                continue
            if item["type"] == "message_stop":
                elapsed = latency_ms(ctx)
                item = item | {
                    "amazon-bedrock-invocationMetrics": {
                        "inputTokenCount": reply.usage.input_tokens,
                        "outputTokenCount": reply.usage.output_tokens,
                        "invocationLatency": elapsed,
                        "firstByteLatency": elapsed,
                    }
                }
            payload = base64.b64encode(orjson.dumps(item)).decode()
            yield Frame(event("chunk", {"bytes": payload}), text, tokens)

    def stream_error(self, status: int, message: str, ctx: RenderContext) -> bytes:
        """An eventstream `exception` message."""
        return exception_event(status, message, INVOKE_STREAM_EXCEPTIONS)

    def reply_reader(self, conversation: Conversation) -> ReplyReader:
        """Reads an upstream's Anthropic message (or its eventstream) back into a Reply."""
        return InvokeReader(conversation.stream)


class InvokeModelStream(InvokeModel):
    """`POST /model/{modelId}/invoke-with-response-stream`."""

    paths = (MODEL_PREFIX + "{id:path}/invoke-with-response-stream",)
    name = "invoke-with-response-stream"
    streams = True
    #: A stream names the content type of its chunks.
    answer_headers = [(b"x-amzn-bedrock-content-type", b"application/json")]


# -- the control plane's foundation models --------------------------------------------------------


def foundation_model(model: ModelInfo) -> dict[str, Any]:
    """A `FoundationModelSummary` (and `FoundationModelDetails`) for a registry model."""
    vendor = model.id.split(".", 1)[0]
    return {
        "modelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{model.id}",
        "modelId": model.id,
        "modelName": model.id.split(".", 1)[-1].rsplit("-v", 1)[0],
        "providerName": VENDORS.get(vendor, vendor.title()),
        "inputModalities": ["TEXT", "IMAGE"] if vendor in IMAGE_INPUT_VENDORS else ["TEXT"],
        "outputModalities": ["TEXT"],
        "responseStreamingSupported": True,
        "customizationsSupported": [],
        "inferenceTypesSupported": ["ON_DEMAND"],
        "modelLifecycle": {"status": "ACTIVE"},
    }


def bedrock_models(request: Request) -> list[ModelInfo]:
    """The registry's Bedrock models."""
    return [m for m in request.models.models() if m.owned_by == OWNER]


class ListFoundationModels(Endpoint):
    """`GET /foundation-models` (`byProvider` filters by the vendor, as the id's prefix names it)."""

    method = "GET"
    paths = (FOUNDATION_MODELS,)
    name = "foundation-models.list"
    summary = "list foundation models"

    def parse_request(self, request: Request) -> Query:
        """The vendor to filter by (`byProvider`)."""
        params = dict(part.partition("=")[::2] for part in request.query.split("&") if part)
        return Query(preview=self.summary, params={"vendor": params.get("byProvider", "").lower()})

    def render_query(self, query: Query, request: Request) -> dict[str, Any]:
        """`{"modelSummaries": [...]}`."""
        vendor = query.params["vendor"]
        models = [m for m in bedrock_models(request) if not vendor or m.id.split(".", 1)[0] == vendor]
        return {"modelSummaries": [foundation_model(m) for m in models]}


class GetFoundationModel(Endpoint):
    """`GET /foundation-models/{id}`."""

    method = "GET"
    paths = (FOUNDATION_MODELS + "/{id}",)
    name = "foundation-models.get"

    def parse_request(self, request: Request) -> Query:
        """The model the path names."""
        name = self.path_params(request.path)["id"]
        return Query(model=name, preview=f"get {name}")

    def render_query(self, query: Query, request: Request) -> dict[str, Any]:
        """`{"modelDetails": {...}}`, or Bedrock's 400 for an id it does not know."""
        model = next((m for m in bedrock_models(request) if m.id == query.model), None)
        if model is None:
            raise RequestError("The provided model identifier is invalid.", param="modelIdentifier")
        return {"modelDetails": foundation_model(model)}


class BedrockProvider(Provider):
    """The AWS Bedrock runtime API."""

    name = "bedrock"
    endpoint_classes = (
        Converse,
        ConverseStream,
        CountTokens,
        InvokeModel,
        InvokeModelStream,
        ListFoundationModels,
        GetFoundationModel,
    )
    credential_headers = frozenset({"authorization", "x-amz-security-token"})
    stream_content_type = EVENTSTREAM_TYPE

    def limit_error(self, breach: LimitBreach) -> RequestError:
        """A ValidationException with the model's own words (Anthropic's for Claude models)."""
        if breach.model.startswith("anthropic."):
            return RequestError(anthropic.limit_message(breach))
        if breach.kind == "output_limit":
            return RequestError(f"The maximum tokens you requested exceeds the model limit of {breach.limit}.")
        return RequestError("Input is too long for requested model.")

    def claims(self, path: str, headers: Mapping[str, str]) -> int:
        """Everything under `/model/` and `/foundation-models`."""
        return CLAIM_OWN if path.startswith((MODEL_PREFIX, FOUNDATION_MODELS)) else CLAIM_NONE

    def request_id(self) -> str:
        """A UUID, as `x-amzn-RequestId` carries."""
        return str(uuid.uuid4())

    def response_headers(self, request_id: str) -> Headers:
        """`x-amzn-RequestId`."""
        return [(b"x-amzn-requestid", request_id.encode())]

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
        """`{"message": ...}` (the exception's name travels in `x-amzn-ErrorType`)."""
        return orjson.dumps({"message": message})

    def error_status(self, status: int) -> int:
        """Bedrock's status: 401 is a 403, a 529 a 503, a 504 a 408 (ModelTimeoutException)."""
        return exception_for(status)[1]

    def error_headers(self, status: int, *, type: str | None = None, code: str | None = None) -> Headers:
        """`x-amzn-ErrorType: <Exception>:<namespace>`, where boto3 reads the error code."""
        return [(b"x-amzn-errortype", (exception_for(status, type)[0] + ERROR_NAMESPACE).encode())]

    def stream_error(self, status: int, message: str) -> bytes:
        """An eventstream `exception` message (one every Bedrock stream can carry)."""
        return exception_event(status, message, CONVERSE_STREAM_EXCEPTIONS)

    def presented_keys(self, headers: Mapping[str, str]) -> list[str]:
        """A Bedrock API key (`Authorization: Bearer`); SigV4 signatures are taken as they are."""
        token = bearer_token(headers)
        return [token] if token else []

    def accepts_unchecked(self, headers: Mapping[str, str]) -> bool:
        """Any `Authorization` header stands for the key: the mock cannot check a signature."""
        return bool(headers.get("authorization", "").strip())

    def auth_refusal(self, missing: bool) -> str:
        """AWS's wording."""
        return "Missing Authentication Token" if missing else "The security token included in the request is invalid."

    def retry_headers(self, status: int, wait_ms: float) -> Headers:
        """None: boto3 decides its retries by the error code and status alone."""
        return []


register_provider(BedrockProvider)
