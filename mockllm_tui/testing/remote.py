"""A shared server: a mock that runs elsewhere (ini `mockllm_url` or `MOCKLLM_URL`), which the plugin
starts none of. Each test gets a session of its own (`x-mock-session`), so parallel test runs can
share one mock: its rules, failures, knobs and requests are the session's, through the admin API."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from mockllm_tui.core.knobs import ErrorMode
from mockllm_tui.rules.matcher import Dynamic
from mockllm_tui.rules.model import Entry, RulesModel
from mockllm_tui.testing.control import MockRequest
from mockllm_tui.testing.rules import Unmatched

SESSION_HEADER = "x-mock-session"
STRICT_HEADER = "x-mock-strict"
#: The most requests one test reads back.
JOURNAL_LIMIT = 5_000
TIMEOUT_S = 30.0


class SharedServerError(RuntimeError):
    """The shared server refused an admin request, or cannot do what the test asks."""


class RemoteServer:
    """The backend of a test on a shared server (the same methods as SessionServer's)."""

    def __init__(self, url: str, base: RulesModel | None = None) -> None:
        self.url = url.rstrip("/")
        #: The ini option's rules: each test's session starts with them (after the test's own).
        self.base = base
        self.http = httpx.Client(base_url=self.url, timeout=TIMEOUT_S)
        self.session: str | None = None
        self.strict = False
        self._count = 0

    def stop(self) -> None:
        """Close the admin client (the shared server keeps running)."""
        self.http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        params = {"session": self.session, **kw.pop("params", {})}
        response = self.http.request(method, path, params=params, **kw)
        if response.status_code >= 400:
            raise SharedServerError(f"mockllm: {method} {path} on {self.url}: {response.status_code} {response.text}")
        return response.json()

    def headers(self) -> dict[str, str]:
        """The headers the test's clients send."""
        out = {SESSION_HEADER: self.session or ""}
        if self.strict:
            out[STRICT_HEADER] = "true"
        return out

    def begin(self, base: RulesModel | None, strict: bool) -> None:
        """A fresh session for the test (its scenarios start at step 1); the base rules become its rules."""
        self.session, self.strict, self._count = uuid.uuid4().hex, strict, 0
        base = base if base is not None else self.base
        if base is not None:
            self.load(base)

    def add_rule(self, entry: Entry, dynamic: tuple[Dynamic | None, Dynamic | None]) -> None:
        """Add a test rule, before the session's base rules and after the test's earlier ones."""
        if dynamic != (None, None):
            raise SharedServerError(
                "mockllm: a reply or tool_calls function needs the plugin's own server, not a shared one "
                "(unset mockllm_url / MOCKLLM_URL, or give the reply as data)"
            )
        self._call("POST", "/_mock/rules", json={**entry.spec.to_data(), "index": self._count})
        self._count += 1

    def load(self, base: RulesModel) -> None:
        """Replace the session's base rules (the rules after the test's own)."""
        listed = self._call("GET", "/_mock/rules")["data"]
        for rule in listed[self._count :]:
            self._call("DELETE", f"/_mock/rules/{rule['id']}")
        for entry in base.rules:
            self._call("POST", "/_mock/rules", json=entry.spec.to_data())

    def hits(self) -> list[int]:
        """How many requests each of the test's rules answered."""
        listed = self._call("GET", "/_mock/rules")["data"]
        return [rule["hits"] for rule in listed[: self._count]]

    def fail_next(self, status: int, count: int, mode: ErrorMode) -> None:
        """Fail the session's next requests."""
        self._call("POST", "/_mock/fail-next", json={"status": status, "count": count, "mode": mode})

    def set_knobs(self, values: dict[str, Any]) -> None:
        """Set knobs for the session."""
        self._call("PATCH", "/_mock/settings", json=values)

    def requests(self, settle_s: float) -> list[MockRequest]:
        """The session's requests, oldest first."""
        data = self._call("GET", "/_mock/journal", params={"limit": JOURNAL_LIMIT})
        return [MockRequest.from_public(entry) for entry in data["data"]]

    def unmatched(self) -> list[Unmatched]:
        """The session's requests that strict mode refused."""
        if not self.strict:
            return []
        return [
            Unmatched(r.provider, r.model, r.prompt, r.near_misses)
            for r in self.requests(0)
            if r.status == 404 and r.rule is None
        ]

    def failures(self) -> list[str]:
        """Functions never run on a shared server."""
        return []

    def end(self) -> None:
        """Nothing to undo: the next test gets another session."""
