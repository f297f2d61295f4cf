"""Chat Completions against the real server: strict SDK types, streams, tools, formats and errors."""

from __future__ import annotations

from typing import Any

import jsonschema
import openai
import orjson
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from mockllm_tui.core.conversation import Conversation, Reply
from tests.conftest import Live
from tests.openai_testkit import assert_openai_error, post_raw, sse_data
from tests.support import DEFAULT_TEXT

HELLO: list[Any] = [{"role": "user", "content": "Hello there"}]

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "where": {
            "type": "object",
            "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
            "required": ["lat", "lon"],
            "additionalProperties": False,
        },
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
    },
    "required": ["city", "unit", "days", "where", "tags"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER}},
]


def client(live: Live) -> AsyncOpenAI:
    """The real async SDK pointed at the live server."""
    return AsyncOpenAI(base_url=live.openai_url, api_key="sk-test", max_retries=0)


async def chat(live: Live, **body: Any) -> ChatCompletion:
    """A non-streamed completion, validated strictly from the raw bytes."""
    response = await post_raw(live, "/v1/chat/completions", {"model": "gpt-4o", "messages": HELLO, **body})
    assert response.status_code == 200, response.text
    return ChatCompletion.model_validate_json(response.content, strict=True)


async def chat_stream(live: Live, **body: Any) -> list[ChatCompletionChunk]:
    """A streamed completion: every chunk validated strictly, sharing one id, created and model."""
    payload = {"model": "gpt-4o", "messages": HELLO, "stream": True, **body}
    response = await post_raw(live, "/v1/chat/completions", payload)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = [ChatCompletionChunk.model_validate_json(data, strict=True) for data in sse_data(response.content)]
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    assert chunks[0].id.startswith("chatcmpl-")
    return chunks


def choice_chunks(chunks: list[ChatCompletionChunk], index: int) -> list[Any]:
    """The choice objects of one choice index, in order; checks role first and one final finish reason."""
    choices = [ch for c in chunks for ch in c.choices if ch.index == index]
    assert choices[0].delta.role == "assistant"
    finishes = [ch.finish_reason for ch in choices if ch.finish_reason is not None]
    assert len(finishes) == 1
    assert choices[-1].finish_reason is not None
    return choices


async def test_json_reply_is_strict_and_counts_add_up(live: Live) -> None:
    response = await post_raw(live, "/v1/chat/completions", {"model": "gpt-4o", "messages": HELLO})
    assert response.headers["x-request-id"]
    assert int(response.headers["openai-processing-ms"]) >= 0
    completion = ChatCompletion.model_validate_json(response.content, strict=True)
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o"
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_sdk_and_unprefixed_path(live: Live) -> None:
    sdk = await client(live).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert sdk.choices[0].message.content == DEFAULT_TEXT
    response = await post_raw(live, "/chat/completions", {"model": "gpt-4o", "messages": HELLO})
    assert ChatCompletion.model_validate_json(response.content, strict=True).choices[0].message.content == DEFAULT_TEXT


async def test_stream_with_usage_matches_json(live: Live) -> None:
    whole = await chat(live)
    chunks = await chat_stream(live, stream_options={"include_usage": True})
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    choices = choice_chunks(chunks[:-1], 0)
    assert "".join(ch.delta.content or "" for ch in choices) == whole.choices[0].message.content
    assert choices[-1].finish_reason == "stop"
    assert whole.usage is not None
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


async def test_stream_without_usage_has_no_usage_chunk(live: Live) -> None:
    chunks = await chat_stream(live)
    assert all(c.choices and c.usage is None for c in chunks)
    choice_chunks(chunks, 0)


