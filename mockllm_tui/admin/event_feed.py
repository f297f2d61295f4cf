"""The event stream's source: the store's events as numbered Server-Sent Events in a bounded buffer.

The feed subscribes to the store like the panel does and drains its queue in batches (a few times a
second), so publishing stays a cheap append and a busy server pays once per batch, not per event or
per client. A batch names each request once: `request.started` when it is first seen open,
`request.chunk` with the chunks sent since (all of a batch's chunks of one request in one event),
`request.ended` with everything else; then `totals.changed` when the batch changed the counters or
the rules' hits (the server's own figures: a realtime session counts each of its responses, so the
totals cannot be worked out from the request events). Clients read the shared buffer from where
they are; one that falls further behind than the buffer holds, or resumes from an id it no longer
holds, gets `reset`, and so do all when the feed itself lost events (then a snapshot follows).

Ids are `EPOCH-N`: N counts up, EPOCH differs with each feed, so an id from another run (the server
restarted) is never mistaken for one of this run's. With no client for IDLE_S the feed stops
listening (a server nobody watches any more pays nothing) and takes a new epoch: a client that comes
back later gets `reset`.

Every command's answer that an attached panel applies itself (`/_mock/settings`, `/_mock/rules`)
carries the last event id in `x-mock-event-id` (see admin/journal.py `mark_events`): the events up to
it were made before the command was answered, so the panel knows them as older than what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from mockllm_tui.admin.settings import settings_view
from mockllm_tui.core.conversation import Conversation
from mockllm_tui.core.journal_data import chunk_offsets, conversation_data, entry_data
from mockllm_tui.core.store import JournalEntry, Store, Subscription
from mockllm_tui.rules.commands import list_rules, list_scenarios, ruleset_of

DEFAULT_BUFFER = 10_000
HEARTBEAT_S = 15.0
BATCH_INTERVAL_S = 0.1
IDLE_S = 60.0
HEARTBEAT = b": heartbeat\n\n"
#: How long a client waits before reconnecting (the `retry:` field).
RETRY_MS = 1000


def frame(event_id: str, name: str, data: Any) -> bytes:
    """One Server-Sent Event."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id.encode(), name.encode(), orjson.dumps(data))


def knobs_data(store: Store) -> dict[str, Any]:
    """What `knobs.changed` carries: the knobs in force, each layer, any pending fail-next, and the
    hosts unmatched requests are forwarded to (`--upstream`; never their credentials)."""
    return {**settings_view(store), "upstreams": list(store.config.upstream_hosts())}


def rules_data(store: Store, notices: list[str] | None = None) -> dict[str, Any]:
    """What `rules.changed` carries: every rule (with `rid`, its internal id, which request events
    name as `rule_id`), the scenarios and where the default session is in each, the file and its
    state, and any notices about the file."""
    return {
        "rules": [{**view.public(), "rid": view.id} for view in list_rules(store)],
        "scenarios": scenarios_data(store),
        "file": store.config.responses_path,
        "file_error": store.file_error,
        "notices": notices or [],
    }


def scenarios_data(store: Store) -> list[dict[str, Any]]:
    """Every scenario and where the default session is in it (as `/_mock/scenarios` lists them)."""
    return [view.public() for view in list_scenarios(store)]


def counters_data(store: Store) -> dict[str, Any]:
    """The counters, health checks and metrics scrapes among them."""
    return {**store.counters.public(), "probes": store.counters.probes}


def hits_data(store: Store) -> list[int]:
    """Each rule's hits, in listing order."""
    return [rule.hits for rule in ruleset_of(store).rules]


def state_data(store: Store, *, cleared: bool = False) -> dict[str, Any]:
    """What `state.changed` carries: the state backend's mode (memory, redis, or degraded while a
    shared Redis is lost), the counters, and whether the journal was just cleared."""
    return {"state": store.state.mode, "journal_cleared": cleared, "counters": store.counters.public()}


def turn_of(entry: JournalEntry) -> tuple[Any, ...]:
    """What changes with each response of a realtime session's row (the row stays open)."""
    return (entry.request_id, entry.rule, entry.fault, len(entry.reply_text), entry.near_misses is not None)


@dataclass(slots=True)
class Told:
    """What the clients were told of an open request: its chunks, its conversation (a session's row
    gets a new one each turn) and its turn (`turn_of`)."""

    chunks: int
    conversation: Conversation | None
    turn: tuple[Any, ...]


