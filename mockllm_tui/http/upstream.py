"""The upstream proxy: a request no rule matches goes to its provider's real API (`--upstream NAME=URL`).

The request is forwarded at the same path and query with its body byte for byte. Hop-by-hop headers,
`host`, `content-length`, `accept-encoding` and cookies are not forwarded; the caller's credentials
are, unless `MOCKLLM_UPSTREAM_KEY_<NAME>` holds a key (then the provider's `upstream_auth` header
carries that key instead). The answer comes back unchanged: status, body and headers (less the
hop-by-hop ones), a stream chunk by chunk as it arrives (a body without chunked framing is cut into
its events, so that events read together still go out one a write). An unreachable upstream gets a
502, one that times out a 504, in the provider's own error shape.

With recording on, a 2xx answer is read back into a Reply by the endpoint's `reply_reader` (the
only wire-format knowledge needed) and saved as a rule by rules/recording.py, as soon as the
upstream's answer is complete (a stream's terminal event), whether or not the client is still there.
Nothing here writes a header anywhere: the journal keeps the redacted request headers only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from mockllm_tui.core.conversation import Conversation, Reply, RequestError
from mockllm_tui.core.store import url_host
from mockllm_tui.core.tokens import count_tokens
from mockllm_tui.engine.faults import MOCK_HEADERS
from mockllm_tui.http.exchange import REDACTED_HEADERS, ClientGone, Exchange
from mockllm_tui.providers.base import ChatEndpoint, Headers, Provider, ReplyReader
from mockllm_tui.rules.choosing import request_context
from mockllm_tui.rules.identity import UPSTREAM_LABEL
from mockllm_tui.rules.recording import Recorder, Timing, answer_by_rules, measure_pace

log = logging.getLogger("mockllm_tui.upstream")

KEY_ENV_PREFIX = "MOCKLLM_UPSTREAM_KEY_"
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
#: The mock's own per-request controls (x-mock-*) stay here too.
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "accept-encoding", "cookie", *MOCK_HEADERS}
#: Answer headers not passed back: the ones the exchange writes itself, and cookies.
NOT_RETURNED = HOP_BY_HOP | {"content-length", "content-encoding", "content-type", "set-cookie"}
STREAM_HEADERS = frozenset({"cache-control", "x-accel-buffering"})
#: Content types passed through chunk by chunk when the request could not be parsed.
STREAM_TYPES = ("event-stream", "ndjson", "eventstream")


class UpstreamError(ValueError):
    """A bad `--upstream` value."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """A real API that a provider's unmatched requests go to."""

    name: str
    url: str

    @property
    def host(self) -> str:
        """The upstream's host (and port), never its userinfo: what messages and the comment show."""
        return url_host(self.url)

    def target(self, path: str, query: str) -> str:
        """The URL for a request path: the base URL's path is not repeated when the request has it."""
        parts = urlsplit(self.url)
        base = parts.path.rstrip("/")
        if base and (path == base or path.startswith(base + "/")):
            base = ""
        url = f"{parts.scheme}://{parts.netloc}{base}{path}"
        return f"{url}?{query}" if query else url


