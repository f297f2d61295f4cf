"""Load and disconnects against the real server: many requests, many streams, clients that vanish.

A small raw HTTP/1.1 client stands in for httpx here: at these volumes a full client costs more
CPU than the server, and the test is about the server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from tests.conftest import HOST, Live

CHAT = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]})
CHAT_STREAM = orjson.dumps(
    {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Say hello."}]}
)


class RawConnection:
    """One keep-alive HTTP/1.1 connection that sends requests and reads whole responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        """Connect to the server on loopback."""
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        return cls(reader, writer)

    def send(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Write a request (JSON by default)."""
        lines = [f"{method} {path} HTTP/1.1", f"host: {HOST}", f"content-length: {len(body)}"]
        all_headers = {"content-type": "application/json", **(headers or {})}
        lines += [f"{k}: {v}" for k, v in all_headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def read_head(self) -> tuple[int, dict[str, str]]:
        """The status and headers of the next response."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        first, *rest = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in rest:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return int(first.split()[1]), headers

    async def read_body(self, headers: dict[str, str]) -> bytes:
        """The body: by content-length, or chunked to its end."""
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n"))[:-2], 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return b"".join(parts)
            parts.append(chunk[:-2])

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        """Send a request and read its whole response."""
        self.send(method, path, body)
        status, headers = await self.read_head()
        return status, headers, await self.read_body(headers)

    async def close(self) -> None:
        """Close politely."""
        self.writer.close()
        await self.writer.wait_closed()

    def reset(self) -> None:
        """Vanish: close with a TCP reset, as a killed client does."""
        self.writer.transport.abort()


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll a condition the server reaches asynchronously (cancellations settle a few loop turns later)."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def sample_peak(value: Callable[[], int], stop: asyncio.Event) -> int:
    """The highest value seen until `stop` is set."""
    peak = 0
    while not stop.is_set():
        peak = max(peak, value())
        await asyncio.sleep(0.005)
    return peak


async def in_parallel(count: int, job: Callable[[int], Coroutine[Any, Any, None]]) -> None:
    """Run `count` jobs at once; the first failure fails the lot."""
    async with asyncio.TaskGroup() as group:
        for i in range(count):
            group.create_task(job(i))


async def test_load_many_requests_on_many_connections_with_counters_adding_up(live: Live) -> None:
    # 20,000 requests take over 10 s on two shared cores; the benchmarks run that many (`--only load`).
    requests, connections = 5_000, 256
    store = live.store
    before = store.counters.total
    statuses: dict[int, int] = {}
    bad_bodies = 0
    queue = iter(range(requests))

    async def worker(_i: int) -> None:
        nonlocal bad_bodies
        conn = await RawConnection.open(live.handle.port)
        try:
            for _n in queue:
                status, _, reply = await conn.request("POST", "/v1/chat/completions", CHAT)
                statuses[status] = statuses.get(status, 0) + 1
                if orjson.loads(reply).get("object") != "chat.completion":
                    bad_bodies += 1
        finally:
            await conn.close()

    await in_parallel(connections, worker)
    assert statuses == {200: requests}
    assert bad_bodies == 0
    c = store.counters
    assert c.total - before == requests
    assert c.by_status.get(200, 0) >= requests
    assert (c.in_flight, c.streams_open, c.errors) == (0, 0, 0)
    assert len(store.journal()) == min(store.journal_size, c.total)


async def test_load_a_thousand_concurrent_streams_all_complete(live: Live) -> None:
    streams = 1_000
    store = live.store
    store.set_knobs("live", {"stream_speed": 20.0})  # each stream lasts about half a second
    before = store.counters.total
    stop = asyncio.Event()
    peak_task = asyncio.create_task(sample_peak(lambda: store.counters.streams_open, stop))
    complete = 0

    async def one(_i: int) -> None:
        nonlocal complete
        conn = await RawConnection.open(live.handle.port)
        try:
            status, headers, body = await conn.request("POST", "/v1/chat/completions", CHAT_STREAM)
            assert status == 200
            assert headers["content-type"].startswith("text/event-stream")
            events = [line for line in body.split(b"\n") if line.startswith(b"data: ")]
            assert events[-1] == b"data: [DONE]"
            assert all(b'"chat.completion.chunk"' in e for e in events[:-1])
            complete += 1
        finally:
            await conn.close()

    await in_parallel(streams, one)
    stop.set()
    peak = await peak_task
    assert complete == streams
    assert peak >= streams // 4, f"streams never overlapped much (peak {peak})"
    c = store.counters
    assert c.total - before == streams
    assert (c.in_flight, c.streams_open, c.errors) == (0, 0, 0)


async def test_clients_that_vanish_mid_stream_leave_nothing_behind(live: Live) -> None:
    store = live.store
    store.set_knobs("live", {"stream_speed": 2.0})  # slow enough that every client leaves mid-stream
    baseline_tasks = {t for t in asyncio.all_tasks() if not t.done()}
    conns = [await RawConnection.open(live.handle.port) for _ in range(40)]
    for conn in conns:
        conn.send("POST", "/v1/chat/completions", CHAT_STREAM)
    for conn in conns:
        status, _ = await conn.read_head()
        assert status == 200
        assert (await conn.reader.readuntil(b"\n\n")).count(b"data: ") >= 1
    assert store.counters.streams_open == len(conns)
    for i, conn in enumerate(conns):
        if i % 2:
            conn.reset()
        else:
            await conn.close()

    assert await wait_for(lambda: store.counters.streams_open == 0 and store.counters.in_flight == 0)
    current = asyncio.current_task()
    assert await wait_for(lambda: {t for t in asyncio.all_tasks() if not t.done() and t is not current}
                          <= baseline_tasks), "a task outlived its client"
    entries = store.journal_tail(len(conns))
    assert all(not e.open for e in entries)
    assert {e.status for e in entries} == {499}
    assert sum(len(e.chunks) for e in entries) < len(conns) * 6, "streams went on after their clients left"
