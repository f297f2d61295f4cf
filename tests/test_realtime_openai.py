"""OpenAI Realtime over a WebSocket, driven by the `openai` SDK; every server event strictly validated."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import openai
import pytest
from openai.types.realtime import ClientSecretCreateResponse
from openai.types.realtime.realtime_server_event import RealtimeServerEvent
from pydantic import TypeAdapter
from websockets.exceptions import ConnectionClosed, InvalidStatus

from mockllm_tui.core.store import JournalEntry, Store
from mockllm_tui.engine.speech import OUTPUT_RATE, synthesize
from tests.conftest import Live

EVENTS: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)

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
  - name: slow
    match: {contains: slowly}
    reply: "one two three four five six seven eight nine ten"
    stream_speed: 4
  - name: refuse
    match: {contains: refuse}
    error: {status: 429, message: "Slow down, please."}
  - name: hello
    match: {contains: hello}
    reply: "Hello there, friend."
"""

TEXT_ORDER = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
    "rate_limits.updated",
]


class Events:
    """The server events of one connection, each validated strictly as the SDK's union."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.seen: list[Any] = []

    async def next(self) -> Any:
        raw = await asyncio.wait_for(self.conn.recv_bytes(), 10)
        event = EVENTS.validate_json(raw, strict=True)
        self.seen.append(event)
        return event

    async def until(self, kind: str) -> list[Any]:
        out = []
        while True:
            event = await self.next()
            out.append(event)
            if event.type == kind:
                return out


def compress(types: list[str]) -> list[str]:
    """Event types with runs of the same delta type folded into one."""
    out: list[str] = []
    for kind in types:
        if not (out and out[-1] == kind and kind.endswith(".delta")):
            out.append(kind)
    return out


def client(live: Live, key: str = "sk-test") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=live.openai_url, api_key=key, max_retries=0)


def session_row(store: Store) -> JournalEntry:
    """The journal's one realtime row (a socket is one row, however many responses it had)."""
    rows = [e for e in store.journal() if e.method == "WS"]
    assert len(rows) == 1, [(e.id, e.path) for e in rows]
    return rows[0]


async def ended(store: Store, entry: JournalEntry, timeout: float = 10) -> JournalEntry:
    """The entry once its socket has closed (the server ends the row as it sees the close)."""
    sub = store.subscribe(kinds=frozenset({"done"}))
    try:
        while entry.open:
            assert await sub.wait(timeout), f"row {entry.id} still open"
            sub.drain()
    finally:
        store.unsubscribe(sub)
    return entry


async def say(conn: Any, text: str) -> None:
    await conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )


async def text_session(conn: Any, events: Events) -> None:
    assert (await events.next()).type == "session.created"
    await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
    updated = await events.next()
    assert updated.type == "session.updated" and updated.session.output_modalities == ["text"]


async def test_a_text_turn_follows_the_real_event_order_with_valid_unique_events(rules_live: Live) -> None:
    async with client(rules_live).realtime.connect(model="gpt-realtime") as conn:
        events = Events(conn)
        await text_session(conn, events)
        await say(conn, "hello")
        added = await events.until("conversation.item.done")
        assert [e.type for e in added] == ["conversation.item.added", "conversation.item.done"]
        await conn.response.create()
        response = await events.until("rate_limits.updated")
    assert compress([e.type for e in response]) == TEXT_ORDER
    assert "".join(e.delta for e in response if e.type == "response.output_text.delta") == "Hello there, friend."
    done = next(e for e in response if e.type == "response.done")
    assert done.response.status == "completed" and done.response.usage.output_tokens > 0
    assert done.response.output[0].content[0].text == "Hello there, friend."
    ids = [e.event_id for e in events.seen]
    assert len(ids) == len(set(ids))
    entry = await ended(rules_live.store, session_row(rules_live.store))
    assert (entry.endpoint, entry.rule, entry.status, entry.reply_text) == (
        "realtime",
        "hello",
        101,
        "Hello there, friend.",
    )
    assert entry.chunk_labels == [e.type for e in events.seen]
    assert rules_live.store.counters.by_status == {200: 1}


