"""The state store: the one source of truth for everything that changes at run time.

The server, the file watcher, the YAML writer, the admin API and the panel are all clients:
they change the store through its methods and observe it through subscriptions. Publishing
never blocks and never awaits a subscriber: it appends a small tuple to each subscriber's
bounded queue. Subscribers drain batches when they choose.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from time import perf_counter
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson

from mockllm_tui.core.conversation import Conversation, NearMiss, NearMisses, ReplySource
from mockllm_tui.core.knobs import ErrorMode, Knobs, validate_knob_values
from mockllm_tui.core.models import ModelRegistry, default_registry
from mockllm_tui.core.sessions import DEFAULT_MAX_SESSIONS, Sessions, SessionState
from mockllm_tui.core.shared_state import LocalState

DEFAULT_JOURNAL_SIZE = 5_000
DEFAULT_SUBSCRIPTION_SIZE = 10_000
MAX_STORED_BODY = 64 * 1024
#: What the journal shows in place of a credential.
REDACTED = "[redacted]"
#: The largest request body served (`--max-body-mb`); larger ones get a 413.
DEFAULT_MAX_BODY = 10 * 1024 * 1024
#: Health checks and metrics scrapes: journaled like any request, and counted apart (`probes`) so
#: that a poller does not swamp the panel's log and totals.
PROBE_PATHS = frozenset({"/health", "/metrics"})


@dataclass(slots=True, frozen=True)
class StartupConfig:
    """The values fixed at start-up: the body limit, strict models, the responses file and the URL."""

    max_body: int = DEFAULT_MAX_BODY
    #: How much of each request body the journal keeps.
    max_stored_body: int = MAX_STORED_BODY
    strict_models: bool = False
    responses_path: str = ""
    url: str = ""
    #: `--upstream NAME=URL` pairs: where requests no rule matches are forwarded.
    upstreams: tuple[tuple[str, str], ...] = ()
    upstream_timeout_s: float = 60.0
    #: `--strict`: a request no rule matches gets a 404 instead of a fallback's answer.
    strict: bool = False
    #: `--max-sessions`: how many named sessions are kept (least recently used forgotten first).
    max_sessions: int = DEFAULT_MAX_SESSIONS

    def upstream_hosts(self) -> tuple[str, ...]:
        """The upstreams' hosts, each once (what the status bar shows)."""
        return tuple(dict.fromkeys(url_host(url) for _, url in self.upstreams))


