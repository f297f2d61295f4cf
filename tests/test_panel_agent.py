"""The panel and agent-grade matching, under Pilot with the real server and the openai SDK: a
scenario's position in the rules table, a fallback's near misses in the detail pane, and the
log's `session:ID` filter."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
from textual.widgets import Static

from mockllm_tui.core.store import Store
from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import ServerHandle
from mockllm_tui.rules import load_initial
from mockllm_tui.tui.app import MockPanel
from mockllm_tui.tui.widgets.request_log import RequestLog
from mockllm_tui.tui.widgets.rule_table import SCENARIO_ROW, RuleTable
from tests.support import rendered

RESPONSES = """\
rules:
  - name: weather
    match: {contains: weather, model: gpt-4o}
    reply: Sunny
scenarios:
  - name: booking
    steps:
      - {name: ask city, match: {contains: book}, reply: "Which city?"}
      - {match: {contains: paris}, reply: "Booked."}
"""


async def test_scenario_position_near_misses_and_the_session_filter(tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text(RESPONSES)
    store = Store()
    load_initial(store, path)
    handle = ServerHandle(create_app(store), "127.0.0.1", 0, grace_s=1)
    app = MockPanel(store, handle, watch_file=False, keymap_file=tmp_path / "keymap.yml", export_dir=tmp_path)
    async with app.run_test(size=(160, 45)) as pilot:

        async def until(condition: Callable[[], bool]) -> None:
            deadline = time.monotonic() + 5
            while not condition():
                assert time.monotonic() < deadline, "condition not met in time"
                await pilot.pause(0.02)

        def client(session: str | None = None) -> openai.AsyncOpenAI:
            headers = {"x-mock-session": session} if session else None
            return openai.AsyncOpenAI(base_url=handle.url, api_key="k", max_retries=0, default_headers=headers)

        async def chat(text: str, session: str | None = None, model: str = "gpt-4o") -> str:
            c = client(session)
            reply = await c.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
            await c.close()
            return reply.choices[0].message.content or ""

        table = app.query_one(RuleTable)
        row = SCENARIO_ROW + "booking"
        await until(lambda: table.row_count == 2)
        assert str(table.get_cell(row, "reply")) == "step 1/2"
        assert str(table.get_cell(row, "match")) == "scenario · next: ask city"
        assert await chat("book a room") == "Which city?"
        await until(lambda: str(table.get_cell(row, "reply")) == "step 2/2")
        assert await chat("Paris") == "Booked."
        await until(lambda: str(table.get_cell(row, "reply")) == "finished 2/2")
        # Another session's steps do not move the table's (the default session's) position.
        assert await chat("book a room", session="other") == "Which city?"
        # A fallback: the detail pane says why the nearest rule missed.
        await chat("weather?", session="abc", model="gpt-4o-mini")
        log = app.query_one(RequestLog)
        await until(lambda: log.row_count == 4 and not any(e.open for e in store.journal()))
        detail = app.query_one("#detail-body", Static)
        await until(lambda: "Why no rule matched" in rendered(detail))
        text = " ".join(rendered(detail).split())  # joined across wrapped lines
        assert "weather: model: 'gpt-4o-mini' is not 'gpt-4o'" in text and "session abc" in text
        assert str(table.get_cell(row, "reply")) == "finished 2/2"
        # The log's filter keeps one session's requests.
        await pilot.press("slash")
        await pilot.press(*"session:abc", "enter")
        assert log.row_count == 1 and str(log.get_row_at(0)[4]) == "weather?"
        # A reset over the admin API shows at once.
        await pilot.press("slash")
        for _ in range(len("session:abc")):
            await pilot.press("backspace")
        await pilot.press("enter")
        assert log.row_count == 4
        async with httpx.AsyncClient(base_url=handle.url.removesuffix("/v1")) as admin:
            assert (await admin.post("/_mock/scenarios/booking/reset")).status_code == 200
        await until(lambda: str(table.get_cell(row, "reply")) == "step 1/2")
