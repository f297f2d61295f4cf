"""`--http uvicorn` (the default): uvicorn's own httptools protocol, plus a read deadline.

uvicorn arms no timer before a request's headers are complete, so a client that connects and says
nothing, or trickles a head or a body, holds a connection for ever (slow-loris). Here a request must
arrive whole within `read_timeout_s` of its first byte (or of the connection, for the first one).
The clock stops while the server, not the client, holds the request up: reading paused (a pipelined
request waits, or a large body is not yet taken), a 100 Continue not yet sent, the response going out.
Three more mends: a request already arriving when the previous response ends keeps its read deadline
(uvicorn's keep-alive timer would cut it); the request being answered learns of a disconnect when
another waits behind it (uvicorn tells only the newest); a malformed request pipelined behind one in
progress is refused after that one's response (uvicorn writes its 400 into the middle of it).
Everything else (parsing, framing, WebSockets, `limit_concurrency`) is uvicorn's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

READ_TIMEOUT_S = 30.0


class _HoldingFlow(FlowControl):
    """uvicorn's flow control, telling the protocol when reading pauses (the clock stops) and resumes."""

    def __init__(self, transport: asyncio.Transport, proto: DeadlineHttpToolsProtocol) -> None:
        super().__init__(transport)
        self.proto = proto

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.proto.hold_deadline()
        super().pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.proto.resume_deadline()
        super().resume_reading()


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request to arrive whole."""

    def __init__(self, *args: Any, read_timeout_s: float = READ_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout_s = read_timeout_s
        #: When the request arriving must be whole (0: none is arriving, or the server holds it up).
        self.deadline = 0.0
        #: What was left of the deadline when the server began holding the request up.
        self.held: float | None = None
        self.arriving = False
        self.read_timer: asyncio.TimerHandle | None = None
        #: The request being answered (older than `cycle` when requests are pipelined).
        self.running: RequestResponseCycle | None = None
        #: A malformed request arrived behind the response in progress: the 400 to send after it.
        self.refusal: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request."""
        super().connection_made(transport)
        self.flow = _HoldingFlow(transport, self)
        self.arriving = True
        self._set_deadline(self.read_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock; tell the request being answered its client is gone."""
        self.deadline = 0.0
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None
        running = self.running
        if running is not None and running is not self.cycle and not running.response_complete:
            running.disconnected = True
            running.message_event.set()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        self.running = cycle
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        """As uvicorn, but a refusal waiting is sent now, and a request already arriving keeps its
        read deadline, not the idle one."""
        if self.refusal is not None:
            self.server_state.total_requests += 1
            super().send_400_response(self.refusal)
            return
        super().on_response_complete()
        if self.arriving and not self.pipeline and not self.expect_100_continue:
            # (A client answered while it waits for a 100 Continue keeps uvicorn's idle clock: it
            # may send the body it was not asked for, which stops that clock, or the connection closes.)
            self._unset_keepalive_if_required()

    def send_400_response(self, msg: str) -> None:
        """Refuse a malformed request, but never inside the response in progress."""
        running = self.running
        if running is None or running.response_complete or self.transport.is_closing():
            super().send_400_response(msg)
            return
        if running is self.cycle and running.more_body:  # the running request's own body broke
            running.disconnected = True
            running.message_event.set()
            if running.response_started:  # its head is out: only the close can end it
                self.transport.close()
            else:
                super().send_400_response(msg)
            return
        if self.pipeline and self.pipeline[0][0] is self.cycle and self.cycle.more_body:
            self.pipeline.popleft()  # a waiting request's body broke: it is never served
        self.refusal = msg
        self.flow.pause_reading()

    def on_message_begin(self) -> None:
        """A request starts: it has `read_timeout_s` to arrive whole."""
        super().on_message_begin()
        self.arriving = True
        self.held = None
        if self.flow.read_paused:  # (pipelined bytes read before the pause) the clock starts on resuming
            self.deadline = 0.0
            self.held = self.read_timeout_s
        else:
            self._set_deadline(self.read_timeout_s)

    def on_message_complete(self) -> None:
        """The request is read: stop its clock. If it was answered already, the idle clock starts
        (uvicorn armed it at the response, but the body arriving since has stopped it)."""
        super().on_message_complete()
        self.arriving = False
        self.deadline = 0.0
        self.held = None
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and not self.pipeline and not self.transport.is_closing():
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def hold_deadline(self) -> None:
        """Stop the clock while the server keeps the client waiting."""
        if self.arriving and self.deadline and self.held is None:
            self.held = max(self.deadline - self.loop.time(), 0.0)
            self.deadline = 0.0

    def resume_deadline(self) -> None:
        """Let a held clock run on with what was left of it."""
        held, self.held = self.held, None
        if held is not None and self.arriving:
            self._set_deadline(held)

    def _set_deadline(self, after_s: float) -> None:
        self.deadline = self.loop.time() + after_s
        if self.read_timer is None:  # one timer a connection, moved on only when it fires early
            self.read_timer = self.loop.call_at(self.deadline, self._on_read_timer)

    def _on_read_timer(self) -> None:
        self.read_timer = None
        if not self.deadline or self.transport.is_closing():
            return
        now = self.loop.time()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and (
            cycle.waiting_for_100_continue or cycle.response_started
        ):
            self.deadline = now + self.read_timeout_s  # the client waits for us, not we for it
        if now < self.deadline:
            self.read_timer = self.loop.call_at(self.deadline, self._on_read_timer)
        else:
            self.transport.close()
