"""The shared journal (`--state redis://…`): every process lists the requests of all, in time order,
each naming the process that served it; a late joiner sees the recent history; the stream stays
capped; a clear reaches every process; a lost Redis loses nothing; the panel shows the others'
requests. Real redis-server, real headless processes, the real openai SDK and the real panel."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import orjson
import redis

from mockllm_tui.core.store import JournalEntry, Store
from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import ServerHandle
from mockllm_tui.rules import load_initial
from mockllm_tui.shared.group import redis_state
from mockllm_tui.shared.journal import BODY_LIMIT, CHUNK_LIMIT, foreign_entry, read_items, summary_data
from mockllm_tui.tui.app import MockPanel
from mockllm_tui.tui.widgets.request_log import RequestLog
from tests.redis_server import RedisServer
from tests.support import PanelDriver, rendered
from tests.test_shared_state import serve

T = TypeVar("T")
DEADLINE_S = 15.0
REPLY = "This is a mock response from mockllm-tui."


def until(read: Callable[[], T], done: Callable[[T], bool], timeout: float = DEADLINE_S) -> T:
    """Read until `done(value)` holds (the batch has crossed); fail with the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not in time; last read: {value!r}")
        time.sleep(0.05)


@contextlib.contextmanager
def group(tmp_path: Path, redis_url: str, names: list[str], *extra: str) -> Iterator[dict[str, str]]:
    """Headless processes on one Redis, named `names` and started side by side: their root URLs by name."""
    with ThreadPoolExecutor(len(names)) as pool:
        futures = [
            pool.submit(
                serve, "--state", redis_url, "--instance-name", name, "--log-file", f"{name}.log", *extra, cwd=tmp_path
            )
            for name in names
        ]
    procs = [f.result()[0] for f in futures if f.exception() is None]
    try:
        yield {name: f.result()[1] for name, f in zip(names, futures, strict=True)}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            assert proc.wait(15) == 0


def chat(root: str, prompt: str) -> str:
    """One chat completion through the openai SDK; its reply."""
    with openai.OpenAI(base_url=root + "/v1", api_key="sk-test", max_retries=0) as client:
        reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
    return str(reply.choices[0].message.content)


def journal(root: str, **params: Any) -> list[dict[str, Any]]:
    """GET /_mock/journal's entries (model requests only)."""
    data = httpx.get(root + "/_mock/journal", params=params).json()["data"]
    return [e for e in data if e["path"].startswith("/v1/")]


def prompts(entries: list[dict[str, Any]]) -> list[str]:
    return [e["prompt"] for e in entries]


def stream_length(redis_url: str) -> int:
    with redis.Redis.from_url(redis_url) as client:
        return int(client.xlen("mockllm:journal"))


def test_every_process_lists_the_requests_of_all_in_time_order(tmp_path: Path, redis_server: RedisServer) -> None:
    names = ["a", "b", "c"]
    with group(tmp_path, redis_server.url, names) as roots:
        sent = [f"question {i}" for i in range(9)]
        for i, prompt in enumerate(sent):
            assert chat(roots[names[i % 3]], prompt) == REPLY
        for name in names:
            entries = until(lambda name=name: journal(roots[name]), lambda es: len(es) == 9)  # type: ignore[misc]
            assert prompts(entries) == sent
            assert [e["instance"] for e in entries] == names * 3
            times = [e["time"] for e in entries]
            assert times == sorted(times)
            assert all(e["status"] == 200 and e["model"] == "gpt-4o" and e["provider"] == "openai" for e in entries)
            assert all(e["reply"] == REPLY and e["duration_ms"] > 0 for e in entries)
            assert len({e["id"] for e in entries}) == 9  # ids of its own
        # each process's request log tells only what it served
        logged = until((tmp_path / "b.log").read_text, lambda text: '"question 7"' in text)
        assert [f'"question {i}"' in logged for i in range(9)] == [i % 3 == 1 for i in range(9)]
        # the newest N, the entry by id, the full form (the event stream's data) and the totals
        assert prompts(journal(roots["b"], limit=2)) == sent[-2:]
        entry = journal(roots["b"])[0]
        one = httpx.get(f"{roots['b']}/_mock/journal/{entry['id']}").json()
        assert one["instance"] == "a" and one["prompt"] == "question 0"
        assert one["body"]["messages"] == [{"role": "user", "content": "question 0"}]
        assert httpx.get(f"{roots['b']}/_mock/journal/99999").status_code == 404
        full = httpx.get(roots["c"] + "/_mock/journal", params={"full": "true"}).json()
        crossed = [e for e in full["data"] if e["path"].startswith("/v1/") and e["instance"] != "c"]
        assert len(crossed) == 6 and all(e["foreign"] for e in crossed)
        assert crossed[0]["conversation"]["messages"][0]["content"] == "question 0"
        assert full["counters"]["by_status"]["200"] >= 9
        # /metrics stays this process's
        metrics = httpx.get(roots["a"] + "/metrics").text
        served = [line for line in metrics.splitlines() if line.startswith("mockllm_requests_total{")]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in served if "chat" in line) == 3

        # a late joiner starts with the recent history
        with group(tmp_path, redis_server.url, ["d"]) as late:
            assert prompts(journal(late["d"])) == sent
            assert chat(late["d"], "from the late one") == REPLY
            after = until(lambda: journal(roots["a"]), lambda es: len(es) == 10)
            assert after[-1]["instance"] == "d" and after[-1]["prompt"] == "from the late one"


