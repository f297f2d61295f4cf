"""The panel under Pilot, with the real server on a free port and the real openai SDK as client."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Label, Select, Static

from mockllm_tui.core.store import Store
from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import ServerHandle
from mockllm_tui.rules import load_initial
from mockllm_tui.tui.app import MockPanel
from mockllm_tui.tui.screens.help import HelpScreen
from mockllm_tui.tui.screens.rule_editor import RuleEditor
from mockllm_tui.tui.widgets.request_log import RequestLog
from mockllm_tui.tui.widgets.rule_table import RuleTable
from tests.support import FixedReplies, PanelDriver, rendered

SIZE = (160, 45)
LONG_REPLY = " ".join(f"word{i}" for i in range(60))


@dataclass
class Panel(PanelDriver):
    """The running panel, its pilot, its store and an SDK client pointed at its server."""

    app: MockPanel
    pilot: Pilot[int]
    store: Store
    client: openai.AsyncOpenAI
    tmp: Path



RESPONSES = """\
# hand-written: comments and order must survive the panel's edits
responses:
  "hello": "Hello! This is mockllm-tui."   # greeting
  "default": "This is a mock response from mockllm-tui."
"""


@contextlib.asynccontextmanager
async def open_panel(
    tmp_path: Path, *, watch: bool = False, notifications: bool = False, text: str = RESPONSES
) -> AsyncIterator[Panel]:
    """The panel on a store loaded from a real responses.yml (`text`) in tmp_path, serving on a free port
    (with `notifications`, its toasts are shown on screen as a user sees them)."""
    path = tmp_path / "responses.yml"
    path.write_text(text)
    store = Store()
    load_initial(store, path)
    handle = ServerHandle(create_app(store), "127.0.0.1", 0, grace_s=1)
    app = MockPanel(store, handle, watch_file=watch, keymap_file=tmp_path / "keymap.yml", export_dir=tmp_path)
    async with app.run_test(size=SIZE, notifications=notifications) as pilot:
        client = openai.AsyncOpenAI(base_url=handle.url, api_key="sk-test", max_retries=0)
        yield Panel(app, pilot, store, client, tmp_path)
        await client.close()


@pytest.fixture
async def panel(tmp_path: Path) -> AsyncIterator[Panel]:
    async with open_panel(tmp_path) as running:
        yield running


async def test_a_request_appears_in_the_log(panel: Panel) -> None:
    assert await panel.chat("hello from the test") == "This is a mock response from mockllm-tui."
    log = panel.app.query_one(RequestLog)
    await panel.until(lambda: log.row_count == 1 and not next(iter(log.rows_by_id.values())).open)
    row = [str(cell) for cell in log.get_row_at(0)]
    assert "hello from the test" in row
    assert "gpt-4o" in row
    assert "200" in row
    detail = panel.app.query_one("#detail-body", Static)
    await panel.until(lambda: "This is a mock response" in rendered(detail))
    assert "user: hello from the test" in rendered(detail)
    # `r` sends the selected request again, through HTTP
    await panel.pilot.press("r")
    await panel.until(lambda: panel.store.counters.total == 2)
    again = panel.store.journal()[-1]
    assert again.preview == "hello from the test" and again.status == 200


async def test_a_slow_stream_grows_in_the_detail_pane(panel: Panel) -> None:
    panel.store.set_rules(FixedReplies(text=LONG_REPLY))
    panel.store.set_knobs("live", {"stream_speed": 100})
    detail = panel.app.query_one("#detail-body", Static)
    seen: list[str] = []

    async def consume() -> None:
        stream = await panel.client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "stream it"}], stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                seen.append(chunk.choices[0].delta.content)

    task = asyncio.create_task(consume())
    await panel.until(lambda: "streaming:" in rendered(detail) and "word3 " in rendered(detail))
    early = rendered(detail)
    assert "word50" not in early
    shown = max(int(n) for n in re.findall(r"word(\d+)", early))  # how far the pane had got
    await panel.until(lambda: f"word{shown + 5} " in rendered(detail) or "word59" in rendered(detail))
    later = rendered(detail)
    assert later != early
    await asyncio.wait_for(task, 10)
    await panel.until(lambda: "stream:" in rendered(detail) and "word59" in rendered(detail))
    assert "".join(seen) == LONG_REPLY


async def test_plus_raises_latency_and_ctrl_s_saves_it(panel: Panel) -> None:
    await panel.chat("baseline")
    baseline = panel.store.journal()[-1].duration_ms
    assert baseline < 100
    await panel.pilot.press("plus", "plus")
    assert panel.store.knobs.latency_ms == 250
    await panel.chat("slow now")
    assert panel.store.journal()[-1].duration_ms >= 250
    await panel.pilot.press("minus", "minus")
    assert panel.store.knobs.latency_ms == 0
    # inside a text field `+` is typed, not a command
    field = panel.app.query_one("#errors-rate", Input)
    field.focus()
    await panel.pilot.press("plus")
    assert panel.store.knobs.latency_ms == 0
    assert field.value.endswith("+")
    # ctrl+s writes the live values into `settings:`, adding lines and changing no other
    panel.app.query_one(RequestLog).focus()
    await panel.pilot.press("plus", "left_square_bracket", "ctrl+s")
    removed, added = diff_lines(RESPONSES, (panel.tmp / "responses.yml").read_text())
    assert removed == []
    assert any("latency_ms" in line and "100" in line for line in added)
    assert any("stream_speed" in line and "1000" in line for line in added)


async def test_error_injection_fails_the_next_call_with_the_chosen_status(panel: Panel) -> None:
    status = panel.app.query_one("#errors-status", Input)
    status.focus()
    status.value = "503"
    await panel.pilot.press("enter")
    assert panel.store.knobs.error_status == (503,)
    await panel.pilot.click("#errors-on")
    assert panel.store.knobs.error_rate == 1.0
    with pytest.raises(openai.APIStatusError) as caught:
        await panel.chat("this one fails")
    assert caught.value.status_code == 503
    panel.app.query_one(RequestLog).focus()
    await panel.pilot.press("x")
    assert panel.store.knobs.error_rate == 0
    assert await panel.chat("this one works")


async def test_a_speed_change_slows_a_running_stream(panel: Panel) -> None:
    # from unlimited `[` goes to the top finite step, and `]` past the top back to unlimited
    assert panel.store.knobs.stream_speed == 0
    await panel.pilot.press("left_square_bracket")
    assert panel.store.knobs.stream_speed == 1000
    await panel.pilot.press("right_square_bracket")
    assert panel.store.knobs.stream_speed == 0
    panel.store.set_rules(FixedReplies(text=LONG_REPLY))
    panel.store.set_knobs("live", {"stream_speed": 50})
    stream = await panel.client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "stream it"}], stream=True
    )

    async def consume() -> None:
        with contextlib.suppress(openai.APIConnectionError):  # closed by the test
            async for _ in stream:
                pass

    task = asyncio.create_task(consume())
    # The server's own record of when each chunk went out (not when the client got it).
    entry = panel.store.journal()[-1]
    await panel.until(lambda: len(entry.chunk_times) >= 6)
    pressed_at = time.perf_counter()
    await panel.pilot.press("left_square_bracket")
    assert panel.store.knobs.stream_speed == 20
    sent = len(entry.chunk_times)
    assert sent < 50, "the stream finished before the change"
    await panel.until(lambda: len(entry.chunk_times) >= sent + 5)
    # Pacing is deadline-based: a busy loop can delay chunks but never send them early. A word chunk
    # is two estimate tokens: due every 0.04 s at 50 tokens/s, every 0.1 s at 20. At the old speed the
    # fifth chunk after the key would be due within 0.2 s of it; at the new one, 0.4 s at the soonest.
    assert entry.chunk_times[sent + 4] - pressed_at >= 0.9 * 4 * 2 / 20
    await stream.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_filter_follow_export_and_curl(panel: Panel) -> None:
    for prompt in ("alpha one", "beta two", "alpha three"):
        await panel.chat(prompt)
    log = panel.app.query_one(RequestLog)
    await panel.until(lambda: log.row_count == 3)
    await panel.pilot.press("slash")
    await panel.pilot.press(*"alpha", "enter")
    assert log.row_count == 2
    assert {str(log.get_row_at(i)[4]) for i in range(2)} == {"alpha one", "alpha three"}
    await panel.pilot.press("f")
    assert not log.follow
    copied: list[str] = []
    panel.app.copy_to_clipboard = copied.append  # type: ignore[method-assign]
    await panel.pilot.press("y")
    assert copied and copied[0].startswith("curl -sS -X POST http://127.0.0.1:")
    assert "sk-test" not in copied[0] and "[redacted]" in copied[0]
    await panel.pilot.press("ctrl+e")
    exported = list(panel.tmp.glob("mockllm-journal-*.jsonl"))
    assert len(exported) == 1
    assert len(exported[0].read_text().splitlines()) == 3
    await panel.pilot.press("question_mark")
    assert isinstance(panel.app.screen, HelpScreen)
    await panel.pilot.press("escape")
    assert not isinstance(panel.app.screen, HelpScreen)
    titles = [title for title, _, _ in panel.app.palette_commands()]
    assert {"Latency up", "Streams slower", "Add rule", "Save settings", "Export journal"} <= set(titles)


def diff_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """The lines removed from and added to a file."""
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


async def test_add_and_edit_a_rule_through_the_modal(panel: Panel) -> None:
    path = panel.tmp / "responses.yml"
    table = panel.app.query_one(RuleTable)
    assert table.row_count == 2
    table.focus()
    await panel.pilot.press("a")
    assert isinstance(panel.app.screen, RuleEditor)
    assert panel.app.focused is panel.app.screen.query_one("#pattern", Input)
    await panel.pilot.press(*"ping")
    name = panel.app.screen.query_one("#rule-name", Input)
    assert name.value == "ping"  # the default name; cleared, the rule keeps the file's short form
    name.focus()
    await panel.pilot.press("end", *["backspace"] * 4, "shift+tab", "shift+tab", "shift+tab", *"pong", "ctrl+s")
    assert not isinstance(panel.app.screen, RuleEditor)
    assert await panel.chat("ping") == "pong"
    removed, added = diff_lines(RESPONSES, path.read_text())
    assert removed == []
    assert len(added) == 1 and "ping" in added[0] and "pong" in added[0]
    await panel.until(lambda: table.row_count == 3)

    # edit the greeting: the reply changes, nothing else in the file does
    before = path.read_text()
    table.move_cursor(row=0)
    await panel.pilot.press("e")
    editor = panel.app.screen
    assert isinstance(editor, RuleEditor)
    assert editor.query_one("#pattern", Input).value == "hello"
    await panel.pilot.press("tab", "f7", *"Hi", "ctrl+s")
    assert not isinstance(panel.app.screen, RuleEditor)
    assert await panel.chat("hello") == "Hi"
    removed, added = diff_lines(before, path.read_text())
    assert len(removed) == 1 and "Hello! This is mockllm-tui." in removed[0]
    assert len(added) == 1 and "Hi" in added[0] and "# greeting" in added[0]
    await panel.until(lambda: "Hi" in str(table.get_row_at(0)[2]))


async def test_the_editor_keeps_a_refused_rule_open_with_the_reason(panel: Panel) -> None:
    panel.app.query_one(RuleTable).focus()
    await panel.pilot.press("a")
    await panel.pilot.press("shift+tab")  # to the match kind selector
    editor = panel.app.screen
    editor.query_one("#kind", Select).value = "regex"
    editor.query_one("#pattern", Input).focus()
    await panel.pilot.press("(", "ctrl+s")
    assert panel.app.screen is editor
    assert "regex" in str(editor.query_one("#form-error", Label).content).lower()
    await panel.pilot.press("escape")
    assert not isinstance(panel.app.screen, RuleEditor)
    assert (panel.tmp / "responses.yml").read_text() == RESPONSES


async def test_delete_reorder_and_try_a_prompt(panel: Panel) -> None:
    from mockllm_tui.rules.commands import add_rule, list_rules

    add_rule(panel.store, {"name": "weather", "match": {"contains": "weather"}, "reply": "Sunny"})
    table = panel.app.query_one(RuleTable)
    await panel.until(lambda: table.row_count == 3)
    table.focus()
    await panel.pilot.press("t", *"weather", "enter")
    result = panel.app.screen.query_one("#try-result", Static)
    assert "weather" in rendered(result) and "Sunny" in rendered(result)
    await panel.pilot.press("escape")
    assert table.selected_view() is not None and table.selected_view().label == "weather"  # type: ignore[union-attr]
    await panel.pilot.press("d", "y")
    assert [v.label for v in list_rules(panel.store)] == [v.label for v in table.views]
    assert all(v.name != "weather" for v in list_rules(panel.store))
    assert await panel.chat("what is the weather") == "This is a mock response from mockllm-tui."
    table.move_cursor(row=1)
    first = list_rules(panel.store)[0].spec
    await panel.pilot.press("shift+up")
    assert list_rules(panel.store)[1].spec == first


async def test_a_broken_hand_edit_shows_the_error_and_old_rules_keep_serving(tmp_path: Path) -> None:
    async with open_panel(tmp_path, watch=True, notifications=True) as panel:
        assert await panel.chat("hello") == "Hello! This is mockllm-tui."
        (tmp_path / "responses.yml").write_text("responses:\n  hello: [unclosed\n")
        table = panel.app.query_one(RuleTable)
        await panel.until(lambda: "✗" in str(table.border_title), timeout=8)
        # The notification as the screen shows it (Textual's Toast widgets, queried by type name).
        await panel.until(lambda: any("responses.yml" in str(t.render()) for t in panel.app.screen.query("Toast")))
        assert await panel.chat("hello") == "Hello! This is mockllm-tui."
