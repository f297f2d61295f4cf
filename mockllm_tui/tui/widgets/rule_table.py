"""The responses table: every rule in order, with its match, reply preview and hit count.

Enter or a click edits (modal form), shift+up/down reorders. Adding, editing, deleting, trying a
prompt and making a rule from a request work from anywhere on the main screen, so their keys
are the app's; they call the methods here. Every change goes through rules.commands, which makes
it live in the store and writes it back to the file surgically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.widgets import DataTable

from mockllm_tui.core.store import JournalEntry, Store
from mockllm_tui.remote.errors import NotConnected
from mockllm_tui.rules.access import RuleAccess, StoreRuleAccess
from mockllm_tui.rules.commands import (
    ChangeResult,
    ConflictError,
    RuleError,
    RuleNotFound,
    RuleView,
    ScenarioView,
    list_rules,
    new_rule_name,
)
from mockllm_tui.tui.format import rule_data_for
from mockllm_tui.tui.screens.confirm import ConfirmScreen
from mockllm_tui.tui.screens.rule_editor import open_rule_editor, rule_editor_ready
from mockllm_tui.tui.screens.try_prompt import TryPromptScreen

RULE_ERRORS = (RuleError, ConflictError, RuleNotFound, NotConnected)
SCENARIO_ROW = "scenario:"
HITS_INTERVAL_S = 1.0  # hit counts under load: a redraw of the whole table each time, so not every tick


class RuleTable(DataTable[Any]):
    """The rules, read from the store; changes go through rules.commands."""

    DEFAULT_CSS = """
    RuleTable { border: round $primary-darken-2; }
    RuleTable:focus { border: round $accent; }
    RuleTable.-file-error { border: round $error; }
    """

    BINDINGS: ClassVar[list[Any]] = [
        Binding("shift+up", "move(-1)", "Move up", id="rules.move_up", tooltip="Move the selected rule up"),
        Binding("shift+down", "move(1)", "Move down", id="rules.move_down", tooltip="Move the selected rule down"),
    ]

    def __init__(self, store: Store, access: RuleAccess | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.store = store
        self.access = access if access is not None else StoreRuleAccess(store)
        self.views: list[RuleView] = []
        self.scenarios: list[ScenarioView] = []
        self._hits_stale = False

    def on_mount(self) -> None:
        self.set_interval(HITS_INTERVAL_S, self._refresh_stale_hits)
        self.add_column("rule", key="label", width=18)
        self.add_column("match", key="match", width=30)
        self.add_column("reply", key="reply", width=40)
        self.add_column("hits", key="hits", width=5)

    # -- showing -------------------------------------------------------------------------------

    def show_rules(self) -> None:
        """Show the store's rules and the file's state (rebuilds only when the rules changed)."""
        self._draw(list_rules(self.store))
        self._show_title()

    def refresh_hits(self) -> None:
        """Update the hit counts (the rows too, when the rules changed since they were drawn: the
        views are never replaced without their rows)."""
        if self._draw(list_rules(self.store)):
            self._show_title()

    def _draw(self, views: list[RuleView]) -> bool:
        """Show these rules, then the scenarios: the hit counts and scenario positions only when the
        rows are the same, else every row. Says whether the rows were rebuilt."""
        scenarios = self.access.scenarios()
        same = [(v.id, v.label, v.match, v.reply) for v in views] == [
            (v.id, v.label, v.match, v.reply) for v in self.views
        ] and [s.name for s in scenarios] == [s.name for s in self.scenarios]
        if same:
            old = {v.id: v.hits for v in self.views}
            for view in views:
                if old.get(view.id) != view.hits:
                    self.update_cell(str(view.id), "hits", Text(str(view.hits), justify="right"))
            self.views = views
            for scenario, before in zip(scenarios, self.scenarios, strict=True):
                if scenario != before:
                    key = SCENARIO_ROW + scenario.name
                    self.update_cell(key, "match", scenario_match(scenario))
                    self.update_cell(key, "reply", scenario.position())
            self.scenarios = scenarios
            return False
        selected = self.selected_view()
        self.views = views
        self.scenarios = scenarios
        self.clear()
        for view in views:
            self.add_row(*self._cells(view), key=str(view.id))
        # Scenarios follow the rules, one row each, showing where the default session is.
        for scenario in scenarios:
            cells = [Text(scenario.name, style="bold"), scenario_match(scenario), scenario.position(), Text("")]
            self.add_row(*cells, key=SCENARIO_ROW + scenario.name)
        if selected is not None and any(v.id == selected.id for v in views):
            self.select_id(selected.id)
        return True

    def hits_changed(self) -> None:
        """Requests were answered: update the hit counts within HITS_INTERVAL_S."""
        self._hits_stale = True

    def _refresh_stale_hits(self) -> None:
        if self._hits_stale:
            self._hits_stale = False
            self.refresh_hits()

    def _cells(self, view: RuleView) -> list[Any]:
        return [
            Text(view.label, style="italic" if view.volatile else ""),
            view.match,
            view.reply,
            Text(str(view.hits), justify="right"),
        ]

    def _show_title(self) -> None:
        path = self.store.config.responses_path
        name = Path(path).name if path else "no file"
        error = self.store.file_error
        self.set_class(error is not None, "-file-error")
        if error:
            first = error.splitlines()[0] if error else ""
            self.border_title = f"Responses · {name} · ✗ {first}"
        else:
            self.border_title = f"Responses · {name} · {len(self.views)} rules"

    def selected_view(self) -> RuleView | None:
        """The highlighted rule."""
        if not self.views or not 0 <= self.cursor_row < len(self.views):
            return None
        return self.views[self.cursor_row]

    def view_for(self, entry: JournalEntry) -> RuleView | None:
        """The rule that answered a request, if it still exists (found by its internal id, not its
        identity: an unnamed rule's `#N` may have moved since)."""
        return next((v for v in self.views if v.id == entry.rule_id), None) if entry.rule_id is not None else None

    def select_id(self, rule_id: int) -> None:
        """Move the cursor to a rule."""
        for i, view in enumerate(self.views):
            if view.id == rule_id:
                self.move_cursor(row=i, animate=False)
                return

    # -- changes -------------------------------------------------------------------------------

    def _change(self, command: Callable[[], ChangeResult]) -> str | None:
        """Run a rules command; returns the error message when it was refused."""
        try:
            result = command()
        except RULE_ERRORS as exc:
            return str(exc)
        self.show_rules()
        if result.rule is not None:
            self.select_id(result.rule.id)
        if result.message:
            self.notify(result.message, severity="warning")
        return None

    def _default_kind(self) -> str:
        short = not self.views or any(v.kind in ("short", "default") for v in self.views)
        return "exact" if short else "contains"

    def action_add(self) -> None:
        """Add a rule through the editor."""
        selected = self.selected_view()
        index = None if selected is None or selected.kind != "rule" else selected.index + 1

        def submit(data: dict[str, Any]) -> str | None:
            return self._change(lambda: self.access.add(data, index))

        open_rule_editor(self.app, None, submit, default_kind=self._default_kind(), name_for=self._name_for)

    def _name_for(self, prompt: str) -> str | None:
        return new_rule_name(self.store, prompt)

    def action_edit(self) -> None:
        """Edit the highlighted rule (add one when there is none)."""
        view = self.selected_view()
        if view is not None:
            self.edit(view)
        elif self.scenarios and self.cursor_row >= len(self.views):
            scenario = self.scenarios[min(self.cursor_row - len(self.views), len(self.scenarios) - 1)]
            self.notify(f"scenario {scenario.name}: {scenario.position()} (its steps are edited in the file)")
        else:
            self.action_add()

    def edit(self, view: RuleView) -> None:
        """Edit this rule through the editor."""
        self.select_id(view.id)

        def submit(data: dict[str, Any]) -> str | None:
            return self._change(lambda: self.access.update(view.id, data))

        open_rule_editor(self.app, view, submit, default_kind=self._default_kind())

    def rule_from(self, entry: JournalEntry) -> None:
        """A new rule that answers this request: the editor filled from it, the cursor in the reply.
        The reply is what the request got, or empty when that was a fallback."""
        conversation = entry.conversation
        if conversation is None:
            self.notify(f"Request #{entry.id} has no conversation to match", severity="warning")
            return
        view = self.view_for(entry)
        fallback = view is None or view.kind == "default"
        reply = "" if fallback else entry.reply_text or "".join(entry.chunks)

        def submit(data: dict[str, Any]) -> str | None:
            return self._change(lambda: self.access.add_for(entry, data))

        title = f"New rule from request #{entry.id}"
        prefill = rule_data_for(entry, reply)
        name = self._name_for(prefill["match"]["exact"])
        if name:
            prefill["name"] = name
        open_rule_editor(self.app, None, submit, prefill=prefill, title=title, name_for=self._name_for)

    async def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        await rule_editor_ready(self.app)
        self.action_edit()

    async def _on_click(self, event: events.Click) -> None:
        """A click on a rule opens it (the table alone opens only a second click on the same row)."""
        row = event.style.meta.get("row")
        before = self.cursor_row
        await super()._on_click(event)
        if isinstance(row, int) and 0 <= row < len(self.views) and row != before and self.cursor_row == row:
            await rule_editor_ready(self.app)
            self.edit(self.views[row])

    def action_delete(self) -> None:
        """Delete the highlighted rule, after a confirmation."""
        view = self.selected_view()
        if view is not None:
            self.delete(view)

    def delete(self, view: RuleView) -> None:
        """Delete this rule (highlighted meanwhile), after a confirmation."""
        self.select_id(view.id)

        def answered(yes: bool | None) -> None:
            if yes:
                error = self._change(lambda: self.access.delete(view.id))
                if error:
                    self.notify(error, title="Not deleted", severity="error")

        self.app.push_screen(ConfirmScreen(f"Delete rule {view.label} ({view.match})?"), answered)

    def action_move(self, delta: int) -> None:
        """Move the highlighted rule up (-1) or down (1)."""
        view = self.selected_view()
        if view is None:
            return
        error = self._change(lambda: self.access.move(view.id, view.index + delta))
        if error:
            self.notify(error, title="Not moved", severity="error")

    def action_try(self) -> None:
        """Try a prompt against the rules; the winner is highlighted."""

        def tried(rule_id: int | None) -> None:
            if rule_id is not None:
                self.select_id(rule_id)

        self.app.push_screen(TryPromptScreen(self.access.try_prompt), tried)


def scenario_match(scenario: ScenarioView) -> str:
    """A scenario row's match column: the step it waits for."""
    return f"scenario · next: {scenario.next_label}" if scenario.next_label else "scenario"
