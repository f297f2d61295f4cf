"""Pacing through the real server and SDK, timed with the loop's clock (few and short)."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from mockllm_tui.core.tokens import count_tokens
from tests.conftest import Live
from tests.test_faults_live import MESSAGES, Fixed

HUNDRED_TOKENS = "abcd" + " abcd" * 99


async def read_stream(live: Live, **kw: Any) -> tuple[str, float]:
    """The streamed text, and the loop time its response head arrived (pacing starts there)."""
    client = openai.AsyncOpenAI(base_url=live.openai_url, api_key="sk-test", max_retries=0)
    stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, **kw)
    started = asyncio.get_running_loop().time()
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    return "".join(parts), started


async def test_100_tokens_at_50_per_second_take_2_seconds(live: Live) -> None:
    assert count_tokens(HUNDRED_TOKENS) == 100
    live.store.set_rules(Fixed(text=HUNDRED_TOKENS, rule="hundred"))
    live.store.set_knobs("live", {"stream_speed": 50, "stream_chunk": "token"})
    text, started = await read_stream(live)
    assert text == HUNDRED_TOKENS
    assert asyncio.get_running_loop().time() - started == pytest.approx(2.0, rel=0.05)


async def test_a_live_speed_change_mid_stream_changes_the_remaining_rate(live: Live) -> None:
    live.store.set_rules(Fixed(text=HUNDRED_TOKENS, rule="hundred"))
    live.store.set_knobs("live", {"stream_speed": 50, "stream_chunk": "token"})
    loop = asyncio.get_running_loop()
    sub = live.store.subscribe()
    changed_at: list[float] = []

    async def speed_up_after_25_tokens() -> None:
        chunks = 0
        while chunks < 26:  # the role chunk, then 25 one-token chunks
            assert await sub.wait(5)
            chunks += sum(kind == "chunk" for kind, _ in sub.drain())
        live.store.set_knobs("live", {"stream_speed": 250})
        changed_at.append(loop.time())

    changer = asyncio.create_task(speed_up_after_25_tokens())
    text, started = await read_stream(live)
    ended = loop.time()
    assert text == HUNDRED_TOKENS
    await changer
    assert changed_at[0] - started == pytest.approx(0.5, abs=0.08)
    # 75 tokens left at 250/s: 0.3 s (plus at most one old-speed chunk of 20 ms)
    assert ended - changed_at[0] == pytest.approx(0.31, abs=0.06)


async def test_a_slow_stream_speeds_up_at_once_and_a_header_speed_is_fixed(live: Live) -> None:
    live.store.set_rules(Fixed(text="one two three four five six", rule="six"))
    live.store.set_knobs("live", {"stream_speed": 1, "stream_chunk": "word"})  # 6 s at this speed
    sub = live.store.subscribe()

    async def unlimit_after_first_word() -> None:
        text_chunks = 0
        while text_chunks < 1:
            assert await sub.wait(5)
            text_chunks += sum(kind == "chunk" and len(e.chunks) >= 2 for kind, e in sub.drain())
        live.store.set_knobs("live", {"stream_speed": 0})

    loop = asyncio.get_running_loop()
    changer = asyncio.create_task(unlimit_after_first_word())
    text, started = await read_stream(live)
    await changer
    assert text == "one two three four five six"
    # the first word at 1/s; the next one waits 1 s at the old speed unless the poll (0.25 s) sees the change
    assert loop.time() - started < 1.0 + 0.45
    # a header speed wins over the live knob, and a live change does not touch it
    live.store.set_knobs("live", {"stream_speed": 0})
    text, started = await read_stream(live, extra_headers={"x-mock-stream-speed": "30"})  # 6 tokens at 30/s
    assert 0.9 * 0.2 <= loop.time() - started < 0.5  # never early; loose above (CI's cores are shared)
