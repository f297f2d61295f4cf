"""The knobs shared: the live layer and the sessions' overrides are the same on every process.

Redis holds `PREFIX:knobs:live` (a hash: knob name -> JSON value), `PREFIX:knobs:sessions`
(session -> JSON object of its overrides) and `PREFIX:knobs:version` (a token every write
changes). A change made here is written at once, only the fields it changed (so two processes
changing different knobs at the same moment both keep theirs), and announced on the change
channel; the other processes read the hashes again when they hear it, or when their poll sees the
token change (a missed message, a reconnect). Requests only ever read the store's own copy.

The file's `settings:` layer is not shared here: it comes with the shared rules document.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import orjson
from redis.exceptions import RedisError

from mockllm_tui.core.knobs import KnobError
from mockllm_tui.core.store import Store
from mockllm_tui.shared.connection import RedisState
from mockllm_tui.shared.rules_doc import text_of

log = logging.getLogger(__name__)

#: How often the version token is looked at (a change message can be missed while reconnecting).
POLL_INTERVAL_S = 0.5
LIVE = "live"

Encoded = dict[str, bytes]


def encode(values: dict[str, Any]) -> Encoded:
    """Knob values as Redis keeps them: each one JSON."""
    return {name: orjson.dumps(value) for name, value in values.items()}


def decode(raw: dict[bytes, bytes]) -> Encoded:
    """A hash as Redis returns it, with text names."""
    return {name.decode(): value for name, value in raw.items()}


def values_of(encoded: Encoded) -> dict[str, Any]:
    """The knob values of an encoded hash."""
    return {name: orjson.loads(value) for name, value in encoded.items()}


def new_token() -> str:
    """A fresh version token (unique: a Redis restarted empty never hands out an old one again)."""
    return uuid.uuid4().hex


class SharedKnobs:
    """The live knob layer and the sessions' overrides, shared by every process of the group."""

    kinds: tuple[str, ...] = ("knobs",)

    def __init__(self, state: RedisState) -> None:
        self.state = state
        #: The live layer and the sessions' overrides as this process last wrote or read them.
        self.live: Encoded = {}
        self.sessions: Encoded = {}
        self.version: str | None = None
        self._joined = False
        self._applying = False
        #: Writes made here; a read begun before one may be older than what this process knows.
        self._writes = 0
        state.knobs_listener = self

    @property
    def _store(self) -> Store:
        store = self.state.store
        assert store is not None, "joined before the state started"
        return store

    def _keys(self) -> tuple[str, str, str]:
        key = self.state.key
        return key("knobs", "live"), key("knobs", "sessions"), key("knobs", "version")

    # -- changes made here ------------------------------------------------------------------------

    def _sharing(self) -> bool:
        return self._joined and not self._applying and not self.state.degraded

    def knobs_changed(self, layer: str, values: dict[str, Any]) -> None:
        """Write the live layer's changed fields to Redis and tell the group (other layers stay here:
        the CLI's are this process's own, the file's come with the shared rules document)."""
        if layer != LIVE or not self._sharing():
            return
        encoded = encode(values)
        changed = {name: value for name, value in encoded.items() if self.live.get(name) != value}
        gone = [name for name in self.live if name not in encoded]
        if encoded and not changed and not gone:
            return  # (clearing always clears: another process may have set what this one has not heard of)
        live_key, _, version_key = self._keys()
        token = new_token()
        try:
            pipe = self.state.sync_client.pipeline(transaction=True)
            if not encoded:
                pipe.delete(live_key)
            else:
                if gone:
                    pipe.hdel(live_key, *gone)
                if changed:
                    pipe.hset(live_key, mapping=changed)  # type: ignore[arg-type]
            pipe.set(version_key, token)
            pipe.publish(self.state.channel, self.state.message("knobs"))
            pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("could not share a settings change (%s): it is in force on this process only", exc)
            return
        self.live, self.version = encoded, token
        self._writes += 1

    def session_knobs_changed(self, session: str, values: dict[str, Any]) -> None:
        """Write a session's overrides to Redis and tell the group."""
        if not self._sharing():
            return
        encoded = orjson.dumps(values)
        if self.sessions.get(session, b"{}") == encoded:
            return
        _, sessions_key, version_key = self._keys()
        token = new_token()
        try:
            pipe = self.state.sync_client.pipeline(transaction=True)
            if values:
                pipe.hset(sessions_key, session, encoded)
            else:
                pipe.hdel(sessions_key, session)
            pipe.set(version_key, token)
            pipe.publish(self.state.channel, self.state.message("knobs", session=session))
            pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("could not share session %s's settings (%s): in force on this process only", session, exc)
            return
        if values:
            self.sessions[session] = encoded
        else:
            self.sessions.pop(session, None)
        self.version = token
        self._writes += 1

    # -- the group's changes ------------------------------------------------------------------------

    async def join(self, first: bool) -> None:
        """Take the group's knobs, or (none there yet) seed them from this process."""
        self._joined = True
        if await self.state.client.get(self._keys()[2]) is None:
            await self.seed()
        else:
            await self.refresh()
        self.state.spawn(self._poll())

    async def on_message(self, message: dict[str, Any]) -> None:
        """Another process changed the knobs: read them again."""
        await self.refresh()

    async def resync(self, emptied: bool) -> None:
        """Back in touch: take the group's knobs, or seed them again when Redis lost them."""
        if emptied or await self.state.client.get(self._keys()[2]) is None:
            await self.seed()
        else:
            await self.refresh()

    async def seed(self) -> None:
        """Put this process's live layer and sessions' overrides into Redis (it had none)."""
        store = self._store
        live = encode(store.knob_layer(LIVE))
        sessions = {s.id: orjson.dumps(s.knobs) for s in store.sessions if s.id is not None and s.knobs}
        live_key, sessions_key, version_key = self._keys()
        token = new_token()
        pipe = self.state.client.pipeline(transaction=True)
        pipe.delete(live_key, sessions_key)
        if live:
            pipe.hset(live_key, mapping=live)  # type: ignore[arg-type]
        if sessions:
            pipe.hset(sessions_key, mapping=sessions)  # type: ignore[arg-type]
        pipe.set(version_key, token)
        pipe.publish(self.state.channel, self.state.message("knobs"))
        await pipe.execute()
        self.live, self.sessions, self.version = live, sessions, token

    async def refresh(self) -> None:
        """Read the group's knobs and make them this process's."""
        live_key, sessions_key, version_key = self._keys()
        for _ in range(3):
            writes = self._writes
            pipe = self.state.client.pipeline(transaction=True)
            pipe.hgetall(live_key)
            pipe.hgetall(sessions_key)
            pipe.get(version_key)
            live, sessions, version = await pipe.execute()
            if writes == self._writes:
                self._apply(decode(live), decode(sessions), text_of(version) if version else None)
                return

    def _apply(self, live: Encoded, sessions: Encoded, version: str | None) -> None:
        store = self._store
        self.version = version
        self._applying = True
        try:
            if live != self.live or live != encode(store.knob_layer(LIVE)):
                try:
                    store.set_knobs(LIVE, values_of(live), replace_layer=True)
                except KnobError as exc:
                    log.warning("ignored the group's settings: %s", exc)
                self.live = live
            for session in {*self.sessions, *sessions}:
                encoded = sessions.get(session, b"{}")
                local = store.sessions.peek(session)
                if encoded == orjson.dumps(local.knobs if local is not None else {}):
                    continue
                try:
                    store.set_session_knobs(session, orjson.loads(encoded), replace_all=True)
                except KnobError as exc:
                    log.warning("ignored session %s's settings from the group: %s", session, exc)
            self.sessions = sessions
        finally:
            self._applying = False

    async def _poll(self) -> None:
        version_key = self._keys()[2]
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            if self.state.degraded:
                continue
            try:
                version = await self.state.client.get(version_key)
                if version is None:
                    await self.seed()
                elif text_of(version) != self.version:
                    await self.refresh()
            except (RedisError, OSError):
                continue
            except Exception:  # keep looking: one bad read must not end the poll
                log.exception("the shared settings could not be taken")
