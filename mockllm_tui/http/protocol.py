"""`--http fast`: an HTTP/1.1 protocol on httptools, one ASGI task a request, one write a response.

uvicorn's own protocol checks every response header with two regexes, makes an Event a request,
writes a response's head and body apart and arms a timer after every response. This one checks a
head's bytes in one pass (header names once each), sends a whole response (head and body) in one
write and keeps one timer a connection for both the read deadline (against slow-loris clients: uvicorn has none before
a request's headers are complete) and the keep-alive idle timeout. uvicorn's `Server` still runs
it: sockets, workers and graceful shutdown (`connections`, `tasks`, `shutdown()`), `limit_concurrency`,
and WebSocket upgrades, which are handed to uvicorn's WebSocket protocol as uvicorn's own HTTP one does.
It answers what uvicorn's httptools protocol answers (tests/test_protocol_differential.py holds both to
one battery of raw requests), except where uvicorn breaks RFC 9112: no chunks for an HTTP/1.0 client, and
a malformed request pipelined behind one in progress is refused after that one's response, not inside it.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
import urllib.parse
from collections import deque
from collections.abc import MutableMapping
from typing import Any, cast

import httptools
import uvicorn
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl
from uvicorn.server import ServerState

from mockllm_tui.http.read_deadline import READ_TIMEOUT_S

#: A request body buffered beyond this pauses reading until the app takes it.
HIGH_WATER = 65536
#: Distinct request targets (parsed) and response header names (checked) kept: both repeat a handful.
CACHE_SIZE = 512
INVALID_REQUEST = "Invalid HTTP request received."

Message = MutableMapping[str, Any]
log = logging.getLogger("uvicorn.error")


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINE = {status: _status_line(status) for status in range(100, 600)}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


#: The lengths of the header names that shape the framing: connection, content-length, transfer-encoding.
_FRAMING_NAME_LENGTHS = frozenset({10, 14, 17})
#: Every byte but the control characters a header may not hold (tab is allowed; CR and LF are
#: counted apart). Deleting these from a head leaves exactly the bad bytes: faster than a regex.
_HEADER_BYTES = bytes(b for b in range(256) if not (b < 32 and b not in (9, 10, 13)) and b != 127)
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Header names already checked (responses repeat a handful).
_valid_names: set[bytes] = set()


def _check_name(name: bytes) -> None:
    """Refuse a header name that is not an HTTP token; remember a good one."""
    if not _TOKEN.fullmatch(name):
        raise RuntimeError(f"Invalid HTTP header name {name!r}.")
    if len(_valid_names) < CACHE_SIZE:
        _valid_names.add(name)


def _reframe(pairs: list[tuple[bytes, bytes]], http10: bool, length: int) -> tuple[int, bool, list[bytes]]:
    """A response that says both Content-Length and chunked: chunks win, the length goes (for HTTP/1.0
    the chunked header goes instead: the length, or else the close, ends the body)."""
    drop = b"transfer-encoding" if http10 else b"content-length"
    parts: list[bytes] = []
    for name, value in pairs:
        if name.lower() != drop:
            parts += (name, b": ", value, b"\r\n")
    return (length if http10 else -1), not http10, parts


class Cycle:
    """One request and its response: the ASGI `receive` and `send` of one app call."""

    __slots__ = (
        "app",
        "body",
        "chunked",
        "closing_said",
        "complete",
        "disconnected",
        "expect_continue",
        "head",
        "keep_alive",
        "last_sent",
        "more_body",
        "proto",
        "remaining",
        "scope",
        "started",
        "waiter",
    )

    def __init__(
        self, proto: HttpProtocol, app: Any, scope: dict[str, Any], keep_alive: bool, expect_continue: bool
    ) -> None:
        self.proto = proto
        self.app = app
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.body = b""
        self.more_body = True
        self.last_sent = False
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.started = False
        self.complete = False
        self.chunked = False
        self.remaining = 0
        self.head: bytes | None = None
        self.closing_said = False

    def wake(self) -> None:
        """Wake a `receive` waiting for body or for the end."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> Message:
        """The next piece of the body; once all is read, wait for the client to go (or the response to end)."""
        if self.expect_continue:
            self.expect_continue = False
            if not self.proto.transport.is_closing():
                self.proto.transport.write(CONTINUE)
            self.proto.resume_deadline()
        while not (self.disconnected or self.complete):
            if self.body or (not self.more_body and not self.last_sent):
                body, self.body = self.body, b""
                self.last_sent = not self.more_body
                return {"type": "http.request", "body": body, "more_body": self.more_body}
            self.proto.resume_reading()
            waiter = self.waiter
            if waiter is None or waiter.done():
                waiter = self.waiter = self.proto.loop.create_future()
            # Shielded: a cancelled receiver must not cancel the wake-up others share.
            await asyncio.shield(waiter)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        """Send the response's head or a piece of its body."""
        proto = self.proto
        if proto.writable is not None and not self.disconnected:
            await asyncio.shield(proto.writable)
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{kind}'.")
            self._start(message["status"], message.get("headers", ()))
            return
        if self.complete:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")
        if kind != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self.scope["method"] == "HEAD":
            data = b""
        elif self.chunked:
            data = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            if not more:
                data += b"0\r\n\r\n"
        elif self.remaining < 0:
            data = body  # HTTP/1.0 without a length: the close ends it
        else:
            self.remaining -= len(body)
            if self.remaining < 0:
                raise RuntimeError("Response content longer than Content-Length")
            data = body
        head = self.head
        if head is not None:
            if not self.keep_alive and not self.closing_said:  # a shutdown began after the head was made
                head = head[:-2] + b"connection: close\r\n\r\n"
            data, self.head = head + data, None
        if data and not proto.transport.is_closing():
            proto.transport.write(data)
        if not more:
            if self.remaining > 0 and self.scope["method"] != "HEAD":
                raise RuntimeError("Response content shorter than Content-Length")
            self.complete = True
            self.wake()
            if not self.keep_alive:
                proto.transport.close()
            proto.response_complete()

    def _start(self, status: int, headers: Any) -> None:
        """Build the head; a response with a length waits to go out with its body, in one write."""
        defaults = self.proto.server_state.default_headers
        pairs = [*defaults, *headers] if defaults or type(headers) is not list else headers
        parts: list[bytes] = []
        length = -1
        chunked = says_close = False
        for name, value in pairs:
            parts += (name, b": ", value, b"\r\n")
            if name not in _valid_names:
                _check_name(name)
            if len(name) in _FRAMING_NAME_LENGTHS:
                lowered = name.lower()
                if lowered == b"content-length":
                    length = int(value)
                elif lowered == b"transfer-encoding":
                    chunked = value.lower().strip() == b"chunked"
                elif lowered == b"connection":
                    says_close = says_close or b"close" in [token.strip() for token in value.lower().split(b",")]
        if chunked and (length >= 0 or self.scope["http_version"] == "1.0"):
            # RFC 9112: no Content-Length beside chunks (6.2), no Transfer-Encoding to HTTP/1.0 (6.1).
            length, chunked, parts = _reframe(pairs, self.scope["http_version"] == "1.0", length)
        block = b"".join(parts)
        lines = len(parts) // 4
        if block.count(b"\n") != lines or block.count(b"\r") != lines or block.translate(None, _HEADER_BYTES):
            raise RuntimeError("Invalid HTTP header value: it holds a line break or a control character.")
        self.started = True
        self.expect_continue = False
        extra = b""
        if says_close:
            self.keep_alive = False
        elif not self.keep_alive:
            extra = b"connection: close\r\n"
        self.closing_said = not self.keep_alive
        if length >= 0:
            self.remaining = length
        elif self.scope["http_version"] == "1.0":
            self.keep_alive = False  # no chunks for HTTP/1.0: the close ends the body
            self.remaining = -1
        elif chunked or (self.scope["method"] != "HEAD" and status not in (204, 304)):
            if not chunked:
                extra += b"transfer-encoding: chunked\r\n"
            self.chunked = True
        head = b"%s%s%s\r\n" % (STATUS_LINE[status], block, extra)
        if self.chunked or self.remaining < 0:
            self.proto.transport.write(head)
        else:
            self.head = head

    async def send_500(self) -> None:
        """The answer for an app that failed before it started its response."""
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"21"),
            (b"connection", b"close"),
        ]
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})


