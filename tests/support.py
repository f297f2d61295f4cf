"""Helpers shared between test files."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from textual.widgets import Static

from mockllm_tui.core.conversation import Conversation, Reply

DEFAULT_TEXT = "This is a mock response from mockllm-tui."


@dataclass(slots=True)
class FixedReplies:
    """A reply source for tests: one text for every conversation, or the last user message when `mirror`."""

    text: str = DEFAULT_TEXT
    mirror: bool = False

    def choose(self, conversation: Conversation) -> Reply:
        """The fixed (or mirrored) reply."""
        if self.mirror and conversation.last_user_text():
            return Reply(text=conversation.last_user_text(), rule="mirror")
        return Reply(text=self.text, rule="default")


def rendered(widget: Static) -> str:
    """The plain text a Static shows."""
    console = Console(width=max(widget.size.width, 40), record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(widget.content)
    return console.export_text()
