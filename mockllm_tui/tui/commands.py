"""The command palette's provider: every panel action, by name."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any, Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

PaletteCommand = tuple[str, str, Callable[[], Any]]


class HasPaletteCommands(Protocol):
    """An app that lists its commands for the palette."""

    def palette_commands(self) -> list[PaletteCommand]: ...


class PanelCommands(Provider):
    """Offers every action of the panel in the command palette (ctrl+p)."""

    def _commands(self) -> list[PaletteCommand]:
        return cast(HasPaletteCommands, self.app).palette_commands()

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> AsyncGenerator[Hit, None]:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
