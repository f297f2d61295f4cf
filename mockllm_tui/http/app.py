"""The HTTP server: `create_app(store)` and the embedded uvicorn runner.

The model endpoints and `/health` are served by a small pure-ASGI dispatcher (measured: FastAPI's
own routing costs about half the throughput); everything else (`/_mock/*`, docs, 404s) falls
through to a FastAPI app. That app is built off the event loop's thread once the server listens
(importing FastAPI takes about half a second), so the first model request never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import threading
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mockllm_tui import __version__
from mockllm_tui.core.conversation import RequestError
from mockllm_tui.core.store import Store
from mockllm_tui.engine.exchange import ClientGone, CutConnection, Exchange, Receive, Scope, Send
from mockllm_tui.http.auth import AuthGuard, admin_allowed, send_unauthorized
from mockllm_tui.http.chat import DISCONNECT_STATUS, SHUTDOWN_STATUS, InjectedFailure
from mockllm_tui.http.ratelimit import RateLimiter
from mockllm_tui.providers.base import Endpoint, Provider
from mockllm_tui.providers.openai_common import openai_error
from mockllm_tui.providers.registry import build_providers

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("mockllm_tui")

READ_TIMEOUT_S = 30.0
HEALTH = {"status": "ok"}

Guard = Callable[[Exchange, Provider], None]


class CannotListen(OSError):
    """The address cannot be listened on; the message is one line for the user."""


class PortInUse(CannotListen):
    """The port is taken by another process."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"port {port} on {host} is in use (try --port 0 for a free one)")
        self.host = host
        self.port = port


