"""A lost shared state, as the user sees it: the panel's status bar (embedded and attached), the
event stream's `state.changed`, and the admin API's 503, with a real redis-server stopped and
started again on the same port mid-test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
from openai.types.shared import ErrorObject
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Static

from mockllm_tui.core.shared_state import LocalState
from mockllm_tui.core.store import Store
from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import ServerHandle
from mockllm_tui.rules import load_initial
from mockllm_tui.shared.group import redis_state
from mockllm_tui.tui.app import MockPanel
from tests.conftest import serving
from tests.redis_server import RedisServer
from tests.support import PanelDriver, rendered
from tests.test_attach import attached_panel
from tests.test_events import Listener
from tests.test_shared_workers import FlippingState

SIZE = (160, 45)
RESPONSES = """\
responses:
  "hello": "Hello while the state comes and goes."
  "default": "This is a mock response from mockllm-tui."
"""
LOST = "shared state lost: serving the last known rules"
QUIET = "shared: redis"
#: Redis lost is noticed within a watch interval or two; back within the longest back-off (5 s) and more.
NOTICE_S = 15.0
BACK_S = 30.0


@dataclass
class Panel(PanelDriver):
    """The running panel, its pilot, its store and an SDK client pointed at its server."""

    app: MockPanel
    pilot: Pilot[int]
    store: Store
    client: openai.AsyncOpenAI
    root: str

    def status(self) -> str:
        return state_shown(self.app)

    def status_style(self) -> str:
        content = self.app.query_one("#status-state", Static).content
        assert isinstance(content, Text)
        return str(content.style)


def state_shown(app: MockPanel) -> str:
    """What the status bar says of the shared state ("" when it says nothing)."""
    shown = app.query_one("#status-state", Static)
    return rendered(shown) if shown.display else ""


@contextlib.asynccontextmanager
async def open_panel(tmp_path: Path, state: LocalState) -> AsyncIterator[Panel]:
    """The panel over a store with this state, serving tmp_path/responses.yml on a free port."""
    path = tmp_path / "responses.yml"
    path.write_text(RESPONSES)
    store = Store(state=state)
    load_initial(store, path)
    handle = ServerHandle(create_app(store), "127.0.0.1", 0, grace_s=1)
    app = MockPanel(store, handle, watch_file=False, keymap_file=tmp_path / "keymap.yml", export_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        client = openai.AsyncOpenAI(base_url=handle.url, api_key="sk-test", max_retries=0)
        yield Panel(app, pilot, store, client, handle.url.removesuffix("/v1"))
        await client.close()


async def test_the_status_bar_follows_the_state_mode(tmp_path: Path) -> None:
    state = FlippingState("redis")
    async with open_panel(tmp_path, state) as panel:
        await panel.until(lambda: QUIET in panel.status())
        assert panel.status_style() == "dim" and LOST not in panel.status()
        state.now = "degraded"
        panel.store.state_changed()
        await panel.until(lambda: LOST in panel.status())
        assert panel.status_style() == "bold yellow" and QUIET not in panel.status()
        assert await panel.chat("hello") == "Hello while the state comes and goes."
        state.now = "redis"
        panel.store.state_changed()
        await panel.until(lambda: QUIET in panel.status() and LOST not in panel.status())


async def test_the_memory_state_shows_nothing(tmp_path: Path) -> None:
    async with open_panel(tmp_path, LocalState("test")) as panel:
        await panel.chat("hello")
        panel.store.state_changed()
        await panel.until(lambda: not len(panel.app.subscription))  # the panel has seen the "state" event
        assert panel.status() == ""
        assert "shared" not in rendered(panel.app.query_one("#status-url", Static))


async def test_the_event_stream_carries_the_real_mode(tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text(RESPONSES)
    state = FlippingState("redis")
    store = Store(state=state)
    load_initial(store, path)
    async with serving(store) as live, Listener(live) as listener:
        first = await listener.next("state.changed")
        assert first.data["state"] == "redis"
        state.now = "degraded"
        store.state_changed()
        lost = await listener.next("state.changed")
        assert lost.data["state"] == "degraded" and lost.data["journal_cleared"] is False
        state.now = "redis"
        store.state_changed()
        assert (await listener.next("state.changed")).data["state"] == "redis"


async def test_redis_stopped_and_started_again_under_the_panel(tmp_path: Path, redis_server: RedisServer) -> None:
    state = redis_state(redis_server.url, "mockllm", "panel")
    async with (
        open_panel(tmp_path, state) as panel,
        httpx.AsyncClient(base_url=panel.root, timeout=30) as http,
    ):
        await panel.until(lambda: QUIET in panel.status())
        assert (await http.get("/_mock/settings")).json()["shared"] is True
        redis_server.stop()
        await panel.until(lambda: LOST in panel.status(), timeout=NOTICE_S)
        refused = await http.patch("/_mock/settings", json={"latency_ms": 5})
        assert refused.status_code == 503
        message = ErrorObject.model_validate(refused.json()["error"]).message
        assert f"the shared state at redis://127.0.0.1:{redis_server.port}/0 is unreachable" in message
        assert (await http.get("/_mock/settings")).json()["shared"] is False
        assert (await http.get("/health")).json() == {"status": "ok", "state": "degraded"}
        assert await panel.chat("hello") == "Hello while the state comes and goes."
        redis_server.start()  # the same port, empty
        await panel.until(lambda: QUIET in panel.status() and LOST not in panel.status(), timeout=BACK_S)
        accepted = await http.patch("/_mock/settings", json={"latency_ms": 5})
        assert accepted.status_code == 200 and accepted.json()["shared"] is True
        said = [(n.title, str(n.message)) for n in panel.app._notifications]
        shown = f"redis://127.0.0.1:{redis_server.port}/0"
        assert [message.split(" (")[0] for _, message in said] == [
            f"lost the shared state at {shown}",
            f"the shared state at {shown} is back: in step with the other processes again",
        ]
        assert {title for title, _ in said} == {""}  # a sentence of its own, not a file's notice


async def test_the_attached_panel_shows_the_servers_state(tmp_path: Path, redis_server: RedisServer) -> None:
    async with attached_panel(tmp_path, "--state", redis_server.url) as attached:
        await attached.until(lambda: QUIET in state_shown(attached.app))
        assert attached.status().startswith(f"attached to {attached.root}")
        redis_server.stop()
        await attached.until(lambda: LOST in state_shown(attached.app), timeout=NOTICE_S)
        assert attached.mirror.state.mode == "degraded"
        redis_server.start()
        await attached.until(lambda: state_shown(attached.app).strip() == QUIET, timeout=BACK_S)
