"""The control panel: a Textual app that runs the server on its own loop and observes the store.

The panel only observes the store (draining its events on a timer, a batch per tick) and sends it
commands. Widgets talk to the app through messages; the app talks to the store.
"""

from __future__ import annotations

import contextlib
import gc
import time
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Protocol

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Footer

from mockllm_tui.core.knobs import KnobError
from mockllm_tui.core.store import JournalEntry, Store
from mockllm_tui.tui.commands import PaletteCommand, PanelCommands
from mockllm_tui.tui.format import (
    LATENCY_STEPS_MS,
    curl_command,
    export_line,
    faster,
    resend_headers,
    slower,
    speed_label,
    step_down,
    step_up,
)
from mockllm_tui.tui.keymap import keymap_path, load_keymap
from mockllm_tui.tui.screens.help import HelpScreen, HelpSections
from mockllm_tui.tui.widgets.controls import Controls
from mockllm_tui.tui.widgets.detail import DetailPane
from mockllm_tui.tui.widgets.request_log import RequestLog
from mockllm_tui.tui.widgets.rule_table import RuleTable
from mockllm_tui.tui.widgets.status_bar import StatusBar

DRAIN_INTERVAL_S = 1 / 10  # each tick repaints the log; at 15 Hz under load that costs the server ~20%
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
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("question_mark,f1", "help", "Help", id="app.help"),
        Binding("plus", "latency_up", "Latency+", id="knobs.latency_up"),
        Binding("minus", "latency_down", "Latency-", id="knobs.latency_down"),
        Binding("left_square_bracket", "slower", "Slower", id="knobs.slower"),
        Binding("right_square_bracket", "faster", "Faster", id="knobs.faster"),
        Binding("x", "toggle_errors", "Errors", id="knobs.errors"),
        Binding("R", "toggle_record", "Record", id="knobs.record"),
        Binding("y", "copy_curl", "Curl", id="request.copy_curl"),
        Binding("r", "resend", "Re-send", id="request.resend"),
        Binding("ctrl+s", "save_settings", "Save", id="app.save_settings"),
        Binding("ctrl+e", "export", "Export", id="app.export", show=False),
        Binding("ctrl+l", "clear_journal", "Clear log", id="app.clear_journal", show=False),
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
    ) -> None:
        super().__init__()
        self.store = store
        self.handle = handle
        self.log_file = log_file
        self.log_format = log_format
        self.watch_file = watch_file
        self.keymap_file = keymap_file if keymap_file is not None else keymap_path()
        self.export_dir = export_dir if export_dir is not None else Path.cwd()
        self.subscription = store.subscribe()
        self.selected: JournalEntry | None = None
        self._last_total = store.counters.total
        self._keymap: dict[str, str] = {}

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(self.handle.url, id="status")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield RequestLog(cap=self.store.journal_size, id="requests")
                yield RuleTable(self.store, id="rules")
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
        await self.handle.start()
        if self.watch_file and self.store.config.responses_path:
            from mockllm_tui.rules import watch_rules

            self.run_worker(watch_rules(self.store, Path(self.store.config.responses_path)), group="watch")
        if self.log_file:
            self._start_log_file(self.log_file)
        self.log_view.reload(self.store.journal())
        self.show_store_state()
        self.log_view.focus()
        self.set_interval(DRAIN_INTERVAL_S, self.drain)
        self.set_interval(RATE_INTERVAL_S, self.sample_rate)
        self.run_worker(self._freeze_long_lived(), group="gc")

    async def _freeze_long_lived(self) -> None:
        """Keep what lives as long as the app (Textual, FastAPI, the widgets) out of the full
        collections, which otherwise pause the loop for ~100 ms every few seconds under load."""
        await self.handle.fully_ready()
        gc.collect()
        gc.freeze()

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

        self.run_worker(write(), group="log-file")

    async def on_unmount(self) -> None:
        self.workers.cancel_all()
        await self.handle.stop()
        self.store.unsubscribe(self.subscription)

    # -- observing the store -------------------------------------------------------------------

    def drain(self) -> None:
        """Render the batch of store events since the last tick."""
        with contextlib.suppress(NoMatches):  # the timer fired while the app was closing
            self._drain()

    def _drain(self) -> None:
        lost = self.subscription.overflowed
        events = self.subscription.drain()
        log = self.log_view
        touched: dict[int, JournalEntry] = {}
        rules_changed = knobs_changed = file_changed = cleared = False
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
            elif kind == "journal_cleared":
                cleared = True
        if lost or cleared:
            log.reload(self.store.journal())
        else:
            log.ingest(touched.values())
        log.animate_open()
        if self.detail.pending or (self.selected is not None and (self.selected.open or self.selected.id in touched)):
            self.detail.refresh_entry()
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
        if events:
            self.status_bar.show_counts(self.store.counters)

    def _select_recorded(self, known: set[int]) -> None:
        """While recording, highlight the newest rule (a recorded one), ready to edit."""
        added = [view.id for view in self.rule_table.views if view.id not in known]
        if known and added:
            self.rule_table.select_id(max(added))

    def sample_rate(self) -> None:
        """Requests in the last second, for the sparkline."""
        total = self.store.counters.total
        with contextlib.suppress(NoMatches):  # the timer fired while the app was closing
            self.status_bar.push_rate(max(0, total - self._last_total))
        self._last_total = total

    def show_store_state(self) -> None:
        """Show everything the store holds now (on mount, and after a lost batch)."""
        self._show_file()
        self._show_knobs()
        self.status_bar.show_counts(self.store.counters)
        self.rule_table.show_rules()

    def _show_file(self) -> None:
        self.status_bar.show_file(Path(self.store.config.responses_path).name, self.store.file_error)

    def _show_knobs(self) -> None:
        knobs = self.store.knobs
        pending = self.store.fail_next[0]
        hosts = self.store.config.upstream_hosts()
        self.status_bar.show_knobs(knobs, pending, knobs.error_rate > 0, hosts)
        self.controls.show(knobs, pending)

    # -- messages from the widgets -------------------------------------------------------------

    def on_request_log_entry_selected(self, message: RequestLog.EntrySelected) -> None:
        log = self.log_view
        self.selected = None if message.entry_id is None else log.rows_by_id.get(message.entry_id)
        self.detail.show(self.selected)

    def on_request_log_filter_changed(self, message: RequestLog.FilterChanged) -> None:
        self.log_view.reload(self.store.journal())

    def on_controls_knobs_requested(self, message: Controls.KnobsRequested) -> None:
        self.set_knobs(message.values)

    def on_controls_fail_next_requested(self, message: Controls.FailNextRequested) -> None:
        self.store.set_fail_next(message.count, message.status)
        self.notify(f"The next {message.count} request(s) fail with {message.status or 'the error status'}")

    def on_controls_invalid(self, message: Controls.Invalid) -> None:
        self.notify(message.message, title="Not a valid value", severity="error")

    def set_knobs(self, values: dict[str, Any]) -> bool:
        """Send live knob values to the store; a bad value is shown, not raised."""
        try:
            self.store.set_knobs("live", values)
        except KnobError as exc:
            self.notify(str(exc), title="Not a valid value", severity="error")
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

    def action_copy_curl(self) -> None:
        """Copy the selected request as a curl command."""
        if self.selected is None:
            self.notify("Select a request first", severity="warning")
            return
        self.copy_to_clipboard(curl_command(self.selected, self.root_url))
        self.notify(f"Copied request #{self.selected.id} as curl (keys redacted)")

    def action_resend(self) -> None:
        """Send the selected request again."""
        if self.selected is None:
            self.notify("Select a request first", severity="warning")
            return
        self.run_worker(self._resend(self.selected), group="resend")

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
        from mockllm_tui.rules.commands import RuleError, save_settings

        try:
            result = save_settings(self.store, None, values)
        except RuleError as exc:
            self.notify(str(exc), title="Settings not saved", severity="error")
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
        self.store.clear_journal()

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

    def help_sections(self) -> HelpSections:
        """The keys, grouped by where they work (remapped keys shown as remapped)."""
        from mockllm_tui.tui.screens.rule_editor import RuleEditor

        groups: list[tuple[str, list[Any]]] = [
            ("Anywhere on the main screen (except while typing in a field)", self.BINDINGS),
            ("Request log", RequestLog.BINDINGS),
            ("Responses table", RuleTable.BINDINGS),
            ("Rule editor", RuleEditor.BINDINGS),
        ]
        sections: HelpSections = []
        for title, bindings in groups:
            rows = [(self._keys(b), b.description) for b in bindings if isinstance(b, Binding) and b.description]
            sections.append((title, rows))
        sections[0][1].extend([("ctrl+p", "Command palette: every action by name"), ("ctrl+q", "Quit")])
        return sections

    def palette_commands(self) -> list[PaletteCommand]:
        """Every action, for the command palette."""
        log = self.log_view
        rules = self.rule_table
        return [
            ("Latency up", "Raise the latency one step (+)", self.action_latency_up),
            ("Latency down", "Lower the latency one step (-)", self.action_latency_down),
            ("Streams faster", "Stream speed one step up; past the top is unlimited (])", self.action_faster),
            ("Streams slower", "Stream speed one step down; from unlimited the top step ([)", self.action_slower),
            ("Toggle error injection", "Error injection on or off (x)", self.action_toggle_errors),
            ("Toggle recording", "Save upstream answers as rules, on or off (R)", self.action_toggle_record),
            ("Fail next request", "Arm 'fail next' with the count in the toggles", self.controls._arm),
            ("Toggle follow", "Follow new requests in the log (f)", log.action_toggle_follow),
            ("Filter requests", "Filter the log by text, status:, model:, rule: (/)", log.action_filter),
            ("Copy request as curl", "The selected request as a curl command (y)", self.action_copy_curl),
            ("Re-send request", "Send the selected request again (r)", self.action_resend),
            ("Add rule", "A new rule in the responses file (a)", rules.action_add),
            ("Edit rule", "Edit the selected rule (e)", rules.action_edit),
            ("Delete rule", "Delete the selected rule (d)", rules.action_delete),
            ("Try a prompt", "Which rule answers a prompt (t)", rules.action_try),
            ("Save settings", "Write the live knob values into settings: (ctrl+s)", self.action_save_settings),
            ("Export journal", "Write the journal as JSON lines (ctrl+e)", self.action_export),
            ("Clear journal", "Forget the requests and reset the counters (ctrl+l)", self.action_clear_journal),
            ("Help", "Every key (? or f1)", self.action_help),
            ("Quit", "Stop the server and quit (q)", partial(self.exit, 0)),
        ]
