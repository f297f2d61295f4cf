"""The embedded runner on Textual's own loop: a request lands in the shared store, and quitting frees the port."""

from __future__ import annotations

import socket

import httpx
from textual.app import App, ComposeResult
from textual.widgets import Static

from mockllm_tui.core.store import Store
from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import ServerHandle
from tests.conftest import make_store


class HostApp(App[None]):
    """A bare Textual app hosting the server, as the panel does."""

    def __init__(self, store: Store, handle: ServerHandle) -> None:
        super().__init__()
        self.store = store
        self.handle = handle

    def compose(self) -> ComposeResult:
        yield Static("host")

    async def on_mount(self) -> None:
        await self.handle.start()

    async def on_unmount(self) -> None:
        await self.handle.stop()


async def test_server_runs_inside_textual_and_releases_the_port() -> None:
    store = make_store()
    handle = ServerHandle(create_app(store), "127.0.0.1", 0, grace_s=1)
    port = handle.port
    app = HostApp(store, handle)
    async with app.run_test() as pilot:
        async with httpx.AsyncClient() as client:
            reply = await client.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": "from textual"}]},
            )
        await pilot.pause()
        assert reply.status_code == 200
        assert [e.preview for e in app.store.journal()] == ["from textual"]
        assert app.store.counters.total == 1
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