class MockApp:
    """The ASGI app: model endpoints and `/health` in plain ASGI, the rest through a FastAPI fallback."""

    def __init__(self, store: Store, providers: list[Provider]) -> None:
        self.store = store
        self.providers = providers
        self.guards: list[Guard] = []
        self._fallback: FastAPI | None = None
        self._fallback_lock = threading.Lock()
        self._fallback_pending: asyncio.Future[FastAPI] | None = None
        self._cors: Callable[[Scope, Receive, Send], Any] | None = None
        self.setup_dispatch(providers)

    def setup_dispatch(self, providers: list[Provider]) -> None:
        """Build the route tables once, at start-up."""
        self._exact: dict[tuple[str, str], Endpoint] = {}
        self._known_paths: dict[str, Endpoint] = {}
        self._prefixes: list[tuple[str, str, Endpoint]] = []
        for provider in providers:
            for endpoint in provider.endpoints:
                for path in endpoint.paths:
                    if path.endswith("/{id}"):
                        self._prefixes.append((endpoint.method, path[: -len("{id}")], endpoint))
                    else:
                        self._exact.setdefault((endpoint.method, path), endpoint)
                        self._known_paths.setdefault(path, endpoint)
        self._anthropic = next((p for p in providers if p.name == "anthropic"), None)
        self._openai = next((p for p in providers if p.name == "openai"), providers[0] if providers else None)

    def add_guard(self, guard: Guard) -> None:
        """A check run before every model endpoint (auth, rate limits); it raises to refuse."""
        self.guards.append(guard)

    def provider_for_path(self, path: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> Provider | None:
        """Whose error shape an unknown path gets: Anthropic's under /v1/messages or with its headers."""
        if self._anthropic is not None and (
            path.startswith(("/v1/messages", "/messages", "/v1/complete"))
            or any(k == b"anthropic-version" for k, _ in headers)
        ):
            return self._anthropic
        return self._openai

    def enable_cors(self, origins: Sequence[str]) -> None:
        """Answer CORS preflights and add CORS headers for these origins (`*` for any), on every route.

        Off unless called (`--cors ORIGINS`). It wraps the dispatcher too, not only FastAPI's routes.
        """
        from starlette.middleware.cors import CORSMiddleware

        self._cors = CORSMiddleware(
            self.dispatch,
            allow_origins=list(origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-request-id", "request-id", "retry-after"],
        )

    @property
    def fallback(self) -> FastAPI:
        """The FastAPI app behind the dispatcher (`/_mock/*`, docs, 404s), built on first use."""
        with self._fallback_lock:
            if self._fallback is None:
                self._fallback = build_fallback(self)
            return self._fallback

    def prepare_fallback(self) -> asyncio.Future[FastAPI]:
        """Build the fallback on a worker thread, so the loop keeps serving model requests meanwhile."""
        loop = asyncio.get_running_loop()
        if self._fallback_pending is None or self._fallback_pending.get_loop() is not loop:
            self._fallback_pending = loop.run_in_executor(None, lambda: self.fallback)
        return self._fallback_pending

    async def _call_fallback(self, scope: Scope, receive: Receive, send: Send) -> None:
        api = self._fallback if self._fallback is not None else await asyncio.shield(self.prepare_fallback())
        await api(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._cors is not None:
            await self._cors(scope, receive, send)
        else:
            await self.dispatch(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route a request: model endpoints in plain ASGI, the rest through FastAPI."""
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            endpoint = self._exact.get((method, path))
            if endpoint is None:
                endpoint = self._match_prefix(method, path)
            if endpoint is not None:
                provider = endpoint.provider
                if endpoint.shared and self._anthropic is not None:
                    provider = self.provider_for_path(path, scope.get("headers", ())) or provider
                await self._serve(endpoint, provider, scope, receive, send)
                return
            known = self._known(path)
            if known is not None or path.startswith(("/v1/", "/messages/")):
                shape = known.provider if known else self.provider_for_path(path, scope.get("headers", ()))
                if shape is not None:
                    await self._serve(None, shape, scope, receive, send)
                    return
            if path == "/health" and method in ("GET", "HEAD"):
                await Exchange(scope, receive, send, self.store).send_json(200, HEALTH)
                return
            if not path.startswith("/_mock/"):
                await self._journaled(scope, receive, send)
                return
            if not admin_allowed(self.store, path, scope.get("headers", ())):
                await send_unauthorized(send, scope.get("headers", ()))
                return
        await self._call_fallback(scope, receive, send)

    async def _journaled(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a non-model route through FastAPI, recording it in the journal like any request."""
        entry = self.store.begin_request(scope["method"], scope["path"])
        status = 500
        size = 0

        async def recording_send(message: MutableMapping[str, Any]) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self._call_fallback(scope, receive, recording_send)
        finally:
            self.store.end_request(entry, status, size)

    def _match_prefix(self, method: str | None, path: str) -> Endpoint | None:
        """The `/{id}` route for this path (any method when `method` is None)."""
        for m, prefix, endpoint in self._prefixes:
            tail = path[len(prefix) :] if path.startswith(prefix) else ""
            if (method is None or m == method) and tail and "/" not in tail:
                return endpoint
        return None

    def _known(self, path: str) -> Endpoint | None:
        """An endpoint serving this path with some method (for 405 rather than 404)."""
        return self._known_paths.get(path) or self._match_prefix(None, path)

    async def _serve(
        self, endpoint: Endpoint | None, provider: Provider, scope: Scope, receive: Receive, send: Send
    ) -> None:
        ex = Exchange(scope, receive, send, self.store)
        request_id = provider.request_id()
        ex.entry.provider = provider.name
        ex.entry.request_id = request_id
        ex.extra_headers = provider.response_headers(ex, request_id)
        ex.timing_header = provider.timing_header
        try:
            if endpoint is None:
                if self._known(ex.path) is not None:
                    raise RequestError(f"method {scope['method']} is not allowed on {ex.path}", status=405)
                raise RequestError(f"unknown path {scope['method']} {ex.path}", status=404)
            for guard in self.guards:
                guard(ex, provider)
            await endpoint.handle(ex)
        except RequestError as exc:
            await self._send_error(ex, provider, request_id, exc.status, exc.message, param=exc.param, code=exc.code)
        except InjectedFailure as exc:
            await self._send_error(
                ex, provider, request_id, exc.status, exc.message, code=exc.code, type=exc.type, headers=exc.headers
            )
        except ClientGone:
            ex.abandon(DISCONNECT_STATUS)
        except CutConnection:
            raise
        except asyncio.CancelledError:
            ex.abandon(DISCONNECT_STATUS if ex.client_gone() else SHUTDOWN_STATUS)
            if not ex.client_gone():
                raise
        except Exception:
            log.exception("internal error serving %s %s", scope["method"], ex.path)
            if ex.status == 0:
                await self._send_error(ex, provider, request_id, 500, "internal error in mockllm-tui (see its log)")
            else:
                ex.abandon(500)

    async def _send_error(
        self,
        ex: Exchange,
        provider: Provider,
        request_id: str,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        if ex.streaming:
            await ex.send_chunk(provider.stream_error(status, message))
            await ex.end_stream(status)
            return
        body = provider.error_body(status, message, type=type, param=param, code=code, request_id=request_id)
        await ex.send_bytes(status, body, headers)


def create_app(store: Store, *, plugins: Iterable[str] = ()) -> MockApp:
    """The whole server as one ASGI app, sharing `store` with the caller."""
    app = MockApp(store, build_providers(plugins))
    app.add_guard(AuthGuard(store))
    app.add_guard(RateLimiter(store))
    return app


def build_fallback(mock: MockApp) -> FastAPI:
    """The FastAPI app for what the dispatcher does not serve itself: the admin API, docs, 404s."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from mockllm_tui.admin import install_admin

    app = FastAPI(
        title="mockllm-tui",
        version=__version__,
        docs_url="/_mock/docs",
        redoc_url=None,
        openapi_url="/_mock/openapi.json",
    )

    @app.get("/health")
    async def health() -> dict[str, str]:  # served by the dispatcher; here for the docs and other methods
        return HEALTH

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return JSONResponse(openai_error(exc.status_code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return JSONResponse(openai_error(400, f"{where}: {first.get('msg', 'invalid')}", param=where), status_code=400)

    install_admin(app, mock.store, mock.providers)
    return app


# -- the embedded runner -----------------------------------------------------------------------


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


class TimedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for reading each request, headers and body.

    uvicorn has no timeout before a request's headers are complete, so a slow-loris client
    (headers a byte at a time, or nothing at all) would hold its connection forever.
    """

    read_timeout_s: float = READ_TIMEOUT_S
    _read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request."""
        super().connection_made(transport)
        self._arm_read_deadline()

    def on_message_begin(self) -> None:
        """Start the clock for a following request on a kept-alive connection."""
        super().on_message_begin()
        self._arm_read_deadline()

    def on_message_complete(self) -> None:
        """The request is read: stop the clock."""
        self._disarm_read_deadline()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock with the connection."""
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def _arm_read_deadline(self) -> None:
        self._disarm_read_deadline()
        self._read_deadline = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(app: Any, *, read_timeout_s: float = READ_TIMEOUT_S, **overrides: Any) -> uvicorn.Config:
    """The uvicorn settings every mockllm-tui server uses (embedded, workers, the benchmark baseline)."""
    protocol: type[TimedHttpProtocol] = TimedHttpProtocol  # importable, so worker processes can unpickle it
    if read_timeout_s != TimedHttpProtocol.read_timeout_s:
        protocol = type("TimedHttpProtocol", (TimedHttpProtocol,), {"read_timeout_s": read_timeout_s})
    settings: dict[str, Any] = {
        "log_config": None,
        "access_log": False,
        "lifespan": "off",
        "http": protocol,
        "ws": "none",
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
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.host = host
        self.sock = bind_socket(host, port)
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn_config(app, read_timeout_s=read_timeout_s, timeout_graceful_shutdown=grace_s)
        self.server = EmbeddedServer(config)
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The base URL clients use (with /v1)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    async def start(self) -> None:
        """Serve on the running loop; returns once the server listens (the FastAPI fallback then builds)."""
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
        self.server.request_exit()
        if self.task is not None:
            try:
                grace = self.server.config.timeout_graceful_shutdown or 1
                await asyncio.wait_for(asyncio.shield(self.task), grace + 2.0)
            except TimeoutError:
                self.server.force_exit = True
                self.task.cancel()
        self.sock.close()