class EventFeed:
    """Numbered events for `/_mock/events`, shared by every client of one server."""

    def __init__(
        self,
        store: Store,
        *,
        buffer_size: int = DEFAULT_BUFFER,
        heartbeat_s: float = HEARTBEAT_S,
        interval_s: float = BATCH_INTERVAL_S,
        idle_s: float = IDLE_S,
    ) -> None:
        self.store = store
        self.epoch = secrets.token_hex(4)
        self.heartbeat_s = heartbeat_s
        self.interval_s = interval_s
        self.idle_s = idle_s
        self.clients = 0
        self.last = 0
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=max(1, buffer_size))
        self._sent: dict[int, Told] = {}  # open request -> what was told of it
        self._totals: tuple[dict[str, Any], list[int]] | None = None  # the counters and hits last told
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()
        self.closed = False

    # -- ids -------------------------------------------------------------------------------------

    def event_id(self, n: int | None = None) -> str:
        """The id for event number `n` (default: the last one)."""
        return f"{self.epoch}-{self.last if n is None else n}"

    def parse_id(self, value: str | None) -> int | None:
        """The number in an id of this feed's that is still buffered (or the last one), else None."""
        if not value:
            return None
        epoch, _, number = value.strip().rpartition("-")
        if epoch != self.epoch or not number.isdigit():
            return None
        n = int(number)
        oldest = self._buffer[0][0] if self._buffer else self.last + 1
        return n if oldest - 1 <= n <= self.last else None

    # -- the batch -------------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the store and start draining it (again after an idle stop)."""
        if self._task is None or self._task.done():
            if self._subscription is None:
                self._subscription = self.store.subscribe()
            self._task = asyncio.get_running_loop().create_task(self._run())

    def close(self) -> None:
        """End every client's stream (the server is stopping) and stop draining."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        if self._subscription is not None:
            self.store.unsubscribe(self._subscription)
            self._subscription = None
        self._woken.set()

    async def stop(self) -> None:
        """Stop draining and unsubscribe."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._subscription is not None:
            self.store.unsubscribe(self._subscription)
            self._subscription = None

    async def _run(self) -> None:
        idle = 0.0
        while True:
            await asyncio.sleep(self.interval_s)
            self.pump()
            idle = idle + self.interval_s if self.clients == 0 else 0.0
            if idle >= self.idle_s:
                self._suspend()
                return

    def _suspend(self) -> None:
        """Nobody listens: stop draining, forget the buffer, and start a new epoch (old ids get `reset`)."""
        if self._subscription is not None:
            self.store.unsubscribe(self._subscription)
            self._subscription = None
        self._buffer.clear()
        self._sent.clear()
        self._totals = None
        self.epoch = secrets.token_hex(4)

    def _append(self, name: str, data: Any) -> None:
        self.last += 1
        self._buffer.append((self.last, frame(self.event_id(), name, data)))

    def pump(self) -> None:
        """Turn the store's pending events into numbered events and wake the clients."""
        sub = self._subscription
        if sub is None or not len(sub):
            return
        lost = sub.overflowed
        events = sub.drain()
        touched: dict[int, JournalEntry] = {}
        knobs = rules = cleared = state = False
        notices: list[str] = []
        for kind, payload in events:
            if kind in ("request", "chunk", "done"):
                touched[payload.id] = payload
            elif kind == "knobs":
                knobs = True
            elif kind in ("rules", "file"):
                rules = True
            elif kind == "notice":
                rules = True
                notices.append(str(payload))
            elif kind == "journal_cleared":
                cleared = True
            elif kind == "state":
                state = True
        if lost:  # start the clients again from the state as it is now (they read the journal again)
            self._sent.clear()
            self._append("reset", {"reason": "events were lost"})
            for name, data in self.snapshot_events(notices):
                self._append(name, data)
            self._totals = (counters_data(self.store), hits_data(self.store))
        else:
            if cleared or state:
                self._append("state.changed", state_data(self.store, cleared=cleared))
            for entry in touched.values():
                self._request_events(entry)
            if knobs:
                self._append("knobs.changed", knobs_data(self.store))
            if rules:
                self._append("rules.changed", rules_data(self.store, notices))
            if touched or cleared or rules:
                self._totals_event(any(e.scenario is not None for e in touched.values()))
        self._woken.set()
        self._woken = asyncio.Event()

    def _totals_event(self, scenarios: bool) -> None:
        """`totals.changed` when the batch changed the counters or the hits: the server's own
        figures (a realtime session counts each of its responses; its row is one event), and where
        the scenarios are when a request moved one on."""
        counters, hits = counters_data(self.store), hits_data(self.store)
        told = self._totals
        if told is not None and told[0] == counters and told[1] == hits and not scenarios:
            return
        data: dict[str, Any] = {"counters": counters}
        if told is None or told[1] != hits:
            data["hits"] = hits
        if scenarios:
            data["scenarios"] = scenarios_data(self.store)
        self._totals = (counters, hits)
        self._append("totals.changed", data)

    def _request_events(self, entry: JournalEntry) -> None:
        sent = self._sent.get(entry.id)
        if not entry.open:
            self._sent.pop(entry.id, None)
            key = self.store.knobs.api_key
            self._append("request.ended", entry_data(entry, chunks_from=sent.chunks if sent else 0, api_key=key))
            return
        turn = turn_of(entry)
        if sent is None:
            self._append("request.started", entry_data(entry, api_key=self.store.knobs.api_key))
            self._sent[entry.id] = Told(len(entry.chunks), entry.conversation, turn)
            return
        count = sent.chunks
        if len(entry.chunks) <= count and entry.conversation is sent.conversation and turn == sent.turn:
            return
        data: dict[str, Any] = {
            "id": entry.id,
            "model": entry.model,
            "provider": entry.provider,
            "stream": entry.stream,
            "preview": entry.preview,
            "rule": entry.rule,
            "rule_id": entry.rule_id,
            "request_id": entry.request_id,
            "scenario": entry.scenario,
            "near_misses": entry.near_misses is not None,
            "fault": entry.fault,
            "response_id": entry.response_id,
            "input_tokens": entry.input_tokens,
            "output_tokens": entry.output_tokens,
            "finish_reason": entry.finish_reason,
            "chunks_from": count,
            "chunks": entry.chunks[count:],
            "chunk_ms": chunk_offsets(entry, count),
        }
        if entry.chunk_labels:
            data["chunk_labels"] = entry.chunk_labels[count:]
        if entry.first_chunk_at is not None:
            data["first_chunk_ms"] = round((entry.first_chunk_at - entry.started) * 1000.0, 3)
        if entry.conversation is not sent.conversation and entry.conversation is not None:
            data["conversation"] = conversation_data(entry.conversation)
        if turn != sent.turn:
            data["reply_text"] = entry.reply_text
        self._append("request.chunk", data)
        self._sent[entry.id] = Told(len(entry.chunks), entry.conversation, turn)

    # -- a client --------------------------------------------------------------------------------

    def snapshot_events(self, notices: list[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The current knobs, rules, totals and state as events: how a client starts, or starts
        again after `reset` (`state.changed` comes last: the client has all it needs to read the journal)."""
        store = self.store
        return [
            ("knobs.changed", knobs_data(store)),
            ("rules.changed", rules_data(store, notices)),
            ("totals.changed", {"counters": counters_data(store)}),
            ("state.changed", state_data(store)),
        ]

    def snapshot(self) -> bytes:
        """The snapshot's events, each with the last id."""
        last = self.event_id()
        return b"".join(frame(last, name, data) for name, data in self.snapshot_events())

    def _after(self, n: int) -> list[bytes] | None:
        """The buffered events after number `n` (None: some of them are no longer buffered)."""
        if n >= self.last:
            return []
        oldest = self._buffer[0][0]
        if n + 1 < oldest:
            return None
        return [f for _, f in list(self._buffer)[n + 1 - oldest :]]

    async def stream(self, last_event_id: str | None) -> AsyncIterator[bytes]:
        """One client's events: resumed after `last_event_id` while it is buffered, else `reset`
        (when an id was given) and a snapshot of the state; then events as they come, and a
        heartbeat comment whenever `heartbeat_s` passes without any."""
        if self.closed:
            return
        self.start()
        self.clients += 1
        try:
            async with contextlib.aclosing(self._events(last_event_id)) as events:
                async for chunk in events:
                    yield chunk
        finally:
            self.clients -= 1

    async def _events(self, last_event_id: str | None) -> AsyncGenerator[bytes, None]:
        cursor = self.parse_id(last_event_id)
        yield b"retry: %d\n\n" % RETRY_MS
        if cursor is None:
            cursor = self.last
            head = frame(self.event_id(), "reset", {"reason": "unknown id"}) if last_event_id else b""
            yield head + self.snapshot()
        while not self.closed:
            frames = self._after(cursor)
            if frames is None:
                cursor = self.last
                yield frame(self.event_id(), "reset", {"reason": "fell behind"}) + self.snapshot()
                continue
            if frames:
                cursor = self.last
                yield b"".join(frames)
                continue
            woken = self._woken
            try:
                await asyncio.wait_for(woken.wait(), self.heartbeat_s)
            except TimeoutError:
                yield HEARTBEAT