async def test_sdk_stream(live: Live) -> None:
    stream = await client(live).chat.completions.create(
        model="gpt-4o",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    usage = None
    async for chunk in stream:
        text += "".join(ch.delta.content or "" for ch in chunk.choices)
        usage = chunk.usage or usage
    assert text == DEFAULT_TEXT
    assert usage is not None and usage.completion_tokens > 0


async def test_n_choices(live: Live) -> None:
    one = await chat(live)
    three = await chat(live, n=3)
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert {c.message.content for c in three.choices} == {DEFAULT_TEXT}
    assert one.usage is not None and three.usage is not None
    assert three.usage.completion_tokens == 3 * one.usage.completion_tokens
    chunks = await chat_stream(live, n=2)
    for index in (0, 1):
        choices = choice_chunks(chunks, index)
        assert "".join(ch.delta.content or "" for ch in choices) == DEFAULT_TEXT


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_cuts_with_length(live: Live, field: str) -> None:
    completion = await chat(live, **{field: 3})
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    assert DEFAULT_TEXT.startswith(completion.choices[0].message.content or "-")
    chunks = await chat_stream(live, **{field: 3})
    assert choice_chunks(chunks, 0)[-1].finish_reason == "length"


async def test_stop_sequence(live: Live) -> None:
    completion = await chat(live, stop=["mock"])
    assert completion.choices[0].message.content == DEFAULT_TEXT[: DEFAULT_TEXT.index("mock")]
    assert completion.choices[0].finish_reason == "stop"


async def test_required_tool_call_is_valid_against_schema(live: Live) -> None:
    completion = await chat(live, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function"
    call = calls[0]
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    jsonschema.validate(orjson.loads(call.function.arguments), WEATHER)
    required = await chat(live, tools=TOOLS, tool_choice="required")
    assert required.choices[0].finish_reason == "tool_calls" and required.choices[0].message.tool_calls


@pytest.mark.parametrize("choice", ["none", "auto", None])
async def test_no_forced_call_gives_text(live: Live, choice: str | None) -> None:
    body: dict[str, Any] = {"tools": TOOLS}
    if choice is not None:
        body["tool_choice"] = choice
    completion = await chat(live, **body)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].message.content == DEFAULT_TEXT


async def test_streamed_tool_call_deltas(live: Live) -> None:
    chunks = await chat_stream(live, tools=TOOLS, tool_choice="required", stream_options={"include_usage": True})
    choices = choice_chunks(chunks[:-1], 0)
    assert choices[-1].finish_reason == "tool_calls"
    deltas = [tc for ch in choices for tc in (ch.delta.tool_calls or [])]
    first, rest = deltas[0], deltas[1:]
    assert first.index == 0 and first.id and first.id.startswith("call_") and first.type == "function"
    assert first.function is not None and first.function.name == "lookup"
    assert rest and all(d.index == 0 and d.id is None and d.function and d.function.name is None for d in rest)
    arguments = "".join((d.function.arguments or "") for d in deltas if d.function)
    assert orjson.loads(arguments) == {}
    named = await chat_stream(live, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    deltas = [tc for c in named for ch in c.choices for tc in (ch.delta.tool_calls or [])]
    jsonschema.validate(orjson.loads("".join(d.function.arguments or "" for d in deltas if d.function)), WEATHER)


async def test_response_formats(live: Live) -> None:
    as_object = await chat(live, response_format={"type": "json_object"})
    assert isinstance(orjson.loads(as_object.choices[0].message.content or ""), dict)
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER, "strict": True}}
    as_schema = await chat(live, response_format=fmt)
    jsonschema.validate(orjson.loads(as_schema.choices[0].message.content or ""), WEATHER)
    chunks = await chat_stream(live, response_format=fmt)
    streamed = "".join(ch.delta.content or "" for ch in choice_chunks(chunks, 0))
    jsonschema.validate(orjson.loads(streamed), WEATHER)


async def test_logprobs_and_sampling_options_are_accepted(live: Live) -> None:
    completion = await chat(live, logprobs=True, top_logprobs=2, temperature=0.2, seed=1, user="u")
    assert completion.choices[0].message.content == DEFAULT_TEXT


WIZARD: Any = {"role": "wizard", "content": "x"}
CALLED = {"name": "get_weather", "arguments": '{"city":"Oslo"}'}


