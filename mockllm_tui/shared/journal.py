"""The shared journal: every process's finished requests in one bounded Redis Stream (`PREFIX:journal`).

Each process queues its finished requests (the store's `done` events) and writes them every
FLUSH_INTERVAL_S in one pipelined round trip: XADD each (MAXLEN ~ journal size), then one exact
XTRIM, so the stream holds at most `--journal-size` entries between batches. A request's data is
the event stream's (core/journal_data.py, credentials redacted), with bodies over BODY_LIMIT and
chunks past CHUNK_LIMIT left out.

Every process reads the stream from where it left off (XREAD BLOCK) and adds the other processes'
entries to its own journal (`Store.add_foreign`: an id of its own, their instance and time, placed in
time order, counted in the totals but not in `/metrics`). A process joining reads the stream's tail
first, so it starts with the recent history. Clearing the journal anywhere trims the stream and
tells the others, who clear theirs.

While Redis is unreachable the process keeps serving and keeps its unsent entries (up to the journal
size, the oldest dropped first); they are written, and reading resumes where it stopped, once the
connection is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from redis.exceptions import RedisError

from mockllm_tui.core.journal_data import entry_data, entry_from_data
from mockllm_tui.core.store import JournalEntry, Store, Subscription
from mockllm_tui.shared.connection import MAX_BACKOFF_S, WATCH_INTERVAL_S, RedisState

log = logging.getLogger(__name__)
T = TypeVar("T")

KIND = "journal"
FLUSH_INTERVAL_S = 0.05
#: How long one XREAD waits for new entries (below the client's socket timeout; a stopping process
#: waits for the one on its way).
READ_BLOCK_MS = 250
READ_COUNT = 500
#: A request or response body larger than this stays out of the shared entry.
BODY_LIMIT = 16 * 1024
#: A stream's chunks past this many stay out of the shared entry.
CHUNK_LIMIT = 1000
#: The stream entry's fields: the writing process's run token, and the entry's data (JSON).
ORIGIN_FIELD = b"o"
DATA_FIELD = b"d"


def summary_data(entry: JournalEntry, api_key: str | None) -> dict[str, Any]:
    """A finished request as the shared journal holds it: the event stream's data, credentials
    redacted, large bodies and long chunk lists left out."""
    data = entry_data(entry, api_key=api_key)
    for name in ("body", "response_body"):
        part = data[name]
        if part and len(part.get("text") or part.get("base64") or "") > BODY_LIMIT:
            data[name] = None
    if len(data["chunks"]) > CHUNK_LIMIT:
        data["chunks"] = data["chunks"][:CHUNK_LIMIT]
        data["chunk_ms"] = data["chunk_ms"][:CHUNK_LIMIT]
    return data


def foreign_entry(data: dict[str, Any]) -> JournalEntry:
    """An entry rebuilt from another process's summary, its start placed on this clock by its wall time."""
    age_ms = max(0.0, time.time() - float(data.get("time", 0.0))) * 1000.0
    return entry_from_data({**data, "age_ms": age_ms})


async def finished_alone(job: Awaitable[T], running: set[asyncio.Future[Any]] | None = None) -> T:
    """Await a Redis command that a cancellation does not interrupt midway: the awaiting task stops at
    once, and the command finishes on its own (the client, cancelled inside a read, can lose the
    cancellation and wait on forever). `running` holds it until it is done."""
    task = asyncio.ensure_future(job)
    task.add_done_callback(_forget)
    if running is not None:
        running.add(task)
        task.add_done_callback(running.discard)
    return await asyncio.shield(task)


