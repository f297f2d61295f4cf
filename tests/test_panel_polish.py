"""The panel's dialogs and small things under Pilot (issue 21): the rule editor takes keys typed
before it is drawn and is refilled for each rule, an unpaced stream reads `unpaced`, health and
metrics polls stay out of the log and the totals unless the filter asks for them, one Quit and
one Help in the palette, a wrapped delete question, escape in the filter box, and a whole reply's
JSON indented. Real server, real openai SDK, real files."""

from __future__ import annotations

from pathlib import Path

import httpx
from textual import events
from textual.color import Color
from textual.command import CommandList, CommandPalette
from textual.keys import _character_to_key
from textual.widgets import Input, Label, Static, TextArea

from mockllm_tui.rules.commands import add_rule
from mockllm_tui.tui.screens.confirm import ConfirmScreen
from mockllm_tui.tui.screens.filter import FilterScreen
from mockllm_tui.tui.screens.rule_editor import RuleEditor
from mockllm_tui.tui.widgets.request_log import RequestLog
from mockllm_tui.tui.widgets.rule_table import RuleTable
from tests.support import FixedReplies
from tests.test_panel import LONG_REPLY, Panel, open_panel, panel, rendered

__all__ = ["panel"]  # the fixture, shared with test_panel.py

FALLBACK = "This is a mock response from mockllm-tui."


def type_at_once(panel: Panel, *keys: str) -> None:
    """Post key events as a fast typist sends them: all queued before the first is handled (Pilot's
    `press` waits for the app to settle after each key)."""
    for key in keys:
        if len(key) == 1:
            panel.app.post_message(events.Key(key if key.isalnum() else _character_to_key(key), key))
        else:
            panel.app.post_message(events.Key(key, None))


async def editor_shown(panel: Panel) -> RuleEditor:
    """The rule editor once it is the screen and has been drawn."""
    await panel.until(lambda: isinstance(panel.app.screen, RuleEditor))
    editor = panel.app.screen
    assert isinstance(editor, RuleEditor)
    await editor.wait_for_refresh()
    return editor


async def test_keys_typed_straight_after_a_land_in_the_match_field(panel: Panel) -> None:
    type_at_once(panel, "a", *"howdy")
    editor = await editor_shown(panel)
    await panel.until(lambda: editor.query_one("#pattern", Input).value == "howdy")
    assert panel.app.focused is editor.query_one("#pattern", Input)
    await panel.pilot.press("tab", *"Hi there", "ctrl+s")
    await panel.until(lambda: not isinstance(panel.app.screen, RuleEditor))
    assert await panel.chat("howdy") == "Hi there"
    assert await panel.chat("hello") == "Hello! This is mockllm-tui."
    # ... and in the reply field for `n`, which opens with the cursor there
    await panel.until(lambda: panel.app.selected is not None and not panel.app.selected.open)
    type_at_once(panel, "n", *" Bye.")
    editor = await editor_shown(panel)
    reply = editor.query_one("#reply", TextArea)
    await panel.until(lambda: reply.text == "Hello! This is mockllm-tui. Bye.")
    assert panel.app.focused is reply


async def test_the_editor_is_built_once_and_shows_each_rule_afresh(panel: Panel) -> None:
    table = panel.app.query_one(RuleTable)
    await panel.pilot.press("a", *"leftover", "tab", *"junk", "ctrl+s")
    await panel.until(lambda: not isinstance(panel.app.screen, RuleEditor))
    await panel.until(lambda: table.row_count == 3)
    await panel.pilot.press("a")
    editor = panel.app.screen
    assert isinstance(editor, RuleEditor)
    assert editor.query_one("#pattern", Input).value == ""
    assert editor.query_one("#reply", TextArea).text == ""
    assert editor.border_title is None and editor.query_one("#editor-box").border_title == "New rule"
    await panel.pilot.press(*"x", "escape")
    table.focus()
    table.select_id(next(v.id for v in table.views if "'hello'" in v.match))
    await panel.pilot.press("e")
    assert panel.app.screen is editor  # the same screen, refilled
    assert editor.query_one("#pattern", Input).value == "hello"
    assert editor.query_one("#reply", TextArea).text == "Hello! This is mockllm-tui."
    assert str(editor.query_one("#editor-box").border_title).startswith("Edit rule")
    assert panel.app.focused is editor.query_one("#pattern", Input)
    await panel.pilot.press("escape")
    # a theme chosen while the editor is hidden shows when it opens again
    panel.app.theme = "textual-light"
    await panel.pilot.pause()
    await panel.pilot.press("a")
    await editor.wait_for_refresh()
    box = editor.query_one("#editor-box")
    assert box.styles.background == Color.parse(panel.app.get_css_variables()["surface"])


async def test_an_unpaced_stream_reads_unpaced(panel: Panel) -> None:
    panel.store.set_rules(FixedReplies(text=LONG_REPLY))
    panel.store.set_knobs("live", {"stream_speed": 0})
    stream = await panel.client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "fast"}], stream=True
    )
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == LONG_REPLY
    detail = panel.app.query_one("#detail-body", Static)
    await panel.until(lambda: "stream:" in rendered(detail) and "word59" in rendered(detail))
    assert "unpaced" in rendered(detail) and "tok/s" not in rendered(detail)
    # a paced one has a rate
    panel.store.set_knobs("live", {"stream_speed": 1000})
    stream = await panel.client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "paced"}], stream=True
    )
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == LONG_REPLY
    await panel.until(lambda: "user: paced" in rendered(detail) and "stream:" in rendered(detail))
    assert "tok/s" in rendered(detail) and "unpaced" not in rendered(detail)