class Capture:
    """A reply source that keeps the conversations it was asked about."""

    def __init__(self) -> None:
        self.seen: list[Conversation] = []

    def choose(self, conversation: Conversation) -> Reply:
        self.seen.append(conversation)
        return Reply(text="ok", rule="capture")


async def test_parses_the_whole_conversation(live: Live) -> None:
    capture = Capture()
    live.store.set_rules(capture)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": CALLED}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "12C"},
    ]
    completion = await chat(live, messages=messages, tools=TOOLS)
    assert completion.choices[0].message.content == "ok"
    conversation = capture.seen[-1]
    assert conversation.system == "Be brief.\nUse tools."
    assert conversation.last_user_text() == "Weather in Oslo?"
    assert conversation.messages[1].tool_calls[0].arguments == {"city": "Oslo"}
    result = conversation.last_tool_result()
    assert result is not None and result.name == "get_weather" and result.tool_call_id == "call_1"
    assert result.content == "12C"


@pytest.mark.parametrize(
    ("body", "mentions", "param"),
    [
        ({"messages": HELLO}, "model: field required", "model"),
        ({"model": "gpt-4o"}, "messages: field required", "messages"),
        ({"model": "gpt-4o", "messages": "hi"}, "messages: expected an array", "messages"),
        ({"model": 4, "messages": HELLO}, "model: expected a string", "model"),
        ({"model": "gpt-4o", "messages": []}, "messages", "messages"),
        ({"model": "gpt-4o", "messages": [{"content": "x"}]}, "messages[0].role: field required", "messages[0].role"),
        ({"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}, "unknown role", "messages[0].role"),
        ({"model": "gpt-4o", "messages": [{"role": "tool", "content": "x"}]}, "tool_call_id", None),
        ({"model": "gpt-4o", "messages": HELLO, "n": 0}, "n:", "n"),
        ({"model": "gpt-4o", "messages": HELLO, "max_tokens": "9"}, "max_tokens: expected an integer", "max_tokens"),
        ({"model": "gpt-4o", "messages": HELLO, "stream": "yes"}, "stream: expected a boolean", "stream"),
        ({"model": "gpt-4o", "messages": HELLO, "stop": 5}, "stop:", "stop"),
        ({"model": "gpt-4o", "messages": HELLO, "tool_choice": "required"}, "tool_choice", "tool_choice"),
        ({"model": "gpt-4o", "messages": HELLO, "tools": [{"type": "function"}]}, "tools[0].function", None),
        ({"model": "gpt-4o", "messages": HELLO, "tools": TOOLS, "tool_choice": "maybe"}, "tool_choice", None),
        ({"model": "gpt-4o", "messages": HELLO, "response_format": {"type": "xml"}}, "response_format.type", None),
    ],
)
async def test_bad_bodies_get_400_naming_the_field(
    live: Live, body: dict[str, Any], mentions: str, param: str | None
) -> None:
    response = await post_raw(live, "/v1/chat/completions", body)
    assert_openai_error(response, 400, mentions=mentions, param=param)


async def test_bad_json_and_content_type(live: Live) -> None:
    bad_json = await post_raw(
        live, "/v1/chat/completions", None, content=b"{nope", headers={"content-type": "application/json"}
    )
    assert_openai_error(bad_json, 400, mentions="JSON")
    not_object = await post_raw(live, "/v1/chat/completions", [1, 2])
    assert_openai_error(not_object, 400, mentions="object")
    wrong_type = await post_raw(
        live, "/v1/chat/completions", None, content=b"model=gpt-4o", headers={"content-type": "text/plain"}
    )
    assert_openai_error(wrong_type, 400, mentions="content type")
    empty = await post_raw(live, "/v1/chat/completions", None, headers={"content-type": "application/json"})
    assert_openai_error(empty, 400, mentions="empty")


async def test_sdk_raises_bad_request(live: Live) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client(live).chat.completions.create(
            model="gpt-4o",
            messages=[WIZARD],
        )
    assert info.value.status_code == 400
    assert info.value.param == "messages[0].role"
