"""The control panel: a Textual app that runs the server on its own loop and observes the store."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from mockllm_tui.server import ServerHandle
from mockllm_tui.state import JournalEntry, Store

DRAIN_INTERVAL_S = 1 / 15


class MockPanel(App[int]):
    """mockllm-tui's panel (minimal for now: request count and the last requests)."""

    TITLE = "mockllm-tui"
    BINDINGS: ClassVar[list[Any]] = [Binding("q", "quit", "Quit", id="quit"), Binding("ctrl+q", "quit", "Quit", show=False)]

    def __init__(self, store: Store, handle: ServerHandle, *, log_file: str | None = None, log_format: str = "text"):
        super().__init__()
        self.store = store
        self.handle = handle
        self.subscription = store.subscribe()
        self.seen_requests = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="status")
        yield DataTable(id="requests", cursor_type="row")
        yield Footer()

    async def on_mount(self) -> None:
        table = self.query_one("#requests", DataTable)
        table.add_columns("id", "method", "path", "status", "ms", "model", "prompt")
        await self.handle.start()
        self.sub_title = self.handle.url
        self._refresh_status()
        self.set_interval(DRAIN_INTERVAL_S, self.drain)

    def drain(self) -> None:
        """Render the batch of store events since the last tick."""
        events = self.subscription.drain()
        done = [p for kind, p in events if kind == "done" and isinstance(p, JournalEntry)]
        if done:
            table = self.query_one("#requests", DataTable)
            for e in done:
                table.add_row(str(e.id), e.method, e.path, str(e.status), f"{e.duration_ms:.1f}", e.model, e.preview)
            self.seen_requests += len(done)
            table.move_cursor(row=table.row_count - 1)
        if events:
            self._refresh_status()

    def _refresh_status(self) -> None:
        c = self.store.counters
        self.query_one("#status", Static).update(
            f"serving on {self.handle.url}  requests: {c.total}  in flight: {c.in_flight}  streams: {c.streams_open}"
        )

    async def on_unmount(self) -> None:
        await self.handle.stop()
        self.store.unsubscribe(self.subscription)
