"""The session's server: the real app on 127.0.0.1 and a free port, on its own loop in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from mockllm_tui.core.knobs import ErrorMode
from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import ServerHandle
from mockllm_tui.rules.matcher import Dynamic
from mockllm_tui.rules.model import Entry, RulesModel
from mockllm_tui.testing.control import Controller, MockRequest, plugin_store
from mockllm_tui.testing.rules import Unmatched

T = TypeVar("T")
HOST = "127.0.0.1"
#: How long a call into the server's loop may take before the test gives up on it.
CALL_TIMEOUT_S = 30.0


class SessionServer:
    """One per pytest session (per xdist worker). Everything that touches the store runs on its loop.

    What a test does goes through the backend methods (`begin`, `add_rule`, ... `end`), which the
    shared server's backend (remote.py) has too."""

    #: Each test in a session of its own (only a shared server needs it).
    session: str | None = None

    def __init__(self, base: RulesModel, name: str = "mockllm") -> None:
        self.store = plugin_store()
        self.app = create_app(self.store)
        self.controller = Controller(self.store, self.app, base)
        self.handle = ServerHandle(self.app, HOST, 0, grace_s=1)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=f"{name}-server", daemon=True)

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://{HOST}:{self.handle.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> SessionServer:
        """Start serving; returns once the server listens."""
        self.thread.start()
        self.run(self.handle.start())
        return self

    def stop(self) -> None:
        """Let in-flight requests finish (within a second), then close the port and the loop."""
        try:
            self.run(self.handle.stop())
            self.run(self.loop.shutdown_default_executor())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(CALL_TIMEOUT_S)
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and wait for its result (its exception is raised here)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(CALL_TIMEOUT_S)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a plain function on the server's loop and wait for its result."""

        async def on_loop() -> T:
            return fn(*args)

        return self.run(on_loop())

    # -- the backend a test talks to ---------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        """The headers the test's clients send (none: the server is the test's own)."""
        return {}

    def begin(self, base: RulesModel | None, strict: bool) -> None:
        """Start a test: forget the last one's rules, knobs, failures, scenarios and requests."""
        self.call(self.controller.reset, base, strict)

    def add_rule(self, entry: Entry, dynamic: tuple[Dynamic | None, Dynamic | None]) -> None:
        """Add one of the test's rules (with its callables, called in this process)."""
        self.call(self.controller.add_rule, entry, dynamic)

    def load(self, base: RulesModel) -> None:
        """Replace the test's base rules."""
        self.call(self.controller.load, base)

    def hits(self) -> list[int]:
        """How many requests each of the test's rules answered."""
        return self.call(self.controller.hits)

    def fail_next(self, status: int, count: int, mode: ErrorMode) -> None:
        """Fail the test's next requests."""
        self.call(self.controller.fail_next, status, count, mode)

    def set_knobs(self, values: dict[str, Any]) -> None:
        """Set knobs for the test."""
        self.call(self.controller.set_knobs, values)

    def requests(self, settle_s: float) -> list[MockRequest]:
        """The test's requests, oldest first."""
        return self.run(self.controller.requests(settle_s))

    def unmatched(self) -> list[Unmatched]:
        """The test's requests that strict mode refused."""
        controller = self.controller
        return self.call(lambda: list(controller.unmatched))

    def failures(self) -> list[str]:
        """What the test's reply functions raised."""
        controller = self.controller
        return self.call(lambda: list(controller.failures))

    def end(self) -> None:
        """End the test (undo what it set)."""
        self.call(self.controller.reset, None, False)