async def test_a_session_is_one_row_that_grows_while_open_and_ends_at_the_close(rules_live: Live) -> None:
    import httpx

    store = rules_live.store
    async with client(rules_live).realtime.connect(model="gpt-realtime") as conn:
        events = Events(conn)
        await text_session(conn, events)
        row = session_row(store)
        assert (row.method, row.path, row.provider, row.endpoint, row.model) == (
            "WS",
            "/v1/realtime",
            "openai-realtime",
            "realtime",
            "gpt-realtime",
        )
        assert row.open and row.stream and row.status == 0
        assert row.chunk_labels[:1] == ["session.created"]
        await say(conn, "hello")
        await events.until("conversation.item.done")
        await conn.response.create()
        await events.until("rate_limits.updated")
        after_one = len(row.chunks)
        assert row.open and after_one > 2 and row.rule == "hello"
        await say(conn, "refuse this")
        await events.until("conversation.item.done")
        await conn.response.create()
        refused = await events.until("response.done")
        assert session_row(store) is row and row.open and len(row.chunks) > after_one
        assert row.rule == "refuse" and row.reply_text == ""
        assert row.conversation is not None
        assert [text for role, text in row.transcript() if role == "user"] == ["hello", "refuse this"]
    await ended(store, row)
    assert session_row(store) is row and row.status == 101 and row.duration_ms > 0
    assert row.chunk_labels == [e.type for e in events.seen]
    assert "error" in row.chunk_labels and refused[-1].response.status == "failed"
    assert "Hello there, friend." in "".join(row.chunks)
    counters = store.counters
    assert (counters.total, counters.by_status, counters.errors, counters.in_flight) == (2, {200: 1, 429: 1}, 1, 0)
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(rules_live.root + "/metrics")).text
    where = 'endpoint="realtime",provider="openai-realtime"'
    assert f'mockllm_requests_total{{{where},rule="hello",status="200"}} 1.0' in metrics
    assert f'mockllm_requests_total{{{where},rule="refuse",status="429"}} 1.0' in metrics
    assert 'status="101"' not in metrics
    assert f"mockllm_request_duration_seconds_count{{{where}}} 2.0" in metrics


async def test_a_partial_session_update_keeps_earlier_fields(rules_live: Live) -> None:
    async with client(rules_live).realtime.connect(model="gpt-realtime") as conn:
        events = Events(conn)
        await text_session(conn, events)
        await conn.session.update(session={"type": "realtime", "instructions": "Be brief."})
        updated = await events.next()
    assert updated.session.instructions == "Be brief." and updated.session.output_modalities == ["text"]


async def test_an_audio_turn_sends_pcm16_that_fits_the_text_and_its_transcript(rules_live: Live) -> None:
    async with client(rules_live).realtime.connect(model="gpt-realtime") as conn:
        events = Events(conn)
        assert (await events.next()).session.output_modalities == ["audio"]
        await say(conn, "hello")
        await events.until("conversation.item.done")
        await conn.response.create()
        response = await events.until("rate_limits.updated")
    kinds = compress([e.type for e in response])
    pieces = sum(1 for e in response if e.type == "response.output_audio_transcript.delta")
    assert pieces > 1
    assert kinds == [
        *TEXT_ORDER[:4],
        *["response.output_audio_transcript.delta", "response.output_audio.delta"] * pieces,
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        *TEXT_ORDER[-5:],
    ]
    transcript = "".join(e.delta for e in response if e.type == "response.output_audio_transcript.delta")
    assert transcript == "Hello there, friend."
    pcm = b"".join(base64.b64decode(e.delta) for e in response if e.type == "response.output_audio.delta")
    seconds = len(pcm) / 2 / OUTPUT_RATE
    words = len(transcript.split())
    assert 0.08 * words <= seconds <= 1.5 * words + 0.5
    assert pcm == synthesize(transcript, "alloy")
    done = next(e for e in response if e.type == "response.done")
    assert done.response.output[0].content[0].transcript == transcript
    assert done.response.usage.output_token_details.audio_tokens > 0


