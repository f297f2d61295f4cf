"""Edge cases of the embedded server's HTTP/1.1 protocols (uvicorn's with its read deadline, and ours):
the timers, concurrent receive, backpressure, pipelining, header checks and HTTP/1.0 (each found by a
review). Waits are for events (a response, a log line, a witness connection closed by the keep-alive
timer); the apps' own pauses only make a response outlast a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mockllm_tui.http.runner import HTTP_PROTOCOLS, EmbeddedServer, bind_socket, uvicorn_config
from tests.conftest import HOST
from tests.test_protocol import read_response, request, serving_asgi


def each_protocol(settings: dict[str, Any], only: tuple[str, ...] = HTTP_PROTOCOLS) -> list[Any]:
    """`settings` for every protocol (or only these), one test each, named after the protocol."""
    return [pytest.param({**settings, "http": http}, id=http) for http in only]


async def idle_past_keep_alive(port: int) -> None:
    """Return once a keep-alive timeout has passed: a witness connection, answered now, is closed idle."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(request("GET", "/witness"))
    await read_response(reader)
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


@contextlib.asynccontextmanager
async def logged(text: str) -> AsyncIterator[asyncio.Event]:
    """An event set when uvicorn's error log (both protocols log there) says `text`."""
    seen = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if text in record.getMessage():
                seen.set()

    logger = logging.getLogger("uvicorn.error")
    handler = Watch()
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


