"""The panel's second pass under Pilot: rule keys from anywhere, a rule from a request (`n`), the
chunk timeline (`c`), clear toggles, failures shown rather than quitting, the palette and footer
following the keymap, the remembered theme and the mouse. Real server, real openai SDK, real files."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from textual.widgets import Checkbox, Input, Label, Static, TextArea
from textual.widgets._footer import FooterKey

from mockllm_tui.rules.commands import add_rule, list_rules
from mockllm_tui.tui.screens.confirm import ConfirmScreen
from mockllm_tui.tui.screens.rule_editor import RuleEditor
from mockllm_tui.tui.screens.try_prompt import TryPromptScreen
from mockllm_tui.tui.widgets.request_log import RequestLog
from mockllm_tui.tui.widgets.rule_table import RuleTable
from tests.support import FixedReplies
from tests.test_panel import LONG_REPLY, RESPONSES, Panel, diff_lines, open_panel, panel, rendered

__all__ = ["panel"]  # the fixture, shared with test_panel.py

FALLBACK = "This is a mock response from mockllm-tui."
TIMELINE_LINE = re.compile(r"^\s*\+(\d+(?:\.\d)?) (ms|s)\s+\+(\d+(?:\.\d)?) (ms|s)\s+\S", re.MULTILINE)


def footer_keys(panel: Panel) -> dict[str, str]:
    """The footer's keys: description -> key as shown."""
    return {key.description: key.key_display for key in panel.app.query(FooterKey)}


def notes(panel: Panel) -> str:
    """Every notification's title and message so far."""
    return "\n".join(f"{n.title}: {n.message}" for n in panel.app._notifications)


async def test_a_adds_a_rule_straight_after_start_up(panel: Panel) -> None:
    assert panel.app.focused is panel.app.query_one(RequestLog)
    await panel.pilot.press("a")
    assert isinstance(panel.app.screen, RuleEditor)
    await panel.pilot.press(*"ping", "tab", *"pong", "ctrl+s")
    assert not isinstance(panel.app.screen, RuleEditor)
    assert await panel.chat("ping") == "pong"
    # in a text field the keys are typed, not commands
    field = panel.app.query_one("#errors-rate", Input)
    field.focus()
    await panel.pilot.press("a", "x", "n")
    assert not isinstance(panel.app.screen, RuleEditor)
    assert field.value.endswith("axn") and panel.store.knobs.error_rate == 0


async def test_e_d_and_t_work_from_the_log(panel: Panel) -> None:
    table = panel.app.query_one(RuleTable)
    log = panel.app.query_one(RequestLog)
    # from the log, `e` edits the rule that answered the selected request
    assert await panel.chat("hello") == "Hello! This is mockllm-tui."
    await panel.until(lambda: panel.app.selected is not None and not panel.app.selected.open)
    assert panel.app.focused is log
    await panel.pilot.press("e")
    editor = panel.app.screen
    assert isinstance(editor, RuleEditor) and editor.view is not None
    assert editor.query_one("#pattern", Input).value == "hello"
    await panel.pilot.press("escape")
    # a request that got the catch-all has no rule of its own to edit: the panel says so and points at `n`
    await panel.chat("something else")
    await panel.until(lambda: panel.app.selected is not None and panel.app.selected.preview == "something else")
    await panel.pilot.press("e")
    assert not isinstance(panel.app.screen, RuleEditor)
    assert "n makes a rule" in notes(panel)
    # `t` tries a prompt, both from the log; the winner is highlighted in the table
    await panel.pilot.press("t", *"hello", "enter")
    assert isinstance(panel.app.screen, TryPromptScreen)
    await panel.pilot.press("escape")
    assert panel.app.focused is log and table.selected_view().label.startswith("#1")  # type: ignore[union-attr]
    # `d` from the log acts on the request selected there, as `e` does, not on the winner: this one
    # got the catch-all, so there is nothing to delete
    await panel.pilot.press("d")
    assert not isinstance(panel.app.screen, ConfirmScreen)
    assert notes(panel).count("n makes a rule") == 2
    # the request before it got the greeting: `d` deletes that rule after a confirmation
    table.move_cursor(row=1)
    await panel.pilot.press("up")
    await panel.until(lambda: panel.app.selected is not None and panel.app.selected.preview == "hello")
    await panel.pilot.press("d")
    assert isinstance(panel.app.screen, ConfirmScreen)
    assert "hello" in str(panel.app.screen.query_one(Label).content)
    assert table.selected_view().label.startswith("#1")  # type: ignore[union-attr]
    await panel.pilot.press("y")
    assert [v.label for v in list_rules(panel.store)] == ["#1"]  # the catch-all, now first
    assert await panel.chat("hello") == FALLBACK


