"""The embedded server's HTTP/1.1 protocols, uvicorn's (`--http uvicorn`, the default) and ours
(`--http fast`, http/protocol.py), spoken to over raw sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from mockllm_tui.http.protocol import HttpProtocol
from mockllm_tui.http.read_deadline import DeadlineHttpToolsProtocol
from mockllm_tui.http.runner import HTTP_PROTOCOLS, EmbeddedServer, bind_socket, uvicorn_config
from tests.conftest import HOST, Live

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
BOTH = pytest.mark.parametrize("http", HTTP_PROTOCOLS)
CHAT = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


@asynccontextmanager
async def serving_asgi(app: App, http: str = "uvicorn", **settings: Any) -> AsyncIterator[int]:
    """Serve a bare ASGI app with the embedded server's settings and this protocol; yields the port."""
    sock = bind_socket(HOST, 0)
    server = EmbeddedServer(uvicorn_config(app, http=http, **settings))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await server.ready.wait()
    try:
        yield sock.getsockname()[1]
    finally:
        server.request_exit()
        await asyncio.wait_for(task, 5)


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer with the method, the path and the body's length, as JSON."""
    size = 0
    more = True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = orjson.dumps(
        {"method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode(), "size": size}
    )
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers and body (by length, or chunked to its end)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    first, *lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
    status = int(first.split()[1])
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding") != "chunked":
        return status, headers, b""
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
        parts.append((await reader.readexactly(size + 2))[:-2])
        if size == 0:
            return status, headers, b"".join(parts)


def request(method: str, path: str, body: bytes = b"", extra: str = "", version: str = "1.1") -> bytes:
    """The bytes of one request."""
    return (
        f"{method} {path} HTTP/{version}\r\nhost: {HOST}\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def test_pipelined_requests_are_answered_in_order(live: Live) -> None:
    reader, writer = await asyncio.open_connection(HOST, live.handle.port)
    writer.write(b"".join(request("POST", "/v1/chat/completions", CHAT) for _ in range(3)) + request("GET", "/health"))
    answers = [await read_response(reader) for _ in range(4)]
    writer.close()
    assert [status for status, _, _ in answers] == [200, 200, 200, 200]
    assert [orjson.loads(body)["object"] for _, _, body in answers[:3]] == ["chat.completion"] * 3
    assert orjson.loads(answers[3][2])["status"] == "ok"


async def test_a_whole_response_goes_out_in_one_write_with_a_correct_length(live: Live) -> None:
    reader, writer = await asyncio.open_connection(HOST, live.handle.port)
    writer.write(request("POST", "/v1/chat/completions", CHAT))
    status, headers, body = await read_response(reader)
    writer.close()
    assert status == 200 and int(headers["content-length"]) == len(body)
    assert "transfer-encoding" not in headers and "connection" not in headers
    assert orjson.loads(body)["choices"][0]["message"]["role"] == "assistant"


@BOTH
async def test_expect_100_continue_is_honoured(http: str) -> None:
    async with serving_asgi(echo, http) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(
            request("POST", "/up", extra="expect: 100-continue\r\n").replace(b"content-length: 0", b"content-length: 5")
        )
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        status, _, body = await read_response(reader)
        writer.close()
    assert status == 200 and orjson.loads(body)["size"] == 5


@BOTH
async def test_large_bodies_arrive_whole_and_paths_decode(http: str) -> None:
    big = b"x" * 300_000
    async with serving_asgi(echo, http) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("PUT", "/a%20b/c?k=v&x=1", big))
        status, _, body = await read_response(reader)
        writer.close()
    assert status == 200
    assert orjson.loads(body) == {"method": "PUT", "path": "/a b/c", "query": "k=v&x=1", "size": len(big)}


@pytest.mark.parametrize(("version", "extra"), [("1.0", ""), ("1.1", "connection: close\r\n")])
@BOTH
async def test_a_connection_the_client_will_not_keep_is_closed(version: str, extra: str, http: str) -> None:
    async with serving_asgi(echo, http) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("GET", "/x", extra=extra, version=version))
        status, headers, _ = await read_response(reader)
        assert status == 200 and headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


@BOTH
async def test_head_gets_the_length_but_no_body(http: str) -> None:
    async with serving_asgi(echo, http) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("HEAD", "/x") + request("GET", "/y"))
        head = await reader.readuntil(b"\r\n\r\n")
        status, _, body = await read_response(reader)  # the next response follows the head at once
        writer.close()
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: " in head
    assert status == 200 and orjson.loads(body)["path"] == "/y"


@BOTH
async def test_a_response_without_a_length_is_chunked(http: str) -> None:
    async def pieces(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one ", b"two ", b""):
            await send({"type": "http.response.body", "body": part, "more_body": bool(part)})

    async with serving_asgi(pieces, http) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("GET", "/s"))
        status, headers, body = await read_response(reader)
        writer.close()
    assert status == 200 and headers["transfer-encoding"] == "chunked" and body == b"one two "


async def test_malformed_requests_get_a_400_and_the_connection_closes(live: Live) -> None:
    reader, writer = await asyncio.open_connection(HOST, live.handle.port)
    writer.write(b"THIS IS NOT HTTP\r\n\r\n")
    status, headers, body = await read_response(reader)
    assert status == 400 and body == b"Invalid HTTP request received." and headers["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


@pytest.mark.parametrize("bad", [(b"x-evil", b"a\r\nset-cookie: b"), (b"x-evil\r\nx", b"a")])
@BOTH
async def test_a_header_with_a_line_break_never_reaches_the_wire(bad: tuple[bytes, bytes], http: str) -> None:
    async def splitting(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [bad, (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async with serving_asgi(splitting, http) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("GET", "/"))
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    # Ours answers 500; uvicorn's counts the response as started and closes without a word.
    answered = raw.startswith(b"HTTP/1.1 500") and raw.endswith(b"Internal Server Error")
    assert raw == b"" if http == "uvicorn" else answered
    assert b"set-cookie" not in raw and b"x-evil" not in raw


@BOTH
async def test_an_app_failing_after_its_head_drops_the_connection(http: str) -> None:
    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/before":
            raise ValueError("boom")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        raise ValueError("boom")

    async with serving_asgi(failing, http) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("GET", "/before"))
        status, _, body = await read_response(reader)
        assert status == 500 and body == b"Internal Server Error"
        writer.close()
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("GET", "/after"))
        head = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")  # the head, then the close


@BOTH
async def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(http: str) -> None:
    async with serving_asgi(echo, http, timeout_keep_alive=0.3) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        for _ in range(3):  # busy connections are not closed early
            writer.write(request("GET", "/x"))
            assert (await read_response(reader))[0] == 200
        t0 = time.perf_counter()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    assert 0.2 < time.perf_counter() - t0 < 8


def test_the_protocol_is_chosen_by_name_and_the_read_deadline_is_a_constructor_argument() -> None:
    assert uvicorn_config(echo).http is DeadlineHttpToolsProtocol
    assert uvicorn_config(echo, http="fast").http is HttpProtocol
    for http in HTTP_PROTOCOLS:
        assert uvicorn_config(echo, http=http, read_timeout_s=0.5).http.keywords == {"read_timeout_s": 0.5}
    with pytest.raises(ValueError, match="h11"):
        uvicorn_config(echo, http="h11")