class HttpProtocol(asyncio.Protocol):
    """One client connection: parse requests, run the app for each in turn (pipelined ones wait)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.read_timeout_s = read_timeout_s
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.limit_concurrency: int | None = config.limit_concurrency
        self.ws_protocol_class: Any = config.ws_protocol_class
        self.loop = _loop or asyncio.get_event_loop()
        self.root_path = config.root_path
        self.keep_alive_s = float(config.timeout_keep_alive)
        self.server_state = server_state
        self.app_state = app_state
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        #: The newest request, and the one being answered (older than `cycle` when pipelined).
        self.cycle: Cycle | None = None
        self.running: Cycle | None = None
        self.pipeline: deque[Cycle] = deque()
        self.in_message = False
        #: The newest request's head is read and its body is arriving.
        self.in_body = False
        #: The newest request asks for a WebSocket: the connection goes to uvicorn's WebSocket protocol.
        self.upgrading = False
        #: A malformed request arrived while a response was going out: answer 400 after it.
        self.bad_request = False
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False
        self.read_paused = False
        self.writable: asyncio.Future[None] | None = None
        self.deadline = 0.0
        #: What was left of the read deadline while the server, not the client, holds the request up.
        self.held: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    # The connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the connection and start the clock for its first request."""
        self.transport = cast(asyncio.Transport, transport)
        self.server_state.connections.add(self)  # type: ignore[arg-type]
        self.server = get_local_addr(self.transport)  # type: ignore[assignment]
        self.client = get_remote_addr(self.transport)
        self.scheme = "https" if is_ssl(self.transport) else "http"
        self._set_deadline(self.read_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the running request its client is gone."""
        self.server_state.connections.discard(self)
        for cycle in {self.running, self.cycle, *self.pipeline}:
            if cycle is not None:
                if not cycle.complete:
                    cycle.disconnected = True
                cycle.wake()
        self.resume_writing()
        if exc is None:
            self.transport.close()
        self.deadline = 0.0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.parser = None  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a malformed request gets a 400 and the connection closes."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self.upgrading:
                self._upgrade()
            else:
                log.warning("Unsupported upgrade request.")  # served as plain HTTP, as uvicorn does
        except httptools.HttpParserError:
            log.warning(INVALID_REQUEST)
            self._refuse()

    def _refuse(self) -> None:
        """A malformed request: 400 and close (RFC 9112 6.3), never inside the response in progress."""
        cycle = self.cycle
        if self.in_body and cycle is not None and not cycle.complete:
            # The body of a request already under way broke: it can never arrive whole.
            if cycle is not self.running:
                self.pipeline.remove(cycle)  # it waited its turn: the 400 comes after the running one
            else:
                cycle.disconnected = True
                cycle.wake()
                if cycle.started and cycle.head is None:  # its head is out: only the close can end it
                    self.transport.close()
                    return
                self._send_400()
                return
        running = self.running
        if running is not None and not running.complete:
            self.bad_request = True  # never in the middle of the response in progress
            self.pause_reading()
        else:
            self._send_400()

    def eof_received(self) -> None:
        """The client half-closed: let the transport close."""

    def shutdown(self) -> None:
        """Graceful shutdown: close an idle connection, end a busy one after its response."""
        if self.cycle is None or self.cycle.complete:
            self.transport.close()
        else:
            self.cycle.keep_alive = False

    def pause_writing(self) -> None:
        """The transport's buffer is full: `send` waits."""
        if self.writable is None:
            self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        """The transport's buffer drained."""
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def pause_reading(self) -> None:
        """Stop reading (a pipelined request waits, or a large body is not yet taken): the read
        deadline waits too, since the server holds the request up."""
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
            self.hold_deadline()

    def resume_reading(self) -> None:
        """Read again, and let the read deadline run on."""
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
            self.resume_deadline()

    def hold_deadline(self) -> None:
        """Stop the read deadline while the server keeps the client waiting."""
        if self.in_message and self.deadline and self.held is None:
            self.held = max(self.deadline - self.loop.time(), 0.0)
            self.deadline = 0.0

    def resume_deadline(self) -> None:
        """Let a held read deadline run on with what was left of it."""
        held, self.held = self.held, None
        if held is not None and self.in_message:
            self._set_deadline(held)

    # Parser callbacks

    def on_message_begin(self) -> None:
        """A request starts: it has `read_timeout_s` to arrive whole."""
        self.url = b""
        self.headers = []
        self.expect_continue = False
        self.in_message = True
        self.in_body = False
        self.held = None
        self._set_deadline(self.read_timeout_s)

    def on_url(self, url: bytes) -> None:
        """A piece of the request target."""
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        """One request header, its name lowered as ASGI wants."""
        name = name.lower()
        value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace, which is no part of the value (RFC 9110 5.5)
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        """Build the scope and run the app (after the request in progress, if pipelined)."""
        parser = self.parser
        version = parser.get_http_version()
        self.in_body = True
        if parser.should_upgrade() and self.ws_protocol_class is not None and _asks_websocket(self.headers):
            self.upgrading = True
            return
        path, raw_path, query = _target(self.url)
        root = self.root_path
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": parser.get_method().decode("ascii"),
            "root_path": root,
            "path": root + path if root else path,
            "raw_path": root.encode("ascii") + raw_path if root else raw_path,
            "query_string": query,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }
        keep_alive = version != "1.0" and parser.should_keep_alive()
        app = self.app
        limit = self.limit_concurrency
        if limit is not None and (
            len(self.server_state.connections) >= limit or len(self.server_state.tasks) >= limit
        ):
            log.warning("Exceeded concurrency limit.")
            app = service_unavailable
        current = self.cycle
        cycle = Cycle(self, app, scope, keep_alive, self.expect_continue)
        self.cycle = cycle
        if current is None or current.complete:
            self._run(cycle)
        else:
            self.pause_reading()
            self.pipeline.appendleft(cycle)
        if cycle.expect_continue:
            self.hold_deadline()  # the client waits for our 100 Continue

    def on_body(self, body: bytes) -> None:
        """A piece of the request body, buffered for `receive`."""
        cycle = self.cycle
        if cycle is None or cycle.complete or self.upgrading:
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER:
            self.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        """The request is read: stop its clock (or, if it was answered already, start the idle one)."""
        self.in_message = self.in_body = False
        self.held = None
        if self.upgrading:
            return
        cycle = self.cycle
        if cycle is not None and cycle.complete and not self.pipeline and self.running is cycle:
            self._set_deadline(self.keep_alive_s)
        else:
            self.deadline = 0.0
        if cycle is None or cycle.complete:
            return
        cycle.more_body = False
        cycle.wake()

    # Running requests

    def _run(self, cycle: Cycle) -> None:
        self.running = cycle
        task = self.loop.create_task(self._serve(cycle))
        tasks = self.server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _serve(self, cycle: Cycle) -> None:
        try:
            result = await cycle.app(cycle.scope, cycle.receive, cycle.send)
        except BaseException as exc:  # the connection outlives whatever the app raises
            log.error("Exception in ASGI application\n", exc_info=exc)
            if not cycle.started:
                await cycle.send_500()
            else:
                if cycle.head is not None and not self.transport.is_closing():
                    self.transport.write(cycle.head)  # a cut answer shows its head, as a dropped connection does
                self.transport.close()
        else:
            if result is not None:
                log.error("ASGI callable should return None, but returned '%s'.", result)
                self.transport.close()
            elif not cycle.started and not cycle.disconnected:
                log.error("ASGI callable returned without starting response.")
                await cycle.send_500()
            elif not cycle.complete and not cycle.disconnected:
                log.error("ASGI callable returned without completing response.")
                self.transport.close()

    def response_complete(self) -> None:
        """A response went out: start a waiting pipelined request, or wait for the next one."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self.bad_request:
            self._send_400()
            return
        self.resume_reading()
        if self.pipeline:
            self._run(self.pipeline.pop())
        elif not self.in_message:  # a request still arriving keeps its read deadline
            self._set_deadline(self.keep_alive_s)
        elif self.held is not None:
            # Answered while the client waits for a 100 Continue it will never get: it may still send
            # the body, within the keep-alive timeout (as uvicorn allows), or the connection closes.
            self.held = None
            self._set_deadline(self.keep_alive_s)

    # The one timer

    def _set_deadline(self, after_s: float) -> None:
        """Close the connection if nothing moves it on within `after_s`. The timer is re-armed
        only when it fires early or must fire sooner, not for every request."""
        at = self.loop.time() + after_s
        self.deadline = at
        if self.timer is None or at < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(at, self._on_timer)
            self.timer_at = at

    def _on_timer(self) -> None:
        self.timer = None
        deadline = self.deadline
        if not deadline:
            return
        if self.loop.time() >= deadline:
            if not self.transport.is_closing():
                self.transport.close()
            return
        self.timer = self.loop.call_at(deadline, self._on_timer)
        self.timer_at = deadline

    def _upgrade(self) -> None:
        """Hand the connection to uvicorn's WebSocket protocol, replaying the request's head to it."""
        self.server_state.connections.discard(self)
        self.deadline = 0.0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        head = [self.parser.get_method(), b" ", self.url, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        protocol = self.ws_protocol_class(config=self.config, server_state=self.server_state, app_state=self.app_state)
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        protocol.data_received(b"".join(head))

    def _send_400(self) -> None:
        if self.transport.is_closing():
            return
        text = INVALID_REQUEST.encode("ascii")
        self.transport.write(
            b"%sconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n\r\n%s"
            % (STATUS_LINE[400], len(text), text)
        )
        self.transport.close()


def _asks_websocket(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request's headers ask to upgrade to WebSocket (as uvicorn reads them)."""
    connection: list[bytes] = []
    upgrade = None
    for name, value in headers:
        if name == b"connection":
            connection = [token.lower().strip() for token in value.split(b",")]
        elif name == b"upgrade":
            upgrade = value.lower()
    return upgrade == b"websocket" and b"upgrade" in connection


_targets: dict[bytes, tuple[str, bytes, bytes]] = {}


def _target(url: bytes) -> tuple[str, bytes, bytes]:
    """A request target's decoded path, raw path and query string (cached: targets repeat)."""
    found = _targets.get(url)
    if found is not None:
        return found
    parsed: Any = httptools.parse_url(url)  # Any: its stubs say `query` is bytes, but it may be None
    raw_path: bytes = parsed.path
    path = raw_path.decode("ascii")
    if "%" in path:
        path = urllib.parse.unquote(path)
    found = (path, raw_path, parsed.query or b"")
    if len(_targets) < CACHE_SIZE:
        _targets[url] = found
    return found
