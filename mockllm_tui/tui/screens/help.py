"""The help screen: every key, grouped by where it works, as the keymap has them now."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HelpSections = list[tuple[str, list[tuple[str, str, str]]]]  # (title, [(keys, what, binding id)])

INTRO = (
    "mockllm-tui answers LLM API calls (OpenAI, Anthropic, Gemini, Ollama, Azure, Bedrock) from the rules "
    "in the responses file. "
    "Point a client at the URL in the top left. Every change here applies to the next request, "
    "and to streams in flight. Remap keys in ~/.config/mockllm-tui/keymap.yml (or $MOCKLLM_KEYMAP): "
    "binding id: keys (the ids are in the right column)."
)


class HelpScreen(ModalScreen[None]):
    """Keys and a short introduction; escape, q, ? or f1 closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 100; max-height: 90%; height: auto; border: thick $accent;
        background: $surface; padding: 1 2; }
    HelpScreen > VerticalScroll { border-title-align: center; }
    """

    BINDINGS: ClassVar[list[Any]] = [
        Binding("escape,q,question_mark,f1", "close", "Close", id="help.close"),
    ]

    def __init__(self, sections: HelpSections) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        scroll = VerticalScroll()
        scroll.border_title = "mockllm-tui help"
        with scroll:
            yield Static(Text(INTRO), id="help-intro")
            yield Static(self._table(), id="help-keys")

    def _table(self) -> Group:
        parts: list[RenderableType] = []
        for title, rows in self.sections:
            table = Table(box=None, show_header=False, padding=(0, 2))
            table.add_column("keys", style="bold", no_wrap=True, width=22)
            table.add_column("what")
            table.add_column("id", style="dim", no_wrap=True)
            for keys, description, binding_id in rows:
                table.add_row(keys, description, binding_id)
            parts += [Text(""), Text(title, style="bold underline"), table]
        return Group(*parts)

    def action_close(self) -> None:
        """Close the help."""
        self.dismiss(None)
