"""Try a prompt against the rules and see which one wins (no hit is counted)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from mockllm_tui.rules.commands import TryResult


def describe_result(result: TryResult) -> Text:
    """Which rule wins and what it answers."""
    text = Text()
    text.append("Winner: ", style="bold")
    text.append(result.label, style="bold green" if result.rule_id is not None else "bold yellow")
    reply = result.reply
    if reply.error is not None:
        text.append(f"\nerror {reply.error.status}: {reply.error.message}", style="red")
    if reply.text:
        text.append("\n" + reply.text)
    for call in reply.tool_calls:
        text.append(f"\ntool call {call.name}({call.arguments})", style="yellow")
    return text


class TryPromptScreen(ModalScreen[int | None]):
    """Type a prompt (and optionally a model); enter shows the winning rule. Escape closes and
    highlights the last winner in the table."""

    DEFAULT_CSS = """
    TryPromptScreen { align: center middle; }
    TryPromptScreen > Vertical { width: 90; height: auto; border: thick $accent; background: $surface;
        padding: 1 2; }
    TryPromptScreen Horizontal { height: auto; }
    TryPromptScreen #try-prompt { width: 1fr; }
    TryPromptScreen #try-model { width: 24; }
    TryPromptScreen #try-result { margin-top: 1; min-height: 3; }
    TryPromptScreen Label { color: $text-muted; }
    """

    BINDINGS: ClassVar[list[Any]] = [Binding("escape", "close", "Close", id="try.close")]

    def __init__(self, tries: Callable[[str, str | None], TryResult]) -> None:
        super().__init__()
        self.tries = tries
        self.winner: int | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Try a prompt against the rules (enter tries; escape closes)")
            with Horizontal():
                yield Input(placeholder="the user's message", id="try-prompt")
                yield Input(placeholder="model (optional)", id="try-model")
            yield Static(id="try-result")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        prompt = self.query_one("#try-prompt", Input).value
        model = self.query_one("#try-model", Input).value.strip() or None
        try:
            result = self.tries(prompt, model)
        except (ConnectionError, ValueError) as exc:  # attached: not connected, or refused
            self.query_one("#try-result", Static).update(Text(str(exc), style="red"))
            return
        self.winner = result.rule_id
        self.query_one("#try-result", Static).update(describe_result(result))

    def action_close(self) -> None:
        """Close, highlighting the last winner."""
        self.dismiss(self.winner)
