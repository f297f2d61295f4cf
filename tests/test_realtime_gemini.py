"""Gemini Live over a WebSocket, driven by google-genai's `client.aio.live`; every message strictly validated."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from google import genai
from google.genai import errors, types
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from mockllm_tui.engine.speech import OUTPUT_RATE, synthesize
from tests.conftest import Live
from tests.test_realtime_openai import ended, session_row

RULES = """
rules:
  - name: weather-answer
    match: {tool_result: get_weather}
    reply: "It is sunny in Paris."
  - name: weather
    match: {contains: weather}
    tool_calls: [{name: get_weather, arguments: {city: Paris}}]
  - name: heard
    match: {exact: "(audio)"}
    reply: "I heard you."
  - name: refuse
    match: {contains: refuse}
    error: {status: 429, message: "Slow down, please."}
  - name: hello
    match: {provider: gemini, contains: hello}
    reply: "Hello there, friend."
"""

PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


def live_client(live: Live, key: str = "test-key") -> genai.Client:
    """google-genai pointed at the mock over plain ws:// (the SDK always dials wss:// with TLS)."""
    client = genai.Client(api_key=key, http_options={"base_url": live.root, "api_version": "v1beta"})
    client._api_client._websocket_base_url = lambda *a, **k: live.root.replace("http://", "ws://")  # type: ignore[method-assign]
    client._api_client._websocket_ssl_ctx = {}
    return client


@asynccontextmanager
async def raw_socket(live: Live, query: str = "?key=test-key") -> AsyncIterator[Any]:
    async with connect(live.root.replace("http://", "ws://") + PATH + query) as ws:
        yield ws


async def recv(ws: Any) -> types.LiveServerMessage:
    raw = await asyncio.wait_for(ws.recv(), 10)
    return types.LiveServerMessage.model_validate_json(raw, strict=True)


async def turn(session: Any) -> list[types.LiveServerMessage]:
    out = []
    async for message in session.receive():
        out.append(message)
    return out


async def test_a_text_turn_through_the_sdk(rules_live: Live) -> None:
    config = {"response_modalities": ["TEXT"], "system_instruction": "Be kind."}
    async with live_client(rules_live).aio.live.connect(model="gemini-live-2.5-flash", config=config) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="hello")]), turn_complete=True
        )
        messages = await turn(session)
    assert "".join(m.text or "" for m in messages) == "Hello there, friend."
    assert messages[-1].server_content.turn_complete and messages[-1].usage_metadata.total_token_count > 0
    assert any(m.server_content and m.server_content.generation_complete for m in messages)
    entry = session_row(rules_live.store)
    assert (entry.provider, entry.endpoint, entry.model, entry.rule) == (
        "gemini-live",
        "live",
        "gemini-live-2.5-flash",
        "hello",
    )
    assert entry.conversation is not None and entry.conversation.system == "Be kind."


async def test_every_message_validates_strictly_in_camel_case(rules_live: Live) -> None:
    async with raw_socket(rules_live) as ws:
        await ws.send(
            json.dumps(
                {
                    "setup": {
                        "model": "models/gemini-live-2.5-flash",
                        "generationConfig": {"responseModalities": ["TEXT"]},
                    }
                }
            )
        )
        assert (await recv(ws)).setup_complete is not None
        await ws.send(
            json.dumps(
                {"client_content": {"turns": [{"role": "user", "parts": [{"text": "hello"}]}], "turn_complete": True}}
            )
        )
        seen = []
        while not (seen and seen[-1].server_content and seen[-1].server_content.turn_complete):
            seen.append(await recv(ws))
    assert (
        "".join(
            p.text
            for m in seen
            if m.server_content and m.server_content.model_turn
            for p in m.server_content.model_turn.parts
        )
        == "Hello there, friend."
    )


async def test_an_audio_turn_sends_inline_pcm_and_its_transcription(rules_live: Live) -> None:
    config = {"response_modalities": ["AUDIO"], "output_audio_transcription": {}}
    async with live_client(rules_live).aio.live.connect(model="gemini-live-2.5-flash", config=config) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="hello")]))
        messages = await turn(session)
    audio = b"".join(m.data for m in messages if m.data)
    transcript = "".join(
        m.server_content.output_transcription.text
        for m in messages
        if m.server_content and m.server_content.output_transcription
    )
    assert transcript == "Hello there, friend."
    assert audio == synthesize(transcript, "Puck")
    parts = [
        p
        for m in messages
        if m.server_content and m.server_content.model_turn
        for p in m.server_content.model_turn.parts
    ]
    assert all(p.inline_data.mime_type == f"audio/pcm;rate={OUTPUT_RATE}" and p.text is None for p in parts)
    words = len(transcript.split())
    assert 0.08 * words <= len(audio) / 2 / OUTPUT_RATE <= 1.5 * words + 0.5


