"""The counters a group of processes shares through Redis: `replies:` positions, pending
`fail_next` failures and the rate-limit buckets.

Each decision is one Lua script, so it is atomic across processes. A request touches Redis only
when a decision needs it: a reply picked from a sequence, a failure pending (this process keeps a
copy of the pending counts, which other processes' changes reach by pub/sub), or a rate limit set.
While Redis is lost (or a call to it fails) every decision falls back to this process's own
counting; once it is back, the positions counted meanwhile are carried into the group's
(never backwards) and the pending failures are read again (or seeded again when Redis came back
empty).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from typing import Any, cast

from redis.exceptions import RedisError

from mockllm_tui.core.conversation import ReplySequence
from mockllm_tui.core.knobs import ERROR_MODES, ErrorMode
from mockllm_tui.core.shared_state import FailNext, RateLevels
from mockllm_tui.core.store import Store
from mockllm_tui.shared.connection import RedisState

log = logging.getLogger(__name__)

FAIL_KIND = "fail_next"
#: How long a named session's positions and pending failures outlive its last use.
SESSION_TTL_S = 24 * 3600
#: A rate-limit bucket untouched this long is full again anyway.
RATE_TTL_S = 120
#: How often a process looks whether it missed a change of the pending failures (a message lost
#: while it subscribed or reconnected): one GET, reading them again only when they changed.
FAIL_CHECK_S = 1.0
#: How many sequence positions this process remembers, to carry them into the group after an outage.
REMEMBERED_POSITIONS = 10_000
NO_FAIL: FailNext = (0, None, None)
GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")

#: KEYS[1] the position; ARGV[1] a time to live (0: none). The position after this request.
NEXT_POSITION = """
local n = redis.call('INCR', KEYS[1])
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return n
"""

#: KEYS[1] the position; ARGV[1] a position, ARGV[2] a time to live. Moves it forward to ARGV[1]
#: (never back).
RAISE_POSITION = """
local n = tonumber(ARGV[1])
if n > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], n)
  local ttl = tonumber(ARGV[2])
  if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
end
return n
"""

#: KEYS[1] the pending failures (a hash), KEYS[2] their version; ARGV: count, status, mode, time to
#: live, the channel, this instance, the session ('' for the default one), only_if_absent. Every
#: change gets the next version and is published from the script, so every process hears it.
SET_FAIL = """
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local count = tonumber(ARGV[1])
redis.call('DEL', KEYS[1])
if count > 0 then
  redis.call('HSET', KEYS[1], 'count', count, 'status', ARGV[2], 'mode', ARGV[3])
  local ttl = tonumber(ARGV[4])
  if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
end
local version = redis.call('INCR', KEYS[2])
local session = cjson.null
if ARGV[7] ~= '' then session = ARGV[7] end
redis.call('PUBLISH', ARGV[5], cjson.encode({kind = 'fail_next', from = ARGV[6], session = session,
  count = count, status = ARGV[2], mode = ARGV[3], version = version}))
return version
"""

#: KEYS as SET_FAIL; ARGV: the channel, this instance, the session. Takes one pending failure:
#: {taken (0/1), count left, status, mode, version}.
TAKE_FAIL = """
local v = redis.call('HMGET', KEYS[1], 'count', 'status', 'mode')
local count = tonumber(v[1] or '0')
if count <= 0 then
  return {0, 0, '', '', tonumber(redis.call('GET', KEYS[2]) or '0')}
end
local status, mode = v[2] or '', v[3] or ''
count = count - 1
if count == 0 then redis.call('DEL', KEYS[1]) else redis.call('HSET', KEYS[1], 'count', count) end
local version = redis.call('INCR', KEYS[2])
local session = cjson.null
if ARGV[3] ~= '' then session = ARGV[3] end
redis.call('PUBLISH', ARGV[1], cjson.encode({kind = 'fail_next', from = ARGV[2], session = session,
  count = count, status = status, mode = mode, version = version}))