def test_the_stream_stays_capped_and_a_clear_reaches_every_process(tmp_path: Path, redis_server: RedisServer) -> None:
    with group(tmp_path, redis_server.url, ["a", "b"], "--journal-size", "4") as roots:
        sent = [f"message {i}" for i in range(10)]
        for i, prompt in enumerate(sent):
            chat(roots["ab"[i % 2]], prompt)
        entries = until(lambda: journal(roots["a"]), lambda es: prompts(es) == sent[-4:])
        assert [e["instance"] for e in entries] == ["a", "b", "a", "b"]
        until(lambda: stream_length(redis_server.url), lambda n: n == 4)
        assert prompts(until(lambda: journal(roots["b"]), lambda es: prompts(es) == sent[-4:])) == sent[-4:]

        assert httpx.delete(roots["b"] + "/_mock/journal").json() == {"cleared": True}
        assert journal(roots["b"]) == []
        until(lambda: stream_length(redis_server.url), lambda n: n == 0)
        until(lambda: journal(roots["a"]), lambda es: es == [])
        counters = httpx.get(roots["a"] + "/_mock/journal").json()["counters"]
        assert counters["total"] <= 1  # the request that read the journal may be counted
        # and the journal keeps working after the clear
        chat(roots["a"], "after the clear")
        assert prompts(until(lambda: journal(roots["b"]), lambda es: len(es) == 1)) == ["after the clear"]


