"""Sessions: per-client state for requests that send `x-mock-session: ID`, so parallel test runs
sharing one mock never see each other's sequences, scenarios, pending failures or knob overrides.

No header is the default session. Sessions are bounded: the least recently used is forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mockllm_tui.core.knobs import ErrorMode, Knobs

SESSION_HEADER = "x-mock-session"
STRICT_HEADER = "x-mock-strict"
DEFAULT_MAX_SESSIONS = 1_000


def session_of(headers: dict[str, str]) -> str | None:
    """The session a request names (None: the default session)."""
    value = headers.get(SESSION_HEADER)
    return value if value else None


def strict_of(headers: dict[str, str], default: bool) -> bool:
    """Whether strict mode holds for a request: `x-mock-strict: true|false` overrides the server's."""
    value = headers.get(STRICT_HEADER)
    if value is None:
        return default
    value = value.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    return default


@dataclass(slots=True)
class SessionState:
    """What one session keeps for itself.

    `positions` holds `replies:` positions by rule key (the default session keeps its own on the
    rules), `scenarios` each scenario's current step (0-based; == len(steps) when finished),
    `fail_next` the pending failures (count, status, mode), `knobs` overrides on top of the live
    knobs, and `rules` the rules added for this session only (the rules layer's objects).
    """

    id: str | None
    positions: dict[Any, int] = field(default_factory=dict)
    scenarios: dict[str, int] = field(default_factory=dict)
    fail_next: tuple[int, int | None, ErrorMode | None] = (0, None, None)
    knobs: dict[str, Any] = field(default_factory=dict)
    rules: list[Any] = field(default_factory=list)
    next_rule_id: int = 1
    #: The live knobs this session's overrides were last merged onto, and the result.
    merged_knobs: tuple[Knobs, Knobs] | None = None

    def take_fail_next(self) -> tuple[int, int | None, ErrorMode | None]:
        """Consume one pending failure: (1, status, mode) when this request must fail, else (0, None, None)."""
        count, status, mode = self.fail_next
        if count <= 0:
            return 0, None, None
        self.fail_next = (count - 1, status, mode) if count > 1 else (0, None, None)
        return 1, status, mode


class Sessions:
    """The named sessions, least recently used first; the default session is always there."""

    def __init__(self, limit: int = DEFAULT_MAX_SESSIONS) -> None:
        self.limit = max(1, limit)
        self.default = SessionState(None)
        self._named: OrderedDict[str, SessionState] = OrderedDict()

    def get(self, session_id: str | None) -> SessionState:
        """The session's state (made on first use; using it makes it the most recent)."""
        if session_id is None:
            return self.default
        state = self._named.get(session_id)
        if state is None:
            state = SessionState(session_id)
            self._named[session_id] = state
            while len(self._named) > self.limit:
                self._named.popitem(last=False)
        else:
            self._named.move_to_end(session_id)
        return state

    def peek(self, session_id: str | None) -> SessionState | None:
        """The session's state if it exists, without making it recent."""
        return self.default if session_id is None else self._named.get(session_id)

    def __iter__(self) -> Iterator[SessionState]:
        yield self.default
        yield from list(self._named.values())

    def __len__(self) -> int:
        return len(self._named)

    def reset_scenario(self, name: str, session_id: str | None = None, *, every: bool = False) -> None:
        """Put a scenario back at its first step: in every session, or in one."""
        targets = list(self) if every else [self.get(session_id)]
        for state in targets:
            state.scenarios.pop(name, None)

    def clear(self) -> None:
        """Forget every named session and the default session's state."""
        self._named.clear()
        self.default = SessionState(None)