return {1, count, status, mode, version}
"""

#: KEYS[1] the request bucket, KEYS[2] the token bucket; ARGV: requests per minute, tokens per
#: minute (0: no limit), tokens served since this process's last call, a time to live. Buckets refill
#: continuously by Redis's clock; a bucket whose limit changed starts full. Returns the levels after
#: this request ('' for no limit) and what refused it ('' for nothing).
TAKE_RATE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[4])
local function level(key, cap)
  local v = redis.call('HMGET', key, 'level', 'stamp', 'cap')
  local lvl, stamp = tonumber(v[1]), tonumber(v[2])
  if lvl == nil or stamp == nil or tonumber(v[3]) ~= cap then return cap end
  return math.min(cap, lvl + math.max(0, now - stamp) * cap / 60)
end
local function save(key, cap, lvl)
  redis.call('HSET', key, 'level', tostring(lvl), 'stamp', tostring(now), 'cap', tostring(cap))
  redis.call('EXPIRE', key, ttl)
end
local rpm, tpm, used = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local refused = ''
local tokens, requests = '', ''
if tpm > 0 then
  local lvl = level(KEYS[2], tpm) - used
  if lvl < 1 then refused = 'tokens' end
  save(KEYS[2], tpm, lvl)
  tokens = tostring(lvl)
end
if rpm > 0 then
  local lvl = level(KEYS[1], rpm)
  if lvl < 1 then refused = 'requests' elseif refused == '' then lvl = lvl - 1 end
  save(KEYS[1], rpm, lvl)
  requests = tostring(lvl)
end
return {requests, tokens, refused}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _status(value: Any) -> int | None:
    text = _text(value) if value is not None else ""
    return int(text) if text.isdigit() else None


def _mode(value: Any) -> ErrorMode | None:
    text = _text(value) if value is not None else ""
    return cast(ErrorMode, text) if text in ERROR_MODES else None


def _level(value: Any) -> float | None:
    text = _text(value)
    return float(text) if text else None


class SharedCounters:
    """The group's counters (a `SharedPart` and the state's `counters`)."""

    kinds: tuple[str, ...] = (FAIL_KIND,)

    def __init__(self, state: RedisState) -> None:
        self.state = state
        client, sync = state.client, state.sync_client
        self._next_position = client.register_script(NEXT_POSITION)
        self._raise_position = client.register_script(RAISE_POSITION)
        self._take_fail = client.register_script(TAKE_FAIL)
        self._set_fail = client.register_script(SET_FAIL)
        self._set_fail_sync = sync.register_script(SET_FAIL)
        self._take_rate = client.register_script(TAKE_RATE)
        #: The last version of each session's pending failures this process has taken in, and of any.
        self._versions: dict[str | None, int] = {}
        self._latest = 0
        #: The version of the last full read: any change older than it is already in.
        self._floor = 0
        #: Each sequence's position as this process last knew it (the group's, or counted here).
        self._positions: OrderedDict[tuple[str, str | None], int] = OrderedDict()
        #: The positions counted here while Redis was lost.
        self._counted_here: set[tuple[str, str | None]] = set()

    # -- keys ------------------------------------------------------------------------------------

    def _position_key(self, key: str, session: str | None) -> str:
        return self.state.key("seq", key, "session", session) if session is not None else self.state.key("seq", key)

    def _fail_key(self, session: str | None) -> str:
        return self.state.key("fail", "session", session) if session is not None else self.state.key("fail", "default")

    @property
    def _fail_version_key(self) -> str:
        return self.state.key("fail", "version")

    # -- sequences -------------------------------------------------------------------------------

    async def position(self, sequence: ReplySequence) -> int:
        """The item to answer with, from the group's position (this process's while Redis is lost)."""
        name = (sequence.key, sequence.session)
        if not self.state.degraded:
            ttl = SESSION_TTL_S if sequence.session is not None else 0
            try:
                position = int(await self._next_position([self._position_key(*name)], [ttl]))
            except (RedisError, OSError):
                pass
            else:
                sequence.follow(position)
                self._remember(name, position)
                return min(position, sequence.length) - 1
        self._remember(name, max(self._positions.get(name, 0), sequence.index + 1))
        self._counted_here.add(name)
        return sequence.index

    def _remember(self, name: tuple[str, str | None], position: int) -> None:
        self._positions[name] = position
        self._positions.move_to_end(name)
        while len(self._positions) > REMEMBERED_POSITIONS:
            dropped, _ = self._positions.popitem(last=False)
            self._counted_here.discard(dropped)

    async def _carry_positions(self, names: list[tuple[str, str | None]]) -> None:
        for name in names:
            position = self._positions.get(name)
            if position is not None:
                ttl = SESSION_TTL_S if name[1] is not None else 0
                await self._raise_position([self._position_key(*name)], [position, ttl])
            self._counted_here.discard(name)

    # -- fail_next -------------------------------------------------------------------------------

    async def take_fail_next(self, session: str | None) -> FailNext:
        """One of the group's pending failures, when this process's copy says some are pending."""
        store = self.state.owner()
        if store.fail_next_of(session)[0] <= 0:
            return NO_FAIL
        if self.state.degraded:
            return store.take_fail_next(session)
        keys = [self._fail_key(session), self._fail_version_key]
        try:
            answer = await self._take_fail(keys, [self.state.channel, self.state.sender, session or ""])
        except (RedisError, OSError):
            return store.take_fail_next(session)
        taken, count, status, mode, version = answer
        self._follow_fail(store, session, int(count), _status(status), _mode(mode), int(version))
        return (1, _status(status), _mode(mode)) if int(taken) else NO_FAIL

    def share_fail_next(self, session: str | None, count: int, status: int | None, mode: ErrorMode | None) -> None:
        """Pending failures set here (the admin API, the panel): the group's from now on (a blocking
        write: it is rare, and made from synchronous code)."""
        if self.state.degraded:
            return
        args = self._set_args(session, count, status, mode, only_if_absent=False)
        try:
            version = int(self._set_fail_sync([self._fail_key(session), self._fail_version_key], args))
        except (RedisError, OSError) as exc:
            log.warning("could not share fail_next (%s): it holds for this process only", exc)
            return
        self._versions[session] = max(version, self._versions.get(session, 0))
        self._latest = max(self._latest, version)

    def _set_args(
        self, session: str | None, count: int, status: int | None, mode: ErrorMode | None, *, only_if_absent: bool
    ) -> list[Any]:
        ttl = SESSION_TTL_S if session is not None else 0
        return [
            count,
            "" if status is None else status,
            mode or "",
            ttl,
            self.state.channel,
            self.state.sender,
            session or "",
            "1" if only_if_absent else "0",
        ]

    def _follow_fail(
        self, store: Store, session: str | None, count: int, status: int | None, mode: ErrorMode | None, version: int
    ) -> None:
        """Take in the group's pending failures as of `version` (an older change is ignored)."""
        self._latest = max(self._latest, version)
        if version < max(self._versions.get(session, 0), self._floor):
            return
        self._versions[session] = version
        if store.fail_next_of(session)[0] == count == 0:
            return  # nothing pending here or there: no need to wake the panel (or make a session)
        store.follow_fail_next(count, status, mode, session)

    async def _read_fail(self, store: Store) -> None:
        """Take in every pending failure the group has (and forget those it no longer has)."""
        client = self.state.client
        version = int(await client.get(self._fail_version_key) or 0)
        if version < self._latest:  # Redis lost them (it restarted empty): seed them again, versions afresh
            self._forget_versions()
            await self._seed_fail(store)
            version = int(await client.get(self._fail_version_key) or 0)
        found: dict[str | None, tuple[int, int | None, ErrorMode | None]] = {}
        default = await client.hmget(self._fail_key(None), ["count", "status", "mode"])
        if default[0] is not None:
            found[None] = (int(default[0]), _status(default[1]), _mode(default[2]))
        prefix = self._fail_key("")
        async for raw in client.scan_iter(match=GLOB_SPECIAL.sub(r"\\\1", prefix) + "*"):
            values = await client.hmget(raw, ["count", "status", "mode"])
            if values[0] is not None:
                found[_text(raw)[len(prefix) :]] = (int(values[0]), _status(values[1]), _mode(values[2]))
        here = [state.id for state in store.sessions if state.fail_next[0] > 0]
        if store.fail_next[0] > 0:
            here.append(None)
        self._floor = max(self._floor, version)  # a change older than this read is stale now
        self._latest = max(self._latest, version)
        for session in {*here, *found}:
            count, status, mode = found.get(session, (0, None, None))
            self._follow_fail(store, session, count, status, mode, version)

    def _forget_versions(self) -> None:
        self._versions.clear()
        self._latest = self._floor = 0

    async def _seed_fail(self, store: Store) -> None:
        """Redis has no pending failures yet (or lost them): this process's become the group's."""
        sessions = [None, *(state.id for state in store.sessions if state.id is not None)]
        for session in sessions:
            count, status, mode = store.pending_fail_next(session)
            if count > 0:
                keys = [self._fail_key(session), self._fail_version_key]
                args = self._set_args(session, count, status, mode, only_if_absent=True)
                version = int(await self._set_fail(keys, args))
                self._latest = max(self._latest, version)

    # -- rate limits -----------------------------------------------------------------------------

    async def take_rate(self, rpm: int, tpm: int, tokens: int) -> RateLevels | None:
        """One request (and the tokens served here since the last call) from the group's buckets;
        None while Redis is lost (the caller counts here)."""
        if self.state.degraded:
            return None
        keys = [self.state.key("rate", "requests"), self.state.key("rate", "tokens")]
        try:
            requests, tokens_left, refused = await self._take_rate(keys, [rpm, tpm, tokens, RATE_TTL_S])
        except (RedisError, OSError):
            return None
        return RateLevels(_level(requests), _level(tokens_left), _text(refused) or None)

    # -- the part's life -------------------------------------------------------------------------

    async def join(self, first: bool) -> None:
        """Seed the group's pending failures from this process (the first), or take them in."""
        store = self.state.store
        if store is None:
            return
        if first:
            await self._seed_fail(store)
        else:
            await self._read_fail(store)
        self.state.spawn(self._check_fail(store))

    async def _check_fail(self, store: Store) -> None:
        """Read the pending failures again whenever their version moved past the last one heard of."""
        while True:
            await asyncio.sleep(FAIL_CHECK_S)
            if self.state.degraded:
                continue
            try:
                version = int(await self.state.client.get(self._fail_version_key) or 0)
                if version != self._latest:
                    await self._read_fail(store)
            except (RedisError, OSError):
                continue  # the watch notices a lost Redis; resync reads them again

    async def on_message(self, message: dict[str, Any]) -> None:
        """Another process set or took pending failures."""
        store = self.state.store
        if store is None:
            return
        session = message.get("session")
        count, version = message.get("count"), message.get("version")
        if not isinstance(count, int) or not isinstance(version, int):
            return
        if session is not None and not isinstance(session, str):
            return
        self._follow_fail(store, session, count, _status(message.get("status")), _mode(message.get("mode")), version)

    async def resync(self, emptied: bool) -> None:
        """Redis is back: carry the positions counted here into the group's and take in the group's
        pending failures (seed them again when Redis came back empty)."""
        store = self.state.store
        if store is None:
            return
        names = list(self._positions) if emptied else [n for n in self._positions if n in self._counted_here]
        await self._carry_positions(names)
        if emptied:
            self._forget_versions()
            await self._seed_fail(store)
        else:
            await self._read_fail(store)
