"""The rule editor: a modal form for one rule (match kind and pattern, reply or replies, a tool call,
an error, per-rule latency and speed).

It opens with the cursor in the pattern; the reply field follows it. `ctrl+s` saves from anywhere
in the form and `escape` cancels. A new rule's name follows the text it matches (`capital-of-france`)
until the user edits the name. The form only builds the rule's data: the caller's `submit`
makes the change and returns an error message when the change is refused (the form stays open).

The app has one editor, built and mounted ahead of its first use and refilled for each rule
(`open_rule_editor`): a new screen of this size costs about three times as much to show, and keys
typed before it is drawn would reach a form with nothing focused yet.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, ClassVar, cast

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, TextArea

from mockllm_tui.rules.commands import RuleView

TEXT_KINDS: tuple[str, ...] = ("exact", "contains", "regex", "system", "tool_result")
PROMPT_KINDS: tuple[str, ...] = ("exact", "contains")  # the kinds whose text a default name is made from
ANYTHING = "anything"
SEPARATOR = "---"
EDITOR_SCREEN = "rule-editor"  # the name the app's one editor is installed under
Submit = Callable[[dict[str, Any]], str | None]
NameFor = Callable[[str], str | None]
# The form's text inputs: (key in `fields()`, widget id)
TEXT_INPUTS: tuple[tuple[str, str], ...] = (
    ("pattern", "pattern"),
    ("model", "model"),
    ("name", "rule-name"),
    ("tool_name", "tool-name"),
    ("tool_args", "tool-args"),
    ("error_status", "error-status"),
    ("error_message", "error-message"),
    ("latency_ms", "latency"),
    ("stream_speed", "speed"),
)


def _not_loaded(data: dict[str, Any]) -> str | None:
    return "the editor was opened without a rule to save"


class FormError(ValueError):
    """A field of the form holds something that cannot be a rule."""


def _number(raw: str, name: str) -> float | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise FormError(f"{name}: expected a number, got {raw!r}") from None


def hidden_conditions(original: dict[str, Any] | None) -> dict[str, Any]:
    """The match conditions of a rule that the form does not show (kept as they are)."""
    return {k: v for k, v in (original or {}).get("match", {}).items() if k not in (*TEXT_KINDS, "model")}


def build_rule_data(fields: dict[str, Any], original: dict[str, Any] | None = None) -> dict[str, Any]:
    """The rich-form data of the rule in the form (conditions and the `thinking` text, which the
    form does not show, are kept)."""
    match: dict[str, Any] = hidden_conditions(original)
    kind, pattern = fields["kind"], fields["pattern"]
    if kind != ANYTHING:
        if not pattern:
            raise FormError(f"give the text to match ({kind}), or choose 'anything'")
        match[kind] = pattern
    if fields["model"].strip():
        match["model"] = fields["model"].strip()
    data: dict[str, Any] = {"match": match}
    if fields["name"].strip():
        data["name"] = fields["name"].strip()
    reply = fields["reply"]
    tool = fields["tool_name"].strip()
    status = fields["error_status"].strip()
    if fields["sequence"]:
        parts = [p.strip("\n") for p in reply.split(f"\n{SEPARATOR}\n")]
        data["replies"] = [p for p in parts if p]
    elif reply or not (tool or status):
        data["reply"] = reply
    if tool:
        try:
            arguments = json.loads(fields["tool_args"]) if fields["tool_args"].strip() else {}
        except ValueError as exc:
            raise FormError(f"tool arguments: not JSON ({exc})") from None
        data["tool_calls"] = [{"name": tool, "arguments": arguments}]
    if status:
        if not status.isdigit():
            raise FormError(f"error status: expected a number like 500, got {status!r}")
        data["error"] = {"status": int(status), "message": fields["error_message"] or "Error from mockllm-tui"}
    elif (original or {}).get("thinking") is not None:
        data["thinking"] = (original or {})["thinking"]
    for key, name in (("latency_ms", "latency"), ("stream_speed", "speed")):
        value = _number(fields[key], name)
        if value is not None:
            data[key] = value
    return data


class RuleEditor(ModalScreen[None]):
    """Edit one rule (or a new one when `view` is None)."""

    DEFAULT_CSS = """
    RuleEditor { align: center middle; background: $background; }
    RuleEditor > Vertical { width: 96; height: auto; max-height: 95%; border: thick $accent;
        background: $surface; padding: 0 1; }
    RuleEditor VerticalScroll { height: auto; max-height: 30; }
    RuleEditor Horizontal { height: auto; }
    RuleEditor .name { width: 10; padding-top: 1; text-style: bold; }
    RuleEditor #kind { width: 18; }
    RuleEditor #pattern { width: 1fr; }
    RuleEditor #reply { height: 7; width: 1fr; }
    RuleEditor #sequence { margin-left: 10; }
    RuleEditor #model, RuleEditor #rule-name { width: 30; }
    RuleEditor #tool-name { width: 24; }
    RuleEditor #tool-args { width: 1fr; }
    RuleEditor #error-status { width: 12; }
    RuleEditor #error-message { width: 1fr; }
    RuleEditor #latency, RuleEditor #speed { width: 14; }
    RuleEditor .hint { color: $text-muted; padding: 1 1 0 1; }
    RuleEditor #form-error { color: $error; height: auto; padding-left: 10; }
    RuleEditor #buttons { align-horizontal: right; height: 3; }
    RuleEditor Button { margin-left: 1; }
    """

    BINDINGS: ClassVar[list[Any]] = [
        Binding("ctrl+s", "save", "Save", id="editor.save", priority=True),
        Binding("escape", "cancel", "Cancel", id="editor.cancel"),
    ]

    def __init__(self) -> None:
        """An empty editor: `load` fills it for one rule before it is shown."""
        super().__init__()
        self.view: RuleView | None = None
        self.submit: Submit = _not_loaded
        self.original: dict[str, Any] | None = None
        self.default_kind = "exact"
        self.prefilled = False
        self.title_text = "New rule"
        self.name_for: NameFor | None = None
        self.auto_name = ""
        self.mounted = asyncio.Event()
        self._styles_stale = False

    def load(
        self,
        view: RuleView | None,
        submit: Submit,
        *,
        default_kind: str = "exact",
        prefill: dict[str, Any] | None = None,
        title: str | None = None,
        name_for: NameFor | None = None,
    ) -> None:
        """Edit `view`, or make a new rule (from `prefill`, rich-form data, when given: the cursor
        then starts in the reply, and match conditions the form does not show are kept).
        `name_for` makes a default name from the text to match, for a new rule."""
        self.name_for = name_for if view is None else None
        self.auto_name = (prefill or {}).get("name") or ""
        self.view = view
        self.submit = submit
        self.original = view.spec.to_data() if view is not None else prefill
        self.default_kind = default_kind
        self.prefilled = view is None and prefill is not None
        self.title_text = title or (f"Edit rule {view.label}" if view is not None else "New rule")
        if self.is_mounted:
            self._fill()

    def _initial(self) -> dict[str, Any]:
        data = self.original or {}
        match = data.get("match", {})
        kind = next((k for k in TEXT_KINDS if k in match), ANYTHING if data else self.default_kind)
        replies = data.get("replies")
        tool = (data.get("tool_calls") or [{}])[0]
        error = data.get("error") or {}
        return {
            "kind": kind,
            "pattern": match.get(kind, "") if kind != ANYTHING else "",
            "model": match.get("model", ""),
            "name": data.get("name") or "",
            "reply": f"\n{SEPARATOR}\n".join(replies) if replies is not None else data.get("reply", ""),
            "sequence": replies is not None,
            "tool_name": tool.get("name", ""),
            "tool_args": json.dumps(tool["arguments"]) if tool.get("arguments") else "",
            "error_status": str(error.get("status", "")),
            "error_message": error.get("message", ""),
            "latency_ms": "" if data.get("latency_ms") is None else f"{data['latency_ms']:g}",
            "stream_speed": "" if data.get("stream_speed") is None else f"{data['stream_speed']:g}",
        }

    def compose(self) -> ComposeResult:
        kinds = [(k, k) for k in (*TEXT_KINDS, ANYTHING)]
        with Vertical(id="editor-box"), VerticalScroll():
            with Horizontal():
                yield Label("Match", classes="name")
                yield Select(kinds, value=self.default_kind, allow_blank=False, id="kind")
                yield Input(placeholder="the text to match", id="pattern")
            with Horizontal():
                yield Label("Reply", classes="name")
                yield TextArea(id="reply", soft_wrap=True, tab_behavior="focus")
            yield Checkbox(f"a sequence: one reply after another, separated by lines of {SEPARATOR}", id="sequence")
            with Horizontal():
                yield Label("Model", classes="name")
                yield Input(placeholder="any (glob, e.g. gpt-4*)", id="model")
                yield Label("Name", classes="hint")
                yield Input(placeholder="optional", id="rule-name")
            with Horizontal():
                yield Label("Tool call", classes="name")
                yield Input(placeholder="tool name", id="tool-name")
                yield Input(placeholder='arguments as JSON, e.g. {"city": "Paris"}', id="tool-args")
            with Horizontal():
                yield Label("Error", classes="name")
                yield Input(placeholder="status", id="error-status", type="integer")
                yield Input(placeholder="message", id="error-message")
            with Horizontal():
                yield Label("Latency", classes="name")
                yield Input(placeholder="ms", id="latency", type="number")
                yield Label("Speed", classes="hint")
                yield Input(placeholder="tok/s", id="speed", type="number")
                yield Label("(empty: the live toggles)", classes="hint")
            yield Label("", id="form-error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="save", variant="primary")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "pattern":
            self._suggest_name()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "kind":
            self._suggest_name()

    def _suggest_name(self) -> None:
        """Fill the name from the text to match, unless the user has changed the name."""
        if self.name_for is None:
            return
        name = self.query_one("#rule-name", Input)
        if name.value != self.auto_name:
            return
        kind = self.query_one("#kind", Select).value
        pattern = self.query_one("#pattern", Input).value
        self.auto_name = (self.name_for(pattern) if kind in PROMPT_KINDS else None) or ""
        name.value = self.auto_name

    def on_mount(self) -> None:
        self._fill()
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)
        self.mounted.set()

    def _theme_changed(self, _theme: object) -> None:
        self._styles_stale = True

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        """Shown again: its styles are as they were unless the theme changed meanwhile (styling the
        whole form anew is a third of the time it takes to show)."""
        event.refresh_styles = self._styles_stale
        self._styles_stale = False

    def _fill(self) -> None:
        """Show the loaded rule in the form and put the cursor where typing starts (the form may not
        be on screen yet: keys typed before it is drawn go to that field)."""
        v = self._initial()
        box = self.query_one("#editor-box", Vertical)
        box.border_title = self.title_text
        kept = " · ".join(f"also {k} {v}" for k, v in hidden_conditions(self.original).items())
        box.border_subtitle = (f"{kept} · " if kept else "") + "ctrl+s save · escape cancel"
        self.query_one("#kind", Select).value = v["kind"]
        for key, widget in TEXT_INPUTS:
            field = self.query_one(f"#{widget}", Input)
            field.value = v[key]
            field.cursor_position = len(field.value)
        reply = self.query_one("#reply", TextArea)
        reply.load_text(v["reply"])
        self.query_one("#sequence", Checkbox).value = v["sequence"]
        self.query_one("#form-error", Label).update("")
        self.query_one(VerticalScroll).scroll_home(animate=False)
        if self.prefilled:
            self.set_focus(reply)
            reply.move_cursor(reply.document.end)
        else:
            pattern = self.query_one("#pattern", Input)
            self.set_focus(pattern)
            pattern.select_all()  # as focusing it does: typing replaces the text

    def fields(self) -> dict[str, Any]:
        """The form's raw values."""
        text = {key: self.query_one(f"#{widget}", Input).value for key, widget in TEXT_INPUTS}
        return {
            **text,
            "kind": self.query_one("#kind", Select).value,
            "reply": self.query_one("#reply", TextArea).text,
            "sequence": self.query_one("#sequence", Checkbox).value,
        }

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        """Make the change; stay open with the message when it is refused."""
        try:
            data = build_rule_data(self.fields(), self.original)
        except FormError as exc:
            self._show_error(str(exc))
            return
        error = self.submit(data)
        if error:
            self._show_error(error)
            return
        self.dismiss(None)

    def _show_error(self, message: str) -> None:
        self.query_one("#form-error", Label).update(message)
        self.notify(message, title="Rule not saved", severity="error")

    def action_cancel(self) -> None:
        """Close without a change."""
        self.dismiss(None)


