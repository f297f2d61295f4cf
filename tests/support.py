"""Helpers shared between test files."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import openai
from rich.console import Console
from textual.pilot import Pilot
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


class PanelDriver:
    """What a test does with a running panel: wait for a condition, send a chat completion.
    Needs `pilot` and `client` attributes (a dataclass's fields)."""

    pilot: Pilot[int]
    client: openai.AsyncOpenAI
    #: Default seconds `until` waits before failing.
    wait_s: ClassVar[float] = 5.0

    async def until(self, condition: Callable[[], bool], timeout: float | None = None) -> None:
        """Let the panel run until `condition` holds (fails after `timeout` seconds)."""
        deadline = time.monotonic() + (self.wait_s if timeout is None else timeout)
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            await self.pilot.pause(0.02)

    async def chat(self, prompt: str, **kwargs: object) -> str:
        """One non-streaming chat completion; its reply text."""
        reply = await self.client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": prompt}],
            **kwargs,  # type: ignore[arg-type]
        )
        return str(reply.choices[0].message.content)