def test_requests_served_while_redis_is_lost_reach_the_others_when_it_is_back(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with group(tmp_path, redis_server.url, ["a", "b"]) as roots:
        chat(roots["a"], "before")
        until(lambda: journal(roots["b"]), lambda es: prompts(es) == ["before"])
        redis_server.stop()
        until(lambda: httpx.get(roots["a"] + "/health").json()["state"], lambda s: s == "degraded")
        started = time.monotonic()
        for i in range(3):
            assert chat(roots["a"], f"while lost {i}") == REPLY
        assert time.monotonic() - started < 5  # serving never waits for Redis
        redis_server.start()  # back, empty
        entries = until(lambda: journal(roots["b"]), lambda es: len(es) == 4, timeout=30)
        assert prompts(entries) == ["before", "while lost 0", "while lost 1", "while lost 2"]
        assert {e["instance"] for e in entries} == {"a"}


@dataclass
class Panel(PanelDriver):
    """The running panel on a Redis state, its pilot and store."""

    app: MockPanel
    pilot: Any
    store: Store
    client: openai.AsyncOpenAI


async def test_the_panel_shows_a_request_another_process_served(tmp_path: Path, redis_server: RedisServer) -> None:
    path = tmp_path / "responses.yml"
    path.write_text('responses:\n  "default": "This is a mock response from mockllm-tui."\n')
    store = Store(state=redis_state(redis_server.url, "mockllm", "panel"))
    load_initial(store, path)
    handle = ServerHandle(create_app(store), "127.0.0.1", 0, grace_s=1)
    app = MockPanel(store, handle, watch_file=False, keymap_file=tmp_path / "keymap.yml", export_dir=tmp_path)
    with group(tmp_path, redis_server.url, ["elsewhere"]) as roots:
        async with app.run_test(size=(160, 45)) as pilot:
            client = openai.AsyncOpenAI(base_url=handle.url, api_key="sk-test", max_retries=0)
            panel = Panel(app, pilot, store, client)
            panel.wait_s = DEADLINE_S
            assert await panel.chat("asked here") == REPLY
            chat(roots["elsewhere"], "asked elsewhere")
            log = app.query_one(RequestLog)

            def shown() -> list[str]:
                return [log.entry_at(row).preview for row in range(log.row_count)]

            await panel.until(lambda: shown() == ["asked here", "asked elsewhere"])
            detail = app.query_one("#detail-body")
            await panel.until(lambda: "served by another process: elsewhere" in rendered(detail))  # type: ignore[arg-type]
            assert "user: asked elsewhere" in rendered(detail)  # type: ignore[arg-type]
            await pilot.press("up")  # this process's own request: no such line
            await panel.until(lambda: "user: asked here" in rendered(detail))  # type: ignore[arg-type]
            assert "served by" not in rendered(detail)  # type: ignore[arg-type]
            await pilot.press("ctrl+e")  # the export names the process that served each request
            await panel.until(lambda: any(tmp_path.glob("mockllm-journal-*.jsonl")))
            exported = [
                orjson.loads(line) for line in next(tmp_path.glob("mockllm-journal-*.jsonl")).read_text().splitlines()
            ]
            assert [(e["prompt"], e["instance"]) for e in exported if e["path"] == "/v1/chat/completions"] == [
                ("asked here", "panel"),
                ("asked elsewhere", "elsewhere"),
            ]
            # the other process lists the panel's request too (polled without blocking the panel's loop)
            await panel.until(lambda: prompts(journal(roots["elsewhere"])) == ["asked here", "asked elsewhere"])
            await client.close()


def finished(entry_id: int, at: float, *, body: bytes = b"", chunks: int = 0) -> JournalEntry:
    """A finished chat completion that started at wall time `at`."""
    entry = JournalEntry(id=entry_id, time=at, method="POST", path="/v1/chat/completions", instance="b")
    entry.status, entry.open, entry.request_body, entry.rule_id = 200, False, body, 7
    for i in range(chunks):
        entry.chunks.append(f"c{i}")
        entry.chunk_times.append(entry.started + i / 1000)
    return entry


def test_a_foreign_entry_goes_in_time_order_with_an_id_of_its_own() -> None:
    store = Store(journal_size=3)
    for at in (10.0, 20.0, 30.0):
        store.end_request(store.begin_request("POST", "/v1/x"), 200)
        store.journal()[-1].time = at
    sub = store.subscribe(kinds=frozenset({"done"}))
    assert store.add_foreign(finished(1, 25.0))  # between the second and the third: the oldest leaves
    assert [e.time for e in store.journal()] == [20.0, 25.0, 30.0]
    placed = store.journal()[1]
    assert placed.id == 4 and placed.foreign and placed.instance == "b" and placed.rule_id is None
    assert store.entry(4) is placed and store.counters.total == 4
    assert sub.drain() == [("done", placed)]
    assert not store.add_foreign(finished(1, 5.0))  # older than all a full journal holds
    assert [e.time for e in store.journal()] == [20.0, 25.0, 30.0]
    assert store.journal()[0].instance == store.state.instance and not store.journal()[0].foreign


def test_a_summary_redacts_credentials_and_leaves_out_what_is_large() -> None:
    small = finished(1, 1.0, body=b'{"api_key": "sk-secret", "messages": []}', chunks=3)
    data = summary_data(small, api_key=None)
    assert "sk-secret" not in data["body"]["text"] and data["chunks"] == ["c0", "c1", "c2"]
    back = foreign_entry(orjson.loads(orjson.dumps(data)))
    assert back.instance == "b" and back.chunks == ["c0", "c1", "c2"] and len(back.chunk_times) == 3
    large = finished(2, 1.0, body=b'{"x": "' + b"y" * BODY_LIMIT + b'"}', chunks=CHUNK_LIMIT + 5)
    data = summary_data(large, api_key=None)
    assert data["body"] is None and len(data["chunks"]) == len(data["chunk_ms"]) == CHUNK_LIMIT


def test_read_items_takes_both_reply_shapes() -> None:
    pairs = [(b"1-0", {b"o": b"x"}), (b"2-0", {b"o": b"y"})]
    assert read_items([[b"k", pairs]]) == pairs  # RESP2
    assert read_items({b"k": [pairs]}) == pairs  # RESP3
    assert read_items(None) == []


#: Start/stop rounds of the stop test (the hang it guards against showed about once in 10-50 stops).
STOP_ROUNDS = 15


async def test_a_process_leaves_the_group_at_once_with_writes_and_reads_in_flight(redis_server: RedisServer) -> None:
    """Stopping cancels the journal's loops mid-command; none may lose the cancellation and hang on."""
    pace = random.Random(7)
    for round_ in range(STOP_ROUNDS):
        store = Store(state=redis_state(redis_server.url, "mockllm", f"p{round_}"))
        await store.state.start(store)
        for _ in range(pace.randint(0, 5)):
            store.end_request(store.begin_request("POST", "/v1/chat/completions"), 200)
        await asyncio.sleep(pace.random() * 0.2)
        await asyncio.wait_for(store.state.stop(), 10)
    with redis.Redis.from_url(redis_server.url) as client:  # each process's last batch was written as it left
        assert client.xlen("mockllm:journal") == sum(pace_counts(7, STOP_ROUNDS))


def pace_counts(seed: int, rounds: int) -> list[int]:
    """How many requests each round of the test above made (the same draws, replayed)."""
    pace = random.Random(seed)
    counts = []
    for _ in range(rounds):
        counts.append(pace.randint(0, 5))
        pace.random()
    return counts
