"""Both HTTP protocols, uvicorn's (`--http uvicorn`, the default) and ours (`--http fast`), fed the same
raw bytes while serving the same app: each case must get the same statuses, framing (length, chunks or
the close), bodies and connection outcome (kept open or closed) from both. Then one regression test for
each defect a review found in ours, from the review's own bytes.

Reads are event-driven: until a response is whole or the socket closes; timeouts are only safety nets.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import ServerHandle
from tests.conftest import HOST, make_store
from tests.test_protocol import serving_asgi

SAFETY_S = 5.0
PROBE = b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n"


async def battery_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The app both protocols serve: each path answers in a way the cases need."""
    path = scope["path"]
    if path == "/nope":  # answers without reading the body
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"9")]})
        await send({"type": "http.response.body", "body": b"not found"})
        return
    if path == "/fail":
        raise ValueError("failed before the response")
    if path == "/fail-after-head":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        raise ValueError("failed after the client left")
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if path == "/stream":  # no length: chunked (or, for HTTP/1.0, the close ends it)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for piece in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/both":  # the app says both a length and chunked
        headers = [(b"content-length", b"10"), (b"transfer-encoding", b"chunked")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await send({"type": "http.response.body", "body": b"world"})
        return
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k.startswith(b"x-")}
    echo = orjson.dumps(
        {
            "method": scope["method"],
            "path": path,
            "version": scope["http_version"],
            "size": len(body),
            "sha": hashlib.sha256(body).hexdigest()[:12],
            "x": headers,
        }
    )
    head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(echo))]
    await send({"type": "http.response.start", "status": 200, "headers": head})
    await send({"type": "http.response.body", "body": echo})


@dataclass(frozen=True)
class Response:
    """What a client sees of one response."""

    status: int
    framing: str  # "length", "chunked", "close" (read to the end) or "none" (1xx, HEAD, 204, 304)
    body: bytes


@dataclass
class Outcome:
    """Everything one case's bytes got back."""

    responses: list[Response] = field(default_factory=list)
    connection: str = ""  # "open" (a probe request was answered) or "closed"
    broken: str = ""  # framing a client could not follow


async def read_response(reader: asyncio.StreamReader, method: str) -> Response | None:
    """One response, framed as RFC 9112 6.3 says a client reads it; None at the close."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    first, *lines = head.decode("latin-1").split("\r\n")
    status = int(first.split()[1])
    headers: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if status < 200 or method == "HEAD" or status in (204, 304):
        return Response(status, "none", b"")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            parts.append((await reader.readexactly(size + 2))[:-2])
            if size == 0:
                return Response(status, "chunked", b"".join(parts))
    if "content-length" in headers:
        return Response(status, "length", await reader.readexactly(int(headers["content-length"])))
    return Response(status, "close", await reader.read())


@dataclass(frozen=True)
class Case:
    """Raw bytes to send and how many responses a client waits for."""

    name: str
    data: bytes
    expect: int = 1
    method: str = "GET"
    leave: str = ""  # "at once": the client closes after sending; "after head": after the first head


async def run_case(port: int, case: Case) -> Outcome:
    """Send a case's bytes; read up to `expect` responses or the close; then probe the connection."""
    outcome = Outcome()
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(case.data)
        if case.leave == "at once":
            return outcome
        if case.leave == "after head":
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SAFETY_S)
            return outcome
        try:
            while len(outcome.responses) < case.expect:
                response = await asyncio.wait_for(read_response(reader, case.method), SAFETY_S)
                if response is None:
                    outcome.connection = "closed"
                    return outcome
                outcome.responses.append(response)
            if outcome.responses and outcome.responses[-1].framing == "close":
                outcome.connection = "closed"
                return outcome
            writer.write(PROBE)
            probe = await asyncio.wait_for(read_response(reader, "GET"), SAFETY_S)
        except (asyncio.IncompleteReadError, ValueError) as exc:
            outcome.broken = type(exc).__name__
            return outcome
        except ConnectionError:
            outcome.connection = "closed"
            return outcome
        outcome.connection = "closed" if probe is None else f"open: probe {probe.status}"
        return outcome
    finally:
        writer.close()


@asynccontextmanager
async def both_serving(**settings: Any) -> AsyncIterator[dict[str, int]]:
    """The battery app served by each protocol: their ports by name."""
    async with serving_asgi(battery_app, "uvicorn", **settings) as theirs, serving_asgi(
        battery_app, "fast", **settings
    ) as ours:
        yield {"uvicorn": theirs, "fast": ours}


