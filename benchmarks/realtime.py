"""Open realtime sessions against open SSE streams: what does each cost the server?

The same server answers N concurrent SSE chat streams, then N concurrent realtime sessions (OpenAI
Realtime, text modality) that each ask for one response of the same reply at the same speed. For
each batch: the server's CPU seconds (from /proc) and its peak resident memory over what it was
once the batch's connections were open. Sessions stay open until every one has its `response.done`.
A warm-up batch of each kind runs first, so first-use imports and caches count in neither.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import Server
from benchmarks.streams import one_stream

WARM_UP = 5


@dataclass
class BatchCost:
    """What one batch cost the server."""

    ok: int
    seconds: float
    cpu_s: float
    #: Peak resident memory over what it was when the batch's connections were open.
    rss_growth_mb: float


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Answered:
    """Counts the sessions whose response is done; releases them all once every one is."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.all = asyncio.Event()

    def one(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.all.set()


async def one_session(port: int, start: asyncio.Event, answered: Answered) -> bool:
    """One realtime session: a text turn, one response read to `response.done`, then open until all are done."""
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime", max_size=None) as ws:
        await ws.recv()
        update = {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}
        await ws.send(json.dumps(update))
        await ws.recv()
        await start.wait()
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Stream me a reply."}]}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send(json.dumps({"type": "response.create"}))
        ok = False
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == "response.done":
                ok = event["response"]["status"] == "completed"
                break
        answered.one()
        await answered.all.wait()
        return ok


async def _batch(srv: Server, count: int, make: Callable[[asyncio.Event], Awaitable[bool]]) -> BatchCost:
    start = asyncio.Event()
    tasks = [asyncio.create_task(make(start)) for _ in range(count)]
    await asyncio.sleep(1.0)  # let the connections open
    cpu0, t0, rss0 = cpu_seconds(srv.proc.pid), time.perf_counter(), srv.rss_mb()
    peak = rss0
    start.set()
    pending: set[asyncio.Task[bool]] = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=0.1)
        peak = max(peak, srv.rss_mb())
    ok = sum(1 for t in tasks if t.exception() is None and t.result())
    return BatchCost(ok, time.perf_counter() - t0, cpu_seconds(srv.proc.pid) - cpu0, peak - rss0)


async def compare(srv: Server, count: int) -> tuple[BatchCost, BatchCost]:
    """(the streams' cost, the sessions' cost) on one server, streams first."""

    async def stream(start: asyncio.Event) -> bool:
        return (await one_stream(srv.port, start))[2]

    async def sessions(size: int) -> BatchCost:
        answered = Answered(size)

        async def session(start: asyncio.Event) -> bool:
            return await one_session(srv.port, start, answered)

        return await _batch(srv, size, session)

    await _batch(srv, WARM_UP, stream)
    await sessions(WARM_UP)
    return await _batch(srv, count, stream), await sessions(count)