def _forget(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a command left to finish alone may fail as the client closes


def read_items(answer: Any) -> list[tuple[Any, Any]]:
    """XREAD's (id, fields) pairs of one stream, as RESP2 (`[[key, pairs]]`) or RESP3 (`{key: [pairs]}`) gives them."""
    if isinstance(answer, dict):
        return [pair for value in answer.values() for pairs in value for pair in pairs]
    return [pair for _key, pairs in answer or [] for pair in pairs]


class SharedJournal:
    """The journal part of a Redis state (see the module's docstring)."""

    kinds: tuple[str, ...] = (KIND,)

    def __init__(self, state: RedisState) -> None:
        self.state = state
        self.key = state.key(KIND)
        #: Tells this run's entries from those of an earlier process with the same instance name.
        self.origin = secrets.token_hex(8).encode()
        self._subscription: Subscription | None = None
        self._unsent: deque[bytes] = deque()
        self._clear_pending = False
        self._remote_clears = 0
        self._last: Any = "0-0"
        #: The Redis commands on their way (left to finish alone when the process stops).
        self._sending: set[asyncio.Future[Any]] = set()
        self._reading: set[asyncio.Future[Any]] = set()

    @property
    def store(self) -> Store:
        """The store this process serves from."""
        assert self.state.store is not None, "the journal part joins after the state starts"
        return self.state.store

    # -- SharedPart ------------------------------------------------------------------------------

    async def join(self, first: bool) -> None:
        """Take the stream's recent tail into the journal, then write and read in the background."""
        store = self.store
        self._unsent = deque(maxlen=store.journal_size)
        self._subscription = store.subscribe(kinds=frozenset({"done", "journal_cleared"}))
        tail: Any = await self.state.client.xrevrange(self.key, count=store.journal_size)
        for stream_id, fields in reversed(tail or []):
            self._take(fields)
            self._last = stream_id
        self.state.spawn(self._write_loop())
        self.state.spawn(self._read_loop())

    async def on_message(self, message: dict[str, Any]) -> None:
        """Another process cleared the journal (and the stream): clear this one too."""
        if message.get("op") == "cleared":
            self._remote_clears += 1
            self.store.clear_journal()

    async def resync(self, emptied: bool) -> None:
        """Redis is back: the loops resume by themselves (the unsent entries go with the next batch)."""

    # -- writing ---------------------------------------------------------------------------------

    def collect(self) -> None:
        """Queue the requests finished here since the last batch (a clear drops those queued)."""
        sub = self._subscription
        if sub is None or not len(sub):
            return
        key = self.store.knobs.api_key
        for kind, entry in sub.drain():
            if kind == "done":
                if not entry.foreign:
                    self._unsent.append(orjson.dumps(summary_data(entry, key)))
            elif self._remote_clears:
                self._remote_clears -= 1
                self._unsent.clear()
            else:
                self._unsent.clear()
                self._clear_pending = True

    def _take_batch(self, pipe: Any) -> tuple[list[bytes], bool]:
        """Move the queued entries (and a pending clear) onto a pipeline: the entries, and whether it clears."""
        batch, clearing, size = list(self._unsent), self._clear_pending, self.store.journal_size
        self._unsent.clear()
        self._clear_pending = False
        if clearing:
            pipe.xtrim(self.key, maxlen=0, approximate=False)
        for data in batch:
            pipe.xadd(self.key, {ORIGIN_FIELD: self.origin, DATA_FIELD: data}, maxlen=size, approximate=True)
        pipe.xtrim(self.key, maxlen=size, approximate=False)
        return batch, clearing

    def _put_back(self, batch: list[bytes], clearing: bool) -> None:
        """A batch that was not written goes first in the next one (the oldest dropped past the bound)."""
        self._unsent = deque([*batch, *self._unsent], maxlen=self._unsent.maxlen)
        self._clear_pending = self._clear_pending or clearing

    async def flush(self) -> None:
        """Write the queued entries (and a pending clear) in one pipelined round trip. Once sent, the
        batch finishes even if this task is cancelled meanwhile (so it is never sent twice)."""
        self.collect()
        if not self._unsent and not self._clear_pending:
            return
        pipe = self.state.client.pipeline(transaction=False)
        batch, clearing = self._take_batch(pipe)
        try:
            await finished_alone(self._send(pipe, clearing), self._sending)
        except (RedisError, OSError):
            self._put_back(batch, clearing)
            raise

    async def _send(self, pipe: Any, clearing: bool) -> None:
        await pipe.execute()
        if clearing:
            await self.state.publish(KIND, op="cleared")

    def flush_now(self) -> None:
        """`flush` through the blocking client: the last batch as the process stops (its tasks are being
        cancelled, so the asynchronous client is not used)."""
        self.collect()
        if not self._unsent and not self._clear_pending:
            return
        pipe = self.state.sync_client.pipeline(transaction=False)
        _batch, clearing = self._take_batch(pipe)
        pipe.execute()
        if clearing:
            self.state.publish_sync(KIND, op="cleared")

    async def _write_loop(self) -> None:
        try:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                if self.state.degraded:
                    self.collect()  # kept (bounded) until Redis is back
                    continue
                with contextlib.suppress(RedisError, OSError):  # kept and written again; the watch tells the user
                    await self.flush()
        except asyncio.CancelledError:
            if self._sending:  # a batch on its way: let it land before the connection closes
                await asyncio.wait(self._sending, timeout=WATCH_INTERVAL_S)
            if not self.state.degraded:
                with contextlib.suppress(RedisError, OSError):
                    self.flush_now()  # the last batch, as the process stops
            raise

    # -- reading ---------------------------------------------------------------------------------

    def _take(self, fields: dict[Any, Any]) -> None:
        """Add one stream entry to the journal, unless this process wrote it."""
        if fields.get(ORIGIN_FIELD) == self.origin:
            return
        try:
            data = orjson.loads(fields[DATA_FIELD])
            entry = foreign_entry(data)
        except (KeyError, TypeError, ValueError):
            log.warning("left out an unreadable entry of the shared journal")
            return
        self.store.add_foreign(entry)

    async def _read_loop(self) -> None:
        try:
            await self._read_on()
        except asyncio.CancelledError:
            if self._reading:  # a read on its way ends within READ_BLOCK_MS: let it, before the connection closes
                await asyncio.wait(self._reading, timeout=READ_BLOCK_MS / 1000 + WATCH_INTERVAL_S)
            raise

    async def _read_on(self) -> None:
        backoff = WATCH_INTERVAL_S
        while True:
            try:
                streams: dict[Any, Any] = {self.key: self._last}
                answer: Any = await finished_alone(
                    self.state.client.xread(streams, count=READ_COUNT, block=READ_BLOCK_MS), self._reading
                )
            except (RedisError, OSError):
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                continue
            backoff = WATCH_INTERVAL_S
            for stream_id, fields in read_items(answer):
                self._last = stream_id
                self._take(fields)
