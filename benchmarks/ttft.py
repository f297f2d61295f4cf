"""Time to first token under load: with `latency_ms: 200`, how far past its due time does each of many
concurrent streams get its first token? Reported as the p50 and p99 of (measured TTFT - due TTFT).

The first text chunk is due `latency_ms` after the request plus its own tokens at the stream speed
(each chunk is due when its tokens are), so the due TTFT is 200 ms plus that; at speed 0 it is 200 ms.
The connections are opened first, then every request is sent at once; TTFT is measured per stream
from writing its request to reading the first SSE event that carries text. The streams go on at the
set speed after their first token, so all of them are running while the later ones wait for theirs.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import orjson

from benchmarks.streams import STREAM_BODY
from mockllm_tui.core.tokens import count_tokens
from tests.test_hardening_load import RawConnection


@dataclass
class TtftResult:
    """Figures of one batch: milliseconds past the configured latency."""

    streams: int
    latency_ms: float
    due_ms: float
    p50_minus_latency_ms: float
    p99_minus_latency_ms: float
    p50_over_ms: float
    p99_over_ms: float
    max_over_ms: float
    errors: int


def first_text(buffer: bytes) -> str | None:
    """The text of the first SSE event with text in it among the bytes read so far, if any."""
    for line in buffer.split(b"\n"):
        if line.startswith(b"data: {"):
            try:
                event = orjson.loads(line[6:])
            except orjson.JSONDecodeError:
                continue  # a line cut between reads
            for choice in event.get("choices", ()):
                text = choice.get("delta", {}).get("content")
                if text:
                    return str(text)
    return None


async def one_stream(port: int, start: asyncio.Event) -> tuple[float, str] | None:
    """(seconds from writing the request to its first token, that token's text), then the stream is
    read to its end; None if it failed."""
    conn = await RawConnection.open(port)
    try:
        await start.wait()
        t0 = time.perf_counter()
        conn.send("POST", "/v1/chat/completions", orjson.dumps(STREAM_BODY))
        status, _ = await conn.read_head()
        if status != 200:
            return None
        seen = b""
        while (text := first_text(seen)) is None:
            piece = await conn.reader.read(65536)
            if not piece:
                return None
            seen += piece
        ttft = time.perf_counter() - t0
        while not seen.endswith(b"0\r\n\r\n"):  # the rest of the stream (chunked, ends with a zero chunk)
            piece = await conn.reader.read(65536)
            if not piece:
                break
            seen = seen[-8:] + piece
        return ttft, text
    finally:
        await conn.close()


async def run_ttft(port: int, count: int, latency_ms: float, speed: float) -> TtftResult:
    """Open `count` streams at once against a server with `latency_ms` and stream speed `speed`;
    how late is each first token?"""
    start = asyncio.Event()
    tasks = [asyncio.create_task(one_stream(port, start)) for _ in range(count)]
    await asyncio.sleep(0.5)  # let the connections open
    start.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    good = [r for r in results if isinstance(r, tuple)]
    if not good:
        raise RuntimeError(f"no stream gave a first token: {results[:3]}")
    due_ms = latency_ms + (count_tokens(good[0][1]) / speed * 1000.0 if speed > 0 else 0.0)
    over = sorted(ttft * 1000.0 - due_ms for ttft, _ in good)
    raw = sorted(ttft * 1000.0 - latency_ms for ttft, _ in good)
    return TtftResult(
        streams=count,
        latency_ms=latency_ms,
        due_ms=due_ms,
        p50_minus_latency_ms=statistics.median(raw),
        p99_minus_latency_ms=raw[min(len(raw) - 1, int(len(raw) * 0.99))],
        p50_over_ms=statistics.median(over),
        p99_over_ms=over[min(len(over) - 1, int(len(over) * 0.99))],
        max_over_ms=over[-1],
        errors=count - len(over),
    )
