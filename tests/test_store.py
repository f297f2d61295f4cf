"""The state store: bounded journal, non-blocking subscriptions, counters."""

from __future__ import annotations

import asyncio
import time

import httpx

from mockllm_tui.core.conversation import Conversation, Message
from mockllm_tui.core.store import Store
from mockllm_tui.http.journal import JournalRecorder
from tests.conftest import Live

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def test_journal_drops_the_oldest_past_its_bound() -> None:
    store = Store(journal_size=3)
    entries = [store.begin_request("POST", f"/p{i}") for i in range(5)]
    for e in entries:
        store.end_request(e, 200)
    assert [e.path for e in store.journal()] == ["/p2", "/p3", "/p4"]
    assert store.counters.total == 5
    assert store.counters.in_flight == 0


def test_a_subscriber_that_never_drains_stays_bounded_and_never_blocks() -> None:
    store = Store(journal_size=10)
    sub = store.subscribe(size=100)
    start = time.perf_counter()
    for i in range(20_000):
        store.end_request(store.begin_request("GET", f"/{i}"), 200)
    elapsed = time.perf_counter() - start
    assert len(sub) == 100
    assert sub.overflowed
    assert len(store.journal()) == 10
    # 40,000 publishes: a blocking publisher would never get here; a bound of a second is generous.
    assert elapsed < 1.0
    events = sub.drain()
    assert events[-1][0] == "done" and events[-1][1].path == "/19999"
    assert not sub.overflowed and len(sub) == 0


def test_a_subscriber_can_ask_for_some_kinds_only_and_open_requests_are_known() -> None:
    store = Store(journal_size=2)
    done_only = store.subscribe(kinds=frozenset({"done"}))
    everything = store.subscribe()
    long_one = store.begin_request("POST", "/long")
    for i in range(3):
        store.end_request(store.begin_request("GET", f"/{i}"), 200)
    assert [(kind, e.path) for kind, e in done_only.drain()] == [("done", "/0"), ("done", "/1"), ("done", "/2")]
    assert [kind for kind, _ in everything.drain()] == ["request", "request", "done"] * 1 + ["request", "done"] * 2
    # The journal has let the long request go, but it is still being answered.
    assert long_one not in store.journal() and store.open_requests() == [long_one]
    store.end_request(long_one, 200)
    assert store.open_requests() == []


def test_unsubscribed_subscriber_gets_nothing() -> None:
    store = Store()
    sub = store.subscribe()
    store.unsubscribe(sub)
    store.begin_request("GET", "/x")
    assert sub.drain() == []


async def test_wait_returns_on_publish_and_times_out_without() -> None:
    store = Store()
    sub = store.subscribe()
    assert await sub.wait(0.01) is False
    waiter = asyncio.create_task(sub.wait(5))
    await asyncio.sleep(0)
    store.begin_request("GET", "/x")
    assert await waiter is True


def test_counters_by_status_and_errors() -> None:
    store = Store()
    for status in (200, 200, 404, 529):
        store.end_request(store.begin_request("POST", "/v1/x"), status)
    c = store.counters
    assert c.total == 4 and c.errors == 2
    assert c.by_status == {200: 2, 404: 1, 529: 1}
    store.clear_journal()
    assert store.counters.total == 0 and store.journal() == []


def test_a_session_row_counts_its_responses_not_itself() -> None:
    store = Store()
    finished: list[tuple[int, int, int]] = []
    store.add_finish_hook(lambda e: finished.append((e.id, e.status, len(e.chunks))))
    done = store.subscribe(kinds=frozenset({"done"}))
    journal = JournalRecorder(store, "WS", "/v1/realtime")
    journal.first_byte()
    journal.chunk("", 10, "session.created")
    for status, text in ((200, "hi"), (429, "again")):
        started = time.perf_counter()
        journal.next_response(Conversation("openai", "realtime", "gpt-realtime", [Message("user", text)]), "resp")
        journal.matched(f"rule-{status}")
        journal.chunk(text, 5, "response.output_text.delta")
        journal.response_ended(status, started, len(journal.entry.chunks) - 1)
    row = journal.entry
    assert store.journal() == [row] and row.open and row.rule == "rule-429" and row.preview == "again"
    assert (store.counters.total, store.counters.by_status, store.counters.errors) == (2, {200: 1, 429: 1}, 1)
    assert finished == [(row.id, 200, 1), (row.id, 429, 1)] and not len(done)
    journal.session_ended(101)
    assert not row.open and row.status == 101 and row.chunk_labels[0] == "session.created"
    assert store.counters.total == 2 and store.counters.in_flight == 0 and store.counters.streams_open == 0
    assert len(finished) == 2 and [payload for _kind, payload in done.drain()] == [row]