async def test_a_tool_call_round_trip(rules_live: Live) -> None:
    async with client(rules_live).realtime.connect(model="gpt-realtime") as conn:
        events = Events(conn)
        await text_session(conn, events)
        await conn.session.update(
            session={"type": "realtime", "tools": [{"type": "function", "name": "get_weather", "parameters": {}}]}
        )
        await events.next()
        await say(conn, "what is the weather in Paris?")
        await events.until("conversation.item.done")
        await conn.response.create()
        first = await events.until("rate_limits.updated")
        call = next(e for e in first if e.type == "response.function_call_arguments.done")
        assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
        assert compress([e.type for e in first]) == [
            "response.created",
            "response.output_item.added",
            "conversation.item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
            "rate_limits.updated",
        ]
        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "sunny"}'}
        )
        await events.until("conversation.item.done")
        await conn.response.create()
        second = await events.until("rate_limits.updated")
    assert "".join(e.delta for e in second if e.type == "response.output_text.delta") == "It is sunny in Paris."


def speech_buffer() -> bytes:
    """500 ms of silence, about a second of tone, then a second of silence, at 24 kHz."""
    silence = bytes(2 * OUTPUT_RATE // 2)
    tone = synthesize("aaaaaaaaaaaaaaaaaa", "x")  # 18 characters: about 1 s
    return silence + tone + bytes(2 * OUTPUT_RATE)


async def test_server_vad_finds_the_speech_commits_it_and_answers_by_itself(rules_live: Live) -> None:
    async with client(rules_live).realtime.connect(model="gpt-realtime") as conn:
        events = Events(conn)
        await text_session(conn, events)
        await conn.session.update(
            session={"type": "realtime", "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}}
        )
        await events.next()
        audio = speech_buffer()
        for start in range(0, len(audio), 9600):
            await conn.input_audio_buffer.append(audio=base64.b64encode(audio[start : start + 9600]).decode())
        seen = await events.until("rate_limits.updated")
    kinds = [e.type for e in seen]
    assert kinds[:6] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
    ]
    started, stopped = seen[0], seen[1]
    assert 0 <= started.audio_start_ms <= 600 and 1400 <= stopped.audio_end_ms <= 2300
    assert seen[5].transcript == "(audio)"
    assert "".join(e.delta for e in seen if e.type == "response.output_text.delta") == "I heard you."


async def test_manual_commit_and_its_errors(rules_live: Live) -> None:
    async with client(rules_live).realtime.connect(model="gpt-realtime") as conn:
        events = Events(conn)
        await text_session(conn, events)
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
        await events.next()
        await conn.input_audio_buffer.commit(event_id="evt_short")
        error = await events.next()
        assert error.type == "error" and error.error.code == "input_audio_buffer_commit_empty"
        assert error.error.event_id == "evt_short"
        await conn.input_audio_buffer.append(audio=base64.b64encode(speech_buffer()).decode())
        await conn.input_audio_buffer.commit()
        committed = await events.until("conversation.item.done")
        assert committed[0].type == "input_audio_buffer.committed"
        await conn.input_audio_buffer.append(audio=base64.b64encode(bytes(4800)).decode())
        await conn.input_audio_buffer.clear()
        assert (await events.next()).type == "input_audio_buffer.cleared"
        await conn.response.create()
        answer = await events.until("rate_limits.updated")
    assert "".join(e.delta for e in answer if e.type == "response.output_text.delta") == "I heard you."


async def test_bad_client_events_get_error_events_and_the_session_goes_on(rules_live: Live) -> None:
    async with client(rules_live).realtime.connect(model="gpt-realtime") as conn:
        events = Events(conn)
        await text_session(conn, events)
        await conn.send_raw("{not json")  # type: ignore[attr-defined]
        bad_json = await events.next()
        await conn.send({"type": "nonsense.event", "event_id": "evt_1"})  # type: ignore[arg-type, typeddict-item]
        unknown = await events.next()
        await conn.send({"type": "conversation.item.create", "event_id": "evt_2"})  # type: ignore[arg-type, typeddict-item]
        missing = await events.next()
        await conn.response.cancel(event_id="evt_3")
        not_active = await events.next()
        await say(conn, "hello")
        await events.until("conversation.item.done")
        await conn.response.create()
        answer = await events.until("rate_limits.updated")
    for error, code, event_id in (
        (bad_json, "invalid_json", None),
        (unknown, "invalid_value", "evt_1"),
        (missing, "missing_required_parameter", "evt_2"),
        (not_active, "response_cancel_not_active", "evt_3"),
    ):
        assert error.type == "error" and error.error.type == "invalid_request_error"
        assert error.error.code == code and error.error.message and error.error.event_id == event_id
    assert missing.error.param == "item"
    assert answer[-2].response.status == "completed"


async def test_items_can_be_retrieved_truncated_and_deleted(rules_live: Live) -> None:
    async with client(rules_live).realtime.connect(model="gpt-realtime") as conn:
        events = Events(conn)
        await text_session(conn, events)
        await say(conn, "hello")
        item_id = (await events.until("conversation.item.done"))[0].item.id
        await conn.response.create()
        answer = await events.until("rate_limits.updated")
        reply_id = next(e for e in answer if e.type == "response.output_item.done").item.id
        await conn.conversation.item.retrieve(item_id=item_id)
        assert (await events.next()).item.id == item_id
        await conn.conversation.item.truncate(item_id=reply_id, content_index=0, audio_end_ms=300)
        truncated = await events.next()
        await conn.conversation.item.delete(item_id=item_id)
        deleted = await events.next()
        await conn.conversation.item.delete(item_id=item_id)
        gone = await events.next()
        await conn.output_audio_buffer.clear()
        cleared = await events.next()
    assert truncated.type == "conversation.item.truncated" and truncated.audio_end_ms == 300
    assert deleted.type == "conversation.item.deleted" and deleted.item_id == item_id
    assert gone.type == "error" and gone.error.code == "item_not_found"
    assert cleared.type == "output_audio_buffer.cleared"


async def test_response_cancel_stops_a_slow_response(rules_live: Live) -> None:
    async with client(rules_live).realtime.connect(model="gpt-realtime") as conn:
        events = Events(conn)
        await text_session(conn, events)
        await say(conn, "speak slowly")
        await events.until("conversation.item.done")
        await conn.response.create()
        await events.until("response.output_text.delta")
        await conn.response.cancel()
        rest = await events.until("response.done")
    assert rest[-1].response.status == "cancelled"
    assert rest[-1].response.status_details.reason == "client_cancelled"
    assert rules_live.store.counters.by_status == {499: 1}
    assert (await ended(rules_live.store, session_row(rules_live.store))).status == 101


async def test_a_rule_error_and_fail_next_before_arrive_as_error_events(rules_live: Live) -> None:
    rules_live.store.set_fail_next(1, 503)
    async with client(rules_live).realtime.connect(model="gpt-realtime") as conn:
        events = Events(conn)
        await text_session(conn, events)
        await say(conn, "hello")
        await events.until("conversation.item.done")
        await conn.response.create()
        injected = await events.until("response.done")
        await conn.response.create()
        served = await events.until("rate_limits.updated")
        await say(conn, "refuse this")
        await events.until("conversation.item.done")
        await conn.response.create()
        refused = await events.until("response.done")
    error = next(e for e in injected if e.type == "error")
    assert error.error.code == "503" and injected[-1].response.status == "failed"
    assert served[-2].response.status == "completed"
    assert next(e for e in refused if e.type == "error").error.message == "Slow down, please."


@pytest.mark.parametrize("mode", ["mid_stream", "disconnect"])
async def test_mid_stream_and_disconnect_faults_close_the_socket_with_an_error_code(
    rules_live: Live, mode: str
) -> None:
    rules_live.store.set_fail_next(1, 500, mode)  # type: ignore[arg-type]
    async with client(rules_live).realtime.connect(model="gpt-realtime") as conn:
        events = Events(conn)
        await text_session(conn, events)
        await say(conn, "speak slowly")
        await events.until("conversation.item.done")
        await conn.response.create()
        with pytest.raises(ConnectionClosed) as closed:
            await events.until("response.done")
    assert closed.value.rcvd is not None and closed.value.rcvd.code != 1000
    deltas = [e for e in events.seen if e.type == "response.output_text.delta"]
    assert bool(deltas) is (mode == "mid_stream")
    row = await ended(rules_live.store, session_row(rules_live.store))
    assert row.status == 500 and row.fault is not None
    assert row.chunk_labels == [e.type for e in events.seen]


async def test_auth_refuses_a_wrong_key_and_takes_an_ephemeral_one(rules_live: Live) -> None:
    rules_live.store.set_knobs("live", {"api_key": "sk-right"})
    with pytest.raises(InvalidStatus) as refused:
        async with client(rules_live, "sk-wrong").realtime.connect(model="gpt-realtime"):
            pass
    assert refused.value.response.status_code == 401
    raw = await client(rules_live, "sk-right").realtime.client_secrets.with_raw_response.create(
        session={"type": "realtime", "instructions": "Be brief."}
    )
    secret = ClientSecretCreateResponse.model_validate_json(raw.http_response.content, strict=True)
    assert secret.value.startswith("ek_") and secret.session.instructions == "Be brief."
    async with client(rules_live, secret.value).realtime.connect(model="gpt-realtime") as conn:
        assert (await Events(conn).next()).type == "session.created"


async def test_a_plain_http_get_of_the_socket_route_is_refused_in_openai_shape(rules_live: Live) -> None:
    import httpx

    async with httpx.AsyncClient() as http:
        answer = await http.get(rules_live.root + "/v1/realtime?model=gpt-realtime")
    assert answer.status_code == 426 and answer.json()["error"]["message"]


async def test_an_idle_session_is_closed_and_an_oversized_event_is_refused(rules_live: Live) -> None:
    rules_live.store.configure(max_body=2000)
    rules_live.store.set_knobs("live", {"realtime_idle_s": 0.3})
    async with client(rules_live).realtime.connect(model="gpt-realtime") as conn:
        events = Events(conn)
        await text_session(conn, events)
        await say(conn, "x" * 3000)
        too_big = await events.next()
        with pytest.raises(ConnectionClosed) as closed:
            await events.next()
    assert too_big.type == "error" and too_big.error.code == "message_too_large"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000 and "idle" in closed.value.rcvd.reason


def test_the_sync_client_runs_a_turn_and_metrics_count_each_response(rules_server: Live) -> None:
    import httpx

    rules_server.store.set_knobs("live", {"latency_ms": 150})
    sync = openai.OpenAI(base_url=rules_server.openai_url, api_key="sk-test", max_retries=0)
    with sync.realtime.connect(model="gpt-realtime") as conn:
        assert EVENTS.validate_json(conn.recv_bytes(), strict=True).type == "session.created"
        conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        for _ in range(2):
            conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}
            )
            conn.response.create()
            kinds = []
            while not kinds or kinds[-1] != "rate_limits.updated":
                kinds.append(EVENTS.validate_json(conn.recv_bytes(), strict=True).type)
            assert "response.output_text.delta" in kinds
    row = session_row(rules_server.store)
    assert row.endpoint == "realtime" and row.chunk_labels[0] == "session.created"
    assert row.chunk_labels.count("response.done") == 2
    metrics = httpx.get(rules_server.root + "/metrics").text
    where = 'endpoint="realtime",provider="openai-realtime"'
    assert f'mockllm_requests_total{{{where},rule="hello",status="200"}} 2.0' in metrics
    # each response's time to first token is its own (after its 150 ms latency), not the session's
    assert f"mockllm_time_to_first_token_seconds_count{{{where}}} 2.0" in metrics
    bucket = 'mockllm_time_to_first_token_seconds_bucket{endpoint="realtime",le="0.1",provider="openai-realtime"}'
    assert f"{bucket} 0.0" in metrics
