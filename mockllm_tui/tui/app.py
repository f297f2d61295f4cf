"""The control panel: a Textual app that runs the server on its own loop and observes the store.

The panel only observes the store (draining its events on a timer, a batch per tick) and sends it
commands. Widgets talk to the app through messages; the app talks to the store.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Protocol

from textual.actions import parse as parse_action
from textual.app import App, ComposeResult, ScreenStackError, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.dom import DOMNode
from textual.screen import Screen
from textual.theme import Theme
from textual.widgets import Footer, Input, OptionList, TextArea
from textual.worker import Worker, WorkerState

from mockllm_tui.core.knobs import KnobError
from mockllm_tui.core.store import JournalEntry, Store
from mockllm_tui.remote.errors import NotConnected
from mockllm_tui.remote.mirror import MirrorStore
from mockllm_tui.rules.access import RuleAccess, StoreRuleAccess
from mockllm_tui.rules.commands import RuleView
from mockllm_tui.tui.commands import PaletteCommand, PanelCommands
from mockllm_tui.tui.format import (
    LATENCY_STEPS_MS,
    curl_command,
    export_line,
    faster,
    resend_headers,
    shows_probes,
    slower,
    speed_label,
    step_down,
    step_up,
)
from mockllm_tui.tui.keymap import keymap_path, load_keymap
from mockllm_tui.tui.preferences import load_theme, save_theme
from mockllm_tui.tui.screens.help import HelpScreen, HelpSections
from mockllm_tui.tui.screens.rule_editor import RuleEditor, prepare_rule_editor, rule_editor_ready
from mockllm_tui.tui.widgets.controls import Controls
from mockllm_tui.tui.widgets.detail import DetailPane
from mockllm_tui.tui.widgets.request_log import RequestLog
from mockllm_tui.tui.widgets.rule_table import RuleTable
from mockllm_tui.tui.widgets.status_bar import StatusBar, arrived_count

# Textual's own palette entries that the panel's commands already offer ("Quit", and "Help" for "Keys").
SYSTEM_COMMANDS_OFFERED = frozenset({"Quit", "Keys"})
REQUEST_ACTIONS = frozenset({"rule_from_request", "toggle_wire"})
# Bound with priority (handled as the key arrives, not after it has bubbled up from the focused
# widget: a few loop turns less under load), so they stand down themselves while the user types
# in a field or a dialog is open.
MAIN_SCREEN_ACTIONS = frozenset(
    {
        "add_rule",
        "edit_rule",
        "delete_rule",
        "try_prompt",
        "rule_from_request",
        "toggle_wire",
        "toggle_errors",
        "resend",
        "copy_curl",
        "latency_up",
        "latency_down",
        "slower",
        "faster",
        "save_rules_file",
    }
)
TEXT_FIELDS = (Input, TextArea, OptionList)
DRAIN_INTERVAL_S = 1 / 10  # each tick repaints the log; at 15 Hz under load that costs the server ~20%
BUSY_EVENTS = 300  # a tick with more events (~1,500 req/s) is followed by a skipped one: 5 Hz under load
RATE_INTERVAL_S = 1.0


class ServerLike(Protocol):
    """What the panel needs of the server (server.ServerHandle): its URL, start and stop."""

    @property
    def url(self) -> str: ...

    async def start(self) -> None: ...

    async def fully_ready(self) -> None: ...

    async def stop(self) -> None: ...


class MockPanel(App[int]):
    """mockllm-tui's control panel."""

    TITLE = "mockllm-tui"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {PanelCommands}
    BINDINGS: ClassVar[list[Any]] = [
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Stop the server and quit"),
        Binding("question_mark,f1", "help", "Help", id="app.help", tooltip="Every key"),
        Binding("a", "add_rule", "Add rule", id="rules.add", priority=True, tooltip="A new rule in the responses file"),
        Binding(
            "e",
            "edit_rule",
            "Edit rule",
            id="rules.edit",
            priority=True,
            tooltip="Edit the selected rule (from the log: the rule that answered the request)",
        ),
        Binding(
            "d",
            "delete_rule",
            "Delete rule",
            id="rules.delete",
            priority=True,
            tooltip="Delete the selected rule (from the log: the rule that answered the request)",
        ),
        Binding("t", "try_prompt", "Try prompt", id="rules.try", priority=True, tooltip="Which rule answers a prompt"),
        Binding(
            "n",
            "rule_from_request",
            "Rule from request",
            id="request.new_rule",
            priority=True,
            tooltip="A new rule that answers the selected request again (type its reply, ctrl+s)",
        ),
        Binding(
            "c",
            "toggle_wire",
            "Chunks",
            id="request.wire",
            priority=True,
            tooltip="The selected reply as sent: a stream's chunks with their timing, or the body",
        ),
        Binding("x", "toggle_errors", "Errors", id="knobs.errors", priority=True, tooltip="Error injection on or off"),
        Binding(
            "R",
            "toggle_record",
            "Record",
            id="knobs.record",
            priority=True,
            tooltip="Save upstream answers as rules, on or off",
        ),
        Binding(
            "r", "resend", "Re-send", id="request.resend", priority=True, tooltip="Send the selected request again"
        ),
        Binding(
            "y",
            "copy_curl",
            "Copy as curl",
            id="request.copy_curl",
            priority=True,
            show=False,
            tooltip="Copy the selected request as curl",
        ),
        Binding(
            "plus",
            "latency_up",
            "Latency up",
            id="knobs.latency_up",
            priority=True,
            show=False,
            tooltip="Raise the latency one step",
        ),
        Binding(
            "minus",
            "latency_down",
            "Latency down",
            id="knobs.latency_down",
            priority=True,
            show=False,
            tooltip="Lower the latency one step",
        ),
        Binding(
            "left_square_bracket",
            "slower",
            "Streams slower",
            id="knobs.slower",
            priority=True,
            show=False,
            tooltip="Stream speed one step down; from unlimited the top step",
        ),
        Binding(
            "right_square_bracket",
            "faster",
            "Streams faster",
            id="knobs.faster",
            priority=True,
            show=False,
            tooltip="Stream speed one step up; past the top is unlimited",
        ),
        Binding(
            "w",
            "save_rules_file",
            "Save rules file",
            id="app.save_rules_file",
            priority=True,
            show=False,
            tooltip="Attached: save the server's rules file to a local path",
        ),
        Binding(
            "ctrl+s",
            "save_settings",
            "Save settings",
            id="app.save_settings",
            show=False,
            tooltip="Write the live knob values into settings:",
        ),
        Binding(
            "ctrl+e", "export", "Export journal", id="app.export", show=False, tooltip="Write the journal as JSON lines"
        ),
        Binding(
            "ctrl+l",
            "clear_journal",
            "Clear journal",
            id="app.clear_journal",
            show=False,
            tooltip="Forget the requests and reset the counters",
        ),
        Binding("tab", "focus_next", "Next pane", show=False),
    ]

    def __init__(
        self,
        store: Store,
        handle: ServerLike,
        *,
        log_file: str | None = None,
        log_format: str = "text",
        watch_file: bool = True,
        keymap_file: Path | None = None,
        export_dir: Path | None = None,
        rules: RuleAccess | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        #: How rule changes are made: on this store, or (attached) on the server's.
        self.rules = rules if rules is not None else StoreRuleAccess(store)
        self.attached = isinstance(store, MirrorStore)
        self._connection_shown: str | None = None
        self.handle = handle
        self.log_file = log_file
        self.log_format = log_format
        self.watch_file = watch_file
        self.keymap_file = keymap_file if keymap_file is not None else keymap_path()
        self.prefs_file = self.keymap_file.with_name("panel.yml")  # the theme, next to the keymap
        self.export_dir = export_dir if export_dir is not None else Path.cwd()
        self.subscription = store.subscribe()
        self.selected: JournalEntry | None = None
        self._last_total = arrived_count(store.counters, with_probes=False)
        self._keymap: dict[str, str] = {}
        self._resting = False

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(f"attached to {self.root_url}" if self.attached else self.handle.url, id="status")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield RequestLog(cap=self.store.journal_size, id="requests")
                yield RuleTable(self.store, self.rules, id="rules")
            with Vertical(id="right"):
                yield DetailPane(id="detail")
                yield Controls(id="controls")
        yield Footer()

    async def on_mount(self) -> None:
        self.status_bar = self.query_one(StatusBar)
        self.log_view = self.query_one(RequestLog)
        self.rule_table = self.query_one(RuleTable)
        self.detail = self.query_one(DetailPane)
        self.controls = self.query_one(Controls)
        self._load_keymap()
        self._load_theme()
        await self.handle.start()
        if self.watch_file and self.store.config.responses_path:
            from mockllm_tui.rules import watch_rules

            watch = watch_rules(self.store, Path(self.store.config.responses_path))
            self.start_worker(watch, "watching the responses file")
        if self.log_file:
            self._start_log_file(self.log_file)
        self.log_view.reload(self.store.journal())
        self.show_store_state()
        self.log_view.focus()
        self.call_after_refresh(prepare_rule_editor, self)  # ready before the first `a`, `e` or `n`
        self.set_interval(DRAIN_INTERVAL_S, self.drain)
        self.set_interval(RATE_INTERVAL_S, self.sample_rate)
        self.start_worker(self._freeze_long_lived(), "freezing start-up objects")

    async def _freeze_long_lived(self) -> None:
        """Keep what lives as long as the app (Textual, FastAPI, the widgets) out of the full
        collections, which otherwise pause the loop for ~100 ms every few seconds under load."""
        await self.handle.fully_ready()
        gc.collect()
        gc.freeze()

    def start_worker(self, work: Any, group: str) -> Worker[Any]:
        """Run `work` in a worker whose failure is shown in the panel (it never quits the app,
        which would stop the server)."""
        return self.run_worker(work, group=group, exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Show a panel worker's failure."""
        worker = event.worker
        if event.state == WorkerState.ERROR:
            self.notify(f"{worker.group}: {worker.error!r}", title="A panel task failed", severity="error", timeout=10)

    def _load_theme(self) -> None:
        try:
            theme = load_theme(self.prefs_file)
        except (OSError, ValueError) as exc:
            self.notify(str(exc), title="Theme not loaded", severity="warning")
            theme = None
        if theme in self.available_themes:
            self.theme = theme
        self.theme_changed_signal.subscribe(self, self._remember_theme)

    def _remember_theme(self, theme: Theme) -> None:
        """Keep the theme chosen in the palette for the next run."""
        try:
            save_theme(self.prefs_file, theme.name)
        except OSError as exc:
            self.notify(str(exc), title="Theme not remembered", severity="warning")

    def _load_keymap(self) -> None:
        try:
            self._keymap = load_keymap(self.keymap_file)
        except (OSError, ValueError) as exc:
            self.notify(str(exc), title="Keymap not loaded", severity="error")
            return
        if self._keymap:
            self.set_keymap(self._keymap)

    def _start_log_file(self, path: str) -> None:
        from mockllm_tui.core.request_log import RequestLogWriter

        sink = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed when the worker ends

        async def write() -> None:
            try:
                await RequestLogWriter(self.store, [sink], self.log_format).run()
            finally:
                sink.close()

        self.start_worker(write(), "writing the request log file")

    async def on_unmount(self) -> None:
        self.workers.cancel_all()
        await self.handle.stop()
        self.store.unsubscribe(self.subscription)

    # -- observing the store -------------------------------------------------------------------

    def drain(self) -> None:
        """Render the batch of store events since the last tick (every other tick under load: each
        repaint shares the loop with the server)."""
        if self._resting:
            self._resting = False
            return
        with contextlib.suppress(NoMatches):  # the timer fired while the app was closing
            self._drain()
            if isinstance(self.store, MirrorStore):
                self._show_connection(self.store)

    def _show_connection(self, mirror: MirrorStore) -> None:
        """Attached: say in the status bar when the server cannot be reached."""
        text = None if mirror.connected else mirror.connection
        if text != self._connection_shown:
            self._connection_shown = text
            self.status_bar.show_connection(text)

    def needs_server(self) -> bool:
        """Attached and the server cannot be reached now: say `not connected` (True); else False."""
        if isinstance(self.store, MirrorStore) and not self.store.connected:
            self.notify("not connected", title=self.store.connection, severity="warning", timeout=3)
            return True
        return False

    def _drain(self) -> None:
        lost = self.subscription.overflowed
        events = self.subscription.drain()
        self._resting = len(events) > BUSY_EVENTS
        log = self.log_view
        touched: dict[int, JournalEntry] = {}
        rules_changed = knobs_changed = file_changed = cleared = state_changed = False
        for kind, payload in events:
            if kind in ("request", "chunk", "done"):
                touched[payload.id] = payload
            elif kind == "rules":
                rules_changed = True
            elif kind == "knobs":
                knobs_changed = True
            elif kind == "file":
                file_changed = True
                if payload:
                    self.notify(str(payload), title="Responses file not loaded", severity="error", timeout=8)
            elif kind == "notice":  # a sentence of its own: the file followed, the shared state lost or back
                file_changed = True
                self.notify(str(payload), timeout=8)
            elif kind == "journal_cleared":
                cleared = True
            elif kind == "state":
                state_changed = True
        if lost or cleared:
            log.reload(self.store.journal())
        else:
            log.ingest(touched.values())
        log.animate_open()
        if self.detail.pending or (self.selected is not None and (self.selected.open or self.selected.id in touched)):
            self.detail.refresh_entry()
            self._complete_selected()
        if rules_changed or file_changed:
            known = {view.id for view in self.rule_table.views}
            self.rule_table.show_rules()
            self._show_file()
            if self.store.knobs.record:
                self._select_recorded(known)
        elif touched:
            self.rule_table.hits_changed()
        if knobs_changed:
            self._show_knobs()
        if state_changed or lost:
            self.status_bar.show_state(self.store.state.mode)
        if events:
            self.status_bar.show_counts(self.store.counters)

    def _select_recorded(self, known: set[int]) -> None:
        """While recording, highlight the newest rule (a recorded one), ready to edit."""
        added = [view.id for view in self.rule_table.views if view.id not in known]
        if known and added:
            self.rule_table.select_id(max(added))

    def sample_rate(self) -> None:
        """Requests that arrived in the last second, for the sparkline."""
        with contextlib.suppress(NoMatches):  # the timer fired while the app was closing
            total = arrived_count(self.store.counters, with_probes=self.status_bar.with_probes)
            self.status_bar.push_rate(max(0, total - self._last_total))
            self._last_total = total

    def show_store_state(self) -> None:
        """Show everything the store holds now (on mount, and after a lost batch)."""
        self._show_file()
        self._show_knobs()
        self.status_bar.show_state(self.store.state.mode)
        self.status_bar.show_counts(self.store.counters)
        self.rule_table.show_rules()

    def _show_file(self) -> None:
        from mockllm_tui.rules.commands import rules_file

        self.status_bar.show_file(rules_file(self.store), self.store.file_error)

    def _show_knobs(self) -> None:
        knobs = self.store.knobs
        pending = self.store.fail_next[0]
        self.status_bar.show_knobs(knobs, pending, self.store.config.upstream_hosts())
        self.controls.show(knobs, pending)

    # -- messages from the widgets -------------------------------------------------------------

    def on_request_log_entry_selected(self, message: RequestLog.EntrySelected) -> None:
        log = self.log_view
        before = self.selected
        self.selected = None if message.entry_id is None else log.rows_by_id.get(message.entry_id)
        with contextlib.suppress(NoMatches, ScreenStackError):  # the log moved while the app was closing
            self.detail.show(self.selected, following=log.follow)
            if (before is None) != (self.selected is None):
                self.refresh_bindings()  # the request keys show in the footer while a request is selected
        self._complete_selected()

    def _complete_selected(self) -> None:
        """Attached: read what the event stream leaves out of the selected request (a fallback's
        near misses), then show it."""
        entry, mirror = self.selected, self.store
        if entry is not None and isinstance(mirror, MirrorStore) and mirror.lacks_near_misses(entry):

            async def fetch() -> None:
                if await mirror.fetch_near_misses(entry) and self.selected is entry:
                    self.detail.refresh_entry(force=True)

            self.start_worker(fetch(), f"reading request #{entry.id}'s near misses")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The main screen's keys work only there, and not while typing in a field (the key is then
        typed); the keys that act on a request are offered only while one is selected."""
        if action in MAIN_SCREEN_ACTIONS and (len(self.screen_stack) > 1 or isinstance(self.focused, TEXT_FIELDS)):
            return False
        if action in REQUEST_ACTIONS:
            return self.selected is not None
        return True

    def on_request_log_filter_changed(self, message: RequestLog.FilterChanged) -> None:
        self.log_view.reload(self.store.journal())
        with_probes = shows_probes(message.query)
        if with_probes != self.status_bar.with_probes:
            self.status_bar.count_probes(with_probes)
            self._last_total = arrived_count(self.store.counters, with_probes=with_probes)

    def on_controls_knobs_requested(self, message: Controls.KnobsRequested) -> None:
        self.set_knobs(message.values)

    def on_controls_fail_next_requested(self, message: Controls.FailNextRequested) -> None:
        if self.needs_server():
            return
        try:
            self.store.set_fail_next(message.count, message.status)
        except (NotConnected, ValueError) as exc:  # attached: unreachable, or refused
            self.notify(str(exc), severity="warning")
            return
        self.notify(f"The next {message.count} request(s) fail with {message.status or 'the error status'}")

    def on_controls_invalid(self, message: Controls.Invalid) -> None:
        self.notify(message.message, title="Not a valid value", severity="error")

    def set_knobs(self, values: dict[str, Any]) -> bool:
        """Send live knob values to the store; a bad value is shown, not raised."""
        if self.needs_server():
            return False
        try:
            self.store.set_knobs("live", values)
        except KnobError as exc:
            self.notify(str(exc), title="Not a valid value", severity="error")
            return False
        except NotConnected as exc:
            self.notify(str(exc), severity="warning")
            return False
        self._show_knobs()  # at once, not at the next tick: the key's effect shows sooner
        return True

    # -- actions -------------------------------------------------------------------------------

    def action_latency_up(self) -> None:
        """Latency one step up."""
        self.set_knobs({"latency_ms": step_up(self.store.knobs.latency_ms, LATENCY_STEPS_MS)})

    def action_latency_down(self) -> None:
        """Latency one step down."""
        self.set_knobs({"latency_ms": step_down(self.store.knobs.latency_ms, LATENCY_STEPS_MS)})

    def action_faster(self) -> None:
        """Streams one step faster (past the top: unlimited)."""
        self._set_speed(faster(self.store.knobs.stream_speed))

    def action_slower(self) -> None:
        """Streams one step slower (from unlimited: the top finite step)."""
        self._set_speed(slower(self.store.knobs.stream_speed))

    def _set_speed(self, speed: float) -> None:
        if self.set_knobs({"stream_speed": speed}):
            self.notify(f"Stream speed {speed_label(speed)}", timeout=1.5)

    def action_toggle_errors(self) -> None:
        """Error injection on or off (at the rate in the toggles)."""
        on = self.store.knobs.error_rate <= 0
        self.set_knobs({"error_rate": self.controls.armed_rate if on else 0.0})

    def action_toggle_record(self) -> None:
        """Recording of upstream answers on or off (the `record` knob)."""
        on = not self.store.knobs.record
        if self.set_knobs({"record": on}):
            where = "" if self.store.config.upstreams else " (no --upstream is set: nothing is forwarded)"
            self.notify(f"Recording {'on' if on else 'off'}{where}", timeout=2)

    async def action_add_rule(self) -> None:
        """Add a rule through the editor."""
        if self.needs_server():
            return
        await rule_editor_ready(self)  # keys typed meanwhile wait, then go to the editor's field
        self.rule_table.action_add()

    async def action_edit_rule(self) -> None:
        """Edit the selected rule; from the log, the rule that answered the selected request."""
        if self.needs_server():
            return
        await rule_editor_ready(self)
        if self._from_log():
            if (view := self._answering_rule()) is not None:
                self.rule_table.edit(view)
            return
        self.rule_table.action_edit()

    def action_delete_rule(self) -> None:
        """Delete the selected rule, after a confirmation; from the log, the rule that answered the
        selected request (as `e` edits it)."""
        if self.needs_server():
            return
        if self._from_log():
            if (view := self._answering_rule()) is not None:
                self.rule_table.delete(view)
            return
        self.rule_table.action_delete()

    def _from_log(self) -> bool:
        """Whether a rule key acts on the request selected in the log (the log has focus)."""
        return self.focused is self.log_view and self.selected is not None

    def _answering_rule(self) -> RuleView | None:
        """The rule that answered the selected request, or None after saying it has none of its own."""
        entry = self.selected
        assert entry is not None
        view = self.rule_table.view_for(entry)
        if view is None or view.kind == "default":
            answer = f"the fallback ({entry.rule})" if entry.rule else "no rule"
            self.notify(f"Request #{entry.id} got {answer}: n makes a rule for it", severity="warning")
            return None
        return view

    def action_try_prompt(self) -> None:
        """Try a prompt against the rules."""
        if not self.needs_server():
            self.rule_table.action_try()

    def _selected_or_say(self) -> JournalEntry | None:
        """The selected request, or None after saying that one is needed."""
        if self.selected is None:
            self.notify("Select a request first", severity="warning")
        return self.selected

    async def action_rule_from_request(self) -> None:
        """A new rule that answers the selected request: the editor filled from it."""
        if self.needs_server():
            return
        await rule_editor_ready(self)
        if (entry := self._selected_or_say()) is not None:
            self.rule_table.rule_from(entry)

    def action_toggle_wire(self) -> None:
        """The detail pane: the reply's text, or the reply as sent (a stream's chunk timeline)."""
        self.detail.toggle_wire()

    def action_copy_curl(self) -> None:
        """Copy the selected request as a curl command."""
        if (entry := self._selected_or_say()) is not None:
            self.copy_to_clipboard(curl_command(entry, self.root_url))
            self.notify(f"Copied request #{entry.id} as curl (keys redacted)")

    def action_resend(self) -> None:
        """Send the selected request again."""
        if (entry := self._selected_or_say()) is not None and not self.needs_server():
            self.start_worker(self._resend(entry), f"re-sending request #{entry.id}")

    async def _resend(self, entry: JournalEntry) -> None:
        import httpx

        headers = resend_headers(entry, self.store.knobs.api_key)
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(self.store.knobs.timeout_cap_s + 5)) as client:
                response = await client.request(
                    entry.method, self.root_url + entry.path, content=entry.request_body, headers=headers
                )
                await response.aread()
        except httpx.HTTPError as exc:
            self.notify(f"Re-send of #{entry.id} failed: {exc}", severity="error")
            return
        self.notify(f"Re-sent #{entry.id}: {response.status_code}")

    def action_save_settings(self) -> None:
        """Write the live knob values into `settings:` in the responses file."""
        values = self.store.knob_layer("live")
        if not values:
            self.notify("No live changes to save", severity="warning")
            return
        if not self.store.config.responses_path:
            self.notify("No responses file to save into", severity="error")
            return
        if self.needs_server():
            return
        from mockllm_tui.rules.commands import RuleError

        try:
            result = self.rules.save_settings(values)
        except RuleError as exc:
            self.notify(str(exc), title="Settings not saved", severity="error")
            return
        except NotConnected as exc:
            self.notify(str(exc), severity="warning")
            return
        if result.message:
            self.notify(result.message, title="Settings not written", severity="warning")
            return
        self.notify(f"Saved {', '.join(sorted(values))} into {Path(self.store.config.responses_path).name}")

    def action_export(self) -> None:
        """Write the journal as JSON lines to a new file."""
        path = self.export_dir / time.strftime("mockllm-journal-%Y%m%d-%H%M%S.jsonl")
        entries = self.store.journal()
        try:
            with path.open("w", encoding="utf-8") as out:
                out.writelines(export_line(e) + "\n" for e in entries)
        except OSError as exc:
            self.notify(str(exc), title="Export failed", severity="error")
            return
        self.notify(f"Exported {len(entries)} requests to {path}", title="Journal exported", timeout=8)

    def action_clear_journal(self) -> None:
        """Forget the journal and reset the counters."""
        if self.needs_server():
            return
        try:
            self.store.clear_journal()
        except (NotConnected, ValueError) as exc:
            self.notify(str(exc), title="Journal not cleared", severity="warning")

    def action_save_rules_file(self) -> None:
        """Attached: save the server's rules file to a local path (asked for; default ./responses.yml)."""
        if not isinstance(self.store, MirrorStore):
            self.notify("w saves the rules file of a server this panel is attached to (--attach)", timeout=4)
            return
        if self.needs_server():
            return
        from mockllm_tui.tui.screens.save_path import SavePathScreen

        mirror = self.store

        def chosen(path: str | None) -> None:
            if path:
                self.save_rules_file(mirror, Path(path))

        self.push_screen(SavePathScreen("Save the server's rules file to", "./responses.yml"), chosen)

    def save_rules_file(self, mirror: MirrorStore, path: Path) -> None:
        """Fetch the server's rules file and write it to `path` (surgically when it exists)."""
        from mockllm_tui.remote.rules_file import save_rules_text
        from mockllm_tui.rules.model import RuleError, RulesFileError

        try:
            text, _ = mirror.client.text("/_mock/rules/file")
            message = save_rules_text(path, text)
        except (NotConnected, RuleError, RulesFileError, OSError) as exc:
            self.notify(str(exc), title="Rules file not saved", severity="error")
            return
        self.notify(message, title="Rules file", timeout=6)

    def action_help(self) -> None:
        """Show every key."""
        self.push_screen(HelpScreen(self.help_sections()))

    # -- help and the palette ------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        """http://host:port, without /v1."""
        return self.handle.url.removesuffix("/v1")

    def _keys(self, binding: Binding) -> str:
        keys = self._keymap.get(binding.id or "", binding.key) if binding.id else binding.key
        return ", ".join(self.get_key_display(Binding(k.strip(), "")) for k in keys.split(","))

    def binding_groups(self) -> list[tuple[str, DOMNode, list[Binding]]]:
        """The bindings, grouped by where they work, with the node whose actions they run."""
        groups: list[tuple[str, DOMNode, list[Any]]] = [
            ("Anywhere on the main screen (except while typing in a field)", self, self.BINDINGS),
            ("Request log", self.log_view, RequestLog.BINDINGS),
            ("Responses table", self.rule_table, RuleTable.BINDINGS),
            ("Rule editor", self, RuleEditor.BINDINGS),
        ]
        return [(title, node, [b for b in found if isinstance(b, Binding)]) for title, node, found in groups]

    def help_sections(self) -> HelpSections:
        """The keys, grouped by where they work (remapped keys shown as remapped)."""
        sections: HelpSections = []
        for title, _, bindings in self.binding_groups():
            sections.append(
                (title, [(self._keys(b), b.tooltip or b.description, b.id or "") for b in bindings if b.description])
            )
        sections[0][1].extend(
            [("ctrl+p", "Command palette: every action by name, and the theme", ""), ("ctrl+q", "Quit", "")]
        )
        return sections

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's palette entries (theme, screenshot, ...) but those the panel offers itself."""
        return (c for c in super().get_system_commands(screen) if c.title not in SYSTEM_COMMANDS_OFFERED)

    def palette_commands(self) -> list[PaletteCommand]:
        """Every action, for the command palette: its title, help and key come from its binding
        (a remapped key shows as remapped)."""
        commands: list[PaletteCommand] = []
        for _, node, bindings in self.binding_groups()[:3]:
            for b in bindings:
                if b.id and b.tooltip:
                    _, name, params = parse_action(b.action)
                    run = partial(getattr(node, f"action_{name}"), *params)  # the palette is a dialog: no check_action
                    commands.append((b.description, f"{b.tooltip} ({self._keys(b)})", run))
        commands.append(("Fail next request", "Arm 'fail next' with the count in the toggles", self.controls._arm))
        return commands