async def test_health_and_metrics_polls_stay_out_of_the_log_and_the_totals(panel: Panel) -> None:
    log = panel.app.query_one(RequestLog)
    counts = panel.app.query_one("#status-counts", Static)
    root = panel.app.root_url
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            assert (await client.get(root + "/health")).status_code == 200
        assert (await client.get(root + "/metrics")).status_code == 200
        assert (await client.post(root + "/metrics")).status_code == 404  # answered by the fallback: journaled
    assert await panel.chat("hello") == "Hello! This is mockllm-tui."
    await panel.until(lambda: log.row_count == 1 and "1 total" in rendered(counts))
    assert log.entry_at(0).path == "/v1/chat/completions"
    assert panel.store.counters.total == 5  # the store counts them all
    # the filter word `probes` shows them, in the log and in the totals
    await panel.pilot.press("slash", *"probes", "enter")
    await panel.until(lambda: log.row_count == 5 and "5 total" in rendered(counts))
    # naming them shows just those
    await panel.pilot.press("slash", *["backspace"] * 6, *"health", "enter")
    await panel.until(lambda: log.row_count == 3)
    assert {log.entry_at(r).path for r in range(3)} == {"/health"}
    # an empty filter: back to leaving them out
    await panel.pilot.press("slash", *["backspace"] * 6, "enter")
    await panel.until(lambda: log.row_count == 1 and "1 total" in rendered(counts))


async def test_escape_in_the_filter_box_restores_the_filter_before_it(panel: Panel) -> None:
    for prompt in ("alpha", "beta"):
        await panel.chat(prompt)
    log = panel.app.query_one(RequestLog)
    await panel.until(lambda: log.row_count == 2)
    await panel.pilot.press("slash", *"alpha")
    assert isinstance(panel.app.screen, FilterScreen)
    await panel.until(lambda: log.row_count == 1)  # applied as it is typed
    assert "filter: alpha" in str(log.border_title)
    await panel.pilot.press("escape")
    assert not isinstance(panel.app.screen, FilterScreen)
    await panel.until(lambda: log.row_count == 2)
    assert "filter" not in str(log.border_title)
    # with a filter kept by enter, escape after more typing goes back to it
    await panel.pilot.press("slash", *"beta", "enter")
    await panel.until(lambda: log.row_count == 1 and "filter: beta" in str(log.border_title))
    await panel.pilot.press("slash", "end", "backspace", "backspace")  # the box opens with the text selected
    await panel.until(lambda: "filter: be" in str(log.border_title))
    await panel.pilot.press(*"ta")  # typed back to what it was: that is the filter again
    await panel.until(lambda: "filter: beta" in str(log.border_title))
    await panel.pilot.press("x")
    await panel.until(lambda: "filter: betax" in str(log.border_title) and log.row_count == 0)
    await panel.pilot.press("escape")
    await panel.until(lambda: "filter: beta" in str(log.border_title))
    assert log.row_count == 1 and log.entry_at(0).preview == "beta"


async def test_the_palette_has_one_quit_and_one_help(panel: Panel) -> None:
    await panel.pilot.press("ctrl+p")
    await panel.until(lambda: isinstance(panel.app.screen, CommandPalette))
    commands = panel.app.screen.query_one(CommandList)
    await panel.until(lambda: commands.option_count > 10)
    await panel.pilot.pause(0.3)  # every provider has answered
    titles = [str(commands.get_option_at_index(i).prompt).split("\n")[0] for i in range(commands.option_count)]
    assert sum(t.startswith("Quit") for t in titles) == 1, titles
    assert sum(t.startswith("Help") for t in titles) == 1, titles
    assert not any(t.startswith("Keys") for t in titles), titles
    assert any(t.startswith("Theme") for t in titles)
    # a rule key's entry opens the editor (its action waits for the editor to be ready)
    await panel.pilot.press(*"Add rule")
    await panel.pilot.pause(0.3)
    await panel.pilot.press("enter")
    await editor_shown(panel)


async def test_the_delete_question_wraps(panel: Panel) -> None:
    add_rule(panel.store, {"name": "translate", "match": {"regex": "^translate (?P<text>.+)"}, "reply": "{{text}}"})
    table = panel.app.query_one(RuleTable)
    await panel.until(lambda: table.row_count == 3)
    table.focus()
    table.select_id(next(v.id for v in table.views if v.name == "translate"))
    await panel.pilot.press("d")
    assert isinstance(panel.app.screen, ConfirmScreen)
    label = panel.app.screen.query_one(Label)
    question = str(label.content)
    assert "translate" in question and question.endswith("?")
    assert label.size.height >= 2 and label.size.height * label.size.width >= len(question)
    await panel.pilot.press("n")


async def test_c_indents_a_whole_replys_json(panel: Panel) -> None:
    await panel.chat("hello")
    await panel.until(lambda: panel.app.selected is not None and not panel.app.selected.open)
    detail = panel.app.query_one("#detail-body", Static)
    await panel.pilot.press("c")
    await panel.until(lambda: "Reply as sent" in rendered(detail))
    lines = rendered(detail).splitlines()
    assert '  "object": "chat.completion",' in lines
    assert any(line.startswith('        "content": "Hello!') for line in lines)
    assert "Hello! This is mockllm-tui." in rendered(detail).replace("\n", "")  # wrapped, not cut


async def test_keys_typed_before_the_first_editor_is_ready_wait_for_it(tmp_path: Path) -> None:
    async with open_panel(tmp_path) as panel:
        type_at_once(panel, "a", *"early")
        editor = await editor_shown(panel)
        await panel.until(lambda: editor.query_one("#pattern", Input).value == "early")
