"""The full-size load check: 20,000 requests on 256 connections and 1,000 concurrent streams
against a headless server, with zero errors and the server's counters adding up.

The test suite runs a smaller version (tests/test_hardening_load.py); this one takes longer.
"""

from __future__ import annotations

import time

import httpx
import orjson

from tests.test_hardening_load import CHAT, CHAT_STREAM, RawConnection, in_parallel


async def hammer(port: int, requests: int, connections: int, streams: int) -> dict[str, float]:
    """Run both loads; the figures and the error counts."""
    statuses: dict[int, int] = {}
    queue = iter(range(requests))

    async def worker(_i: int) -> None:
        conn = await RawConnection.open(port)
        try:
            for _n in queue:
                status, _, _ = await conn.request("POST", "/v1/chat/completions", CHAT)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await in_parallel(connections, worker)
    plain_s = time.perf_counter() - t0
    done_streams = 0

    async def one(_i: int) -> None:
        nonlocal done_streams
        conn = await RawConnection.open(port)
        try:
            status, _, body = await conn.request("POST", "/v1/chat/completions", CHAT_STREAM)
            if status == 200 and body.rstrip().endswith(b"data: [DONE]"):
                done_streams += 1
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await in_parallel(streams, one)
    streams_s = time.perf_counter() - t0
    return {
        "ok": statuses.get(200, 0),
        "failed": requests - statuses.get(200, 0),
        "plain_s": plain_s,
        "streams_ok": done_streams,
        "streams_s": streams_s,
    }


def counters(root: str) -> dict[str, object]:
    """The server's counters."""
    return dict(orjson.loads(httpx.get(root + "/_mock/journal", params={"limit": 0}).content)["counters"])
