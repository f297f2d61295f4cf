"""The fixture's side of the session's server: run only on the server's loop (the store is not thread-safe)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from mockllm_tui.core.conversation import RequestError
from mockllm_tui.core.knobs import ErrorMode
from mockllm_tui.core.store import DEFAULT_MAX_BODY, JournalEntry, StartupConfig, Store
from mockllm_tui.http.app import MockApp
from mockllm_tui.http.ratelimit import RateLimiter
from mockllm_tui.rules.fileio import apply_ruleset
from mockllm_tui.rules.matcher import Dynamic
from mockllm_tui.rules.model import Entry, RulesModel
from mockllm_tui.testing.rules import PerTestRules, Unmatched


def plugin_store() -> Store:
    """The session's store: it keeps whole request bodies (the journal is cleared for each test)."""
    return Store(config=StartupConfig(max_stored_body=DEFAULT_MAX_BODY))


@dataclass(frozen=True, slots=True)
class MockRequest:
    """One request the app made during the test, as the mock answered it."""

    method: str
    path: str
    provider: str
    model: str
    body: Any
    headers: dict[str, str]
    status: int
    stream: bool
    rule: str | None
    reply: str
    prompt: str
    fault: str | None
    #: For a request a fallback answered (or strict mode refused): the nearest rules and why each missed.
    near_misses: tuple[tuple[str, str], ...] = ()
    session: str | None = None

    @classmethod
    def of(cls, entry: JournalEntry) -> MockRequest:
        """A snapshot of a journal entry."""
        conversation = entry.conversation
        return cls(
            method=entry.method,
            path=entry.path,
            provider=entry.provider,
            model=entry.model,
            body=entry.body_json(),
            headers=dict(entry.request_headers),
            status=entry.status,
            stream=entry.stream,
            rule=entry.rule,
            reply=entry.reply_text or "".join(entry.chunks),
            prompt=conversation.last_user_text() if conversation is not None else "",
            fault=entry.fault,
            near_misses=tuple(entry.nearest()),
            session=entry.session,
        )

    @classmethod
    def from_public(cls, data: dict[str, Any]) -> MockRequest:
        """A snapshot of a journal entry as `GET /_mock/journal` gives it (a shared server's)."""
        return cls(
            method=data["method"],
            path=data["path"],
            provider=data.get("provider", ""),
            model=data.get("model", ""),
            body=data.get("body"),
            headers=dict(data.get("headers") or {}),
            status=data.get("status", 0),
            stream=bool(data.get("stream")),
            rule=data.get("rule"),
            reply=data.get("reply", ""),
            prompt=data.get("prompt", ""),
            fault=data.get("fault"),
            near_misses=tuple((m["rule"], m["reason"]) for m in data.get("near_misses") or ()),
            session=data.get("session"),
        )


class Controller:
    """Resets the server for each test and carries out what the test asks of it."""

    def __init__(self, store: Store, app: MockApp, base: RulesModel) -> None:
        self.store = store
        self.app = app
        self.session_base = base
        self.added: list[Entry] = []
        self.dynamic: list[tuple[Dynamic | None, Dynamic | None]] = []
        self.unmatched: list[Unmatched] = []
        #: What the test's functions raised while answering.
        self.failures: list[str] = []
        self.rules: PerTestRules | None = None
        self.mark = 0

    def reset(self, base: RulesModel | None, strict: bool) -> None:
        """Forget the last test: its rules, knobs, pending failures and requests."""
        store = self.store
        store.set_fail_next(0)
        store.set_knobs("live", {}, replace_layer=True)
        store.sessions.clear()  # every scenario back at step 1, no session state left over
        self.added, self.dynamic, self.unmatched, self.failures, self.rules = [], [], [], [], None
        self._apply(self.session_base if base is None else base, strict)
        store.clear_journal()
        journal = store.journal()
        self.mark = journal[-1].id if journal else self.mark
        store.rng.seed(store.knobs.seed)
        # A fresh limiter: the last test's buckets must not carry over when its limits are set again.
        self.app.guards[:] = [RateLimiter(store) if isinstance(g, RateLimiter) else g for g in self.app.guards]

    def _apply(self, base: RulesModel, strict: bool) -> None:
        new = PerTestRules(base, self.added, strict=strict, unmatched=self.unmatched, dynamic=self.dynamic)
        if self.rules is not None:
            new.carry_over_from(self.rules)
        self.rules = new
        apply_ruleset(self.store, new)

    def _current(self) -> PerTestRules:
        if self.rules is None:
            raise RuntimeError("mockllm: the server has not been reset for a test")
        return self.rules

    def add_rule(self, entry: Entry, dynamic: tuple[Dynamic | None, Dynamic | None] = (None, None)) -> None:
        """Add a rule before the base's, after the test's earlier ones; its callables (a dynamic
        `reply` or `tool_calls`) get the request as a MockRequest."""
        rules = self._current()
        self.added.append(entry)
        self.dynamic.append((self._with_request(dynamic[0]), self._with_request(dynamic[1])))
        self._apply(rules.base, rules.strict)

    def _with_request(self, fn: Dynamic | None) -> Dynamic | None:
        """A test's function, given the request being answered as a MockRequest. When it raises, the
        request gets a 500 in the provider's shape and the test fails at teardown naming the error."""
        if fn is None:
            return None

        def call(entry: Any) -> Any:
            try:
                return fn(MockRequest.of(entry))
            except Exception as exc:
                self.failures.append(f"{getattr(fn, '__name__', 'a function')} raised {type(exc).__name__}: {exc}")
                message = f"mockllm: the rule's function raised {type(exc).__name__}: {exc}"
                raise RequestError(message, status=500) from None

        return call

    def load(self, base: RulesModel) -> None:
        """Replace the test's base rules."""
        self._apply(base, self._current().strict)

    def hits(self) -> list[int]:
        """How many requests each of the test's rules answered, in the order added."""
        rules = self._current()
        return [r.hits for r in rules.rules[: rules.added]]

    def fail_next(self, status: int, count: int, mode: ErrorMode) -> None:
        """Fail the next `count` model requests with `status`, in `mode`."""
        self.store.set_fail_next(count, status, mode)

    def set_knobs(self, values: dict[str, Any]) -> None:
        """Set live knobs (the next reset undoes them)."""
        self.store.set_knobs("live", values)

    async def requests(self, settle_s: float) -> list[MockRequest]:
        """The test's requests, oldest first. Requests still being answered get up to `settle_s` to finish."""
        entries = [e for e in self.store.journal() if e.id > self.mark]
        if any(e.open for e in entries):
            sub = self.store.subscribe()
            deadline = asyncio.get_running_loop().time() + settle_s
            try:
                while any(e.open for e in entries):
                    left = deadline - asyncio.get_running_loop().time()
                    if left <= 0 or not await sub.wait(left):
                        break
                    sub.drain()
            finally:
                self.store.unsubscribe(sub)
        return [MockRequest.of(e) for e in entries]
