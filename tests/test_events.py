"""The event stream `/_mock/events`, `/_mock/try`, `/_mock/rules/file` and `/_mock/rules/from-request`:
a real server, real SSE clients (httpx streaming) and the real openai SDK making the requests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from mockllm_tui.admin.event_feed import EventFeed
from tests.conftest import Live, rules_store, serving

RULES = """\
rules:
  - name: weather
    match: {contains: weather}
    reply: "Sunny and warm all day long."
responses:
  hello: "Hi there, friend."
"""
TIMEOUT_S = 20.0


@dataclass
class Sse:
    """One Server-Sent Event (or a comment, with `name` "comment")."""

    name: str
    id: str | None
    data: Any


async def read_events(response: httpx.Response) -> AsyncIterator[Sse]:
    """Parse a text/event-stream body as it arrives."""
    name, ident, data = "message", None, []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield Sse("comment", None, line[1:].strip())
        elif line.startswith("id:"):
            ident = line[3:].strip()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            yield Sse(name, ident, orjson.loads("\n".join(data)))
            name, ident, data = "message", None, []


class Listener:
    """An SSE client reading in the background into a queue."""

    def __init__(self, live: Live, headers: dict[str, str] | None = None) -> None:
        self.url = live.root + "/_mock/events"
        self.headers = headers or {}
        self.queue: asyncio.Queue[Sse] = asyncio.Queue()
        self.status = 0
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Listener:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self._ready.wait(), TIMEOUT_S)
        return self

    async def _read(self) -> None:
        async with (
            httpx.AsyncClient(timeout=None) as client,
            client.stream("GET", self.url, headers=self.headers) as response,
        ):
            self.status = response.status_code
            self._ready.set()
            if response.status_code != 200:
                await response.aread()
                return
            async for event in read_events(response):
                await self.queue.put(event)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def next(self, name: str | None = None, *, comments: bool = False) -> Sse:
        """The next event (of this name); comments are skipped unless asked for."""
        while True:
            event = await asyncio.wait_for(self.queue.get(), TIMEOUT_S)
            if event.name == "comment" and not comments:
                continue
            if name is None or event.name == name:
                return event

    async def until(self, name: str, test: Any = lambda data: True) -> tuple[Sse, list[Sse]]:
        """Events up to the first `name` whose data passes `test`: (that one, all of them)."""
        seen = []
        while True:
            event = await self.next()
            seen.append(event)
            if event.name == name and test(event.data):
                return event, seen


@pytest.fixture
async def events_live(tmp_path: Path) -> AsyncIterator[Live]:
    async with serving(rules_store(tmp_path, RULES)) as running:
        yield running


async def test_a_stream_is_told_from_start_to_end_and_every_event_has_an_id(events_live: Live) -> None:
    async with Listener(events_live) as listener:
        first = [await listener.next() for _ in range(4)]
        assert [e.name for e in first] == ["knobs.changed", "rules.changed", "totals.changed", "state.changed"]
        assert [r["id"] for r in first[1].data["rules"]] == ["weather", "#2"]
        client = openai.AsyncOpenAI(base_url=events_live.openai_url, api_key="sk-test", max_retries=0)
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "how is the weather?"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        ended, seen = await listener.until("request.ended")
    assert text == "Sunny and warm all day long."
    assert all(e.id for e in seen)
    numbers = [int(e.id.rsplit("-", 1)[1]) for e in seen if e.id]
    assert numbers == sorted(numbers)
    chunks: list[str] = []
    for event in seen:
        if event.name.startswith("request.") and event.data["id"] == ended.data["id"]:
            assert event.data["chunks_from"] == len(chunks)
            chunks += event.data["chunks"]
    assert ended.data["status"] == 200 and ended.data["open"] is False
    assert ended.data["rule"] == "weather"
    assert ended.data["conversation"]["messages"][-1]["content"] == "how is the weather?"
    assert "Sunny" in "".join(chunks)
    assert ended.data["stream"] is True
    told = [e for e in seen if e.name.startswith("request.") and e.data["id"] == ended.data["id"]]
    assert len(told) < len(chunks)  # batched: an unpaced stream is told in fewer events than it has chunks


async def test_knob_and_rule_changes_are_events(events_live: Live) -> None:
    async with Listener(events_live) as listener, httpx.AsyncClient(base_url=events_live.root) as http:
        await listener.next("state.changed")
        patched = await http.patch("/_mock/settings", json={"latency_ms": 250})
        assert patched.status_code == 200
        knobs = await listener.next("knobs.changed")
        assert knobs.data["effective"]["latency_ms"] == 250
        # the answer names the last event made before it: the one telling of the change comes after
        mark = patched.headers["x-mock-event-id"]
        assert knobs.id is not None and mark.rpartition("-")[0] == knobs.id.rpartition("-")[0]
        assert int(knobs.id.rpartition("-")[2]) > int(mark.rpartition("-")[2])
        listed = await http.get("/_mock/rules")
        assert listed.headers["x-mock-event-id"].rpartition("-")[0] == knobs.id.rpartition("-")[0]
        added = await http.post(
            "/_mock/rules", json={"name": "tea", "match": {"contains": "tea"}, "reply": "Earl Grey"}
        )
        assert added.status_code == 201
        rules, _ = await listener.until("rules.changed", lambda d: any(r["id"] == "tea" for r in d["rules"]))
        assert all(isinstance(r["rid"], int) for r in rules.data["rules"])
        assert (await http.delete("/_mock/journal")).status_code == 200
        cleared = await listener.next("state.changed")
        assert cleared.data["journal_cleared"] is True


async def test_last_event_id_resumes_without_a_gap(events_live: Live) -> None:
    client = openai.AsyncOpenAI(base_url=events_live.openai_url, api_key="sk-test", max_retries=0)
    async with Listener(events_live) as witness:  # stays connected: when it has seen an event, the feed has it
        async with Listener(events_live) as listener:
            await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
            ended = await listener.next("request.ended")
        # while this client is away, two more requests
        for prompt in ("hello", "weather today"):
            await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
        await witness.until("request.ended", lambda d: d["id"] == ended.data["id"] + 2)
    assert ended.id is not None
    async with Listener(events_live, {"last-event-id": ended.id}) as resumed:
        first = await resumed.next()
        if first.name == "totals.changed":  # the totals after the last request seen
            first = await resumed.next()
        assert first.name in ("request.started", "request.ended")  # no reset, no snapshot
        assert first.data["id"] == ended.data["id"] + 1
        last, _ = await resumed.until("request.ended", lambda d: d["id"] == ended.data["id"] + 2)
    assert last.data["reply_text"] == "Sunny and warm all day long."


async def test_an_unknown_or_lost_id_starts_with_reset(tmp_path: Path) -> None:
    store = rules_store(tmp_path, RULES)
    async with serving(store) as live:
        live.app.fallback.state.event_feed = EventFeed(store, buffer_size=2)
        async with Listener(live, {"last-event-id": "another-run-7"}) as listener:
            first = await listener.next()
            assert first.name == "reset"
            assert [(await listener.next()).name for _ in range(4)] == [
                "knobs.changed",
                "rules.changed",
                "totals.changed",
                "state.changed",
            ]
        feed: EventFeed = live.app.fallback.state.event_feed
        early = feed.event_id()
        async with httpx.AsyncClient(base_url=live.root) as http, Listener(live) as witness:
            for latency in (1, 2, 3, 4):  # four events: more than the buffer of two holds
                await http.patch("/_mock/settings", json={"latency_ms": latency})
                await witness.until("knobs.changed", lambda d, n=latency: d["effective"]["latency_ms"] == n)
        async with Listener(live, {"last-event-id": early}) as listener:
            assert (await listener.next()).name == "reset"
            snapshot = await listener.next()
            assert snapshot.name == "knobs.changed" and snapshot.data["effective"]["latency_ms"] == 4


async def test_the_event_stream_needs_the_api_key(tmp_path: Path) -> None:
    store = rules_store(tmp_path, RULES)
    store.set_knobs("cli", {"api_key": "sk-secret"})
    async with serving(store) as live:
        async with Listener(live) as refused:
            assert refused.status == 401
        async with Listener(live, {"authorization": "Bearer sk-wrong"}) as refused:
            assert refused.status == 401
        async with Listener(live, {"authorization": "Bearer sk-secret"}) as listener:
            assert listener.status == 200
            assert (await listener.next()).name == "knobs.changed"
        async with httpx.AsyncClient(base_url=live.root) as http:
            assert (await http.post("/_mock/try", json={"prompt": "hello"})).status_code == 401
            assert (await http.get("/_mock/rules/file")).status_code == 401


async def test_a_heartbeat_comment_comes_when_nothing_happens(tmp_path: Path) -> None:
    store = rules_store(tmp_path, RULES)
    async with serving(store) as live:
        live.app.fallback.state.event_feed = EventFeed(store, heartbeat_s=0.05)
        async with Listener(live) as listener:
            await listener.next("state.changed")
            beat = await listener.next(comments=True)
    assert beat.name == "comment" and beat.data == "heartbeat"


async def test_try_names_the_winner_and_counts_nothing(events_live: Live) -> None:
    store = events_live.store
    async with httpx.AsyncClient(base_url=events_live.root) as http:
        before = (await http.get("/_mock/rules")).json()["data"]
        tried = await http.post("/_mock/try", json={"prompt": "weather in Paris?", "model": "gpt-4o", "provider": None})
        fallback = await http.post("/_mock/try", json={"prompt": "nothing matches this"})
        bad = await http.post("/_mock/try", json={"model": "gpt-4o"})
        after = (await http.get("/_mock/rules")).json()["data"]
    assert tried.status_code == 200
    assert tried.json()["rule"] == "weather" and tried.json()["reply"] == "Sunny and warm all day long."
    assert fallback.json()["rule"] is None and fallback.json()["reply"]
    assert bad.status_code == 400
    assert [r["hits"] for r in before] == [r["hits"] for r in after] == [0, 0]
    assert store.journal() == []
    assert store.counters.total == 0


async def test_the_rules_file_is_served_with_its_version(events_live: Live) -> None:
    async with httpx.AsyncClient(base_url=events_live.root) as http:
        got = await http.get("/_mock/rules/file")
        assert got.status_code == 200
        assert got.text == RULES
        etag = got.headers["etag"]
        assert (await http.get("/_mock/rules/file", headers={"if-none-match": etag})).status_code == 304
        await http.post("/_mock/rules", json={"match": {"contains": "tea"}, "reply": "Earl Grey"})
        changed = await http.get("/_mock/rules/file", headers={"if-none-match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert "Earl Grey" in changed.text and "Sunny and warm all day long." in changed.text


async def test_a_rule_from_a_request_is_placed_where_it_answers(events_live: Live) -> None:
    client = openai.AsyncOpenAI(base_url=events_live.openai_url, api_key="sk-test", max_retries=0)
    await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "weather now"}])
    entry = events_live.store.journal()[-1]
    rule = {"name": "weather-now", "match": {"exact": "weather now"}, "reply": "Rain."}
    async with httpx.AsyncClient(base_url=events_live.root) as http:
        made = await http.post("/_mock/rules/from-request", json={"request": entry.id, "rule": rule})
        missing = await http.post("/_mock/rules/from-request", json={"request": 999, "rule": rule})
    assert made.status_code == 201, made.text
    assert missing.status_code == 404
    again = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "weather now"}])
    assert again.choices[0].message.content == "Rain."


async def test_stopping_the_server_ends_the_event_stream_cleanly(events_live: Live) -> None:
    listener = await Listener(events_live).__aenter__()
    await listener.next("state.changed")
    await events_live.handle.stop()
    assert listener._task is not None
    await asyncio.wait_for(listener._task, TIMEOUT_S)
    assert listener._task.exception() is None  # the stream ended, not cut when the grace ran out


async def test_the_full_journal_gives_each_request_whole(events_live: Live) -> None:
    client = openai.AsyncOpenAI(base_url=events_live.openai_url, api_key="sk-test", max_retries=0)
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "weather?"}], stream=True
    )
    [c async for c in stream]
    async with httpx.AsyncClient(base_url=events_live.root) as http:
        full = (await http.get("/_mock/journal", params={"full": "true"})).json()
        short = (await http.get("/_mock/journal")).json()
    (entry,) = full["data"]
    assert entry["conversation"]["messages"][-1] == {
        "role": "user",
        "content": "weather?",
        "tool_calls": [],
        "tool_call_id": None,
        "name": None,
    }
    assert "".join(entry["chunks"]) == "Sunny and warm all day long." and len(entry["chunk_ms"]) == len(entry["chunks"])
    assert entry["body"]["text"].startswith("{") and full["counters"]["total"] == 1
    assert "conversation" not in short["data"][0]  # the default shape is unchanged


async def test_an_attached_mirror_resumes_a_dropped_stream_without_reloading(events_live: Live) -> None:
    from mockllm_tui.remote.attached import AttachedServer
    from mockllm_tui.remote.client import AdminClient
    from mockllm_tui.remote.mirror import MirrorStore

    mirror = MirrorStore(AdminClient(events_live.root))
    handle = AttachedServer(mirror, first_retry_s=0.01)
    sub = mirror.subscribe()
    client = openai.AsyncOpenAI(base_url=events_live.openai_url, api_key="sk-test", max_retries=0)

    async def seen(prompt: str) -> None:
        while not any(e.transcript() and e.transcript()[-1][1] == prompt for e in mirror.journal()):
            assert await sub.wait(TIMEOUT_S)
            sub.drain()

    await handle.start()
    try:
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "first"}])
        await asyncio.wait_for(seen("first"), TIMEOUT_S)
        assert handle.journal_loads == 1 and handle.stream is not None and handle.last_id
        dropped = handle.stream
        await dropped.aclose()  # the connection drops; the server goes on
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "second"}])
        await asyncio.wait_for(seen("second"), TIMEOUT_S)
        assert handle.stream is not dropped  # a new connection…
        assert handle.journal_loads == 1  # …resumed by Last-Event-ID: no reset, no reload
        assert [e.transcript()[-1][1] for e in mirror.journal()] == ["first", "second"]
    finally:
        await handle.stop()


async def test_a_feed_nobody_listens_to_stops_and_old_ids_get_reset(tmp_path: Path) -> None:
    store = rules_store(tmp_path, RULES)
    async with serving(store) as live:
        feed = live.app.fallback.state.event_feed = EventFeed(store, idle_s=0.2)
        async with Listener(live) as listener:
            last = (await listener.next("state.changed")).id
        assert feed._task is not None
        await asyncio.wait_for(feed._task, TIMEOUT_S)  # ends by itself once nobody listens
        assert feed._subscription is None and feed.clients == 0
        async with Listener(live, {"last-event-id": last or ""}) as listener:
            assert (await listener.next()).name == "reset"
            assert feed._subscription is not None  # listening again


async def test_events_lost_on_the_server_restart_the_clients_from_a_snapshot(events_live: Live) -> None:
    """The feed's own queue overflowed (the loop stalled): `reset`, then the state as it is now,
    so that an attached mirror reads the journal again."""
    from mockllm_tui.core.store import DEFAULT_SUBSCRIPTION_SIZE
    from mockllm_tui.remote.attached import AttachedServer
    from mockllm_tui.remote.client import AdminClient
    from mockllm_tui.remote.mirror import MirrorStore

    mirror = MirrorStore(AdminClient(events_live.root))
    handle = AttachedServer(mirror, first_retry_s=0.01)
    client = openai.AsyncOpenAI(base_url=events_live.openai_url, api_key="sk-test", max_retries=0)

    async def eventually(condition: Any) -> None:
        async def poll() -> None:
            while not condition():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(poll(), TIMEOUT_S)

    await handle.start()
    try:
        async with Listener(events_live) as listener:
            await listener.next("state.changed")
            await eventually(lambda: handle.journal_loads == 1)
            for _ in range(DEFAULT_SUBSCRIPTION_SIZE + 1):  # more than the feed's queue holds, in one go
                events_live.store.publish("knobs", events_live.store.knobs)
            reset = await listener.next()
            assert reset.name == "reset" and reset.data == {"reason": "events were lost"}
            names = [(await listener.next()).name for _ in range(4)]
            assert names == ["knobs.changed", "rules.changed", "totals.changed", "state.changed"]
            await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
            await listener.until("request.ended")
        await eventually(lambda: handle.journal_loads == 2 and mirror.journal())  # read again after the reset
        assert mirror.journal()[-1].reply_text == "Hi there, friend."
    finally:
        await handle.stop()
