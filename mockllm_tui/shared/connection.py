"""The connection to the shared state: one Redis, a key prefix, this process's instance name, the
change channel every process listens on, and the watch that notices a lost or emptied Redis.

The pieces that share something (knobs, rules, counters, the journal) are `SharedPart`s: each
joins when the process starts, hears the change messages of its kind, and resynchronises after a
reconnect. While Redis is unreachable the process keeps serving with what it knows
(`mode == "degraded"`) and the admin API refuses writes with a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
import redis
import redis.asyncio as aredis
from redis.exceptions import RedisError

from mockllm_tui.core.shared_state import DEGRADED_STATUS, LocalState, StateMode, StateOwner
from mockllm_tui.core.store import Store

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "mockllm"
#: How often the watch looks at Redis (and the longest back-off between reconnects).
WATCH_INTERVAL_S = 0.5
MAX_BACKOFF_S = 5.0
SOCKET_TIMEOUT_S = 2.0
#: How long stopping waits for the state's own tasks (a last journal batch, say).
STOP_TIMEOUT_S = 3.0


class StateUnreachable(RuntimeError):
    """Redis could not be reached at start-up (the message names the URL and the error)."""


def is_redis_url(url: str) -> bool:
    """Whether `--state` names a Redis (redis:// or rediss://)."""
    return url.startswith(("redis://", "rediss://"))


def shown_url(url: str) -> str:
    """The URL as messages show it: never its password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_reachable(url: str, timeout_s: float = SOCKET_TIMEOUT_S) -> None:
    """Ping Redis once (blocking); raise StateUnreachable naming the URL and the error."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        try:
            client.ping()
        finally:
            client.close()
    except (RedisError, OSError, ValueError) as exc:
        raise StateUnreachable(f"cannot reach the shared state at {shown_url(url)}: {exc}") from None


def raise_if_cancelled() -> None:
    """Raise CancelledError when this task has been cancelled. The Redis client can turn a cancellation
    into a connection error; a loop that retries on those would then never stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class SharedPart(Protocol):
    """One piece of shared state (knobs, rules, counters, journal)."""

    #: The change-message kinds it handles.
    kinds: tuple[str, ...]

    async def join(self, first: bool) -> None:
        """Join the group at start-up: seed Redis from this process (`first`: nothing was there) or
        take what is there."""

    async def on_message(self, message: dict[str, Any]) -> None:
        """A change message of one of `kinds`, published by another process."""

    async def resync(self, emptied: bool) -> None:
        """After Redis came back: take the shared state again, or (`emptied`: it lost everything)
        seed it again from this process."""


class KnobsListener(Protocol):
    """Told of each knob change made in this process (the part that shares the knobs)."""

    def knobs_changed(self, layer: str, values: dict[str, Any]) -> None:
        """A knob layer changed here (see LocalState.knobs_changed)."""

    def session_knobs_changed(self, session: str, values: dict[str, Any]) -> None:
        """A session's overrides changed here."""


class RedisState(LocalState):
    """Run-time state shared through Redis by every process naming the same URL and prefix."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX, instance: str = "") -> None:
        super().__init__(instance)
        self.url = url
        self.prefix = prefix or DEFAULT_PREFIX
        self.client: aredis.Redis = aredis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        #: For the rare writes made from synchronous code (a panel key, a rule edit).
        self.sync_client: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        #: Who sends this process's change messages: its instance name and a token of this run, so a
        #: process hears every other one even when several share a name (`--workers` with `--instance-name`).
        self.sender = f"{self.instance}/{secrets.token_hex(4)}"
        self.parts: list[SharedPart] = []
        self.store: Store | None = None
        #: The part sharing the knobs, told of each change made here (None: knobs are not shared).
        self.knobs_listener: KnobsListener | None = None
        self._degraded = False
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[Any]] = set()

    # -- what the rest of the program sees -------------------------------------------------------

    @property
    def mode(self) -> StateMode:
        """redis, or degraded while Redis is unreachable."""
        return "degraded" if self._degraded else "redis"

    @property
    def degraded(self) -> bool:
        """Whether Redis is unreachable now (the process serves with what it last knew)."""
        return self._degraded

    def write_refusal(self) -> tuple[int, str] | None:
        """A 503 while Redis is unreachable: a write could not reach the other processes."""
        if not self._degraded:
            return None
        return (
            DEGRADED_STATUS,
            f"the shared state at {shown_url(self.url)} is unreachable, so a change could not reach the other "
            "processes; this one keeps serving the last known rules and settings. Try again when it is back.",
        )

    def owner(self) -> Store:
        """The store this state belongs to (set by `start`)."""
        if self.store is None:
            raise RuntimeError("the shared state has not started")
        return self.store

    def knobs_changed(self, layer: str, values: dict[str, Any]) -> None:
        """Pass a knob change made here on to the group (through the knobs part)."""
        if self.knobs_listener is not None:
            self.knobs_listener.knobs_changed(layer, values)

    def session_knobs_changed(self, session: str, values: dict[str, Any]) -> None:
        """Pass a session's new overrides on to the group (through the knobs part)."""
        if self.knobs_listener is not None:
            self.knobs_listener.session_knobs_changed(session, values)

    def message(self, kind: str, **payload: Any) -> bytes:
        """A change message as `publish` sends it (for a write that publishes in its own pipeline)."""
        return orjson.dumps({"kind": kind, "from": self.sender, **payload})

    def key(self, *names: str) -> str:
        """A Redis key in this group's namespace: PREFIX:name:..."""
        return ":".join((self.prefix, *names))

    @property
    def channel(self) -> str:
        """The pub/sub channel change messages go through."""
        return self.key("changes")

    # -- lifecycle --------------------------------------------------------------------------------

    def add_part(self, part: SharedPart) -> None:
        """Share one more piece of state (before `start`)."""
        self.parts.append(part)

    async def start(self, store: StateOwner) -> None:
        """Join the group (each part seeds Redis or takes what is there), then listen and watch."""
        if not isinstance(store, Store):
            raise TypeError("a shared state belongs to a Store")
        self.store = store
        first = await self.client.set(self.key("alive"), self.instance, nx=True) is not None
        for part in self.parts:
            await part.join(bool(first))
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._watch())]

    async def stop(self) -> None:
        """Stop listening and close the connections."""
        tasks = [*self._tasks, *self._pending]
        for task in tasks:
            task.cancel()
        if tasks:
            # The Redis client can lose a cancellation in the middle of a read: never let that hold up
            # the process's exit.
            _, stuck = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
            if stuck:
                log.warning("%d shared-state task(s) did not stop in %g s; leaving them", len(stuck), STOP_TIMEOUT_S)
        self._tasks = []
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()
        with contextlib.suppress(RedisError, OSError):
            self.sync_client.close()

    # -- messages ---------------------------------------------------------------------------------

    async def publish(self, kind: str, **payload: Any) -> None:
        """Tell the other processes of a change (they hear it within a moment)."""
        await self.client.publish(self.channel, self.message(kind, **payload))

    def publish_sync(self, kind: str, **payload: Any) -> None:
        """`publish` from synchronous code (blocking; a rare write)."""
        self.sync_client.publish(self.channel, self.message(kind, **payload))

    def spawn(self, job: Awaitable[Any]) -> None:
        """Run a write in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(job)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _listen(self) -> None:
        backoff = WATCH_INTERVAL_S
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                backoff = WATCH_INTERVAL_S
                async for raw in pubsub.listen():
                    await self._dispatch(raw)
            except (RedisError, OSError):
                raise_if_cancelled()
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    async def _dispatch(self, raw: dict[str, Any]) -> None:
        try:
            message = orjson.loads(raw["data"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if not isinstance(message, dict) or message.get("from") == self.sender:
            return
        for part in self.parts:
            if message.get("kind") in part.kinds:
                try:
                    await part.on_message(message)
                except (RedisError, OSError):
                    raise_if_cancelled()
                    log.warning("the shared state could not be read after a change; it is read again on reconnect")
                except Exception:  # the listener goes on hearing the next changes
                    log.exception("a change from %s could not be taken", message.get("from"))

    # -- the watch: lost, back, emptied ------------------------------------------------------------

    async def _watch(self) -> None:
        backoff = WATCH_INTERVAL_S
        while True:
            await asyncio.sleep(backoff if self._degraded else WATCH_INTERVAL_S)
            try:
                emptied = await self.client.set(self.key("alive"), self.instance, nx=True) is not None
            except (RedisError, OSError) as exc:
                raise_if_cancelled()
                backoff = min(MAX_BACKOFF_S, backoff * 2) if self._degraded else WATCH_INTERVAL_S
                self._set_degraded(True, str(exc))
                continue
            backoff = WATCH_INTERVAL_S
            if self._degraded or emptied:
                await self._resync(emptied)

    async def _resync(self, emptied: bool) -> None:
        try:
            for part in self.parts:
                await part.resync(emptied)
        except (RedisError, OSError) as exc:
            raise_if_cancelled()
            self._set_degraded(True, str(exc))
            return
        self._set_degraded(False, "")

    def _set_degraded(self, degraded: bool, why: str) -> None:
        if degraded == self._degraded:
            return
        self._degraded = degraded
        shown = shown_url(self.url)
        if degraded:
            message = f"lost the shared state at {shown} ({why}): serving the last known rules and settings"
        else:
            message = f"the shared state at {shown} is back: in step with the other processes again"
        log.warning("%s", message)
        if self.store is not None:
            self.store.state_changed()
            self.store.announce(message)