def post(path: str, headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    """A request's bytes, its headers given raw (each ending in CRLF)."""
    return f"POST {path} HTTP/{version}\r\nHost: x\r\n{headers}\r\n".encode() + body


def get(path: str, headers: str = "", version: str = "1.1") -> bytes:
    """A GET's bytes."""
    return f"GET {path} HTTP/{version}\r\nHost: x\r\n{headers}\r\n".encode()


CHUNKED = "Transfer-Encoding: chunked\r\n"
CASES = [
    # plain, framing and keep-alive
    Case("get", get("/echo")),
    Case("post with a length", post("/echo", "Content-Length: 5\r\n", b"hello")),
    Case("post chunked", post("/echo", CHUNKED, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")),
    Case("chunk extensions and trailers", post("/echo", CHUNKED, b"5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")),
    Case("head", b"HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n", method="HEAD"),
    Case("streamed response", get("/stream")),
    Case("app sets a length and chunked", get("/both")),
    Case("connection close", get("/echo", "Connection: close\r\n")),
    Case("query and escapes", get("/a%20b?x=1&y=%2F")),
    # HTTP/1.0
    Case("http/1.0", get("/echo", version="1.0")),
    Case("http/1.0 keep-alive", get("/echo", "Connection: keep-alive\r\n", version="1.0")),
    Case("http/1.0 post", post("/echo", "Content-Length: 3\r\n", b"abc", version="1.0")),
    # pipelining
    Case("pipelined three", get("/echo") + post("/echo", "Content-Length: 2\r\n", b"hi") + get("/stream"), 3),
    Case("pipelined after close", get("/echo", "Connection: close\r\n") + get("/echo"), 2),
    Case("pipelined then malformed head", get("/echo") + b"BROKEN\r\n\r\n", 2),
    Case("pipelined then bad chunk", get("/echo") + post("/echo", CHUNKED, b"zz\r\nhello\r\n0\r\n\r\n"), 2),
    # Expect
    Case("expect, body sent at once", post("/echo", "Content-Length: 5\r\nExpect: 100-continue\r\n", b"hello"), 2),
    Case("expect, answered unread", post("/nope", "Content-Length: 5\r\nExpect: 100-continue\r\n")),
    # header whitespace
    Case("trailing whitespace in a value", get("/echo", "X-Api-Key: KEY \t\r\n")),
    Case("leading whitespace in a value", get("/echo", "X-Api-Key:   KEY\r\n")),
    Case("space before the colon", get("/echo", "X-Api-Key : KEY\r\n")),
    Case("obsolete line folding", get("/echo", "X-Api-Key: KEY\r\n more\r\n")),
    Case("bare LF line endings", b"GET /echo HTTP/1.1\nHost: x\n\n"),
    # smuggling
    Case("CL and TE", post("/echo", "Content-Length: 5\r\n" + CHUNKED, b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"), 2),
    Case("TE and CL", post("/echo", CHUNKED + "Content-Length: 5\r\n", b"0\r\n\r\n"), 2),
    Case("two different lengths", post("/echo", "Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!")),
    Case("two equal lengths", post("/echo", "Content-Length: 5\r\nContent-Length: 5\r\n", b"hello")),
    Case("length with a sign", post("/echo", "Content-Length: +5\r\n", b"hello")),
    Case("TE xchunked", post("/echo", "Transfer-Encoding: xchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
    Case("TE chunked, identity", post("/echo", "Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n")),
    Case("TE with a tab", post("/echo", "Transfer-Encoding:\tchunked\r\n", b"0\r\n\r\n")),
    Case("TE twice", post("/echo", CHUNKED + CHUNKED, b"0\r\n\r\n")),
    Case("TE gzip", post("/echo", "Transfer-Encoding: gzip\r\n", b"hello")),
    Case("TE gzip then chunked", post("/echo", "Transfer-Encoding: gzip, chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
    # bad chunked bodies (the review's list)
    *[
        Case(f"chunk size {size!r}", post("/v1/chat/completions", CHUNKED, size + b"\r\nhello\r\n0\r\n\r\n"))
        for size in (b"zz", b"-5", b"0x5", b"ffffffffffffffffff")
    ],
    Case("chunk longer than declared", post("/echo", CHUNKED, b"3\r\nhello\r\n0\r\n\r\n")),
    Case("chunk shorter than declared", post("/echo", CHUNKED, b"9\r\nhello\r\n0\r\n\r\n")),
    Case("chunk with bare LF", post("/echo", CHUNKED, b"5\nhello\n0\n\n")),
    Case("bad chunk, answered unread", post("/nope", CHUNKED, b"zz\r\nhello\r\n0\r\n\r\n")),
    # malformed and oversize heads
    Case("not HTTP", b"THIS IS NOT HTTP\r\n\r\n"),
    Case("bad version", b"GET /echo HTTP/9.9\r\nHost: x\r\n\r\n"),
    Case("control byte in a header", get("/echo", "X-A: a\x01b\r\n")),
    Case("a 100 KB header", get("/echo", "X-Big: " + "a" * 100_000 + "\r\n")),
    Case("a 100 KB target", get("/" + "a" * 100_000)),
    # apps that fail
    Case("app fails before its response", get("/fail")),
    # early client exits
    Case("client leaves mid-head", b"GET /echo HTTP/1.1\r\nHo", leave="at once"),
    Case("client leaves mid-body", post("/echo", "Content-Length: 50\r\n", b"only some"), leave="at once"),
    Case("client leaves after the head, then the app fails", get("/fail-after-head"), leave="after head"),
]

#: Where uvicorn's own protocol breaks an RFC and ours does not: both outcomes are pinned.
DIVERGENT = {
    # RFC 9112 6.1: no Transfer-Encoding to an HTTP/1.0 client; ours lets the close end the body.
    "http/1.0 stream": Case("http/1.0 stream", get("/stream", version="1.0")),
}


def noisy_records(records: list[logging.LogRecord]) -> list[str]:
    """Errors the protocols logged that were not the app's own failures."""
    return [
        f"{r.getMessage()} {r.exc_info[1]!r}"
        for r in records
        if r.levelno >= logging.ERROR and not (r.exc_info and isinstance(r.exc_info[1], ValueError))
    ]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_both_protocols_answer_the_same(case: Case, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    async with both_serving() as ports:
        theirs = await run_case(ports["uvicorn"], case)
        ours = await run_case(ports["fast"], case)
        after = [await run_case(port, Case("still serving", get("/echo"))) for port in ports.values()]
    assert ours == theirs, f"fast: {ours}\nuvicorn: {theirs}"
    assert not ours.broken
    assert [a.responses[0].status for a in after] == [200, 200]
    assert noisy_records(caplog.records) == []


async def test_an_http10_stream_is_chunked_by_uvicorn_and_ended_by_the_close_by_ours() -> None:
    case = DIVERGENT["http/1.0 stream"]
    async with both_serving() as ports:
        theirs = await run_case(ports["uvicorn"], case)
        ours = await run_case(ports["fast"], case)
    assert theirs.responses == [Response(200, "chunked", b"one two three")]
    assert ours.responses == [Response(200, "close", b"one two three")] and ours.connection == "closed"


# -- one regression test for each defect the review found in ours, from its exact bytes ---------------

BOTH = pytest.mark.parametrize("http", ["uvicorn", "fast"])


@asynccontextmanager
async def real_server(http: str, **knobs: Any) -> AsyncIterator[int]:
    """The real app (every provider) on this protocol; yields the port."""
    store = make_store()
    if knobs:
        store.set_knobs("cli", knobs)
    handle = ServerHandle(create_app(store), HOST, 0, grace_s=1, http=http)
    await handle.start()
    try:
        yield handle.port
    finally:
        await handle.stop()


async def exchange_raw(port: int, data: bytes) -> tuple[list[Response], bool]:
    """Send `data`, read the one response and wait for the close: (responses, closed)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(data)
    try:
        response = await asyncio.wait_for(read_response(reader, "POST"), SAFETY_S)
        rest = await asyncio.wait_for(reader.read(), SAFETY_S)
    finally:
        writer.close()
    return ([response] if response else []), rest == b""


@BOTH
async def test_a_malformed_body_of_the_request_being_served_gets_400_and_the_close(http: str) -> None:
    data = (  # the review's bytes
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    )
    async with real_server(http) as port:
        responses, closed = await exchange_raw(port, data)
    assert responses == [Response(400, "length", b"Invalid HTTP request received.")] and closed


@BOTH
async def test_expect_100_continue_answered_unread_does_not_pin_the_connection(http: str) -> None:
    # The read deadline is long (30 s, the default): the keep-alive timeout (0.3 s) must close it.
    data = b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    async with serving_asgi(battery_app, http, timeout_keep_alive=0.3) as port:
        responses, closed = await exchange_raw(port, data)
    assert responses == [Response(404, "length", b"not found")] and closed


@BOTH
async def test_trailing_whitespace_is_no_part_of_a_header_value(http: str) -> None:
    message = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    body = orjson.dumps(message)
    data = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: KEY \r\nanthropic-version: 2023-06-01\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
    )
    async with real_server(http, api_key="KEY") as port:
        responses, _ = await exchange_raw(port, data)
    assert responses[0].status == 200, responses
    assert orjson.loads(responses[0].body)["type"] == "message"


@pytest.mark.parametrize("version", ["1.1", "1.0"])
async def test_a_response_with_a_length_and_chunked_is_framed_one_way(version: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"transfer-encoding", b"chunked"), (b"content-length", b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await send({"type": "http.response.body", "body": b"world"})

    async with serving_asgi(app, "fast") as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(get("/", version=version))
        raw = await asyncio.wait_for(reader.read(), SAFETY_S) if version == "1.0" else b""
        if version == "1.1":
            raw = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), SAFETY_S)
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if version == "1.1":  # chunks, and no length beside them (RFC 9112 6.2)
        assert b"transfer-encoding: chunked" in head and b"content-length" not in head
        assert body == b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"
    else:  # no chunks for HTTP/1.0 (RFC 9112 6.1): the length frames it
        assert b"transfer-encoding" not in head and b"content-length: 10" in head
        assert body == b"helloworld"


@BOTH
@pytest.mark.parametrize("length", [True, False], ids=["length", "chunked"])
async def test_client_gone_after_the_head_then_the_app_fails(
    http: str, length: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    started, failed = asyncio.Event(), asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] != "/leaving":
            await battery_app(scope, receive, send)
            return
        head = [(b"content-length", b"10")] if length else []
        await send({"type": "http.response.start", "status": 200, "headers": head})
        started.set()
        while (await receive())["type"] != "http.disconnect":
            pass
        failed.set()
        raise ValueError("the app fails after its client left")

    async with serving_asgi(app, http) as port:
        _, writer = await asyncio.open_connection(HOST, port)
        writer.write(get("/leaving"))
        await asyncio.wait_for(started.wait(), SAFETY_S)
        writer.close()
        await asyncio.wait_for(failed.wait(), SAFETY_S)
        after = await run_case(port, Case("next", get("/echo")))
    assert after.responses[0].status == 200
    assert noisy_records(caplog.records) == []


@BOTH
async def test_limit_concurrency_answers_503(http: str) -> None:
    release = asyncio.Event()
    holding = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/hold":
            holding.set()
            await release.wait()
        await battery_app(scope, receive, send)

    async with serving_asgi(app, http, limit_concurrency=2) as port:
        held = asyncio.ensure_future(run_case(port, Case("hold", get("/hold"))))
        await asyncio.wait_for(holding.wait(), SAFETY_S)
        refused = await run_case(port, Case("refused", get("/echo")))
        release.set()
        first = await asyncio.wait_for(held, SAFETY_S)
    assert refused.responses == [Response(503, "length", b"Service Unavailable")]
    assert refused.connection == "closed"
    assert first.responses[0].status == 200


WS_UPGRADE = (
    b"GET /v1/nowhere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@BOTH
async def test_a_websocket_upgrade_to_an_unknown_path_is_refused_cleanly(http: str) -> None:
    async with real_server(http) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(WS_UPGRADE)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SAFETY_S)
        rest = await asyncio.wait_for(reader.read(), SAFETY_S)
        writer.close()
        after = await run_case(port, Case("health", get("/health")))
    assert head.startswith(b"HTTP/1.1 403"), head  # the app closed the handshake: uvicorn's refusal
    assert b"upgrade" not in head.lower().split(b"\r\n", 1)[1]
    assert rest is not None and after.responses[0].status == 200


async def test_a_websocket_is_accepted_on_the_default_protocol() -> None:
    from websockets.asyncio.client import connect

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"].upper()})
        await send({"type": "websocket.close", "code": 1000})

    for http in ("uvicorn", "fast"):
        async with serving_asgi(app, http) as port, connect(f"ws://{HOST}:{port}/ws") as ws:
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), SAFETY_S) == "HELLO"


def test_the_http_option_chooses_the_protocol_everywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from mockllm_tui.cli import build_parser, make_store, prepare
    from mockllm_tui.core.knobs import KnobError
    from mockllm_tui.http.protocol import HttpProtocol
    from mockllm_tui.http.read_deadline import DeadlineHttpToolsProtocol

    monkeypatch.chdir(tmp_path)
    assert "--http {uvicorn,fast}" in build_parser().format_help()
    chosen = {}
    for argv, env in (([], None), (["--http", "fast"], None), ([], "fast"), (["--http", "uvicorn"], "fast")):
        if env is None:
            monkeypatch.delenv("MOCKLLM_HTTP", raising=False)
        else:
            monkeypatch.setenv("MOCKLLM_HTTP", env)
        args = build_parser().parse_args(["--headless", "--port", "0", *argv])
        handle = prepare(args, make_store(args))
        chosen[(tuple(argv), env)] = handle.server.config.http
        handle.sock.close()
    assert list(chosen.values()) == [DeadlineHttpToolsProtocol, HttpProtocol, HttpProtocol, DeadlineHttpToolsProtocol]
    monkeypatch.setenv("MOCKLLM_HTTP", "h2")
    with pytest.raises(KnobError, match="--http"):
        make_store(build_parser().parse_args([]))
