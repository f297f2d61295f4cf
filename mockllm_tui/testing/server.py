"""The session's server: the real app on 127.0.0.1 and a free port, on its own loop in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import ServerHandle
from mockllm_tui.rules.model import RulesModel
from mockllm_tui.testing.control import Controller, plugin_store

T = TypeVar("T")
HOST = "127.0.0.1"
#: How long a call into the server's loop may take before the test gives up on it.
CALL_TIMEOUT_S = 30.0


class SessionServer:
    """One per pytest session (per xdist worker). Everything that touches the store runs on its loop."""

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
