"""The filter prompt for the request log."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class FilterScreen(ModalScreen[str | None]):
    """Asks for a filter; enter applies it (empty clears), escape keeps the old one."""

    DEFAULT_CSS = """
    FilterScreen { align: center middle; }
    FilterScreen > Vertical { width: 70; height: auto; border: thick $accent; background: $surface; padding: 1 2; }
    FilterScreen Label { color: $text-muted; }
    """

    BINDINGS: ClassVar[list[Any]] = [Binding("escape", "cancel", "Cancel", id="filter.cancel")]

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Filter requests: words, status:5, model:gpt, rule:greeting (empty shows all)")
            yield Input(self.current, placeholder="filter", id="filter-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        """Close without changing the filter."""
        self.dismiss(None)
