"""How a process shares its run-time state with other processes serving the same mock.

`LocalState` is the default (`--state memory`): nothing is shared, every decision is local. The
Redis backend (mockllm_tui/shared/) replaces it; the flows and the admin API only see this
interface, through `Store.state`, so they never know which one is in force.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mockllm_tui.core.store import Store

StateMode = Literal["memory", "redis", "degraded"]

#: The admin API's answer to a write that cannot reach every process.
NOT_SHARED_STATUS = 409
DEGRADED_STATUS = 503


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

    @property
    def mode(self) -> StateMode:
        """What `/health` reports as `state`."""
        return "memory"

    async def start(self, store: Store) -> None:
        """Join the group before the server answers (nothing to join in memory)."""

    async def stop(self) -> None:
        """Leave the group as the server stops."""

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
