"""The Responses API against the real server: strict Response and event types, tools, GET and errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jsonschema
import openai
import orjson
import pydantic
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion
from openai.types.responses import Response, ResponseStreamEvent

from tests.conftest import Live
from tests.openai_testkit import assert_openai_error, get_raw, post_raw, sse_events
from tests.support import DEFAULT_TEXT
from tests.test_openai_chat import WEATHER, Capture

EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}},
    {"type": "function", "name": "get_weather", "description": "Weather", "parameters": WEATHER, "strict": True},
]
WEATHER_CHOICE = {"type": "function", "name": "get_weather"}
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
CALL_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
]


def client(live: Live) -> AsyncOpenAI:
    """The real async SDK pointed at the live server."""
    return AsyncOpenAI(base_url=live.openai_url, api_key="sk-test", max_retries=0)


async def create(live: Live, **body: Any) -> tuple[Response, bytes]:
    """A non-streamed response, validated strictly; also its raw bytes."""
    response = await post_raw(live, "/v1/responses", {"model": "gpt-4o", "input": "Hello there", **body})
    assert response.status_code == 200, response.text
    return Response.model_validate_json(response.content, strict=True), response.content


async def create_stream(live: Live, **body: Any) -> list[Any]:
    """A streamed response: every event validated strictly, named as its type, numbered 0, 1, 2, ..."""
    payload = {"model": "gpt-4o", "input": "Hello there", "stream": True, **body}
    response = await post_raw(live, "/v1/responses", payload)
    assert response.status_code == 200, response.text
    raw = sse_events(response.content)
    events = [EVENTS.validate_json(data, strict=True) for _, data in raw]
    assert [name for name, _ in raw] == [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    responses = [e.response for e in events if hasattr(e, "response")]
    assert len({r.id for r in responses}) == 1 and responses[0].id.startswith("resp_")
    return events


def collapse(kinds: Sequence[str]) -> list[str]:
    """Event types with repeats of one type collapsed (deltas come in runs)."""
    return [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]


def check_usage(response: Response) -> None:
    """Usage is present, whole and adds up."""
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.input_tokens_details.cache_write_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0


async def test_text_reply_is_strict(live: Live) -> None:
    response, _ = await create(live, instructions="Be brief.")
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.model == "gpt-4o"
    assert response.instructions == "Be brief."
    assert response.tools == [] and response.tool_choice == "auto" and response.parallel_tool_calls is True
    assert response.output_text == DEFAULT_TEXT
    message = response.output[0]
    assert message.type == "message" and message.id.startswith("msg_") and message.status == "completed"
    check_usage(response)
    sdk = await client(live).responses.create(model="gpt-4o", input="Hello there")
    assert sdk.output_text == DEFAULT_TEXT


async def test_get_and_delete_a_made_response(live: Live) -> None:
    made, raw = await create(live)
    fetched = await get_raw(live, f"/v1/responses/{made.id}")
    assert fetched.status_code == 200
    assert orjson.loads(fetched.content) == orjson.loads(raw)
    sdk = client(live)
    assert (await sdk.responses.retrieve(made.id)).output_text == DEFAULT_TEXT
    await sdk.responses.delete(made.id)
    assert_openai_error(await get_raw(live, f"/v1/responses/{made.id}"), 404, mentions=made.id)
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve("resp_unknown")
    unstored, _ = await create(live, store=False)
    assert (await get_raw(live, f"/responses/{unstored.id}")).status_code == 404


async def test_text_stream_event_sequence(live: Live) -> None:
    events = await create_stream(live)
    assert collapse([e.type for e in events]) == TEXT_EVENTS
    created, in_progress, completed = events[0].response, events[1].response, events[-1].response
    assert created.status == in_progress.status == "in_progress" and created.output == [] and created.usage is None
    assert completed.status == "completed"
    check_usage(completed)
    item_ids = {e.item_id for e in events if hasattr(e, "item_id")} | {e.item.id for e in events if hasattr(e, "item")}
    assert item_ids == {completed.output[0].id}
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = next(e for e in events if e.type == "response.output_text.done")
    assert deltas == done.text == completed.output_text == DEFAULT_TEXT
    fetched = await get_raw(live, f"/v1/responses/{completed.id}")
    assert Response.model_validate_json(fetched.content, strict=True) == completed


async def test_sdk_stream_helpers(live: Live) -> None:
    sdk = client(live)
    async with sdk.responses.stream(model="gpt-4o", input="Hello there") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert collapse(kinds) == TEXT_EVENTS
    assert final.output_text == DEFAULT_TEXT
    raw_stream = await sdk.responses.create(model="gpt-4o", input="Hello there", stream=True)
    text = "".join([e.delta async for e in raw_stream if e.type == "response.output_text.delta"])
    assert text == DEFAULT_TEXT


async def test_forced_function_call_is_schema_valid(live: Live) -> None:
    response, _ = await create(live, tools=TOOLS, tool_choice=WEATHER_CHOICE)
    assert response.tool_choice.type == "function"  # type: ignore[union-attr]
    assert [t.name for t in response.tools] == ["lookup", "get_weather"]  # type: ignore[union-attr]
    [call] = response.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id.startswith("call_") and call.id and call.id.startswith("fc_")
    jsonschema.validate(orjson.loads(call.arguments), WEATHER)
    check_usage(response)
    required, _ = await create(live, tools=TOOLS, tool_choice="required")
    assert required.output[0].type == "function_call"
    auto, _ = await create(live, tools=TOOLS)
    assert auto.output_text == DEFAULT_TEXT


async def test_streamed_function_call(live: Live) -> None:
    events = await create_stream(live, tools=TOOLS, tool_choice=WEATHER_CHOICE)
    assert collapse([e.type for e in events]) == CALL_EVENTS
    added = events[2].item
    assert added.type == "function_call" and added.arguments == "" and added.status == "in_progress"
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    final = events[-1].response.output[0]
    assert deltas == done.arguments == final.arguments
    assert {e.item_id for e in events if hasattr(e, "item_id")} == {added.id} == {final.id}
    jsonschema.validate(orjson.loads(done.arguments), WEATHER)


async def test_function_call_output_names_the_tool(live: Live) -> None:
    capture = Capture()
    live.store.set_rules(capture)
    items = [
        {"role": "system", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo?"}]},
        {"type": "function_call", "call_id": "call_9", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call_output", "call_id": "call_9", "output": "12C"},
    ]
    response, _ = await create(live, input=items, tools=TOOLS, instructions="Be brief.")
    assert response.output_text == "ok"
    conversation = capture.seen[-1]
    assert conversation.system == "Be brief.\nUse tools."
    assert conversation.last_user_text() == "Weather in Oslo?"
    assert conversation.messages[1].tool_calls[0].arguments == {"city": "Oslo"}
    result = conversation.last_tool_result()
    assert result is not None and (result.name, result.tool_call_id, result.content) == ("get_weather", "call_9", "12C")


async def test_previous_response_id_carries_the_conversation(live: Live) -> None:
    first, _ = await create(live, input="Weather in Oslo?", tools=TOOLS, tool_choice=WEATHER_CHOICE)
    call = first.output[0]
    assert call.type == "function_call"
    capture = Capture()
    live.store.set_rules(capture)
    output = [{"type": "function_call_output", "call_id": call.call_id, "output": "12C"}]
    second, _ = await create(live, input=output, previous_response_id=first.id, tools=TOOLS)
    assert second.previous_response_id == first.id
    conversation = capture.seen[-1]
    assert conversation.last_user_text() == "Weather in Oslo?"
    result = conversation.last_tool_result()
    assert result is not None and result.name == "get_weather"


async def test_json_schema_format(live: Live) -> None:
    fmt = {"type": "json_schema", "name": "weather", "schema": WEATHER, "strict": True}
    response, _ = await create(live, text={"format": fmt})
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    jsonschema.validate(orjson.loads(response.output_text), WEATHER)
    events = await create_stream(live, text={"format": fmt})
    jsonschema.validate(orjson.loads(events[-1].response.output_text), WEATHER)


async def test_max_output_tokens_makes_it_incomplete(live: Live) -> None:
    response, _ = await create(live, max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 3
    events = await create_stream(live, max_output_tokens=3)
    assert events[-1].type == "response.incomplete"


async def test_same_prompt_same_input_tokens_as_chat(live: Live) -> None:
    fields = ("name", "description", "parameters")
    tools = [{"type": "function", "function": {k: v for k, v in t.items() if k in fields}} for t in TOOLS]
    chat = await post_raw(
        live,
        "/v1/chat/completions",
        {
            "model": "gpt-4o",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
            "tools": tools,
        },
    )
    prompt_tokens = ChatCompletion.model_validate_json(chat.content, strict=True).usage.prompt_tokens  # type: ignore[union-attr]
    response, _ = await create(live, instructions="Be brief.", tools=TOOLS)
    assert response.usage is not None and response.usage.input_tokens == prompt_tokens
    as_items, _ = await create(
        live,
        input=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
        tools=TOOLS,
    )
    assert as_items.usage is not None and as_items.usage.input_tokens == prompt_tokens


@pytest.mark.parametrize(
    ("body", "mentions", "param"),
    [
        ({"model": "gpt-4o"}, "input: field required", "input"),
        ({"input": "hi"}, "model: field required", "model"),
        ({"model": "gpt-4o", "input": 5}, "input: expected an array", "input"),
        ({"model": "gpt-4o", "input": [{"role": "wizard", "content": "x"}]}, "unknown role", "input[0].role"),
        ({"model": "gpt-4o", "input": [{"role": "user"}]}, "input[0].content: field required", "input[0].content"),
        ({"model": "gpt-4o", "input": [{"type": "hologram"}]}, "unsupported", "input[0].type"),
        (
            {"model": "gpt-4o", "input": [{"type": "function_call_output", "output": "x"}]},
            "input[0].call_id: field required",
            "input[0].call_id",
        ),
        ({"model": "gpt-4o", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name", "tools[0].name"),
        ({"model": "gpt-4o", "input": "hi", "tool_choice": WEATHER_CHOICE}, "tool_choice", "tool_choice"),
        ({"model": "gpt-4o", "input": "hi", "previous_response_id": "resp_x"}, "not found", "previous_response_id"),
        (
            {"model": "gpt-4o", "input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}},
            "text.format.schema",
            "text.format.schema",
        ),
        ({"model": "gpt-4o", "input": "hi", "max_output_tokens": -1}, "max_output_tokens", "max_output_tokens"),
    ],
)
async def test_bad_bodies_get_400_naming_the_field(
    live: Live, body: dict[str, Any], mentions: str, param: str | None
) -> None:
    response = await post_raw(live, "/v1/responses", body)
    assert_openai_error(response, 400, mentions=mentions, param=param)


async def test_bad_json_and_wrong_method(live: Live) -> None:
    bad = await post_raw(live, "/v1/responses", None, content=b"[", headers={"content-type": "application/json"})
    assert_openai_error(bad, 400, mentions="JSON")
    assert_openai_error(await get_raw(live, "/v1/responses"), 405)