def shared_editor(app: App[Any]) -> RuleEditor:
    """The app's one rule editor (installed on first use, then reused)."""
    if not app.is_screen_installed(EDITOR_SCREEN):
        app.install_screen(RuleEditor(), EDITOR_SCREEN)
    return cast(RuleEditor, app.get_screen(EDITOR_SCREEN))


def prepare_rule_editor(app: App[Any]) -> None:
    """Build and mount the editor ahead of its first use, without showing it: pushed and popped
    in one go, nothing is drawn in between, and its widgets mount in the background."""
    editor = shared_editor(app)
    if not editor.is_running and editor not in app.screen_stack:
        app.push_screen(editor)
        app.pop_screen()


async def rule_editor_ready(app: App[Any]) -> None:
    """Wait until the editor's form exists (at once, after the first time)."""
    editor = shared_editor(app)
    if not editor.is_mounted:
        prepare_rule_editor(app)
        await editor.mounted.wait()


def open_rule_editor(
    app: App[Any],
    view: RuleView | None,
    submit: Submit,
    *,
    default_kind: str = "exact",
    prefill: dict[str, Any] | None = None,
    title: str | None = None,
    name_for: NameFor | None = None,
) -> RuleEditor:
    """Show the editor for `view` (a new rule when None): see `RuleEditor.load`. An editor already
    open keeps what is typed in it."""
    editor = shared_editor(app)
    if editor in app.screen_stack:
        return editor
    editor.load(view, submit, default_kind=default_kind, prefill=prefill, title=title, name_for=name_for)
    app.push_screen(editor)
    return editor