async def streams_without_reading(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Stream 6 pieces over ~1.5 s; never look at the request body."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for i in range(6):
        await asyncio.sleep(0.25)
        await send({"type": "http.response.body", "body": b"%d" % i, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


@pytest.mark.parametrize("settings", each_protocol({"read_timeout_s": 0.5}))
async def test_stream_not_cut_when_large_body_unread(settings: dict[str, Any]) -> None:
    # Client sends a 300 KB body at once; server pauses reading at 64 KB, so the request never
    # "completes" and the read deadline (0.5 s) kills a response that is still being produced.
    async with serving_asgi(streams_without_reading, **settings) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("POST", "/s", b"x" * 300_000))
        status, _, body = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
    assert status == 200 and body == b"012345"


@pytest.mark.parametrize("settings", each_protocol({"read_timeout_s": 0.5}))
async def test_stream_not_cut_when_client_waits_for_100_continue(settings: dict[str, Any]) -> None:
    async with serving_asgi(streams_without_reading, **settings) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(
            request("POST", "/s", extra="expect: 100-continue\r\n").replace(b"content-length: 0", b"content-length: 5")
        )
        status, _, body = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
    assert status == 200 and body == b"012345"


async def slow_consumer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the body slowly (as a rate-limited upstream would), then answer."""
    size, more = 0, True
    while more:
        m = await receive()
        size += len(m.get("body", b""))
        more = m.get("more_body", False)
        await asyncio.sleep(0.3)
    body = b"%d" % size
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("settings", each_protocol({"read_timeout_s": 0.5}))
async def test_slow_consumer_of_a_fast_upload_not_cut(settings: dict[str, Any]) -> None:
    async with serving_asgi(slow_consumer, **settings) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("POST", "/s", b"x" * 300_000))
        status, _, body = await asyncio.wait_for(read_response(reader), 15)
        writer.close()
    assert status == 200 and body == b"300000"


@pytest.mark.parametrize("settings", each_protocol({"read_timeout_s": 0.5}))
async def test_pipelined_request_paused_by_server_does_not_cut_running_stream(settings: dict[str, Any]) -> None:
    async with serving_asgi(streams_without_reading, **settings) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("GET", "/one"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # the first request is running
        second = request("POST", "/two", b"hello")
        writer.write(second[:-3])  # headers and 'he'; the server pauses reading after these headers
        first_piece = await asyncio.wait_for(reader.readuntil(b"0\r\n"), 5)  # the server has looped since
        writer.write(second[-3:])  # 'llo' sits in the kernel: reading is paused
        status, _, body = await asyncio.wait_for(read_rest(reader, head + first_piece), 5)
        assert status == 200 and body == b"012345"
        status, _, body = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
    assert status == 200 and body == b"012345"


async def read_rest(reader: asyncio.StreamReader, start: bytes) -> tuple[int, dict[str, str], bytes]:
    """A chunked response of which `start` (its head and first chunk) is read already."""
    rest = await reader.readuntil(b"0\r\n\r\n")
    pieces, raw = [], start.split(b"\r\n\r\n", 1)[1] + rest
    while True:
        size_line, raw = raw.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return int(start.split()[1]), {}, b"".join(pieces)
        pieces.append(raw[:size])
        raw = raw[size + 2 :]


async def ignores_body(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"no"})


@pytest.mark.parametrize("settings", each_protocol({"read_timeout_s": 5}))
async def test_keep_alive_timeout_still_applies_after_early_response(settings: dict[str, Any]) -> None:
    # App answers without reading a 300 KB body; the rest of the body is read after the response.
    async with serving_asgi(ignores_body, timeout_keep_alive=0.3, **settings) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("POST", "/s", b"x" * 300_000))
        assert (await read_response(reader))[0] == 413
        t0 = time.perf_counter()
        try:
            got = await asyncio.wait_for(reader.read(), 4)
        except TimeoutError:
            pytest.fail("idle keep-alive connection never closed")
        finally:
            writer.close()
    assert got == b"" and time.perf_counter() - t0 < 4


@pytest.mark.parametrize("settings", each_protocol({"read_timeout_s": 5}))
async def test_upload_continuing_after_early_response_is_not_cut_by_keep_alive(settings: dict[str, Any]) -> None:
    async with serving_asgi(ignores_body, timeout_keep_alive=0.3, **settings) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("POST", "/s", b"x" * 8)[:-8])  # headers only
        assert (await read_response(reader))[0] == 413
        writer.write(b"xxxx")
        await idle_past_keep_alive(port)  # the upload goes on past the keep-alive timeout
        writer.write(b"xxxx" + request("GET", "/next"))
        status, _, _ = await asyncio.wait_for(read_response(reader), 3)
        writer.close()
    assert status == 413


async def slowish(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await asyncio.sleep(0.2)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize("settings", each_protocol({"read_timeout_s": 5}))
async def test_request_begun_before_previous_response_gets_read_deadline_not_keep_alive(
    settings: dict[str, Any],
) -> None:
    async with serving_asgi(slowish, timeout_keep_alive=0.3, **settings) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        second = request("GET", "/two")
        writer.write(request("GET", "/one") + second[:10])  # 2nd request's first bytes
        assert (await read_response(reader))[0] == 200
        await idle_past_keep_alive(port)  # < 5 s read deadline, > 0.3 s keep-alive
        writer.write(second[10:])
        status, _, _ = await asyncio.wait_for(read_response(reader), 3)
        writer.close()
    assert status == 200


@pytest.mark.parametrize("settings", each_protocol({}))
async def test_concurrent_receive_both_see_disconnect(settings: dict[str, Any]) -> None:
    # Starlette's pattern: a listen_for_disconnect task + `request.is_disconnected()` (receive with a short timeout).
    seen: list[str] = []
    probed, heard = asyncio.Event(), asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # the (empty) body
        await send({"type": "http.response.start", "status": 200, "headers": []})

        async def listen() -> None:
            seen.append((await receive())["type"])
            heard.set()

        listener = asyncio.ensure_future(listen())
        await asyncio.sleep(0)  # the listener waits first
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receive(), 0.05)  # "is the client still there?"
        probed.set()
        await asyncio.wait_for(listener, 5)

    async with serving_asgi(app, **settings) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("GET", "/"))
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.wait_for(probed.wait(), 5)
        writer.close()
        await asyncio.wait_for(heard.wait(), 5)
    assert seen == ["http.disconnect"]


@pytest.mark.parametrize("settings", each_protocol({}))
async def test_a_send_timed_out_under_backpressure_does_not_break_later_sends(settings: dict[str, Any]) -> None:
    outcome: list[str] = []
    timed_out, ended = asyncio.Event(), asyncio.Event()
    CHUNK = b"x" * 1_000_000

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        sent = 0
        try:
            for _ in range(200):  # until a send blocks on a full buffer
                await asyncio.wait_for(send({"type": "http.response.body", "body": CHUNK, "more_body": True}), 0.3)
                sent += 1
        except TimeoutError:
            outcome.append(f"timed out after {sent}")
        timed_out.set()
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            outcome.append("finished")
        except BaseException as exc:
            outcome.append(f"later send raised {type(exc).__name__}")
            raise
        finally:
            ended.set()

    async with serving_asgi(app, **settings) as port:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(request("GET", "/"))
        await asyncio.wait_for(timed_out.wait(), 10)

        async def drain() -> None:  # now read everything
            while await reader.read(1 << 20):
                pass

        drainer = asyncio.ensure_future(drain())
        await asyncio.wait_for(ended.wait(), 10)
        drainer.cancel()
        writer.close()
    assert outcome[0].startswith("timed out") and outcome[-1] == "finished", outcome


@pytest.mark.parametrize("settings", each_protocol({}))
async def test_running_request_learns_of_disconnect_when_a_request_is_pipelined(settings: dict[str, Any]) -> None:
    seen: list[str] = []
    heard = asyncio.Event()

    async def watcher(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/watch":
            await send({"type": "http.response.start", "status": 200, "headers": []})  # chunked stream
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    seen.append("disconnect")
                    heard.set()
                    return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async with serving_asgi(watcher, **settings) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("GET", "/watch") + request("GET", "/other"))
        await reader.readuntil(b"\r\n\r\n")
        writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(heard.wait(), 5)
    assert seen == ["disconnect"]


@pytest.mark.parametrize("settings", each_protocol({}))
async def test_headers_may_be_any_iterable(settings: dict[str, Any]) -> None:
    async def gen(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = ((k, v) for k, v in [(b"content-length", b"2"), (b"x-a", b"b")])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    async with serving_asgi(gen, **settings) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("GET", "/"))
        status, _, body = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
    assert status == 200 and body == b"ok"


BAD_HEADERS = [(b"x y", b"v"), (b"x-a:b", b"v"), (b"", b"v"), (b"x-a", b"a\x00b")]


# uvicorn's own protocol lets an empty header name through: that one is ours only.
@pytest.mark.parametrize(
    ("settings", "bad"),
    [
        pytest.param({"http": http}, bad, id=f"{http}-{i}")
        for http in HTTP_PROTOCOLS
        for i, bad in enumerate(BAD_HEADERS)
        if bad[0] or http == "fast"
    ],
)
async def test_invalid_header_names_and_values_are_refused(settings: dict[str, Any], bad: tuple[bytes, bytes]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [bad, (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async with serving_asgi(app, **settings) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("GET", "/"))
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    # Ours answers 500; uvicorn's counts the response as started and closes without a word.
    assert raw == b"" if settings["http"] == "uvicorn" else raw.startswith(b"HTTP/1.1 500"), raw


# uvicorn's own protocol sends chunks to HTTP/1.0 clients (RFC 9112 6.1 forbids it): ours only.
@pytest.mark.parametrize("settings", each_protocol({}, only=("fast",)))
async def test_http10_client_never_gets_chunked(settings: dict[str, Any]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async with serving_asgi(app, **settings) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("GET", "/", version="1.0"))
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert b"transfer-encoding" not in raw.lower(), raw


@pytest.mark.parametrize("settings", each_protocol({}))
async def test_app_connection_close_then_keep_alive_header(settings: dict[str, Any]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        hs = [(b"connection", b"close"), (b"connection", b"keep-alive"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 200, "headers": hs})
        await send({"type": "http.response.body", "body": b""})

    async with serving_asgi(app, **settings) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("GET", "/"))
        await read_response(reader)
        got = await asyncio.wait_for(reader.read(), 3)
        writer.close()
    assert got == b""


@pytest.mark.parametrize("settings", each_protocol({}))
async def test_malformed_pipelined_request_does_not_overtake_earlier_response(settings: dict[str, Any]) -> None:
    started, refused = asyncio.Event(), asyncio.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        started.set()
        await refused.wait()
        await send({"type": "http.response.body", "body": b"ok"})

    async with serving_asgi(slow, **settings) as port, logged("Invalid HTTP request") as invalid:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("GET", "/one"))
        await asyncio.wait_for(started.wait(), 5)
        writer.write(b"BROKEN\r\n\r\n")
        await asyncio.wait_for(invalid.wait(), 5)  # the server has read the bad request
        refused.set()
        status, _, body = await asyncio.wait_for(read_response(reader), 5)
        second, headers, _ = await asyncio.wait_for(read_response(reader), 5)
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert (status, body, second, headers["connection"], rest) == (200, b"ok", 400, "close", b"")


@pytest.mark.parametrize("settings", each_protocol({}))
async def test_graceful_shutdown_lets_a_stream_finish_and_announces_close(settings: dict[str, Any]) -> None:
    started, exiting = asyncio.Event(), asyncio.Event()

    async def stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
        started.set()
        await exiting.wait()
        for part in (b"ab", b"cd", b"ef"):
            await send({"type": "http.response.body", "body": part, "more_body": part != b"ef"})

    sock = bind_socket(HOST, 0)
    server = EmbeddedServer(uvicorn_config(stream, **settings, timeout_graceful_shutdown=3))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await server.ready.wait()
    reader, writer = await asyncio.open_connection(HOST, sock.getsockname()[1])
    writer.write(request("GET", "/"))
    await asyncio.wait_for(started.wait(), 5)
    (connection,) = server.server_state.connections
    shutdown = connection.shutdown

    def told_to_shut_down() -> None:  # the app goes on once the server has told the connection
        shutdown()
        exiting.set()

    connection.shutdown = told_to_shut_down  # type: ignore[method-assign]
    server.request_exit()
    status, headers, body = await asyncio.wait_for(read_response(reader), 5)
    rest = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await asyncio.wait_for(task, 5)
    assert status == 200 and body == b"abcdef" and rest == b""
    # Ours holds a head until its body: the close is announced. uvicorn's head left before the shutdown.
    assert headers.get("connection") == ("close" if settings["http"] == "fast" else None)
