"""The request log: one line a finished request (text or JSON lines), written in batches off the hot path."""

from __future__ import annotations

import asyncio
import time
from typing import TextIO

import orjson

from mockllm_tui.core.store import EventKind, JournalEntry, Store

FLUSH_INTERVAL_S = 0.05
#: How much of the first near miss the text line shows.
NEAREST_CHARS = 120
#: Only finished requests make a line.
LOGGED: frozenset[EventKind] = frozenset({"done"})

_stamp: tuple[int, str] = (-1, "")


def clock_text(when: float) -> str:
    """`HH:MM:SS` in local time (formatted once a second: many requests share it)."""
    global _stamp
    second = int(when)
    if _stamp[0] != second:
        _stamp = (second, time.strftime("%H:%M:%S", time.localtime(second)))
    return _stamp[1]


def format_text(entry: JournalEntry) -> str:
    """`HH:MM:SS POST /v1/chat/completions 200 3.1ms openai gpt-4o rule=default "preview"`."""
    parts = [clock_text(entry.time), entry.method, entry.path, str(entry.status), f"{entry.duration_ms:.1f}ms"]
    if entry.provider:
        parts.append(entry.provider)
    if entry.model:
        parts.append(entry.model)
    if entry.stream:
        parts.append(f"stream({len(entry.chunks)} chunks)")
    if entry.rule:
        parts.append(f"rule={entry.rule}")
    if entry.fault:
        parts.append(f"fault={entry.fault}")
    if entry.session is not None:
        parts.append(f"session={entry.session}")
    if entry.scenario is not None:
        step = entry.scenario
        ended = ",finished" if step.get("finished") else ""
        parts.append(f"scenario={step.get('name')}:{step.get('step')}/{step.get('steps')}{ended}")
    if entry.preview:
        parts.append(orjson.dumps(entry.preview).decode())
    nearest = entry.nearest() if entry.near_misses is not None else None
    if nearest:
        rule, reason = nearest[0]
        words = f"nearest: {rule} ({reason})"
        parts.append(words if len(words) <= NEAREST_CHARS else words[: NEAREST_CHARS - 2] + "…)")
    return " ".join(parts)


def format_json(entry: JournalEntry) -> str:
    """The entry as one JSON object (headers included, keys redacted)."""
    data = entry.public()
    data["chunks"] = len(entry.chunks)
    return orjson.dumps(data).decode()


class RequestLogWriter:
    """Drains the store's events and writes a line for each finished request, a batch at a time."""

    def __init__(self, store: Store, sinks: list[TextIO], log_format: str = "text") -> None:
        self.store = store
        self.sinks = sinks
        self.format = format_json if log_format == "json" else format_text
        self.subscription = store.subscribe(kinds=LOGGED)

    def flush(self) -> None:
        """Write every pending finished request now (those this process served: not another process's,
        read from a shared journal)."""
        lines = [self.format(entry) for _kind, entry in self.subscription.drain() if not entry.foreign]
        if not lines:
            return
        text = "\n".join(lines) + "\n"
        for sink in self.sinks:
            sink.write(text)
            sink.flush()

    async def run(self) -> None:
        """Flush whenever events arrive, at most every FLUSH_INTERVAL_S."""
        try:
            while True:
                await self.subscription.wait()
                await asyncio.sleep(FLUSH_INTERVAL_S)
                self.flush()
        finally:
            self.store.unsubscribe(self.subscription)
