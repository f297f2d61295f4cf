"""Anthropic Messages against the real server, with the real anthropic SDK and strict SDK types."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import jsonschema
import orjson
import pytest
from anthropic.types import ErrorResponse, Message, MessageTokensCount, RawMessageStreamEvent
from pydantic import TypeAdapter

from mockllm_tui.core.conversation import Conversation, Reply, ToolCall
from mockllm_tui.core.models import ModelRegistry
from tests.conftest import Live

MODEL = "claude-haiku-4-5"
EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
# Made once: every httpx client otherwise loads the CA bundle again (~50 ms), though we only speak plain HTTP.
TLS = ssl.create_default_context()
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "where": {
            "type": "object",
            "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
            "required": ["lat", "lon"],
        },
    },
    "required": ["city", "unit", "days", "where"],
}
TOOLS = [
    {"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER_SCHEMA},
    {
        "name": "get_time",
        "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
]
USER = [{"role": "user", "content": "What is the weather in Paris?"}]


@dataclass
class Recorder:
    """A reply source that remembers the conversations it was asked about."""

    reply: Reply = field(default_factory=lambda: Reply(text="Hello from the recorder."))
    seen: list[Conversation] = field(default_factory=list)

    def choose(self, conversation: Conversation) -> Reply:
        """The fixed reply (a fresh copy, since the pipeline reshapes it)."""
        self.seen.append(conversation)
        return Reply(text=self.reply.text, tool_calls=list(self.reply.tool_calls), rule="recorder")


def body(**extra: Any) -> dict[str, Any]:
    """A minimal valid Messages request."""
    return {"model": MODEL, "max_tokens": 256, "messages": USER, **extra}


def client(live: Live, api_key: str = "sk-ant-test", **kw: Any) -> anthropic.AsyncAnthropic:
    """The async SDK pointed at the server."""
    http = anthropic.DefaultAsyncHttpxClient(verify=TLS)
    return anthropic.AsyncAnthropic(base_url=live.anthropic_url, api_key=api_key, max_retries=0, http_client=http, **kw)


async def post(live: Live, path: str, payload: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """A raw POST (bytes are sent as they are, anything else as JSON)."""
    content = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    hdrs = {"content-type": "application/json", "x-api-key": "k", "anthropic-version": "2023-06-01", **(headers or {})}
    async with httpx.AsyncClient(base_url=live.root, verify=TLS) as http:
        return await http.post(path, content=content, headers=hdrs)


def sse_events(raw: str) -> list[tuple[str, str]]:
    """(event, data) pairs of an Anthropic SSE stream; every event must have both lines."""
    assert raw.endswith("\n\n")
    out = []
    for block in raw.strip("\n").split("\n\n"):
        lines = block.split("\n")
        assert len(lines) == 2, block
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        out.append((lines[0][len("event: ") :], lines[1][len("data: ") :]))
    return out


async def stream_raw(
    live: Live, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """Send a streamed request and return its SSE events."""
    response = await post(live, "/v1/messages", {**payload, "stream": True}, headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    return sse_events(response.text)


def check_stream(events: list[tuple[str, str]]) -> list[Any]:
    """Validate every event strictly and check the order and nesting. Returns the parsed events."""
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[1] == "ping" and names[-1] == "message_stop"
    assert names[-2] == "message_delta" and "[DONE]" not in "".join(d for _, d in events)
    parsed = []
    for name, data in events:
        if name == "ping":
            assert orjson.loads(data) == {"type": "ping"}
            continue
        event = EVENTS.validate_json(data, strict=True)
        assert event.type == name
        parsed.append(event)
    open_index: int | None = None
    next_index = 0
    for event in parsed[1:-2]:
        if event.type == "content_block_start":
            assert open_index is None and event.index == next_index
            open_index = event.index
        elif event.type == "content_block_delta":
            assert event.index == open_index
        else:
            assert event.type == "content_block_stop" and event.index == open_index
            open_index, next_index = None, next_index + 1
    assert open_index is None
    start = parsed[0].message
    assert start.id.startswith("msg_") and start.content == [] and start.stop_reason is None
    assert start.model == MODEL
    assert next(e for e in parsed if e.type == "message_delta").delta.stop_reason is not None
    assert sum(1 for e in parsed if e.type == "message_delta") == 1
    return parsed


def streamed_text(parsed: list[Any]) -> str:
    """The text deltas joined."""
    return "".join(e.delta.text for e in parsed if e.type == "content_block_delta" and e.delta.type == "text_delta")


async def test_json_reply_is_strictly_a_message(live: Live) -> None:
    response = await post(live, "/v1/messages", body())
    assert response.status_code == 200
    message = Message.model_validate_json(response.content, strict=True)
    assert message.id.startswith("msg_") and message.model == MODEL
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert response.headers["request-id"].startswith("req_")


async def test_prefixless_path_and_sdk_create(live: Live) -> None:
    response = await post(live, "/messages", body())
    assert response.status_code == 200
    Message.model_validate_json(response.content, strict=True)
    message = await client(live).messages.create(model=MODEL, max_tokens=64, messages=USER)  # type: ignore[arg-type]
    assert message.content[0].type == "text"
    assert message.content[0].text == Message.model_validate_json(response.content).content[0].text  # type: ignore[union-attr]


async def test_stream_events_order_ids_and_usage(live: Live) -> None:
    whole = Message.model_validate_json((await post(live, "/v1/messages", body())).content, strict=True)
    parsed = check_stream(await stream_raw(live, body()))
    ids = {e.message.id for e in parsed if e.type == "message_start"}
    assert len(ids) == 1
    delta = parsed[-2]
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == whole.usage.output_tokens
    assert parsed[0].message.usage.input_tokens == whole.usage.input_tokens
    assert parsed[0].message.usage.output_tokens <= delta.usage.output_tokens
    assert streamed_text(parsed) == whole.content[0].text  # type: ignore[union-attr]
    starts = [e for e in parsed if e.type == "content_block_start"]
    assert [s.content_block.type for s in starts] == ["text"]


async def test_sdk_stream_helper(live: Live) -> None:
    async with client(live).messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream:  # type: ignore[arg-type]
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text and final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.id.startswith("msg_")
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize(
    ("choice", "tool"),
    [({"type": "any"}, "get_weather"), ({"type": "tool", "name": "get_time"}, "get_time")],
)
async def test_forced_tool_use_is_schema_valid(live: Live, choice: dict[str, Any], tool: str) -> None:
    schemas = {t["name"]: t["input_schema"] for t in TOOLS}
    response = await post(live, "/v1/messages", body(tools=TOOLS, tool_choice=choice))
    message = Message.model_validate_json(response.content, strict=True)
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use" and block.name == tool and block.id.startswith("toolu_")
    jsonschema.validate(block.input, schemas[tool])

    parsed = check_stream(await stream_raw(live, body(tools=TOOLS, tool_choice=choice)))
    [start] = [e for e in parsed if e.type == "content_block_start"]
    assert start.content_block.type == "tool_use" and start.content_block.name == tool
    assert start.content_block.id.startswith("toolu_") and start.content_block.input == {}
    fragments = [e.delta.partial_json for e in parsed if e.type == "content_block_delta"]
    assert len(fragments) > 1
    assert all(e.delta.type == "input_json_delta" for e in parsed if e.type == "content_block_delta")
    assert orjson.loads("".join(fragments)) == block.input
    assert parsed[-2].delta.stop_reason == "tool_use"
    assert parsed[-2].usage.output_tokens == message.usage.output_tokens


async def test_sdk_stream_accumulates_tool_input(live: Live) -> None:
    async with client(live).messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=USER,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:
        final = await stream.get_final_message()
    [block] = final.content
    assert block.type == "tool_use"
    jsonschema.validate(block.input, WEATHER_SCHEMA)


async def test_tool_choice_none_and_auto_give_text(live: Live) -> None:
    for choice in ({"type": "none"}, {"type": "auto"}):
        response = await post(live, "/v1/messages", body(tools=TOOLS, tool_choice=choice))
        message = Message.model_validate_json(response.content, strict=True)
        assert message.stop_reason == "end_turn"
        assert [b.type for b in message.content] == ["text"]


async def test_text_and_tool_use_blocks_stream_in_order(live: Live) -> None:
    live.store.set_rules(
        Recorder(Reply(text="Let me look.", tool_calls=[ToolCall("get_time", {"tz": "UTC"}, "toolu_fixed")]))
    )
    message = Message.model_validate_json((await post(live, "/v1/messages", body(tools=TOOLS))).content, strict=True)
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[1].id == "toolu_fixed"  # type: ignore[union-attr]
    parsed = check_stream(await stream_raw(live, body(tools=TOOLS)))
    starts = [e for e in parsed if e.type == "content_block_start"]
    assert [(s.index, s.content_block.type) for s in starts] == [(0, "text"), (1, "tool_use")]
    assert streamed_text(parsed) == "Let me look."
    assert parsed[-2].usage.output_tokens == message.usage.output_tokens


async def test_tool_result_becomes_a_tool_message(live: Live) -> None:
    recorder = Recorder()
    live.store.set_rules(recorder)
    messages = [
        *USER,
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_abc", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_abc", "content": [{"type": "text", "text": "21C"}]},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
            ],
        },
    ]
    response = await post(live, "/v1/messages", body(messages=messages, tools=TOOLS))
    Message.model_validate_json(response.content, strict=True)
    [conversation] = recorder.seen
    assert [m.role for m in conversation.messages] == ["user", "assistant", "tool"]
    assistant, tool = conversation.messages[1], conversation.messages[2]
    assert assistant.content == "Checking." and assistant.tool_calls[0].id == "toolu_abc"
    assert (tool.name, tool.tool_call_id, tool.content) == ("get_weather", "toolu_abc", "21C")
    assert conversation.last_tool_result() is tool


async def test_stop_sequences(live: Live) -> None:
    live.store.set_rules(Recorder(Reply(text="alpha beta STOP gamma")))
    payload = body(stop_sequences=["NEVER", "STOP"])
    message = Message.model_validate_json((await post(live, "/v1/messages", payload)).content, strict=True)
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "STOP"
    assert message.content[0].text == "alpha beta "  # type: ignore[union-attr]
    parsed = check_stream(await stream_raw(live, payload))
    assert (parsed[-2].delta.stop_reason, parsed[-2].delta.stop_sequence) == ("stop_sequence", "STOP")
    assert streamed_text(parsed) == "alpha beta "


async def test_max_tokens_truncates(live: Live) -> None:
    live.store.set_rules(Recorder(Reply(text="one two six ten red big map cup")))
    message = Message.model_validate_json((await post(live, "/v1/messages", body(max_tokens=3))).content, strict=True)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3
    assert message.content[0].text == "one two six"  # type: ignore[union-attr]
    parsed = check_stream(await stream_raw(live, body(max_tokens=3)))
    assert parsed[-2].delta.stop_reason == "max_tokens" and parsed[-2].usage.output_tokens == 3


async def test_system_as_string_or_blocks(live: Live) -> None:
    recorder = Recorder()
    live.store.set_rules(recorder)
    plain = "You are terse."
    counts = []
    for system in (None, plain, [{"type": "text", "text": plain}]):
        payload = body() if system is None else body(system=system)
        counts.append(
            Message.model_validate_json((await post(live, "/v1/messages", payload)).content).usage.input_tokens
        )
    assert counts[0] < counts[1] == counts[2]
    assert [c.system for c in recorder.seen] == ["", plain, plain]


async def test_count_tokens_matches_messages_usage(live: Live) -> None:
    payload = body(system=[{"type": "text", "text": "Be brief."}], tools=TOOLS)
    message = Message.model_validate_json((await post(live, "/v1/messages", payload)).content, strict=True)
    counted = await post(live, "/v1/messages/count_tokens", payload)
    assert counted.status_code == 200
    assert (
        MessageTokensCount.model_validate_json(counted.content, strict=True).input_tokens == message.usage.input_tokens
    )
    without_max = {k: v for k, v in payload.items() if k != "max_tokens"}
    via_sdk = await client(live).messages.count_tokens(**without_max)
    assert via_sdk.input_tokens == message.usage.input_tokens


BAD_INPUT: list[tuple[Any, str]] = [
    (b'{"model": "x", "messages": [', "not valid JSON"),
    ({"model": MODEL, "messages": USER}, "max_tokens: field required"),
    ({"max_tokens": 5, "messages": USER}, "model: field required"),
    ({**body(), "max_tokens": "10"}, "max_tokens: expected an integer"),
    ({**body(), "max_tokens": 0}, "max_tokens: must be at least 1"),
    ({**body(), "messages": "hi"}, "messages: expected an array"),
    ({**body(), "messages": []}, "messages: at least one message"),
    ({**body(), "messages": [{"role": "system", "content": "x"}]}, "messages.0.role: unknown role 'system'"),
    ({**body(), "messages": [{"role": "user"}]}, "messages.0.content: field required"),
    (
        {**body(), "messages": [{"role": "user", "content": [{"text": "x"}]}]},
        "messages.0.content.0.type: field required",
    ),
    ({**body(), "stream": "yes"}, "stream: expected a boolean"),
    ({**body(), "stop_sequences": [1]}, "stop_sequences.0: expected a string"),
    ({**body(), "tools": [{"name": "t"}]}, "tools.0.input_schema: field required"),
    ({**body(), "tool_choice": {"type": "any"}}, "tool_choice: may only be specified while providing tools"),
    ({**body(tools=TOOLS), "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name: no tool named 'nope'"),
    (
        {**body(tools=TOOLS), "tool_choice": {"type": "maybe"}},
        "tool_choice.type: expected one of auto, any, tool, none",
    ),
    ({**body(), "system": 5}, "system: expected a string or an array"),
]


async def test_bad_input_gets_anthropic_400(live: Live) -> None:
    for payload, field_name in BAD_INPUT:
        response = await post(live, "/v1/messages", payload)
        assert response.status_code == 400, (payload, response.text)
        error = ErrorResponse.model_validate_json(response.content, strict=True)
        assert error.type == "error" and error.error.type == "invalid_request_error"
        assert field_name in error.error.message, (field_name, error.error.message)
        assert error.request_id == response.headers["request-id"] and error.request_id.startswith("req_")


async def test_wrong_content_type_and_unknown_path(live: Live) -> None:
    wrong = await post(live, "/v1/messages", orjson.dumps(body()), {"content-type": "text/plain"})
    assert wrong.status_code == 400
    assert ErrorResponse.model_validate_json(wrong.content, strict=True).error.type == "invalid_request_error"
    missing = await post(live, "/v1/messages/nope", body())
    assert missing.status_code == 404
    error = ErrorResponse.model_validate_json(missing.content, strict=True)
    assert error.error.type == "not_found_error" and error.request_id == missing.headers["request-id"]
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client(live).messages.create(model=MODEL, max_tokens=5, messages=[{"role": "robot", "content": "x"}])  # type: ignore[misc,list-item]
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


async def test_count_tokens_errors_and_strict_models(live: Live) -> None:
    bad = await post(live, "/v1/messages/count_tokens", {"model": MODEL})
    assert bad.status_code == 400
    assert "messages: field required" in ErrorResponse.model_validate_json(bad.content, strict=True).error.message
    live.store.set_models(ModelRegistry(strict=True))
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        unknown = await post(live, path, {**body(), "model": "claude-nonexistent"})
        assert unknown.status_code == 404
        assert ErrorResponse.model_validate_json(unknown.content, strict=True).error.type == "not_found_error"
    assert (await post(live, "/v1/messages", body())).status_code == 200


async def test_request_too_large(live: Live) -> None:
    live.store.configure(max_body=200)
    response = await post(live, "/v1/messages", body(system="x" * 500))
    assert response.status_code == 413
    # The real API sends `request_too_large`, which the SDK's ErrorObject union does not list.
    error = orjson.loads(response.content)
    assert error["type"] == "error" and error["error"]["type"] == "request_too_large"
    assert error["request_id"] == response.headers["request-id"]


async def test_injected_errors_before_the_reply(live: Live) -> None:
    kinds = {429: "rate_limit_error", 500: "api_error", 503: "overloaded_error", 529: "overloaded_error"}
    for status, kind in kinds.items():
        response = await post(live, "/v1/messages", body(), {"x-mock-error": str(status)})
        assert response.status_code == status
        assert ErrorResponse.model_validate_json(response.content, strict=True).error.type == kind
    with pytest.raises(anthropic.RateLimitError):
        await client(live, default_headers={"x-mock-error": "429"}).messages.create(
            model=MODEL,
            max_tokens=8,
            messages=USER,  # type: ignore[arg-type]
        )


async def test_mid_stream_error_is_an_error_event(live: Live) -> None:
    live.store.set_rules(Recorder(Reply(text="one two three four five six seven eight")))
    headers = {"x-mock-error": "529", "x-mock-error-mode": "mid_stream"}
    events = await stream_raw(live, body(), headers)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"] and names[-1] == "error"
    assert "message_stop" not in names
    error = ErrorResponse.model_validate_json(events[-1][1], strict=True)
    assert error.error.type == "overloaded_error"
    for name, data in events[:-1]:
        if name != "ping":
            EVENTS.validate_json(data, strict=True)
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client(live, default_headers=headers).messages.stream(
            model=MODEL,
            max_tokens=64,
            messages=USER,  # type: ignore[arg-type]
        ) as stream:
            await stream.get_final_message()
    assert "overloaded_error" in str(caught.value)


def test_sync_sdk_with_api_key_or_bearer(server: Live) -> None:
    by_bearer = anthropic.Anthropic(base_url=server.anthropic_url, api_key="sk-ant-bearer", max_retries=0)
    message = by_bearer.messages.create(model=MODEL, max_tokens=32, messages=USER)  # type: ignore[arg-type]
    assert message.content[0].type == "text"
    by_token = anthropic.Anthropic(base_url=server.anthropic_url, auth_token="tok", max_retries=0)
    assert by_token.messages.count_tokens(model=MODEL, messages=USER).input_tokens == message.usage.input_tokens  # type: ignore[arg-type]
    for auth in ({"x-api-key": "sk-ant-x"}, {"authorization": "Bearer sk-ant-y"}):
        response = httpx.post(server.anthropic_url + "/v1/messages", json=body(), headers=auth)
        assert response.status_code == 200
        Message.model_validate_json(response.content, strict=True)
    sent = [e.request_headers for e in server.store.journal()[-2:]]
    assert sent[0]["x-api-key"] == "[redacted]" and sent[1]["authorization"] == "[redacted]"


async def test_with_a_key_set_both_header_forms_pass(live: Live) -> None:
    live.store.set_knobs("live", {"api_key": "sk-ant-right"})
    for auth in ({"x-api-key": "sk-ant-right"}, {"x-api-key": "", "authorization": "Bearer sk-ant-right"}):
        response = await post(live, "/v1/messages", body(), auth)
        assert response.status_code == 200, response.text
    message = await client(live, api_key="sk-ant-right").messages.create(model=MODEL, max_tokens=8, messages=USER)  # type: ignore[arg-type]
    assert message.content
    wrong = await post(live, "/v1/messages", body(), {"x-api-key": "sk-ant-wrong"})
    assert wrong.status_code == 401
    error = ErrorResponse.model_validate_json(wrong.content, strict=True)
    assert error.error.type == "authentication_error" and error.request_id == wrong.headers["request-id"]


async def test_models_in_anthropics_shape_for_the_anthropic_sdk(live: Live) -> None:
    from anthropic.types import ModelInfo

    client = anthropic.AsyncAnthropic(base_url=live.anthropic_url, api_key="k", max_retries=0)
    page = await client.models.with_raw_response.list()
    listing = orjson.loads(page.http_response.content)
    assert listing["data"] and listing["has_more"] is False
    for item in listing["data"]:
        ModelInfo.model_validate_json(orjson.dumps(item), strict=True)
    assert "claude-sonnet-4-5-20250929" in [m.id for m in (await client.models.list()).data]
    one = await client.models.with_raw_response.retrieve("claude-sonnet-4-5")
    assert ModelInfo.model_validate_json(one.http_response.content, strict=True).id == "claude-sonnet-4-5"
    with pytest.raises(anthropic.NotFoundError) as caught:
        await client.models.retrieve("no-such-model")
    ErrorResponse.model_validate_json(caught.value.response.content, strict=True)
    assert caught.value.response.headers["request-id"].startswith("req_")
