"""One HTTP exchange on the hot path, in plain ASGI: read the body, send JSON or an SSE stream.

The exchange is the flows' side of a request: the provider only ever sees its neutral `Request`.
Every byte that goes out is recorded through the request's `JournalRecorder`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NoReturn

import orjson

from mockllm_tui.core.conversation import RequestError
from mockllm_tui.core.sessions import session_of
from mockllm_tui.core.store import REDACTED, Store
from mockllm_tui.http.journal import JournalRecorder
from mockllm_tui.providers.base import Request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = b"application/json"
SSE_TYPE = b"text/event-stream; charset=utf-8"
#: Credential headers of HTTP itself; each provider adds its own (Provider.credential_headers).
REDACTED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


class ClientGone(Exception):
    """The client went away while we were still answering."""


class CutConnection(Exception):
    """Raised to drop the connection on purpose (the `disconnect` fault); the server closes it."""


class Exchange:
    """The request's scope, its neutral `Request`, its journal recorder, and ways to answer it."""

    __slots__ = (
        "_started_stream",
        "_watcher",
        "extra_headers",
        "headers",
        "journal",
        "receive",
        "request",
        "request_id",
        "scope",
        "send",
        "status",
        "store",
        "t0",
        "timing_header",
    )

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        store: Store,
        secret_headers: frozenset[str] = REDACTED_HEADERS,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.store = store
        self.t0 = time.perf_counter()
        headers: dict[str, str] = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        self.headers = headers
        method, path = scope["method"], scope["path"]
        self.journal = JournalRecorder(store, method, path, redact_headers(headers, secret_headers))
        self.journal.in_session(session_of(headers))
        query = scope.get("query_string")
        self.request = Request(
            method,
            path,
            bytes(query).decode("latin-1") if query else "",
            headers,
            b"",
            store.models,
            store.config.strict_models,
        )
        self.request_id = ""
        self.status = 0
        self.extra_headers: list[tuple[bytes, bytes]] = []
        self.timing_header: bytes | None = None
        self._started_stream = False
        self._watcher: asyncio.Future[Message] | None = None

    @property
    def path(self) -> str:
        """The request path."""
        return self.request.path

    @property
    def body(self) -> bytes:
        """The request body (empty until read)."""
        return self.request.body

    def elapsed_ms(self) -> float:
        """Milliseconds since the request arrived."""
        return (time.perf_counter() - self.t0) * 1000.0

    @property
    def query(self) -> str:
        """The query string, decoded."""
        return self.request.query

    async def read_body(self, limit: int | None = None) -> bytes:
        """Read the whole body, refusing (413) one larger than `limit` (default: the configured
        limit) before reading it all."""
        if limit is None:
            limit = self.store.config.max_body
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(f"request body is larger than the limit of {limit} bytes", status=413)
        parts: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(f"request body is larger than the limit of {limit} bytes", status=413)
            parts.append(chunk)
            more = message.get("more_body", False)
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        self.request.body = body
        self.journal.body(body)
        return body

    async def send_bytes(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        content_type: bytes = JSON_TYPE,
    ) -> None:
        """Send a whole response and record it in the journal."""
        self.status = status
        raw_headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            *self.extra_headers,
            *(headers or ()),
        ]
        self._add_timing(raw_headers)
        await self.send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await self.send({"type": "http.response.body", "body": body})
        self.journal.ended(status, len(body), body)

    def _add_timing(self, raw_headers: list[tuple[bytes, bytes]]) -> None:
        """The provider's processing-time header (e.g. `openai-processing-ms`), measured as the head goes out."""
        if self.timing_header is not None:
            raw_headers.append((self.timing_header, b"%d" % self.elapsed_ms()))

    async def send_json(self, status: int, obj: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """Send an object as JSON."""
        await self.send_bytes(status, orjson.dumps(obj), headers)

    async def start_stream(
        self, headers: list[tuple[bytes, bytes]] | None = None, content_type: bytes = SSE_TYPE
    ) -> None:
        """Send the 200 head of a stream and start watching for the client going away."""
        self.status = 200
        raw_headers = [
            (b"content-type", content_type),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *self.extra_headers,
            *(headers or ()),
        ]
        self._add_timing(raw_headers)
        await self.send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        self._started_stream = True
        self.journal.first_byte()
        self.watch_disconnect()

    async def send_chunk(self, data: bytes, text: str = "") -> None:
        """Send one piece of the stream; `text` is what the journal shows of it."""
        if self._watcher is not None and self._watcher.done():
            raise ClientGone()
        await self.send({"type": "http.response.body", "body": data, "more_body": True})
        self.journal.chunk(text, len(data))

    async def send_chunks(self, data: list[bytes], texts: list[str]) -> None:
        """Send several pieces that are due together in one write (a loop that fell behind catches up)."""
        if len(data) == 1:
            await self.send_chunk(data[0], texts[0])
            return
        if self._watcher is not None and self._watcher.done():
            raise ClientGone()
        joined = b"".join(data)
        await self.send({"type": "http.response.body", "body": joined, "more_body": True})
        self.journal.chunks(texts, len(joined))

    async def end_stream(self, status: int = 200) -> None:
        """Close the stream and record the end."""
        self._stop_watching()
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        self.journal.ended(status)

    def abandon(self, status: int) -> None:
        """Record the end of a request whose client went away (or that was cut on purpose)."""
        self._stop_watching()
        self.journal.failed(status)

    @property
    def streaming(self) -> bool:
        """True once the stream's head has gone out."""
        return self._started_stream

    def client_gone(self) -> bool:
        """True once the client has disconnected during a stream."""
        return self._watcher is not None and self._watcher.done()

    async def cut(self) -> NoReturn:
        """Drop the connection mid-answer: the client sees the connection close, not a response."""
        if not self._started_stream:
            head = [(b"content-type", JSON_TYPE), (b"content-length", b"4096")]
            await self.send({"type": "http.response.start", "status": 200, "headers": head})
        self.abandon(499)
        raise CutConnection()

    def watch_disconnect(self) -> None:
        """Cancel the current task when the client disconnects (after the body has been read)."""
        if self._watcher is not None:
            return
        task = asyncio.current_task()
        watcher = asyncio.ensure_future(self.receive())

        def on_message(fut: asyncio.Future[Message]) -> None:
            if not fut.cancelled() and task is not None and not task.done():
                task.cancel("client disconnected")

        watcher.add_done_callback(on_message)
        self._watcher = watcher

    def _stop_watching(self) -> None:
        watcher = self._watcher
        if watcher is not None and not watcher.done():
            watcher.cancel()


def redact_headers(headers: dict[str, str], secret: frozenset[str] = REDACTED_HEADERS) -> dict[str, str]:
    """Headers with credentials replaced by a mark that shows only that one was sent.

    Without credentials the same dict is returned: it is never changed after parsing.
    """
    if secret.isdisjoint(headers):
        return headers
    return {k: (REDACTED if k in secret else v) for k, v in headers.items()}