async def test_counters_add_up_under_concurrent_requests(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.root, limits=httpx.Limits(max_connections=32)) as client:
        sends = [client.post("/v1/chat/completions", json=CHAT) for _ in range(150)]
        sends += [client.post("/v1/chat/completions", json={"model": "x"}) for _ in range(50)]
        responses = await asyncio.gather(*sends)
    statuses = [r.status_code for r in responses]
    c = live.store.counters
    assert statuses.count(200) == 150 and statuses.count(400) == 50
    assert c.total == 200
    assert c.by_status == {200: 150, 400: 50}
    assert c.in_flight == 0 and c.streams_open == 0
    assert sum(1 for e in live.store.journal() if e.status == 200) == 150


def test_the_journal_recorder_writes_each_phase_into_the_entry_the_admin_api_shows() -> None:
    from mockllm_tui.core.conversation import Conversation, Message, Reply, Usage
    from mockllm_tui.http.journal import JournalRecorder

    store = Store()
    sub = store.subscribe()
    journal = JournalRecorder(store, "POST", "/v1/chat/completions", {"authorization": "[redacted]"})
    journal.served_by("openai", "openai", "req_1", "chat.completions", "chat")
    journal.body(b'{"model": "gpt-4o"}')
    conversation = Conversation(
        provider="openai", endpoint="chat.completions", model="gpt-4o", messages=[Message("user", "hi  there")]
    )
    journal.parsed(conversation)
    journal.limited(12, 128_000, None, False)
    journal.matched("greeting")
    journal.replied(Reply(text="Hello", thinking="hmm", usage=Usage(12, 3)), "chatcmpl-1")
    journal.faulted("529 injected", 529, "mid_stream")
    assert store.counters.streams_open == 0
    journal.first_byte()
    journal.paced(40.0)
    assert store.counters.streams_open == 1
    journal.chunk("Hel", 10)
    journal.chunks(["l", "o"], 20)
    journal.reply_text("Hello")
    journal.ended(200)
    entry = store.journal()[-1]
    public = entry.public()
    assert {k: public[k] for k in ("provider", "model", "preview", "status", "stream", "chunks", "rule", "fault")} == {
        "provider": "openai",
        "model": "gpt-4o",
        "preview": "hi there",
        "status": 200,
        "stream": True,
        "chunks": 3,
        "rule": "greeting",
        "fault": "529 injected",
    }
    assert public["bytes"] == 30 and public["reply"] == "Hello" and public["thinking"] == "hmm"
    assert public["prompt_tokens"] == 12 and public["context_window"] == 128_000 and public["request_id"] == "req_1"
    assert public["headers"] == {"authorization": "[redacted]"} and entry.request_body == b'{"model": "gpt-4o"}'
    assert (entry.response_id, entry.input_tokens, entry.output_tokens) == ("chatcmpl-1", 12, 3)
    assert (entry.fault_status, entry.fault_mode, entry.operation) == (529, "mid_stream", "chat")
    assert entry.stream_speed == 40.0
    assert [kind for kind, _ in sub.drain()] == ["request", "chunk", "chunk", "done"]
    assert store.counters.streams_open == 0 and store.counters.by_status == {200: 1}

    gone = JournalRecorder(store, "POST", "/v1/chat/completions")
    gone.parsed(model="gpt-4o", what="retrieve gpt-4o")
    gone.failed(499)
    gone.ended(200)  # an entry ends once
    assert store.journal()[-1].status == 499 and store.journal()[-1].preview == "retrieve gpt-4o"
    assert store.counters.by_status == {200: 1, 499: 1} and store.counters.in_flight == 0
