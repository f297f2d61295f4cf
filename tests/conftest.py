"""Shared fixtures: the real server on a free loopback port, in the test's loop or in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mockllm_tui.core.store import Store
from mockllm_tui.http.app import MockApp, create_app
from mockllm_tui.http.runner import ServerHandle

pytest_plugins = ["tests.redis_server"]

HOST = "127.0.0.1"
#: The slowest files (subprocesses, the panel), collected first: the workers (`-n 2 --dist loadfile`)
#: take files in collection order, so neither is left running one of these alone at the end.
SLOW_FILES = (
    "test_pytest_plugin.py",
    "test_panel_keys.py",
    "test_panel.py",
    "test_headless.py",
    "test_file_safety.py",
    "test_hardening.py",
    "test_panel_snapshots.py",
    "test_shared_knobs_rules.py",
    "test_shared_counters.py",
    "test_shared_journal.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the slowest files first (each file's tests keep their order)."""
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))


@dataclass
class Live:
    """A running server: its store, app and handle, and the base URLs for the SDKs."""

    store: Store
    app: MockApp
    handle: ServerHandle

    @property
    def root(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://{HOST}:{self.handle.port}"

    @property
    def openai_url(self) -> str:
        """base_url for the openai SDK."""
        return self.root + "/v1"

    @property
    def anthropic_url(self) -> str:
        """base_url for the anthropic SDK."""
        return self.root


def make_store(responses: Path | None = None) -> Store:
    """A store with the rules of `responses` loaded (or the built-in fixed reply)."""
    from mockllm_tui.rules import load_initial

    store = Store()
    if responses is not None:
        store.configure(responses_path=str(responses))
    load_initial(store, responses or Path(__file__).parent / "data" / "empty.yml")
    return store


def rules_store(tmp_path: Path, text: str) -> Store:
    """A store with these rules (`responses.yml` text) loaded from a file in `tmp_path`."""
    path = tmp_path / "responses.yml"
    path.write_text(text)
    return make_store(path)


@contextlib.asynccontextmanager
async def serving(store: Store, app: MockApp | None = None) -> AsyncIterator[Live]:
    """The real server (this app, or the default one) on a free port in the running loop."""
    app = app or create_app(store)
    handle = ServerHandle(app, HOST, 0, grace_s=1)
    await handle.start()
    try:
        yield Live(store, app, handle)
    finally:
        await handle.stop()
        await app.upstream.aclose()


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    """The real server in this test's event loop (use the async SDK clients)."""
    async with serving(make_store()) as running:
        yield running


@pytest.fixture
async def rules_live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Live]:
    """The real server in this test's event loop, with the test module's `RULES` loaded."""
    async with serving(rules_store(tmp_path, request.module.RULES)) as running:
        yield running


@pytest.fixture
def rules_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Live]:
    """The real server in a thread (for the sync SDK clients), with the test module's `RULES` loaded."""
    with ServerThread(rules_store(tmp_path, request.module.RULES)) as running:
        yield running


@contextlib.asynccontextmanager
async def serving_file(folder: Path, text: str) -> AsyncIterator[Live]:
    """The real server with the rules of `text`, written to `folder`/responses.yml."""
    async with serving(rules_store(folder, text)) as running:
        yield running


class ServerThread:
    """The real server on its own loop in a thread, for the sync SDK clients."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.app = create_app(store)
        self.handle = ServerHandle(self.app, HOST, 0, grace_s=1)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Live:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.handle.start(), self.loop).result(10)
        return Live(self.store, self.app, self.handle)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.handle.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def call(self, fn: object, *args: object) -> object:
        """Run a plain function on the server's loop (to change the store safely) and return its result."""

        async def run() -> object:
            return fn(*args)  # type: ignore[operator]

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)


@pytest.fixture
def server() -> Iterator[Live]:
    """The real server in a background thread (use the sync SDK clients)."""
    with ServerThread(make_store()) as running:
        yield running
