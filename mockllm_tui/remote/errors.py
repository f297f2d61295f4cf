"""Why an attached panel's command did not run."""

from __future__ import annotations

from mockllm_tui.rules.model import RuleError


class NotConnected(ConnectionError):
    """The server cannot be reached now: the command was not sent (or got no answer)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("not connected" + (f" ({detail})" if detail else ""))


class RefusedCommand(RuleError):
    """The server refused a command: its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
