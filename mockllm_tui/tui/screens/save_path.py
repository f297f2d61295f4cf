"""Where to save a file: a path, filled in with a default; enter confirms, escape cancels."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class SavePathScreen(ModalScreen[str | None]):
    """Asks for a path (dismissed with it, or None when cancelled)."""

    DEFAULT_CSS = """
    SavePathScreen { align: center middle; }
    SavePathScreen > Vertical { width: 70; height: auto; border: thick $accent; background: $surface; padding: 1 2; }
    SavePathScreen Label { color: $text-muted; }
    """

    BINDINGS: ClassVar[list[Any]] = [Binding("escape", "cancel", "Cancel", id="save_path.cancel")]

    def __init__(self, question: str, default: str) -> None:
        super().__init__()
        self.question = question
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"{self.question} (enter saves; escape cancels)")
            yield Input(self.default, id="save-path")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        """Close without saving."""
        self.dismiss(None)