async def test_spoken_input_is_detected_transcribed_and_answered(rules_live: Live) -> None:
    config = {"response_modalities": ["TEXT"], "input_audio_transcription": {}}
    speech = bytes(16000) + synthesize("aaaaaaaaaaaaaaaaaa", "x", rate=16000) + bytes(32000)
    async with live_client(rules_live).aio.live.connect(model="gemini-live-2.5-flash", config=config) as session:
        for start in range(0, len(speech), 6400):
            await session.send_realtime_input(
                audio=types.Blob(data=speech[start : start + 6400], mime_type="audio/pcm;rate=16000")
            )
        messages = await turn(session)
    heard = [m for m in messages if m.server_content and m.server_content.input_transcription]
    assert heard and heard[0].server_content.input_transcription.text == "(audio)"
    assert "".join(m.text or "" for m in messages) == "I heard you."


async def test_a_tool_call_round_trip(rules_live: Live) -> None:
    weather = types.FunctionDeclaration(name="get_weather", parameters={"type": "object", "properties": {}})
    config = {"response_modalities": ["TEXT"], "tools": [types.Tool(function_declarations=[weather])]}
    async with live_client(rules_live).aio.live.connect(model="gemini-live-2.5-flash", config=config) as session:
        await session.send_realtime_input(text="what is the weather in Paris?")
        call = None
        async for message in session.receive():
            if message.tool_call:
                call = message.tool_call.function_calls[0]
                break
        assert call is not None and call.name == "get_weather" and call.args == {"city": "Paris"}
        await session.send_tool_response(
            function_responses=[types.FunctionResponse(id=call.id, name=call.name, response={"sky": "sunny"})]
        )
        messages = await turn(session)
    assert "".join(m.text or "" for m in messages) == "It is sunny in Paris."
    row = await ended(rules_live.store, session_row(rules_live.store))
    assert (row.status, row.rule, row.reply_text) == (101, "weather-answer", "It is sunny in Paris.")
    labels = row.chunk_labels
    assert labels[0] == "setupComplete" and labels.count("toolCall") == 1 and labels[-1] == "turnComplete"
    assert "modelTurn text" in labels and "It is sunny in Paris." in "".join(row.chunks)
    assert [role for role, _text in row.transcript()][:1] == ["user"] and len(row.transcript()) >= 3
    assert rules_live.store.counters.by_status == {200: 2}


async def test_a_bad_message_closes_with_1007_and_a_reason(rules_live: Live) -> None:
    async with raw_socket(rules_live) as ws:
        await ws.send(json.dumps({"clientContent": {}}))
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007 and "setup" in closed.value.rcvd.reason


async def test_a_rule_error_closes_with_an_error_code(rules_live: Live) -> None:
    async with live_client(rules_live).aio.live.connect(
        model="gemini-live-2.5-flash", config={"response_modalities": ["TEXT"]}
    ) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="refuse")]))
        with pytest.raises(errors.APIError) as failed:
            await turn(session)
    assert failed.value.code != 1000 and "Slow down" in str(failed.value)
    row = await ended(rules_live.store, session_row(rules_live.store))
    assert (row.status, row.rule) == (429, "refuse")
    assert rules_live.store.counters.by_status == {429: 1}


async def test_the_key_comes_from_the_query_or_the_header(rules_live: Live) -> None:
    rules_live.store.set_knobs("live", {"api_key": "right"})
    with pytest.raises(InvalidStatus) as refused:
        async with raw_socket(rules_live, "?key=wrong"):
            pass
    assert refused.value.response.status_code == 401
    async with raw_socket(rules_live, "?key=right") as ws:
        await ws.send(json.dumps({"setup": {"model": "models/gemini-live-2.5-flash"}}))
        assert (await recv(ws)).setup_complete is not None
    async with live_client(rules_live, "right").aio.live.connect(
        model="gemini-live-2.5-flash", config={"response_modalities": ["TEXT"]}
    ) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="hello")]))
        assert "".join(m.text or "" for m in await turn(session)) == "Hello there, friend."
