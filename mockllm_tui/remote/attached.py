"""The attached panel's "server": no server, but the task that follows a running one's event stream.

It reconnects by itself with back-off; with `Last-Event-ID` it resumes where it stopped, and when
the server says `reset` (the id is no longer buffered, or the server restarted) it reads the
journal again. While it is away the mirror keeps what it has and says `disconnected`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from mockllm_tui.remote.client import error_message
from mockllm_tui.remote.mirror import MirrorStore

log = logging.getLogger("mockllm_tui")

FIRST_RETRY_S = 0.25
LAST_RETRY_S = 5.0


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str | None, Any]]:
    """The events of a text/event-stream body as (name, id, parsed data); comments are skipped.
    (The server writes `\n` line ends and one `data:` line an event, as mockllm-tui's does.)"""
    pending = b""
    async for block in response.aiter_bytes():
        pending += block
        *frames, pending = pending.split(b"\n\n")
        for frame in frames:
            name, ident, data = "message", None, None
            for line in frame.split(b"\n"):
                if line.startswith(b"data:"):
                    data = line[5:]
                elif line.startswith(b"event:"):
                    name = line[6:].strip().decode()
                elif line.startswith(b"id:"):
                    ident = line[3:].strip().decode()
            if data is not None:
                yield name, ident, orjson.loads(data)


def next_delay(delay: float) -> float:
    """The back-off: each failed attempt waits twice as long, up to LAST_RETRY_S."""
    return min(delay * 2, LAST_RETRY_S)


class AttachedServer:
    """What the panel takes for its server handle when attached: the URL, start and stop."""

    def __init__(self, mirror: MirrorStore, *, first_retry_s: float = FIRST_RETRY_S) -> None:
        self.mirror = mirror
        self.first_retry_s = first_retry_s
        self.last_id: str | None = None
        #: The event stream's response while connected.
        self.stream: httpx.Response | None = None
        #: How many times the journal was read whole (on the first connection, and after `reset`).
        self.journal_loads = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The server's URL, as the SDKs take it (`/v1`)."""
        return self.mirror.client.root + "/v1"

    async def start(self) -> None:
        """Start following the server (returns at once; the status bar tells how it goes)."""
        self._task = asyncio.get_running_loop().create_task(self.follow())

    async def fully_ready(self) -> None:
        """Nothing to wait for."""

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.mirror.client.aclose()

    async def follow(self) -> None:
        """Follow the event stream for good, reconnecting with back-off."""
        delay = self.first_retry_s
        async with self.mirror.client.async_client() as http:
            while True:
                try:
                    if await self._follow_once(http):
                        delay = self.first_retry_s
                except (httpx.HTTPError, orjson.JSONDecodeError):
                    pass
                except Exception:  # an event this side cannot read: say so in the log, and start again
                    log.exception("attached to %s: an event could not be read", self.mirror.client.root)
                    self.last_id = None
                if self.mirror.connected or self.mirror.connection == "connecting":
                    self.mirror.set_connection(False, "disconnected")
                await asyncio.sleep(delay)
                delay = next_delay(delay)

    async def _follow_once(self, http: httpx.AsyncClient) -> bool:
        """One connection, until it ends. Says whether it got as far as connecting."""
        headers = {"last-event-id": self.last_id} if self.last_id else {}
        async with http.stream("GET", "/_mock/events", headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                self.mirror.set_connection(False, f"refused: {error_message(response)}")
                return False
            self.mirror.set_connection(True, "connected")
            self.stream = response
            reload = self.last_id is None
            async for name, ident, data in sse_events(response):
                if name == "reset":
                    reload = True
                    continue
                self.mirror.apply(name, data, ident)
                if reload and name == "state.changed":  # the end of the state snapshot
                    answer = await http.get(
                        "/_mock/journal", params={"full": "true", "limit": self.mirror.journal_size}
                    )
                    answer.raise_for_status()
                    self.mirror.load_journal(answer.json())
                    self.journal_loads += 1
                    reload = False
                if not reload and ident:
                    self.last_id = ident
        return True
