"""Many concurrent streams at a set speed: does each end when its tokens are due?

Each stream's ideal duration is its text's tokens (the server's own estimate, summed over the
chunks it sent) divided by the speed. Measured per stream from sending the request to the last
byte (connections already open), and for the whole batch from the first request to the last byte.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import orjson

from mockllm_tui.core.tokens import count_tokens
from tests.test_hardening_load import RawConnection

STREAM_BODY = {
    "model": "gpt-4o-mini",
    "stream": True,
    "messages": [{"role": "user", "content": "Stream me a reply."}],
}


@dataclass
class StreamsResult:
    """Figures of one batch."""

    streams: int
    speed: float
    ideal_s: float
    p50_ratio: float
    p99_ratio: float
    max_ratio: float
    batch_ratio: float
    errors: int


def tokens_of(body: bytes) -> tuple[int, bool]:
    """(tokens of the streamed text, summed over its chunks; whether the stream ended with [DONE])."""
    tokens = 0
    done = False
    for line in body.split(b"\n"):
        if not line.startswith(b"data: "):
            continue
        if line == b"data: [DONE]":
            done = True
            continue
        for choice in orjson.loads(line[6:]).get("choices", ()):
            piece = choice.get("delta", {}).get("content")
            if piece:
                tokens += count_tokens(piece)
    return tokens, done


async def one_stream(port: int, start: asyncio.Event) -> tuple[float, int, bool]:
    """(seconds from sending the request to the last byte, tokens received, ok)."""
    conn = await RawConnection.open(port)
    try:
        await start.wait()
        t0 = time.perf_counter()
        status, _, body = await conn.request("POST", "/v1/chat/completions", orjson.dumps(STREAM_BODY))
        elapsed = time.perf_counter() - t0
    finally:
        await conn.close()
    tokens, done = tokens_of(body)
    return elapsed, tokens, status == 200 and done


async def run_streams(port: int, count: int, speed: float) -> StreamsResult:
    """Open `count` streams at once against a server whose stream speed is `speed` tok/s.

    The connections are opened first, then every request is sent at once; a small raw HTTP client
    reads the streams, so the client's own CPU stays small next to the server's.
    """
    start = asyncio.Event()
    tasks = [asyncio.create_task(one_stream(port, start)) for _ in range(count)]
    await asyncio.sleep(0.5)  # let the connections open
    t0 = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    batch_s = time.perf_counter() - t0
    good = [r for r in results if isinstance(r, tuple) and r[2]]
    errors = count - len(good)
    if not good:
        raise RuntimeError(f"no stream finished: {results[:3]}")
    ideal_s = max(r[1] for r in good) / speed
    ratios = sorted(r[0] / (r[1] / speed) for r in good if r[1])
    return StreamsResult(
        streams=count,
        speed=speed,
        ideal_s=ideal_s,
        p50_ratio=statistics.median(ratios),
        p99_ratio=ratios[min(len(ratios) - 1, int(len(ratios) * 0.99))],
        max_ratio=ratios[-1],
        batch_ratio=batch_s / ideal_s,
        errors=errors,
    )
