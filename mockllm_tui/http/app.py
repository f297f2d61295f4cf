"""The dispatcher: `create_app(store)`, one ASGI app for the model endpoints and everything else.

The model endpoints and `/health` are served in plain ASGI (measured: FastAPI's own routing costs
about half the throughput). The dispatcher knows no wire format: it asks the providers which one
claims a request, and the provider supplies its errors and headers. Everything else (`/_mock/*`,
docs, 404s) falls through to a FastAPI app, built off the event loop's thread once the server
listens (importing FastAPI takes about half a second), so the first model request never waits.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mockllm_tui.core.conversation import RequestError
from mockllm_tui.core.store import Store
from mockllm_tui.http.answer import DISCONNECT_STATUS, SHUTDOWN_STATUS
from mockllm_tui.http.auth import AuthGuard, admin_allowed, headers_text, send_unauthorized
from mockllm_tui.http.chat import run_chat
from mockllm_tui.http.exchange import REDACTED_HEADERS, ClientGone, CutConnection, Exchange, Receive, Scope, Send
from mockllm_tui.http.fallback import build_fallback, health
from mockllm_tui.http.journal import JournalRecorder
from mockllm_tui.http.media import run_media
from mockllm_tui.http.metrics import CONTENT_TYPE as METRICS_TYPE
from mockllm_tui.http.metrics import Metrics
from mockllm_tui.http.ratelimit import RateLimiter
from mockllm_tui.http.realtime import serve_realtime
from mockllm_tui.http.simple import run_simple
from mockllm_tui.http.upstream import UpstreamProxy
from mockllm_tui.providers.base import (
    CLAIM_NONE,
    ChatEndpoint,
    Endpoint,
    Provider,
    path_pattern,
)
from mockllm_tui.providers.media import MediaEndpoint
from mockllm_tui.providers.realtime import RealtimeEndpoint
from mockllm_tui.providers.registry import build_providers

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("mockllm_tui")

ADMIN_PREFIX = "/_mock/"
METRICS_PATH = "/metrics"
#: A check before a model endpoint: it raises to refuse, or returns what to await when it must ask
#: the shared state (a rate limit counted by the group).
Guard = Callable[[Exchange, Provider], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Route:
    """One served route: method, path (a `{name}` part matches one free segment) and endpoint."""

    method: str
    path: str
    endpoint: Endpoint


class MockApp:
    """The ASGI app: model endpoints and `/health` in plain ASGI, the rest through a FastAPI fallback."""

    def __init__(self, store: Store, providers: list[Provider]) -> None:
        if not providers:
            raise ValueError("no providers are registered")
        self.store = store
        self.providers = providers
        self.guards: list[Guard] = []
        self.shape = next((p for p in providers if p.default_shape), providers[0])
        self.secret_headers = REDACTED_HEADERS.union(*(p.credential_headers for p in providers))
        self.upstream = UpstreamProxy()
        self._fallback: FastAPI | None = None
        self._fallback_lock = threading.Lock()
        self._fallback_pending: asyncio.Future[FastAPI] | None = None
        self.metrics = Metrics(store)
        self._cors: Callable[[Scope, Receive, Send], Any] | None = None
        self._exact: dict[tuple[str, str], list[Endpoint]] = {}
        self._by_path: dict[str, list[Endpoint]] = {}
        self._patterns: list[tuple[str, str, re.Pattern[str], Endpoint]] = []
        for provider in providers:
            for endpoint in provider.endpoints:
                for path in endpoint.paths:
                    pattern = path_pattern(path)
                    if pattern is not None:
                        self._patterns.append((endpoint.method, path, pattern, endpoint))
                    else:
                        self._exact.setdefault((endpoint.method, path), []).append(endpoint)
                        self._by_path.setdefault(path, []).append(endpoint)

    def routes(self) -> list[Route]:
        """Every route the dispatcher serves itself, in registration order."""
        out = [Route(m, p, e) for (m, p), endpoints in self._exact.items() for e in endpoints]
        out += [Route(m, template, e) for m, template, _, e in self._patterns]
        return out

    @property
    def fallback_built(self) -> bool:
        """Whether the FastAPI fallback has been built yet."""
        return self._fallback is not None

    def close_streams(self) -> None:
        """The server is stopping: end the admin event streams, which never end by themselves."""
        feed = getattr(self._fallback.state, "event_feed", None) if self._fallback is not None else None
        if feed is not None:
            feed.close()

    def add_guard(self, guard: Guard) -> None:
        """A check run before every model endpoint (auth, rate limits); it raises to refuse."""
        self.guards.append(guard)

    def claimant(self, path: str, headers: dict[str, str], among: Iterable[Provider] | None = None) -> Provider | None:
        """The provider that claims a request most strongly (the first on a tie), or None."""
        best, strength = None, CLAIM_NONE
        for provider in self.providers if among is None else among:
            claim = provider.claims(path, headers)
            if claim > strength:
                best, strength = provider, claim
        return best

    def enable_cors(self, origins: Sequence[str]) -> None:
        """Answer CORS preflights and add CORS headers for these origins (`*` for any), on every route.

        Off unless called (`--cors ORIGINS`). It wraps the dispatcher too, not only FastAPI's routes.
        """
        from starlette.middleware.cors import CORSMiddleware

        exposed = {name.decode() for p in self.providers for name, _ in p.response_headers("")} | {"retry-after"}
        self._cors = CORSMiddleware(
            self.dispatch,
            allow_origins=list(origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=sorted(exposed),
        )

    @property
    def fallback(self) -> FastAPI:
        """The FastAPI app behind the dispatcher (`/_mock/*`, docs, 404s), built on first use."""
        with self._fallback_lock:
            if self._fallback is None:
                self._fallback = build_fallback(self.store, self.providers, self.shape)
            return self._fallback

    def prepare_fallback(self) -> asyncio.Future[FastAPI]:
        """Build the fallback on a worker thread, so the loop keeps serving model requests meanwhile."""
        loop = asyncio.get_running_loop()
        if self._fallback_pending is None or self._fallback_pending.get_loop() is not loop:
            self._fallback_pending = loop.run_in_executor(None, self._build_slow_parts)
        return self._fallback_pending

    def _build_slow_parts(self) -> FastAPI:
        self.metrics.load()
        return self.fallback

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
            endpoint = self.endpoint_for(method, path, scope.get("headers", ()))
            if endpoint is not None:
                await self._serve(endpoint, endpoint.provider, scope, receive, send)
                return
            if path == "/health" and method in ("GET", "HEAD"):
                await Exchange(scope, receive, send, self.store).send_json(200, health(self.store))
                return
            if path == METRICS_PATH and method in ("GET", "HEAD"):
                await self._send_metrics(send)
                return
            if path.startswith(ADMIN_PREFIX):
                headers = headers_text(scope.get("headers", ()))
                if not admin_allowed(self.store, path, headers, self.shape):
                    await send_unauthorized(send, headers, self.shape)
                    return
            else:
                headers = headers_text(scope.get("headers", ()))
                # The provider that claims the request most strongly answers it (on a tie, one serving
                # the path): a 405 where it serves the path with another method, else a 404 (as for
                # google-genai's `models/x:noSuchMethod` under /v1, where OpenAI serves `models/{id}`).
                serving = [e.provider for e in self._known(path)]
                shape = self.claimant(path, headers, [*serving, *self.providers]) or next(iter(serving), None)
                if shape is not None:
                    await self._serve(None, shape, scope, receive, send)
                    return
                await self._journaled(scope, receive, send)
                return
        elif scope["type"] == "websocket":
            await self._serve_socket(scope, receive, send)
            return
        await self._call_fallback(scope, receive, send)

    async def _serve_socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket: a realtime endpoint's session, or a refusal at the handshake (403)."""
        endpoint = self.endpoint_for("GET", scope["path"], scope.get("headers", ()))
        if isinstance(endpoint, RealtimeEndpoint):
            await serve_realtime(endpoint, scope, receive, send, self.store, self.secret_headers)
            return
        await receive()
        await send({"type": "websocket.close", "code": 1008, "reason": "no realtime endpoint at this path"})

    async def _send_metrics(self, send: Send) -> None:
        """`GET /metrics`, open like `/health` (it lists counts, never content)."""
        await asyncio.shield(self.prepare_fallback())
        body = self.metrics.render()
        head = [(b"content-type", METRICS_TYPE), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": body})

    def endpoint_for(self, method: str, path: str, raw_headers: Iterable[tuple[bytes, bytes]] = ()) -> Endpoint | None:
        """The endpoint that serves a request, or None. Among several providers serving the same
        route, the one that claims the request most strongly (by its headers) wins."""
        endpoints = self._exact.get((method, path)) or self._pattern_endpoints(method, path)
        if len(endpoints) <= 1:
            return endpoints[0] if endpoints else None
        provider = self.claimant(path, headers_text(raw_headers), [e.provider for e in endpoints])
        return next((e for e in endpoints if e.provider is provider), endpoints[0])

    async def _journaled(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a non-model route through FastAPI, recording it in the journal like any request."""
        journal = JournalRecorder(self.store, scope["method"], scope["path"])
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
            journal.ended(status, size)

    def _pattern_endpoints(self, method: str | None, path: str) -> list[Endpoint]:
        """The endpoints whose path template (`{name}` parts) matches (any method when None)."""
        return [e for m, _, p, e in self._patterns if (method is None or m == method) and p.fullmatch(path)]

    def _known(self, path: str) -> list[Endpoint]:
        """Endpoints serving this path with some method (for 405 rather than 404)."""
        return self._by_path.get(path) or self._pattern_endpoints(None, path)

    async def _serve(
        self, endpoint: Endpoint | None, provider: Provider, scope: Scope, receive: Receive, send: Send
    ) -> None:
        ex = Exchange(scope, receive, send, self.store, self.secret_headers)
        request_id = provider.request_id()
        ex.request_id = request_id
        if endpoint is not None:
            ex.journal.served_by(provider.name, provider.system, request_id, endpoint.name, endpoint.operation)
        else:
            ex.journal.served_by(provider.name, provider.system, request_id)
        ex.extra_headers = provider.response_headers(request_id)
        ex.timing_header = provider.timing_header
        try:
            if endpoint is None:
                if any(e.provider is provider for e in self._known(ex.path)):
                    raise RequestError(f"method {scope['method']} is not allowed on {ex.path}", status=405)
                raise RequestError(f"unknown path {scope['method']} {ex.path}", status=404)
            if endpoint.guarded:
                for guard in self.guards:
                    pending = guard(ex, provider)
                    if pending is not None:
                        await pending
            if isinstance(endpoint, ChatEndpoint):
                await run_chat(endpoint, ex, self.upstream)
            elif isinstance(endpoint, MediaEndpoint):
                await run_media(endpoint, ex, self.upstream)
            else:
                await run_simple(endpoint, ex)
        except RequestError as error:
            await self._send_error(ex, provider, error)
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
                await self._send_error(
                    ex, provider, RequestError("internal error in mockllm-tui (see its log)", status=500)
                )
            else:
                ex.abandon(500)

    async def _send_error(self, ex: Exchange, provider: Provider, error: RequestError) -> None:
        """Answer with an error in the provider's shape (in the stream, once one has started)."""
        status, message = error.status, error.message
        if ex.streaming:
            await ex.send_chunk(provider.stream_error(status, message))
            await ex.end_stream(status)
            return
        body = provider.error_body(
            status, message, type=error.type, param=error.param, code=error.code, request_id=ex.request_id
        )
        headers = provider.error_headers(status, type=error.type, code=error.code)
        if error.retry_after_ms is not None:
            headers = [*provider.retry_headers(status, error.retry_after_ms), *headers]
        await ex.send_bytes(provider.error_status(status), body, headers)


def create_app(store: Store, *, plugins: Iterable[str] = ()) -> MockApp:
    """The whole server as one ASGI app, sharing `store` with the caller."""
    app = MockApp(store, build_providers(plugins))
    app.add_guard(AuthGuard(store))
    app.add_guard(RateLimiter(store))
    return app
