"""The embedded uvicorn runner: bind the socket ourselves, serve on the caller's loop, stop fast.

Binding first lets `--port 0` report the real port and a port in use fail in one line before
anything starts. uvicorn runs without signal handlers or logging config of its own (the host,
headless runner or Textual panel, owns both). It speaks HTTP through its own httptools protocol
(`--http uvicorn`, the default, with a read deadline added: `read_deadline`; WebSockets through the
`websockets` library) or through `protocol.HttpProtocol` (`--http fast`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import socket
from contextlib import contextmanager
from typing import Any

import uvicorn

from mockllm_tui.http.app import MockApp
from mockllm_tui.http.exchange import CutConnection
from mockllm_tui.http.protocol import HttpProtocol
from mockllm_tui.http.read_deadline import READ_TIMEOUT_S, DeadlineHttpToolsProtocol

#: The HTTP protocols `--http` chooses from: uvicorn's own (httptools) or ours.
HTTP_PROTOCOLS = ("uvicorn", "fast")
DEFAULT_HTTP = "uvicorn"


class CannotListen(OSError):
    """The address cannot be listened on; the message is one line for the user."""


class PortInUse(CannotListen):
    """The port is taken by another process."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"port {port} on {host} is in use (try --port 0 for a free one)")
        self.host = host
        self.port = port


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket, or PortInUse. Binding ourselves lets `--port 0` report the real port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # a response's head and body (two writes) wait out the client's delayed ACK (~40 ms a request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            raise PortInUse(host, port) from None
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CannotListen(f"cannot listen on {host} port {port}: {reason}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _QuietCuts(logging.Filter):
    """Drop uvicorn's tracebacks for connections we cut on purpose or cancelled at shutdown."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, CutConnection | asyncio.CancelledError)


logging.getLogger("uvicorn.error").addFilter(_QuietCuts())


class EmbeddedServer(uvicorn.Server):
    """uvicorn on the caller's loop: no signal handlers of its own, no logging config of its own."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()
        self.exit_requested = asyncio.Event()

    def request_exit(self) -> None:
        """Begin a graceful shutdown now (uvicorn's own loop would notice within 0.1 s)."""
        self.should_exit = True
        self.exit_requested.set()

    async def main_loop(self) -> None:
        """Wait for an exit request instead of polling every 0.1 s."""
        await self.on_tick(0)
        while not self.should_exit:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exit_requested.wait(), 1.0)

    @contextmanager
    def capture_signals(self) -> Any:
        """The host (headless runner or Textual) owns signals."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start, then tell waiters we are listening."""
        await super().startup(sockets)
        self.ready.set()


def uvicorn_config(
    app: Any, *, http: str = DEFAULT_HTTP, read_timeout_s: float = READ_TIMEOUT_S, **overrides: Any
) -> uvicorn.Config:
    """The uvicorn settings every mockllm-tui server uses (embedded, workers, the benchmark baseline).

    `http` is `uvicorn` (uvicorn's own httptools protocol) or `fast` (`protocol.HttpProtocol`); both
    give a request `read_timeout_s` to arrive whole.
    """
    protocol: Any
    if http == "uvicorn":
        protocol = DeadlineHttpToolsProtocol
    elif http == "fast":
        protocol = HttpProtocol
    else:
        raise ValueError(f"unknown HTTP protocol {http!r} (choose from {', '.join(HTTP_PROTOCOLS)})")
    if read_timeout_s != READ_TIMEOUT_S:
        protocol = functools.partial(protocol, read_timeout_s=read_timeout_s)  # picklable, for worker processes
    settings: dict[str, Any] = {
        "log_config": None,
        "access_log": False,
        "lifespan": "off",
        "http": protocol,
        "ws": "websockets-sansio",
        "ws_per_message_deflate": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": 1,
        "timeout_keep_alive": 5,
        "server_header": False,
        "date_header": False,
    }
    return uvicorn.Config(app, **{**settings, **overrides})


class ServerHandle:
    """A running embedded server: its task, its socket and how to stop it."""

    def __init__(
        self,
        app: MockApp,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        grace_s: int = 1,
        http: str = DEFAULT_HTTP,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.host = host
        self.sock = bind_socket(host, port)
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn_config(app, http=http, read_timeout_s=read_timeout_s, timeout_graceful_shutdown=grace_s)
        self.server = EmbeddedServer(config)
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The base URL clients use (with /v1)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    async def start(self) -> None:
        """Join the shared state (if any), then serve on the running loop; returns once the server
        listens (the FastAPI fallback then builds)."""
        await self.app.store.state.start(self.app.store)
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]), name="mockllm-server")
        ready = asyncio.create_task(self.server.ready.wait())
        done, _ = await asyncio.wait({self.task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            ready.cancel()
            self.task.result()
            raise RuntimeError("the server stopped during start-up")
        self.app.prepare_fallback()

    async def fully_ready(self) -> None:
        """Wait until every route is ready (the FastAPI fallback is built)."""
        await asyncio.shield(self.app.prepare_fallback())

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish within the grace period, then close."""
        self.app.close_streams()
        self.server.request_exit()
        if self.task is not None:
            try:
                grace = self.server.config.timeout_graceful_shutdown or 1
                await asyncio.wait_for(asyncio.shield(self.task), grace + 2.0)
            except TimeoutError:
                self.server.force_exit = True
                self.task.cancel()
        self.sock.close()
        await self.app.store.state.stop()
