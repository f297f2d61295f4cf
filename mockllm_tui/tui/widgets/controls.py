"""The toggles: latency, streaming speed and chunking, error injection and "fail next N"."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Checkbox, Input, Label, Select

from mockllm_tui.core.knobs import CHUNK_MODES, ERROR_MODES, Knobs
from mockllm_tui.tui.format import errors_label, speed_label

DEFAULT_ERROR_RATE = 1.0


def parse_statuses(raw: str) -> list[int]:
    """Statuses from "500" or "500, 503" (ValueError on anything else)."""
    return [int(part) for part in raw.replace(",", " ").split()]


def parse_rate(raw: str) -> float:
    """A fraction in [0, 1] from "0.25", "25%" or "25"."""
    text = raw.strip()
    value = float(text.rstrip("%"))
    if text.endswith("%") or value > 1:
        value /= 100
    return value


class Controls(Vertical):
    """The knob controls. It shows what the app gives it and posts what the user asks for."""

    DEFAULT_CSS = """
    Controls { height: auto; border: round $primary-darken-2; padding: 0 1; }
    Controls:focus-within { border: round $accent; }
    Controls Horizontal { height: 1; }
    Controls Label { width: auto; margin-right: 1; }
    Controls .name { width: 10; text-style: bold; }
    Controls .hint { color: $text-muted; }
    Controls Input { width: 8; margin-right: 1; }
    Controls #errors-status { width: 10; }
    Controls #errors-on { width: 1fr; }
    Controls Select { width: 14; }
    Controls #speed-value { width: 10; text-style: bold; }
    Controls Checkbox { margin-right: 1; }
    Controls Button { margin-right: 1; min-width: 5; }
    """

    class KnobsRequested(Message):
        """The user asked for these knob values (the app sends them to the store)."""

        def __init__(self, values: dict[str, Any]) -> None:
            super().__init__()
            self.values = values

    class FailNextRequested(Message):
        """The user asked to fail the next `count` requests."""

        def __init__(self, count: int, status: int | None) -> None:
            super().__init__()
            self.count = count
            self.status = status

    class Invalid(Message):
        """A field holds something that is not a valid value."""

        def __init__(self, message: str) -> None:
            super().__init__()
            self.message = message

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Toggles"
        self.armed_rate = DEFAULT_ERROR_RATE

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label("Latency", classes="name")
            yield Input("0", id="latency", type="number", compact=True, tooltip="Latency in ms (enter applies)")
            yield Label("ms   + / - steps", classes="hint")
        with Horizontal():
            yield Label("Speed", classes="name")
            yield Label("∞", id="speed-value")
            yield Label("\\[ slower  ] faster", classes="hint")
        with Horizontal():
            yield Label("Chunks", classes="name")
            yield Select([(m, m) for m in CHUNK_MODES], value="word", allow_blank=False, id="chunk", compact=True)
        with Horizontal():
            yield Label("Errors", classes="name")
            yield Checkbox("off", False, id="errors-on", compact=True, tooltip="Error injection on/off (x)")
        with Horizontal():
            yield Label("", classes="name")
            yield Label("rate", classes="hint")
            yield Input(f"{DEFAULT_ERROR_RATE:g}", id="errors-rate", compact=True, tooltip="0-1 or a percentage")
            yield Label("status", classes="hint")
            yield Input("500", id="errors-status", compact=True, tooltip="One status, or several separated by commas")
        with Horizontal():
            yield Label("", classes="name")
            yield Label("mode", classes="hint")
            yield Select(
                [(m, m) for m in ERROR_MODES], value="before", allow_blank=False, id="errors-mode", compact=True
            )
        with Horizontal():
            yield Label("Fail next", classes="name")
            yield Input("1", id="fail-count", type="integer", compact=True)
            yield Button("Arm", id="fail-arm", variant="warning", compact=True)
            yield Label("", id="fail-pending", classes="hint")

    # -- showing the store's values ------------------------------------------------------------

    def show(self, knobs: Knobs, fail_next: int) -> None:
        """Show the live values (fields being edited keep what the user is typing)."""
        with self.prevent(Checkbox.Changed, Select.Changed):
            self._set_input("#latency", f"{knobs.latency_ms:g}")
            self._set_input("#errors-status", ", ".join(str(s) for s in knobs.error_status))
            self.query_one("#speed-value", Label).update(speed_label(knobs.stream_speed))
            self.query_one("#chunk", Select).value = knobs.stream_chunk
            self.query_one("#errors-mode", Select).value = knobs.error_mode
            errors = self.query_one("#errors-on", Checkbox)
            errors.value = knobs.error_rate > 0
            label = errors_label(knobs)
            if str(errors.label) != label:
                errors.label = label
            if knobs.error_rate > 0:
                self.armed_rate = knobs.error_rate
                self._set_input("#errors-rate", f"{knobs.error_rate:g}")
        self.query_one("#fail-pending", Label).update(f"{fail_next} armed" if fail_next else "")

    def _set_input(self, selector: str, value: str) -> None:
        field = self.query_one(selector, Input)
        if not field.has_focus and field.value != value:
            field.value = value

    # -- user input ----------------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        field = event.input.id
        try:
            if field == "latency":
                self.post_message(self.KnobsRequested({"latency_ms": float(event.value)}))
            elif field == "errors-rate":
                rate = parse_rate(event.value)
                if not 0 <= rate <= 1:
                    raise ValueError("the rate is between 0 and 1 (or 0% and 100%)")
                self.armed_rate = rate or DEFAULT_ERROR_RATE
                if self.query_one("#errors-on", Checkbox).value:
                    self.post_message(self.KnobsRequested({"error_rate": rate}))
            elif field == "errors-status":
                self.post_message(self.KnobsRequested({"error_status": parse_statuses(event.value)}))
            elif field == "fail-count":
                self._arm()
        except ValueError as exc:
            self.post_message(self.Invalid(f"{field}: {exc}"))

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self.post_message(self.KnobsRequested({"error_rate": self.armed_rate if event.value else 0.0}))

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        name = {"chunk": "stream_chunk", "errors-mode": "error_mode"}.get(event.select.id or "")
        if name is not None and event.value is not Select.NULL:
            self.post_message(self.KnobsRequested({name: event.value}))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "fail-arm":
            self._arm()

    def _arm(self) -> None:
        raw = self.query_one("#fail-count", Input).value or "0"
        try:
            count = int(raw)
            statuses = parse_statuses(self.query_one("#errors-status", Input).value)
        except ValueError as exc:
            self.post_message(self.Invalid(f"fail next: {exc}"))
            return
        self.post_message(self.FailNextRequested(count, statuses[0] if statuses else None))