async def test_n_turns_a_fallback_request_into_a_rule(panel: Panel) -> None:
    path = panel.tmp / "responses.yml"
    # nothing selected yet: `n` is not offered
    assert "Rule from request" not in footer_keys(panel)
    assert await panel.chat("what is mockllm?") == FALLBACK
    await panel.until(lambda: panel.app.selected is not None and not panel.app.selected.open)
    await panel.until(lambda: footer_keys(panel).get("Rule from request") == "n")
    await panel.pilot.press("n")
    editor = panel.app.screen
    assert isinstance(editor, RuleEditor)
    reply = editor.query_one("#reply", TextArea)
    assert panel.app.focused is reply and reply.text == ""  # a fallback gives no reply to keep
    assert editor.query_one("#pattern", Input).value == "what is mockllm?"
    assert editor.query_one("#model", Input).value == "gpt-4o"
    assert editor.query_one("#rule-name", Input).value == "what-is-mockllm"
    await panel.pilot.press(*"A mock LLM.", "ctrl+s")
    assert not isinstance(panel.app.screen, RuleEditor)
    assert await panel.chat("what is mockllm?") == "A mock LLM."
    removed, added = diff_lines(RESPONSES, path.read_text())
    assert removed == []
    assert added == [
        "rules:",
        "  - name: what-is-mockllm",
        '    match: {exact: "what is mockllm?", model: "gpt-4o", provider: "openai"}',
        '    reply: "A mock LLM."',
    ]


async def test_n_puts_the_rule_above_the_rule_that_would_shadow_it(panel: Panel) -> None:
    add_rule(panel.store, {"name": "broad", "match": {"contains": "weather"}, "reply": "Always sunny"})
    assert await panel.chat("weather in Oslo?") == "Always sunny"
    await panel.until(lambda: panel.app.selected is not None and not panel.app.selected.open)
    await panel.pilot.press("n")
    reply = panel.app.screen.query_one("#reply", TextArea)
    assert reply.text == "Always sunny"  # the reply it got, to correct
    await panel.pilot.press(*" (not in Oslo: rain)", "ctrl+s")
    assert await panel.chat("weather in Oslo?") == "Always sunny (not in Oslo: rain)"
    assert await panel.chat("weather in Rome?") == "Always sunny"
    labels = [v.name or v.match for v in list_rules(panel.store)]
    assert labels.index("broad") == 1


async def test_the_chunk_timeline_grows_during_a_slow_stream(panel: Panel) -> None:
    panel.store.set_rules(FixedReplies(text=LONG_REPLY))
    panel.store.set_knobs("live", {"stream_speed": 20})  # a word chunk is two tokens: one every 0.1 s, 6 s in all
    detail = panel.app.query_one("#detail-body", Static)

    async def consume() -> str:
        stream = await panel.client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "stream it"}], stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    task = asyncio.create_task(consume())
    await panel.until(lambda: panel.app.selected is not None and panel.app.selected.stream)
    await panel.until(lambda: footer_keys(panel).get("Chunks") == "c")
    await panel.pilot.press("c")
    shown_while_open: set[int] = set()

    def grown() -> bool:
        text = rendered(detail)
        if "… streaming" in text:
            shown_while_open.add(len(TIMELINE_LINE.findall(text)))
        return len(shown_while_open - {0}) >= 3

    await panel.until(grown, timeout=10)  # three different lengths on screen while the stream runs
    assert await asyncio.wait_for(task, 15) == LONG_REPLY
    await panel.until(lambda: "end · 200" in rendered(detail))
    lines = TIMELINE_LINE.findall(rendered(detail))
    entry = panel.store.journal()[-1]
    assert len(lines) == len(entry.chunks)
    offsets = [float(v) * (1000 if unit == "s" else 1) for v, unit, _, _ in lines]
    assert offsets == sorted(offsets)
    # pacing is deadline-based (a busy loop can send chunks late, in one write, never early): the
    # offsets keep to the 0.1 s a chunk, and the typical gap shows it
    assert offsets[-1] >= 0.9 * 100 * (len(lines) - 1)
    gaps = sorted(float(v) * (1000 if unit == "s" else 1) for _, _, v, unit in lines[1:])
    assert gaps[len(gaps) // 2] >= 50
    assert "word59" in rendered(detail)
    # `c` again: back to the assembled text
    await panel.pilot.press("c")
    await panel.until(lambda: "Reply · c: as sent" in rendered(detail))
    assert not TIMELINE_LINE.search(rendered(detail))


async def test_c_shows_the_bytes_of_a_whole_reply(panel: Panel) -> None:
    await panel.chat("hello")
    await panel.until(lambda: panel.app.selected is not None and not panel.app.selected.open)
    detail = panel.app.query_one("#detail-body", Static)
    await panel.pilot.press("c")
    await panel.until(lambda: "Reply as sent" in rendered(detail))
    text = rendered(detail)
    assert "Reply as sent" in text and '"object":"chat.completion"' in text.replace(" ", "")
    assert "as sent" in str(panel.app.query_one("#detail").border_title)


async def test_toggles_read_as_what_they_are_and_counts_start_on_arrival(panel: Panel) -> None:
    errors = panel.app.query_one("#errors-on", Checkbox)
    knobs = panel.app.query_one("#status-knobs", Static)
    assert str(errors.label) == "off" and "errors off" in rendered(knobs)
    await panel.pilot.press("x")
    assert str(errors.label) == "on 100% 500 before"
    assert "errors on 100% 500 before" in rendered(knobs)
    await panel.pilot.press("x")
    assert str(errors.label) == "off"
    # a stream still running counts in the total
    panel.store.set_rules(FixedReplies(text=LONG_REPLY))
    panel.store.set_knobs("live", {"stream_speed": 20})
    stream = await panel.client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "slow"}], stream=True
    )
    counts = panel.app.query_one("#status-counts", Static)
    await panel.until(lambda: "1 total" in rendered(counts) and "1 in flight" in rendered(counts))
    assert panel.store.counters.total == 0
    await stream.close()