def parse_upstreams(values: Iterable[str], known: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """`NAME=URL` values (each may be a comma-separated list) as (name, url) pairs. Raises UpstreamError
    for a malformed value, a URL that is not http(s), or a name that is not a provider's."""
    names = sorted(set(known))
    out: dict[str, str] = {}
    for value in values:
        for item in (v.strip() for v in value.split(",")):
            if not item:
                continue
            name, sep, url = item.partition("=")
            name, url = name.strip(), url.strip().rstrip("/")
            if not sep or not name or not url:
                raise UpstreamError(f"--upstream: expected PROVIDER=URL, got {item!r}")
            if name not in names:
                raise UpstreamError(f"--upstream: unknown provider {name!r} (known: {', '.join(names)})")
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UpstreamError(f"--upstream: {name}: expected an http(s) URL, got {url!r}")
            out[name] = url
    return tuple(out.items())


def upstream_for(pairs: Iterable[tuple[str, str]], provider: str) -> Upstream | None:
    """The upstream of a provider: its own, else that of the provider whose name its own extends
    (`NAME-...` uses `NAME`'s upstream, the same API's other endpoints)."""
    best: tuple[str, str] | None = None
    for name, url in pairs:
        if name == provider:
            return Upstream(name, url)
        if provider.startswith(name + "-") and (best is None or len(name) > len(best[0])):
            best = (name, url)
    return None if best is None else Upstream(*best)


def key_env(name: str) -> str:
    """The variable holding the key for an upstream: MOCKLLM_UPSTREAM_KEY_<NAME>."""
    return KEY_ENV_PREFIX + name.upper().replace("-", "_")


def upstream_key(provider: Provider, upstream: Upstream) -> str | None:
    """The key for the upstream: the provider's own variable, else the upstream's."""
    return os.environ.get(key_env(provider.name)) or os.environ.get(key_env(upstream.name)) or None


def forwarded_headers(
    raw: Iterable[tuple[bytes, bytes]], provider: Provider, key: str | None, method: str, url: str, body: bytes
) -> Headers:
    """The request headers to send upstream (with `key`, the caller's credentials are replaced)."""
    drop = set(NOT_FORWARDED)
    if key is not None:
        drop |= REDACTED_HEADERS | provider.credential_headers
    out = [(k, v) for k, v in raw if k.decode("latin-1").lower() not in drop]
    if key is not None:
        out += provider.upstream_auth(key, method=method, url=url, body=body)
    out.append((b"accept-encoding", b"identity"))
    return out


def returned_headers(headers: httpx.Headers, *, stream: bool) -> Headers:
    """The upstream's answer headers to pass back to the client."""
    drop = NOT_RETURNED | STREAM_HEADERS if stream else NOT_RETURNED
    return [(k, v) for k, v in headers.raw if k.decode("latin-1").lower() not in drop]


class UpstreamProxy:
    """Forwards unmatched requests to their provider's upstream and records the answers."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pumps: set[asyncio.Future[None]] = set()

    def upstream(self, ex: Exchange, provider: Provider) -> Upstream | None:
        """This provider's upstream, if one is set."""
        pairs = ex.store.config.upstreams
        return upstream_for(pairs, provider.name) if pairs else None

    def rule_reply(self, ex: Exchange, conversation: Conversation) -> Reply | None:
        """The reply of a matching rule (no fallback; while recording, none recorded in this run)."""
        skip = self.recorder.recorded_ids if ex.store.knobs.record else frozenset()
        context = request_context(ex.store, ex.headers, ex.journal.entry)
        return answer_by_rules(ex.store.rules, conversation, skip, context)

    def client(self, timeout_s: float) -> httpx.AsyncClient:
        """The HTTP client of the running loop (servers in tests run on several loops)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), follow_redirects=False)
            self._loop = loop
        return self._client

    async def forward(
        self, ex: Exchange, endpoint: ChatEndpoint, conversation: Conversation | None, upstream: Upstream
    ) -> None:
        """Send the request upstream and its answer back (recording a 2xx answer while recording). A
        request that could not be parsed (`conversation` None) is passed through, never recorded."""
        ex.journal.matched(UPSTREAM_LABEL)
        provider = endpoint.provider
        timeout_s = ex.store.config.upstream_timeout_s
        client = self.client(timeout_s)
        method, url = ex.scope["method"], upstream.target(ex.path, ex.query)
        key = upstream_key(provider, upstream)
        headers = forwarded_headers(ex.scope.get("headers", ()), provider, key, method, url, ex.body)
        request = client.build_request(method, url, headers=headers, content=ex.body)
        started = time.perf_counter()
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            status, message = failure(exc, upstream, timeout_s)
            raise RequestError(message, status=status) from None
        ex.extra_headers = []  # the upstream's own headers go back, not ours
        ex.timing_header = None
        reader = safe_reader(endpoint, conversation) if response.is_success and conversation is not None else None
        if response.is_success and streamed(conversation, response.headers.get("content-type", "")):
            ctype = response.headers.get("content-type", "text/event-stream").encode("latin-1")
            try:
                await ex.start_stream(returned_headers(response.headers, stream=True), content_type=ctype)
            except BaseException:
                await response.aclose()
                raise
            pump = asyncio.ensure_future(self._pump(ex, endpoint, conversation, upstream, response, reader, started))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)
            # The pump carries on when the client leaves, so the answer is still recorded at its end.
            await asyncio.shield(pump)
            return
        try:
            body = await response.aread()
        except httpx.HTTPError as exc:
            status, message = failure(exc, upstream, timeout_s)
            raise RequestError(message, status=status) from None
        finally:
            await response.aclose()
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        if reader is not None and conversation is not None:
            feed(reader, body)
            reply = read_reply(reader)
            if reply is not None:
                remember(endpoint, conversation, reader)
                ex.journal.reply_text(reply.text)
                self._save(ex, conversation, reply, measure_pace(0.0, [(elapsed_ms / 1000.0, 0)]), upstream)
        ctype = response.headers.get("content-type", "application/json").encode("latin-1")
        await ex.send_bytes(response.status_code, body, returned_headers(response.headers, stream=False), ctype)

    async def _pump(
        self,
        ex: Exchange,
        endpoint: ChatEndpoint,
        conversation: Conversation | None,
        upstream: Upstream,
        response: httpx.Response,
        reader: ReplyReader | None,
        started: float,
    ) -> None:
        """Pass the stream through chunk by chunk, recording it at its terminal event."""
        gone, saved, status = False, False, 200
        marks: list[tuple[float, int]] = []

        async def send(data: bytes, text: str) -> None:
            nonlocal gone
            if not gone:
                try:
                    await ex.send_chunk(data, text)
                except ClientGone:
                    gone = True  # keep reading: the answer is recorded at its end all the same

        # Chunked framing keeps the upstream's chunks; without it a read may hold several events.
        cut = reader is not None and "chunked" not in response.headers.get("transfer-encoding", "").lower()
        try:
            async for received in response.aiter_bytes():
                for data in reader.pieces(received) if cut and reader is not None else (received,):
                    text = feed(reader, data) if reader is not None else ""
                    if text:
                        marks.append((time.perf_counter() - started, count_tokens(text)))
                    if reader is not None and conversation is not None and reader.done and not saved:
                        saved = True
                        reply = read_reply(reader)
                        if reply is not None:
                            remember(endpoint, conversation, reader)
                            self._save(ex, conversation, reply, measure_pace(0.0, marks), upstream)
                    await send(data, text)
        except httpx.HTTPError as exc:
            status, message = failure(exc, upstream, ex.store.config.upstream_timeout_s)
            await send(endpoint.provider.stream_error(status, message), "")
        finally:
            await response.aclose()
        if not gone and not ex.client_gone():
            ex.journal.reply_text(reader.text if reader is not None else "")
            await ex.end_stream(status)

    def _save(self, ex: Exchange, conversation: Conversation, reply: Reply, timing: Timing, upstream: Upstream) -> None:
        store = ex.store
        if not store.knobs.record:
            return
        try:
            result = self.recorder.record(store, conversation, reply, timing, upstream.host)
        except Exception as exc:  # a recording problem never breaks the answer
            log.warning("could not record the answer from %s: %s", upstream.host, exc)
            return
        if result is not None and result.message:
            log.warning("recorded the answer from %s: %s", upstream.host, result.message)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def streamed(conversation: Conversation | None, content_type: str) -> bool:
    """Whether an answer is a stream: as the request asked, or (unparsed) as its content type says."""
    if conversation is not None:
        return conversation.stream
    return any(word in content_type.lower() for word in STREAM_TYPES)


def safe_reader(endpoint: ChatEndpoint, conversation: Conversation) -> ReplyReader | None:
    """The endpoint's reply reader (None when it has none or cannot make one)."""
    try:
        return endpoint.reply_reader(conversation)
    except Exception as exc:
        log.warning("%s: no reply reader: %s", endpoint.name, exc)
        return None


def feed(reader: ReplyReader, data: bytes) -> str:
    """Feed the reader; a reader that fails stops recording this answer but never the pass-through."""
    if reader.failed:
        return ""
    try:
        return reader.feed(data)
    except Exception as exc:
        log.warning("could not read the upstream's answer for recording: %s", exc)
        reader.failed = True
        return ""


def read_reply(reader: ReplyReader) -> Reply | None:
    """The reader's reply (None when it failed or the answer was incomplete)."""
    if reader.failed:
        return None
    try:
        return reader.reply()
    except Exception as exc:
        log.warning("could not read the upstream's answer for recording: %s", exc)
        return None


def remember(endpoint: ChatEndpoint, conversation: Conversation, reader: ReplyReader) -> None:
    """Let the endpoint keep an upstream's complete answer; a failure there never breaks the answer."""
    try:
        endpoint.remember_upstream(conversation, reader)
    except Exception as exc:
        log.warning("%s: could not keep the upstream's answer: %s", endpoint.name, exc)


def failure(exc: httpx.HTTPError, upstream: Upstream, timeout_s: float) -> tuple[int, str]:
    """The status (504 for a timeout, else 502) and message for an upstream that failed."""
    if isinstance(exc, httpx.TimeoutException):
        return 504, f"the upstream {upstream.host} ({upstream.name}) did not answer within {timeout_s:g} s"
    reason = str(exc) or type(exc).__name__
    what = "could not be reached" if isinstance(exc, httpx.ConnectError) else "failed"
    return 502, f"the upstream {upstream.host} ({upstream.name}) {what}: {reason}"
