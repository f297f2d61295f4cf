"""How a process shares its run-time state with other processes serving the same mock.

`LocalState` is the default (`--state memory`): nothing is shared, every decision is local. The
Redis backend (mockllm_tui/shared/) replaces it; the flows and the admin API only see this
interface, through `Store.state`, so they never know which one is in force.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from mockllm_tui.core.conversation import ReplySequence
from mockllm_tui.core.knobs import ErrorMode

StateMode = Literal["memory", "redis", "degraded"]

#: The admin API's answer to a write that cannot reach every process.
NOT_SHARED_STATUS = 409
DEGRADED_STATUS = 503


#: A `fail_next` take: (1, status, mode) when this request must fail, else (0, None, None).
FailNext = tuple[int, int | None, ErrorMode | None]


@dataclass(frozen=True, slots=True)
class RateLevels:
    """The group's rate-limit buckets after one request: what each holds (None: that limit is not
    set) and which one refused the request ("requests", "tokens"; None: it may go on)."""

    requests: float | None
    tokens: float | None
    refused: str | None


class StateOwner(Protocol):
    """What the state needs of the store that holds it (core/store.py's Store)."""

    def fail_next_of(self, session: str | None) -> tuple[int, int | None]:
        """How many of a session's next requests will fail, and with which status."""
        ...

    def take_fail_next(self, session: str | None = None) -> FailNext:
        """Consume one of this process's pending failures."""
        ...


class GroupCounters(Protocol):
    """The counters a group of processes shares (`replies:` positions, `fail_next`, rate limits).
    Each answer falls back to this process's own counting while the group cannot be reached."""

    async def position(self, sequence: ReplySequence) -> int:
        """The item of `sequence` to answer with, from the group's position."""
        ...

    async def take_fail_next(self, session: str | None) -> FailNext:
        """Consume one of the group's pending failures (of `session`)."""
        ...

    def share_fail_next(self, session: str | None, count: int, status: int | None, mode: ErrorMode | None) -> None:
        """This process set the pending failures: make them the group's."""
        ...

    async def take_rate(self, rpm: int, tpm: int, tokens: int) -> RateLevels | None:
        """Take one request (and `tokens` served since the last call) from the group's buckets;
        None: count them here."""
        ...


def default_instance_name() -> str:
    """This process's name in the journal when `--instance-name` is not given: HOST:PID."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LocalState:
    """State kept in this process only (`--state memory`).

    `shared` is False when this process is one of several serving the same port with no shared
    state (`--workers N` without Redis): a write through the admin API would then reach one
    process of N, so it is refused (see `write_refusal`)."""

    def __init__(self, instance: str = "", *, shared: bool = True) -> None:
        self.instance = instance or default_instance_name()
        self.shared = shared
        #: What the group counts together (None: every count is this process's own).
        self.counters: GroupCounters | None = None

    @property
    def mode(self) -> StateMode:
        """What `/health` reports as `state`."""
        return "memory"

    async def start(self, store: StateOwner) -> None:
        """Join the group before the server answers (nothing to join in memory)."""

    async def stop(self) -> None:
        """Leave the group as the server stops."""

    async def next_position(self, sequence: ReplySequence) -> int:
        """The item of a `replies:` sequence to answer with: the group's next, or the one picked here."""
        counters = self.counters
        return sequence.index if counters is None else await counters.position(sequence)

    async def take_fail_next(self, store: StateOwner, session: str | None) -> FailNext:
        """Consume one pending `fail_next` (of `session`): the group's, or this process's own."""
        counters = self.counters
        if counters is None or store.fail_next_of(session)[0] <= 0:  # nothing pending: no need to ask the group
            return store.take_fail_next(session)
        return await counters.take_fail_next(session)

    def share_fail_next(self, session: str | None, count: int, status: int | None, mode: ErrorMode | None) -> None:
        """The pending failures were set here (nothing to share in memory)."""
        if self.counters is not None:
            self.counters.share_fail_next(session, count, status, mode)

    async def take_rate(self, rpm: int, tpm: int, tokens: int) -> RateLevels | None:
        """Take one request (and `tokens` served since the last call) from the group's rate-limit
        buckets; None: this process counts them itself."""
        counters = self.counters
        return None if counters is None else await counters.take_rate(rpm, tpm, tokens)

    def knobs_changed(self, layer: str, values: dict[str, Any]) -> None:
        """This process changed a knob layer to `values` (the shared state passes the live layer on;
        in memory nobody else needs to know)."""

    def session_knobs_changed(self, session: str, values: dict[str, Any]) -> None:
        """This process changed a session's knob overrides to `values` (see `knobs_changed`)."""

    def write_refusal(self) -> tuple[int, str] | None:
        """Why the admin API must refuse a write now, as (status, message); None: writes are fine."""
        if self.shared:
            return None
        return (
            NOT_SHARED_STATUS,
            "this server runs several worker processes with no shared state, so a change here would "
            "reach only one of them: start it with --state redis://HOST:PORT to share changes, or edit "
            "the responses file, which every worker watches",
        )
