"""A realtime session in the panel: one row a socket, growing live while it is open, its events as a timeline."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.widgets import Input, Static, TextArea

from mockllm_tui.tui.screens.rule_editor import RuleEditor
from mockllm_tui.tui.widgets.request_log import RequestLog
from tests.support import FixedReplies, rendered
from tests.test_panel import open_panel

LONG = " ".join(f"word{i}" for i in range(40))


async def test_a_realtime_session_grows_in_the_log_and_shows_its_events(tmp_path: Path) -> None:
    async with open_panel(tmp_path) as panel:
        panel.store.set_knobs("live", {"stream_speed": 60})
        panel.store.set_rules(FixedReplies(text=LONG))
        done = asyncio.Event()

        async def session() -> None:
            async with panel.client.realtime.connect(model="gpt-realtime") as conn:
                await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
                await conn.conversation.item.create(
                    item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi there"}]}
                )
                await conn.response.create()
                async for event in conn:
                    if event.type == "response.done":
                        break
                await done.wait()

        task = asyncio.create_task(session())
        log = panel.app.query_one(RequestLog)
        detail = panel.app.query_one("#detail-body", Static)
        await panel.until(lambda: log.row_count == 1 and "word3 " in rendered(detail), timeout=10)
        row = [str(cell) for cell in log.get_row_at(0)]
        assert "hi there" in row and "gpt-realtime" in row
        assert "word39" not in rendered(detail)
        await panel.pilot.press("c")
        await panel.until(lambda: "response.output_text" in rendered(detail), timeout=10)
        assert "response.created" in rendered(detail) and "session.created" in rendered(detail)
        await panel.until(lambda: "rate_limits.updated" in rendered(detail), 15)
        assert "… streaming" in rendered(detail) and log.row_count == 1
        await panel.pilot.press("n")
        await panel.until(lambda: isinstance(panel.app.screen, RuleEditor))
        editor = panel.app.screen
        assert editor.query_one("#pattern", Input).value == "hi there"
        assert editor.query_one("#model", Input).value == "gpt-realtime"
        editor.query_one("#reply", TextArea).load_text("")
        await panel.pilot.press(*"From the panel.", "ctrl+s")
        await panel.until(lambda: not isinstance(panel.app.screen, RuleEditor))
        done.set()
        await asyncio.wait_for(task, 10)
        await panel.until(lambda: "end · 101" in rendered(detail), 10)
        assert log.row_count == 1
        async with panel.client.realtime.connect(model="gpt-realtime") as conn:
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi there"}]}
            )
            await conn.response.create()
            async for event in conn:
                if event.type == "response.output_text.done":
                    assert event.text == "From the panel."
                    break
        await panel.until(lambda: log.row_count == 2, 10)
