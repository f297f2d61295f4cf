"""The request log widget on its own: the bound, follow, the cursor, the filter, what shows on screen."""

from __future__ import annotations

import time
from typing import Any

from textual.app import App, ComposeResult

from mockllm_tui.core.store import JournalEntry
from mockllm_tui.tui.widgets.request_log import RequestLog

CAP = 40
SIZE = (120, 20)


def entry(i: int, *, status: int = 200, open_: bool = False, stream: bool = False) -> JournalEntry:
    """A finished (or open) chat completion, numbered `i`."""
    e = JournalEntry(id=i, time=1_700_000_000 + i, method="POST", path="/v1/chat/completions")
    e.provider, e.model, e.preview = "openai", "gpt-4o" if i % 2 else "claude-x", f"prompt-{i}"
    e.rule, e.stream, e.open = ("greeting" if i % 3 == 0 else None), stream, open_
    if not open_:
        e.status, e.duration_ms = status, float(i)
    return e


class LogApp(App[None]):
    """The log alone, recording what it announces."""

    def __init__(self) -> None:
        super().__init__()
        self.selected: list[int | None] = []

    def compose(self) -> ComposeResult:
        yield RequestLog(cap=CAP, id="log")

    def on_request_log_entry_selected(self, message: RequestLog.EntrySelected) -> None:
        self.selected.append(message.entry_id)


def screen_text(app: App[Any]) -> str:
    """The screen as the compositor last painted it (stale lines would show here)."""
    return app.export_screenshot().replace("&#160;", " ")


async def test_the_bound_follow_and_the_screen_after_many_batches() -> None:
    app = LogApp()
    async with app.run_test(size=SIZE) as pilot:
        log = app.query_one(RequestLog)
        for start in range(1, 301, 25):  # 300 requests in batches, far past the bound
            log.ingest(entry(i) for i in range(start, start + 25))
            log.animate_open()
            await pilot.pause()
        assert log.row_count == CAP
        assert set(log.rows_by_id) == set(range(301 - CAP, 301))
        assert log.get_row_at(0)[4] == f"prompt-{301 - CAP}"
        assert log.selected_id() == 300 and app.selected[-1] == 300
        shown = screen_text(app)
        assert "prompt-300" in shown and "prompt-299" in shown
        assert "prompt-250" not in shown  # scrolled out: only what fits is painted
        # a finished request updates its row in place
        old = entry(301, open_=True)
        log.ingest([old])
        await pilot.pause()
        assert log.get_row_at(CAP - 1)[6] == "…"
        old.open, old.status = False, 503
        log.ingest([old])
        await pilot.pause()
        assert log.get_row_at(CAP - 1)[6] == "503"
        assert log.row_count == CAP


async def test_keys_and_clicks_move_the_cursor_and_stop_following() -> None:
    app = LogApp()
    async with app.run_test(size=SIZE) as pilot:
        log = app.query_one(RequestLog)
        log.focus()
        log.ingest(entry(i) for i in range(1, 31))
        await pilot.pause()
        assert log.follow and log.selected_id() == 30
        await pilot.press("up", "up")
        assert not log.follow and log.selected_id() == 28 and app.selected[-1] == 28
        log.ingest([entry(31)])  # not following: the cursor stays on its request
        await pilot.pause()
        assert log.selected_id() == 28
        await pilot.press("home")
        assert log.selected_id() == 1 and app.selected[-1] == 1
        assert "prompt-1 " in screen_text(app)
        await pilot.press("pagedown")
        assert log.selected_id() is not None and log.selected_id() > 1  # type: ignore[operator]
        await pilot.press("end")
        assert log.selected_id() == 31
        # a click on the third row on screen (the header is line 0, the border line -1)
        await pilot.press("home")
        await pilot.click(RequestLog, offset=(5, 4))
        assert log.selected_id() == 3 and app.selected[-1] == 3
        await pilot.press("f")
        assert log.follow and log.selected_id() == 31


async def test_the_filter_applies_to_new_rows_and_to_a_reload() -> None:
    app = LogApp()
    async with app.run_test(size=SIZE) as pilot:
        log = app.query_one(RequestLog)
        journal = [entry(i, status=503 if i % 4 == 0 else 200) for i in range(1, 21)]
        log.ingest(journal)
        log.set_filter("status:5 model:gpt")
        log.reload(journal)
        await pilot.pause()
        assert log.row_count == 0  # 503s are the even ids, gpt-4o the odd ones
        log.set_filter("status:5")
        log.reload(journal)
        assert [log.entry_at(r).id for r in range(log.row_count)] == [4, 8, 12, 16, 20]
        late = entry(21, open_=True)
        log.ingest([late, entry(22, status=200), entry(24, status=500)])
        assert log.row_count == 6  # the open one (no status yet) and the 200 are left out
        late.open, late.status = False, 502
        log.ingest([late])  # it matches now that it has finished
        assert [log.entry_at(r).id for r in range(log.row_count)][-2:] == [24, 21]
        log.set_filter("rule:greet prompt-1")
        log.reload(journal)
        assert sorted(log.rows_by_id) == [12, 15, 18]
        assert "filter: rule:greet prompt-1" in str(log.border_title)


async def test_open_streams_animate_and_time_runs() -> None:
    app = LogApp()
    async with app.run_test(size=SIZE) as pilot:
        log = app.query_one(RequestLog)
        live = entry(1, open_=True, stream=True)
        live.started = time.perf_counter() - 1.5
        log.ingest([live, entry(2, stream=True)])
        first = log.get_row_at(0)
        log.animate_open()
        await pilot.pause()
        second = log.get_row_at(0)
        assert first[8] != second[8]  # the spinner moved
        assert second[7].endswith("…") and int(second[7][:-1]) >= 1500
        assert log.get_row_at(1)[8] == "≋" and log.get_row_at(1)[6] == "200"