async def test_a_failed_resend_is_shown_and_the_server_keeps_serving(panel: Panel) -> None:
    await panel.chat("hello")
    await panel.until(lambda: panel.app.selected is not None and not panel.app.selected.open)
    assert panel.app.selected is not None
    panel.app.selected.path = ":not a port/v1/chat/completions"  # an invalid URL: httpx raises InvalidURL
    await panel.pilot.press("r")
    await panel.until(lambda: "A panel task failed" in notes(panel))
    assert panel.app.is_running and panel.app.return_code is None
    assert await panel.chat("hello") == "Hello! This is mockllm-tui."


async def test_a_bad_watcher_event_is_shown_and_the_server_keeps_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mockllm_tui.rules import fileio

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bad watcher event")

    monkeypatch.setattr(fileio, "reload_from_disk", broken)
    async with open_panel(tmp_path, watch=True) as panel:
        assert await panel.chat("hello") == "Hello! This is mockllm-tui."
        touches = 0

        def touched_and_failed() -> bool:
            nonlocal touches  # touch the file until the watcher (started with the panel) sees it
            touches += 1
            (tmp_path / "responses.yml").write_text(RESPONSES + f"# touched {touches}\n")
            return "bad watcher event" in notes(panel)

        await panel.until(touched_and_failed, timeout=8)
        assert panel.app.is_running and panel.app.return_code is None
        assert await panel.chat("hello") == "Hello! This is mockllm-tui."


async def test_a_remapped_key_shows_in_the_palette_and_the_footer(tmp_path: Path) -> None:
    (tmp_path / "keymap.yml").write_text("request.resend: f6\nknobs.faster: f9\nrules.add: f2\n")
    async with open_panel(tmp_path) as panel:
        palette = {title: help_text for title, help_text, _ in panel.app.palette_commands()}
        assert palette["Re-send"].endswith("(f6)")
        assert palette["Streams faster"].endswith("(f9)")
        assert palette["Add rule"].endswith("(f2)")
        assert palette["Streams slower"].endswith("([)")
        await panel.chat("hello")
        await panel.until(lambda: panel.app.selected is not None)
        await panel.pilot.pause()
        keys = footer_keys(panel)
        assert keys["Re-send"] == "f6" and keys["Add rule"] == "f2"
        await panel.pilot.press("f9")
        assert panel.store.knobs.stream_speed == 0  # from unlimited, faster stays unlimited
        await panel.pilot.press("left_square_bracket", "f9")
        assert panel.store.knobs.stream_speed == 0
        await panel.pilot.press("f2")
        assert isinstance(panel.app.screen, RuleEditor)
        await panel.pilot.press("escape")
        # the palette runs the action its binding names (as the palette calls it)
        panel.app.call_later(dict((title, run) for title, _, run in panel.app.palette_commands())["Streams slower"])
        await panel.until(lambda: panel.store.knobs.stream_speed == 1000)


async def test_the_theme_is_remembered_between_runs(tmp_path: Path) -> None:
    async with open_panel(tmp_path) as panel:
        assert panel.app.theme != "nord"
        panel.app.theme = "nord"
        await panel.until(lambda: (tmp_path / "panel.yml").is_file())
    async with open_panel(tmp_path) as panel:
        assert panel.app.theme == "nord"


async def test_a_click_opens_a_rule_and_selects_a_request(panel: Panel) -> None:
    for prompt in ("one", "two", "three"):
        await panel.chat(prompt)
    log = panel.app.query_one(RequestLog)
    await panel.until(lambda: log.row_count == 3)
    # the log's border is line 0 and its header line 1: the first request is on line 2
    await panel.pilot.click(RequestLog, offset=(20, 2))
    assert panel.app.selected is not None and panel.app.selected.preview == "one"
    assert not log.follow
    # the rule table: border, header, then the rules; one click on the second rule opens it
    await panel.pilot.click(RuleTable, offset=(20, 3))
    editor = panel.app.screen
    assert isinstance(editor, RuleEditor) and editor.view is not None
    assert editor.view.label == "#2"
