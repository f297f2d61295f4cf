"""Agent-grade matching over OpenAI Realtime (the openai SDK over a WebSocket): the session header,
turn-aware rules, a session's fail_next, near misses and strict mode's error event."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai

from tests.conftest import Live
from tests.test_realtime_openai import Events, ended, say, session_row, text_session

RULES = """
rules:
  - name: weather answer
    match: {tool_result: get_weather}
    reply: "It is sunny in Paris."
  - name: weather
    match: {contains: weather, turn: 1}
    tool_calls: [{name: get_weather, arguments: {city: Paris}}]
  - name: later weather
    match: {contains: weather, turn: ">=2", header: {x-app-tag: demo}}
    reply: "Still sunny."
"""


def connect(live: Live, session: str) -> Any:
    client = openai.AsyncOpenAI(base_url=live.openai_url, api_key="sk-test", max_retries=0)
    headers = {"x-mock-session": session, "x-app-tag": "demo"}
    return client.realtime.connect(model="gpt-realtime", extra_headers=headers)


async def respond(conn: Any, events: Events) -> list[Any]:
    await conn.response.create()
    return await events.until("response.done")


async def test_a_realtime_tool_loop_in_a_session_ends_and_a_fallback_names_the_nearest(rules_live: Live) -> None:
    rules_live.store.set_fail_next(1, 503, session="rt")
    async with connect(rules_live, "rt") as conn:
        events = Events(conn)
        await text_session(conn, events)
        await conn.session.update(
            session={"type": "realtime", "tools": [{"type": "function", "name": "get_weather", "parameters": {}}]}
        )
        await events.next()
        await say(conn, "what is the weather in Paris?")
        await events.until("conversation.item.done")
        failed = await respond(conn, events)  # the session's pending failure
        assert next(e for e in failed if e.type == "error").error.code == "503"
        first = await respond(conn, events)
        call = next(e for e in first if e.type == "response.function_call_arguments.done")
        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"sky": "sunny"})}
        )
        await events.until("conversation.item.done")
        second = await respond(conn, events)
        assert second[-1].response.output[0].content[0].text == "It is sunny in Paris."
        await say(conn, "and the weather tomorrow?")
        await events.until("conversation.item.done")
        third = await respond(conn, events)
        assert third[-1].response.output[0].content[0].text == "Still sunny."
        await say(conn, "thanks")
        await events.until("conversation.item.done")
        await respond(conn, events)
    store = rules_live.store
    row = await ended(store, session_row(store))
    # one row for the session: the latest response's rule and near misses, every turn's conversation
    assert (row.session, row.rule, row.status) == ("rt", "unknown_response", 101)
    assert row.nearest()[0] == ("later weather", "contains: 'weather' is not in 'thanks'")
    users = [text for role, text in row.transcript() if role == "user"]
    assert users == ["what is the weather in Paris?", "and the weather tomorrow?", "thanks"]
    assert store.counters.by_status == {503: 1, 200: 4}
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(rules_live.root + "/metrics")).text
    where = 'endpoint="realtime",provider="openai-realtime"'
    for rule, status in [
        ("weather", 503),
        ("weather", 200),
        ("weather answer", 200),
        ("later weather", 200),
        ("unknown_response", 200),
    ]:
        assert f'mockllm_requests_total{{{where},rule="{rule}",status="{status}"}} 1.0' in metrics


async def test_strict_mode_over_realtime_is_an_error_event(rules_live: Live) -> None:
    rules_live.store.configure(strict=True)
    async with connect(rules_live, "strict") as conn:
        events = Events(conn)
        await text_session(conn, events)
        await say(conn, "tell me a joke")
        await events.until("conversation.item.done")
        refused = await respond(conn, events)
    error = next(e for e in refused if e.type == "error").error
    assert error.message.startswith("no rule matched this request; nearest: ")
    assert refused[-1].response.status == "failed"
    assert rules_live.store.counters.by_status == {404: 1}
    assert session_row(rules_live.store).nearest()
