"""conftest for inner sessions: records every socket that starts listening, and reports them at the end."""

import socket
import sys

import pytest

LISTENS: list[tuple[str, int]] = []
_listen = socket.socket.listen


def listen(self: socket.socket, *args: int) -> None:
    LISTENS.append(self.getsockname()[:2])
    _listen(self, *args)


socket.socket.listen = listen  # type: ignore[method-assign]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    loaded = sorted(m for m in ("uvicorn", "mockllm_tui.http.app", "mockllm_tui.testing") if m in sys.modules)
    terminalreporter.write_line(f"probe: listens={LISTENS} loaded={loaded}")