def url_host(url: str) -> str:
    """A URL's host and port, never its userinfo (what messages and comments may show)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


EventKind = Literal["request", "chunk", "done", "rules", "knobs", "file", "notice", "journal_cleared", "state"]
Event = tuple[EventKind, Any]


@dataclass(slots=True, eq=False)
class JournalEntry:
    """One request as the journal remembers it. `chunks` grows while a stream is open, and
    `chunk_times` with it: when each chunk went out (perf_counter; chunks sent in one write share
    a time). `response_body` is a whole (non-streamed) reply as sent, up to MAX_STORED_BODY.
    `rule` is the identity of the rule that answered (or a fallback's label); `rule_id` is that
    rule's internal id, for the panel only."""

    id: int
    time: float
    method: str
    path: str
    provider: str = ""
    model: str = ""
    preview: str = ""
    status: int = 0
    duration_ms: float = 0.0
    bytes_sent: int = 0
    stream: bool = False
    open: bool = True
    chunks: list[str] = field(default_factory=list)
    chunk_times: list[float] = field(default_factory=list)
    #: What each chunk is (a realtime event's type), when its wire format names its chunks.
    chunk_labels: list[str] = field(default_factory=list)
    rule: str | None = None
    rule_id: int | None = None
    fault: str | None = None
    request_id: str = ""
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: bytes = b""
    reply_text: str = ""
    response_body: bytes = b""
    first_chunk_at: float | None = None
    stream_started: bool = False
    #: The speed a stream was paced at (tokens/s, 0: unlimited), as it was when it ended; None for a
    #: stream the mock did not pace (passed through from an upstream).
    stream_speed: float | None = None
    started: float = field(default_factory=perf_counter)
    conversation: Conversation | None = None
    #: What served it: the endpoint's name ("" for routes outside the model endpoints), its
    #: operation and provider family in OpenTelemetry's GenAI terms.
    endpoint: str = ""
    operation: str = ""
    system: str = ""
    #: The reply: its id, token counts and finish reason (set when a reply was made).
    response_id: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str = ""
    #: An injected fault's status and mode (None when none was injected).
    fault_status: int | None = None
    fault_mode: str | None = None
    #: Input tokens of a chat request (the estimate usage reports), the model's window in force,
    #: the limit it broke (set when refused for length, or served over it) and the reply's thinking.
    prompt_tokens: int | None = None
    context_window: int | None = None
    limit_breach: str | None = None
    refused_for_length: bool = False
    thinking_text: str = ""
    #: A small picture of an image reply for the panel: (width, height, RGB bytes), or None.
    thumbnail: tuple[int, int, bytes] | None = None
    #: The request's session (`x-mock-session`; None: the default one), the nearest rules when a
    #: fallback answered ((rule, reason) pairs), and the scenario step that answered.
    session: str | None = None
    near_misses: NearMisses | None = None
    scenario: dict[str, Any] | None = None
    #: The process that served it (`--instance-name`, default HOST:PID), and whether that is another
    #: process sharing this one's state (its entry read from the shared journal).
    instance: str = ""
    foreign: bool = False

    def nearest(self) -> list[NearMiss]:
        """A fallback's near misses: the nearest rules and why each missed (worked out on first read)."""
        return self.near_misses.get() if self.near_misses is not None else []

    @property
    def probe(self) -> bool:
        """Whether this is a health check or a metrics scrape (see PROBE_PATHS)."""
        return self.path in PROBE_PATHS

    def transcript(self) -> list[tuple[str, str]]:
        """The request as neutral (role, text) lines, as its provider parsed it (empty if it was not)."""
        return self.conversation.transcript() if self.conversation is not None else []

    def body_json(self) -> Any:
        """The request body parsed as JSON: None without a body, or when it is not JSON (or was cut at the bound)."""
        if not self.request_body:
            return None
        try:
            return orjson.loads(self.request_body)
        except orjson.JSONDecodeError:
            return None

    def public(self, *, with_body: bool = False) -> dict[str, Any]:
        """The entry as plain data (for the admin API and the export)."""
        out: dict[str, Any] = {
            "id": self.id,
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "provider": self.provider,
            "model": self.model,
            "preview": self.preview,
            "status": self.status,
            "duration_ms": round(self.duration_ms, 3),
            "bytes": self.bytes_sent,
            "stream": self.stream,
            "open": self.open,
            "chunks": len(self.chunks),
            "rule": self.rule,
            "fault": self.fault,
            "request_id": self.request_id,
            "reply": self.reply_text or "".join(self.chunks),
            "headers": self.request_headers,
            "prompt_tokens": self.prompt_tokens,
            "context_window": self.context_window,
            "limit": self.limit_breach,
            "refused_for_length": self.refused_for_length,
            "thinking": self.thinking_text,
            "session": self.session,
            "prompt": self.conversation.last_user_text() if self.conversation is not None else "",
            "near_misses": [{"rule": rule, "reason": reason} for rule, reason in self.nearest()],
            "scenario": self.scenario,
            "instance": self.instance,
        }
        if with_body:
            out["body"] = self.request_body.decode("utf-8", "replace")
        return out


class Subscription:
    """A subscriber's bounded queue of events. When it overflows the oldest events are dropped
    and `overflowed` is set, so the subscriber knows to re-read the store whole."""

    __slots__ = ("_events", "_wakeup", "kinds", "overflowed")

    def __init__(self, size: int, kinds: frozenset[EventKind] | None = None) -> None:
        self._events: deque[Event] = deque(maxlen=size)
        self._wakeup: asyncio.Event | None = None
        self.overflowed = False
        #: The kinds of event queued (None: every kind).
        self.kinds = kinds

    def push(self, event: Event) -> None:
        """Append an event (called by the store; never blocks)."""
        events = self._events
        if len(events) == events.maxlen:
            self.overflowed = True
        events.append(event)
        if self._wakeup is not None:
            self._wakeup.set()

    def drain(self) -> list[Event]:
        """Take every pending event, oldest first."""
        out = list(self._events)
        self._events.clear()
        self.overflowed = False
        if self._wakeup is not None:
            self._wakeup.clear()
        return out

    def __len__(self) -> int:
        return len(self._events)

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until an event is pending; False on timeout. For tests and headless logging."""
        if self._events:
            return True
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            return False
        return True


@dataclass(slots=True)
class Counters:
    """Totals since start (or since the journal was cleared)."""

    total: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    in_flight: int = 0
    streams_open: int = 0
    errors: int = 0
    #: Health checks and metrics scrapes among the requests (see PROBE_PATHS), counted as they arrive.
    probes: int = 0

    def public(self) -> dict[str, Any]:
        """As plain data."""
        return {
            "total": self.total,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "in_flight": self.in_flight,
            "streams_open": self.streams_open,
            "errors": self.errors,
        }


class Store:
    """Rules, knobs, journal, counters and subscriptions. Change it only through its methods."""

    def __init__(
        self,
        *,
        journal_size: int = DEFAULT_JOURNAL_SIZE,
        knobs: Knobs | None = None,
        config: StartupConfig | None = None,
        state: LocalState | None = None,
    ) -> None:
        self._journal: deque[JournalEntry] = deque(maxlen=max(1, journal_size))
        self._open: dict[int, JournalEntry] = {}
        self._ids = itertools.count(1)
        self._subscriptions: list[Subscription] = []
        self._counters = Counters()
        self._knob_layers: dict[str, dict[str, Any]] = {"cli": {}, "file": {}, "live": {}}
        self._base_knobs = knobs or Knobs()
        self._knobs = self._base_knobs
        self._rules: ReplySource | None = None
        self._models: ModelRegistry | None = None
        self._file_error: str | None = None
        self._fail_next = 0
        self._fail_next_status: int | None = None
        self._fail_next_mode: ErrorMode | None = None
        self._finish_hooks: list[Callable[[JournalEntry], None]] = []
        #: Rule sets made live since start (each reload or edit).
        self.rule_sets_loaded = 0
        self._tokens_used = 0
        self.rng = random.Random(self._knobs.seed)
        self._config = config or StartupConfig()
        self.sessions = Sessions(self._config.max_sessions)
        #: How this process shares its state with others (`--state`; memory: it does not).
        self.state = state or LocalState()

    # -- start-up values -----------------------------------------------------------------------

    @property
    def config(self) -> StartupConfig:
        """The start-up values (frozen)."""
        return self._config

    def configure(self, **changes: Any) -> StartupConfig:
        """Replace start-up values (as the server and the responses file become known)."""
        self._config = replace(self._config, **changes)
        self.sessions.limit = max(1, self._config.max_sessions)
        return self._config

    # -- subscriptions -------------------------------------------------------------------------

    def subscribe(
        self, size: int = DEFAULT_SUBSCRIPTION_SIZE, kinds: frozenset[EventKind] | None = None
    ) -> Subscription:
        """A new subscription; events published from now on (of `kinds`, or all) are queued for it."""
        sub = Subscription(size, kinds)
        self._subscriptions.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop queueing events for this subscription."""
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)

    def publish(self, kind: EventKind, payload: Any = None) -> None:
        """Queue an event for every subscriber. Never blocks."""
        event = (kind, payload)
        for sub in self._subscriptions:
            if sub.kinds is None or kind in sub.kinds:
                sub.push(event)

    # -- journal -------------------------------------------------------------------------------

    @property
    def journal_size(self) -> int:
        """The journal's bound."""
        return self._journal.maxlen or 0

    def journal(self) -> list[JournalEntry]:
        """The journal, oldest first (a copy of the list; the entries are live)."""
        return list(self._journal)

    def open_requests(self) -> list[JournalEntry]:
        """The requests still being answered, oldest first (even those the journal has let go)."""
        return list(self._open.values())

    def journal_tail(self, limit: int) -> list[JournalEntry]:
        """The newest `limit` entries, oldest first."""
        if limit <= 0:
            return []
        return list(itertools.islice(reversed(self._journal), limit))[::-1]

    def entry(self, entry_id: int) -> JournalEntry | None:
        """The entry with this id, if the journal still holds it."""
        for e in reversed(self._journal):
            if e.id == entry_id:
                return e
        return None

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(self._journal)

    def begin_request(self, method: str, path: str) -> JournalEntry:
        """Record a request as it arrives; the entry is filled in as the request proceeds."""
        entry = JournalEntry(
            id=next(self._ids), time=time.time(), method=method, path=path, instance=self.state.instance
        )
        self._journal.append(entry)
        self._open[entry.id] = entry
        self._counters.in_flight += 1
        if path in PROBE_PATHS:
            self._counters.probes += 1
        self.publish("request", entry)
        return entry

    def open_stream(self, entry: JournalEntry) -> None:
        """Mark the entry as a stream that has started."""
        entry.stream = True
        if not entry.stream_started:
            entry.stream_started = True
            self._counters.streams_open += 1

    def add_chunk(self, entry: JournalEntry, text: str, size: int, label: str = "") -> None:
        """Record a stream chunk as it goes out (`label`: what it is, for wire formats that name chunks)."""
        now = time.perf_counter()
        if entry.first_chunk_at is None:
            entry.first_chunk_at = now
        if label:
            entry.chunk_labels += [""] * (len(entry.chunks) - len(entry.chunk_labels)) + [label]
        entry.chunks.append(text)
        entry.chunk_times.append(now)
        entry.bytes_sent += size
        self.publish("chunk", entry)

    def add_chunks(self, entry: JournalEntry, texts: list[str], size: int) -> None:
        """Record several stream chunks that went out in one write."""
        now = time.perf_counter()
        if entry.first_chunk_at is None:
            entry.first_chunk_at = now
        entry.chunks.extend(texts)
        entry.chunk_times.extend(itertools.repeat(now, len(texts)))
        entry.bytes_sent += size
        self.publish("chunk", entry)

    def end_request(self, entry: JournalEntry, status: int, bytes_sent: int = 0, body: bytes = b"") -> None:
        """Record the end of a request (streams included); `body` is a whole reply as sent."""
        if self._close(entry, status, bytes_sent, body):
            self.count_response(entry)
            self.publish("done", entry)

    def end_session(self, entry: JournalEntry, status: int) -> None:
        """Record the end of a session's row (a realtime socket). Its responses were counted one by
        one (`count_response`), so the row itself is not counted again."""
        if self._close(entry, status):
            self.publish("done", entry)

    def count_response(self, entry: JournalEntry) -> None:
        """Count a finished response in the totals and tell the finish hooks (metrics, traces). A
        session's response is a snapshot that is not in the journal: the session's row is."""
        self._tally(entry)
        for hook in self._finish_hooks:
            hook(entry)

    def _tally(self, entry: JournalEntry) -> None:
        c = self._counters
        c.total += 1
        c.by_status[entry.status] = c.by_status.get(entry.status, 0) + 1
        if entry.status >= 400:
            c.errors += 1

    def _close(self, entry: JournalEntry, status: int, bytes_sent: int = 0, body: bytes = b"") -> bool:
        """Close an open entry with its status (False: it was closed already)."""
        if not entry.open:
            return False
        if body:
            entry.response_body = body if len(body) <= MAX_STORED_BODY else body[:MAX_STORED_BODY]
        entry.open = False
        self._open.pop(entry.id, None)
        entry.status = status
        entry.bytes_sent += bytes_sent
        entry.duration_ms = (time.perf_counter() - entry.started) * 1000.0
        c = self._counters
        c.in_flight -= 1
        if entry.stream_started:
            c.streams_open -= 1
        return True

    def add_foreign(self, entry: JournalEntry) -> bool:
        """Add a finished request another process served (read from the shared journal): it gets an id
        here, keeps its instance and time, and goes in time order. It counts in the totals (the journal
        and its totals tell of every process) but not to the finish hooks (`/metrics` and traces stay
        this process's). False: it is older than everything a full journal holds, so it is left out."""
        journal = self._journal
        at = len(journal)
        while at and journal[at - 1].time > entry.time:
            at -= 1
        if len(journal) == journal.maxlen:
            if at == 0:
                return False
            journal.popleft()
            at -= 1
        entry.id, entry.open, entry.foreign, entry.rule_id = next(self._ids), False, True, None
        journal.insert(at, entry)
        self._tally(entry)
        if entry.probe:
            self._counters.probes += 1
        self.publish("done", entry)
        return True

    def add_finish_hook(self, hook: Callable[[JournalEntry], None]) -> None:
        """Call `hook(entry)` as each request ends, before subscribers hear of it (keep it cheap)."""
        self._finish_hooks.append(hook)

    def clear_journal(self) -> None:
        """Forget every finished entry and reset the totals (open requests keep counting)."""
        still_open = [e for e in self._journal if e.open]
        self._journal.clear()
        self._journal.extend(still_open)
        c = self._counters
        probes = sum(1 for e in still_open if e.probe)
        self._counters = Counters(in_flight=c.in_flight, streams_open=c.streams_open, probes=probes)
        self.publish("journal_cleared")

    @property
    def counters(self) -> Counters:
        """The live counters (read only by convention)."""
        return self._counters

    # -- knobs ---------------------------------------------------------------------------------

    @property
    def knobs(self) -> Knobs:
        """The merged knob values in force."""
        return self._knobs

    def knob_layer(self, layer: str) -> dict[str, Any]:
        """The values set in one layer: "cli", "file" or "live"."""
        return dict(self._knob_layers[layer])

    def set_knobs(self, layer: str, values: dict[str, Any], *, replace_layer: bool = False) -> Knobs:
        """Set knob values in a layer ("cli" < "file" < "live") and publish the merged result."""
        validate_knob_values(values)
        current = {} if replace_layer else self._knob_layers[layer]
        self._knob_layers[layer] = {**current, **values}
        merged: dict[str, Any] = {}
        for name in ("cli", "file", "live"):
            merged.update(self._knob_layers[name])
        seed = self._knobs.seed
        self._knobs = self._base_knobs.with_changes(**merged)
        if self._knobs.seed != seed:
            self.rng.seed(self._knobs.seed)
        self.publish("knobs", self._knobs)
        self.state.knobs_changed(layer, dict(self._knob_layers[layer]))
        return self._knobs

    def session(self, session_id: str | None) -> SessionState:
        """A session's state (the default session for None); made on first use."""
        return self.sessions.get(session_id)

    def knobs_for(self, session_id: str | None) -> Knobs:
        """The knobs in force for a session: the live knobs with the session's overrides on top."""
        if session_id is None:
            return self._knobs
        state = self.sessions.peek(session_id)
        if state is None or not state.knobs:
            return self._knobs
        cached = state.merged_knobs
        if cached is not None and cached[0] is self._knobs:
            return cached[1]
        merged = self._knobs.with_changes(**state.knobs)
        state.merged_knobs = (self._knobs, merged)
        return merged

    def set_session_knobs(self, session_id: str, values: dict[str, Any], *, replace_all: bool = False) -> Knobs:
        """Set (or with `replace_all`, replace) a session's knob overrides; `None` values drop one."""
        validate_knob_values({k: v for k, v in values.items() if v is not None})
        state = self.sessions.get(session_id)
        merged = {} if replace_all else dict(state.knobs)
        merged.update(values)
        state.knobs = {k: v for k, v in merged.items() if v is not None}
        state.merged_knobs = None
        self.publish("knobs", self._knobs)
        self.state.session_knobs_changed(session_id, dict(state.knobs))
        return self.knobs_for(session_id)

    def set_fail_next(
        self, count: int, status: int | None = None, mode: ErrorMode | None = None, session: str | None = None
    ) -> None:
        """Fail exactly the next `count` model requests (with `status` and `mode`, or the knobs'),
        of a session when one is named; with a shared state, the group's next requests."""
        self.follow_fail_next(count, status, mode, session)
        self.state.share_fail_next(session, max(0, count), status, mode)

    def follow_fail_next(
        self, count: int, status: int | None = None, mode: ErrorMode | None = None, session: str | None = None
    ) -> None:
        """Set the pending failures in this process only (its copy of the group's)."""
        if session is not None:
            self.sessions.get(session).fail_next = (max(0, count), status, mode) if count > 0 else (0, None, None)
            self.publish("knobs", self._knobs)
            return
        self._fail_next = max(0, count)
        self._fail_next_status = status
        self._fail_next_mode = mode
        self.publish("knobs", self._knobs)

    @property
    def fail_next(self) -> tuple[int, int | None]:
        """How many of the next requests will fail, and with which status."""
        return self._fail_next, self._fail_next_status

    def fail_next_of(self, session: str | None) -> tuple[int, int | None]:
        """How many of a session's next requests will fail, and with which status."""
        if session is None:
            return self.fail_next
        state = self.sessions.peek(session)
        return (0, None) if state is None else (state.fail_next[0], state.fail_next[1])

    def pending_fail_next(self, session: str | None) -> tuple[int, int | None, ErrorMode | None]:
        """A session's (or the default's) pending failures: count, status and mode."""
        if session is None:
            return self._fail_next, self._fail_next_status, self._fail_next_mode
        state = self.sessions.peek(session)
        return (0, None, None) if state is None else state.fail_next

    def take_fail_next(self, session: str | None = None) -> tuple[int, int | None, ErrorMode | None]:
        """Consume one pending `fail_next` (of the request's session): (1, status, mode) when this
        request must fail, else (0, None, None)."""
        if session is not None:
            state = self.sessions.peek(session)
            if state is None or state.fail_next[0] <= 0:
                return 0, None, None
            taken = state.take_fail_next()
            self.publish("knobs", self._knobs)
            return taken
        if self._fail_next <= 0:
            return 0, None, None
        self._fail_next -= 1
        status, mode = self._fail_next_status, self._fail_next_mode
        if self._fail_next == 0:
            self._fail_next_status = self._fail_next_mode = None
        self.publish("knobs", self._knobs)
        return 1, status, mode

    def count_tokens_used(self, tokens: int) -> None:
        """Add to the running total of tokens served (the rate limiter reads it)."""
        self._tokens_used += tokens

    @property
    def tokens_used(self) -> int:
        """Tokens served since start."""
        return self._tokens_used

    # -- rules ---------------------------------------------------------------------------------

    @property
    def rules(self) -> ReplySource:
        """The active rule set (see mockllm_tui.rules)."""
        if self._rules is None:
            raise LookupError("no rules are loaded into the store")
        return self._rules

    @property
    def has_rules(self) -> bool:
        """Whether a rule set has been loaded."""
        return self._rules is not None

    def set_rules(self, rules: ReplySource) -> None:
        """Replace the active rules; the next request uses them."""
        self._rules = rules
        self._file_error = None
        self.rule_sets_loaded += 1
        self.publish("rules", rules)

    @property
    def models(self) -> ModelRegistry:
        """The model registry in force: the file's `models:`, else the built-in one."""
        return self._models if self._models is not None else default_registry()

    def set_models(self, models: ModelRegistry | None) -> None:
        """Replace the model registry (from the file's `models:` section or the defaults)."""
        self._models = models
        self.publish("rules", self._rules)

    @property
    def file_error(self) -> str | None:
        """The last error reading the responses file, while the file stays broken."""
        return self._file_error

    def set_file_error(self, message: str | None) -> None:
        """Report (or clear) a problem with the responses file; the last good rules keep serving."""
        self._file_error = message
        self.publish("file", message)

    def state_changed(self) -> None:
        """Tell subscribers that the shared state's mode changed (`self.state.mode`: degraded, say)."""
        self.publish("state", self.state.mode)

    def announce(self, message: str) -> None:
        """Tell the user something worth a line (the panel shows it): a file created, say."""
        self.publish("notice", message)
