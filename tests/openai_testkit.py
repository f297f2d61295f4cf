"""Helpers shared by the OpenAI endpoint tests: raw requests and SSE parsing."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.conftest import Live


async def post_raw(live: Live, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    """POST a JSON body (or raw bytes via `content=`) to the live server; `path` starts at /v1 or /."""
    async with httpx.AsyncClient(base_url=live.root, timeout=10) as client:
        if body is None:
            return await client.post(path, **kwargs)
        return await client.post(path, json=body, **kwargs)


async def get_raw(live: Live, path: str) -> httpx.Response:
    """GET a path of the live server."""
    async with httpx.AsyncClient(base_url=live.root, timeout=10) as client:
        return await client.get(path)


def sse_events(raw: bytes) -> list[tuple[str | None, bytes]]:
    """The (event name, data) pairs of an SSE body, in order."""
    events: list[tuple[str | None, bytes]] = []
    for block in raw.split(b"\n\n"):
        if not block.strip():
            continue
        name: str | None = None
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"event: "):
                name = line[len(b"event: ") :].decode()
            elif line.startswith(b"data: "):
                data.append(line[len(b"data: ") :])
        events.append((name, b"\n".join(data)))
    return events


def sse_data(raw: bytes) -> list[bytes]:
    """The data payloads of an OpenAI stream, checking that it ends with exactly one `[DONE]`."""
    payloads = [data for _, data in sse_events(raw)]
    assert payloads[-1] == b"[DONE]", payloads[-1]
    assert payloads.count(b"[DONE]") == 1
    return payloads[:-1]


def assert_openai_error(response: httpx.Response, status: int, *, mentions: str = "", param: str | None = None) -> None:
    """The response is `status` in OpenAI's error shape, naming what it should."""
    assert response.status_code == status, response.text
    body = orjson.loads(response.content)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    if status == 400:
        assert error["type"] == "invalid_request_error"
    if mentions:
        assert mentions in error["message"], error["message"]
    if param is not None:
        assert error["param"] == param, error
    assert response.headers.get("x-request-id")
