"""Snapshots of the panel: the main screen, the rule editor, help, the chunk timeline and a rule
made from a request.

Deterministic: a fixed store (journal entries with fixed times and durations), a stand-in server
handle with a fixed URL (no port in the picture), no clock. Update with `pytest --snapshot-update`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from mockllm_tui.core.conversation import Conversation, Message
from mockllm_tui.core.store import Store
from mockllm_tui.rules import load_initial
from mockllm_tui.rules.commands import find_rule
from mockllm_tui.tui.app import MockPanel
from mockllm_tui.tui.widgets.detail import DetailPane
from mockllm_tui.tui.widgets.rule_table import RuleTable

SIZE = (160, 45)
RESPONSES = """\
rules:
  - name: weather
    match: {contains: weather}
    tool_calls:
      - name: get_weather
        arguments: {city: Paris}
responses:
  "hello": "Hello! This is mockllm-tui."
  "default": "This is a mock response from mockllm-tui."
"""
ROWS: list[tuple[str, str, int, bool, str]] = [
    ("hello", "Hello! This is mockllm-tui.", 200, False, "#2"),
    ("what is the weather in Paris?", "", 200, False, "weather"),
    ("tell me a story", "Once upon a time there was a mock server.", 200, True, "#3"),
    ("this one fails", "", 503, False, "#3"),
    ("write a haiku", "This is a mock response from mockllm-tui.", 200, True, "#3"),
]


class FixedHandle:
    """Stands in for the server: a fixed URL, nothing listens."""

    url = "http://127.0.0.1:8000/v1"

    async def fully_ready(self) -> None:
        """Nothing to wait for."""

    async def start(self) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """Nothing to stop."""


@pytest.fixture(autouse=True)
def fixed_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The status bar shows the file's path from `~`: the same in every run."""
    monkeypatch.setenv("HOME", str(tmp_path.parent))


def fixed_store(tmp_path: Path) -> Store:
    """A store with the rules above and five finished requests at fixed times."""
    path = tmp_path / "responses.yml"
    path.write_text(RESPONSES)
    store = Store()
    load_initial(store, path)
    base = time.mktime((2025, 1, 1, 12, 0, 0, 0, 1, -1))
    for i, (prompt, reply, status, stream, rule) in enumerate(ROWS):
        entry = store.begin_request("POST", "/v1/chat/completions")
        body: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": prompt}]}
        if stream:
            body["stream"] = True
            store.open_stream(entry)
        entry.request_body = json.dumps(body).encode()
        entry.conversation = Conversation("openai", "chat.completions", "gpt-4o", [Message("user", prompt)])
        entry.request_headers = {"content-type": "application/json", "authorization": "[redacted]"}
        entry.provider, entry.model, entry.preview, entry.rule = "openai", "gpt-4o", prompt, rule
        entry.rule_id = find_rule(store, rule).id
        if status >= 400:
            entry.fault = f"{status} before (rate)"
        if stream:
            entry.chunks = [word + " " for word in reply.split(" ")]
            stall = [0.015 if n >= 5 else 0.0 for n in range(len(entry.chunks))]
            entry.chunk_times = [entry.started + 0.004 + 0.003 * n + stall[n] for n in range(len(entry.chunks))]
            entry.first_chunk_at = entry.chunk_times[0]
        entry.reply_text = reply
        body = {"id": f"chatcmpl-{i}", "object": "chat.completion", "choices": [{"message": {"content": reply}}]}
        store.end_request(entry, status, body=b"" if stream else json.dumps(body).encode())
        entry.time = base + i * 1.25
        entry.duration_ms = 10.0 + 20 * i
    return store


def make_app(tmp_path: Path) -> MockPanel:
    """The panel on the fixed store."""
    return MockPanel(
        fixed_store(tmp_path),
        FixedHandle(),
        watch_file=False,
        keymap_file=tmp_path / "keymap.yml",
        export_dir=tmp_path,
    )


def test_main_screen(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=SIZE)


def test_rule_editor(snap_compare: Any, tmp_path: Path) -> None:
    async def open_editor(pilot: Pilot[int]) -> None:
        table = pilot.app.query_one(RuleTable)
        table.focus()
        table.move_cursor(row=1)
        await pilot.press("e")
        for field in pilot.app.screen.query("Input, TextArea"):
            field.cursor_blink = False  # type: ignore[attr-defined]
        await pilot.pause()

    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=open_editor)


def test_help(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, press=["question_mark"])


async def settle_detail(pilot: Pilot[int]) -> None:
    """Let the detail pane show the selection (it defers a switch that follows another closely)."""
    detail = pilot.app.query_one(DetailPane)
    await pilot.pause()
    while detail.pending:
        await pilot.pause(0.05)


def test_chunk_timeline(snap_compare: Any, tmp_path: Path) -> None:
    async def show_chunks(pilot: Pilot[int]) -> None:
        await pilot.press("up", "up", "c")  # the story: a stream that stalls before its sixth chunk
        await settle_detail(pilot)

    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=show_chunks)


def test_rule_from_request(snap_compare: Any, tmp_path: Path) -> None:
    async def from_request(pilot: Pilot[int]) -> None:
        await settle_detail(pilot)
        await pilot.press("n")  # the newest request, which got the catch-all
        for field in pilot.app.screen.query("Input, TextArea"):
            field.cursor_blink = False  # type: ignore[attr-defined]
        await pilot.pause()

    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=from_request)
