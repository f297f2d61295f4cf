"""Hardening: fuzzed bodies on every model endpoint, limits, slow clients and safe defaults.

Every answer to bad input must be a 4xx in the provider's own error shape: never a 500, never a
traceback in the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from anthropic.types import ErrorResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.shared import ErrorObject

from mockllm_tui import cli
from mockllm_tui.core.knobs import KnobError
from mockllm_tui.core.request_log import format_json, format_text
from mockllm_tui.core.store import Store
from mockllm_tui.http.app import MockApp, create_app
from mockllm_tui.http.runner import ServerHandle
from mockllm_tui.providers.base import MAX_JSON_DEPTH
from tests.conftest import HOST, Live, make_store
from tests.support import FixedReplies
from tests.test_hardening_load import RawConnection, wait_for

FIELDS = (
    "model", "messages", "stream", "max_tokens", "max_completion_tokens", "max_output_tokens", "temperature",
    "top_p", "n", "stop", "tools", "tool_choice", "parallel_tool_calls", "stream_options", "response_format",
    "input", "instructions", "system", "prompt", "metadata", "previous_response_id", "store", "text",
    "reasoning", "thinking", "encoding_format", "dimensions", "user", "seed", "logprobs", "top_logprobs",
    "anthropic_version", "inferenceConfig", "toolConfig", "outputConfig",
    "contents", "systemInstruction", "generationConfig", "requests", "generateContentRequest",
)
MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id", "type", "text", "id", "input", "toolUse",
                  "toolResult", "parts", "functionCall", "functionResponse")
ROLES = ("user", "assistant", "system", "developer", "tool", "function", "bogus")

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(ROLES)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.sampled_from(FIELDS), inner,
                                                                max_size=4),
    max_leaves=12,
)
messages = st.lists(st.dictionaries(st.sampled_from(MESSAGE_FIELDS), json_values | st.sampled_from(ROLES),
                                    max_size=4), max_size=3)
bodies = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
    st.fixed_dictionaries({"model": json_values, "messages": messages},
                          optional={k: json_values for k in ("stream", "max_tokens", "tools", "system", "input")}),
    st.fixed_dictionaries({"contents": st.lists(st.fixed_dictionaries({"parts": messages}, optional={
        "role": st.sampled_from(ROLES)}), max_size=3)}, optional={
        k: json_values for k in ("tools", "toolConfig", "generationConfig", "systemInstruction")}),
)
CONTENT_TYPES = (
    "application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/json; charset=latin-1", "application/jsonx", "",
)
# Anthropic answers 413 with `request_too_large`, a type the SDK's error union does not list.
ANTHROPIC_TYPES_MISSING_FROM_SDK = {"request_too_large"}
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


def endpoints_of(app: MockApp) -> list[tuple[str, str, str]]:
    """(method, path, provider family) for every registered model endpoint, `{name}` parts filled in
    (and Azure's `api-version` added where its paths need one); `gemini-live` is of the `gemini` family."""
    out = set()
    for r in app.routes():
        path = re.sub(r"\{\w+(?::resource)?\}", "resp_fuzz", r.path)
        endpoint = app.endpoint_for(r.method, path)  # several providers may serve a route: the one chosen
        assert endpoint is not None
        query = "?api-version=2024-10-21" if path.startswith("/openai/") and "/v1/" not in path else ""
        out.add((r.method, path + query, endpoint.provider.name.removesuffix("-live")))
    return sorted(out)


def assert_provider_shape(provider: str, response: httpx.Response) -> None:
    """A non-5xx answer; an error's body in the provider's own shape, strictly."""
    assert response.status_code < 500, response.text
    if response.status_code < 400:
        if response.headers.get("content-type", "").startswith("application/json"):
            orjson.loads(response.content)
        return
    assert response.headers["content-type"].startswith("application/json")
    if provider == "bedrock":
        body = orjson.loads(response.content)
        assert set(body) == {"message"} and isinstance(body["message"], str) and body["message"]
        assert response.headers["x-amzn-errortype"].split(":")[0].endswith("Exception")
        return
    if provider == "ollama":
        body = orjson.loads(response.content)
        assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
        return
    if provider == "azure" and set(orjson.loads(response.content).get("error", {})) == {"code", "message"}:
        body = orjson.loads(response.content)  # Azure's gateway errors; the others pass OpenAI's shape through
        assert isinstance(body["error"]["code"], str) and set(body) == {"error"}
    elif provider == "anthropic":
        body = orjson.loads(response.content)
        if body["error"]["type"] not in ANTHROPIC_TYPES_MISSING_FROM_SDK:
            ErrorResponse.model_validate_json(response.content, strict=True)
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
        assert isinstance(body["request_id"], str) and body["request_id"]
    elif provider == "gemini":
        body = orjson.loads(response.content)
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "status"}
        assert body["error"]["code"] == response.status_code and body["error"]["status"].isupper()
    else:
        body = orjson.loads(response.content)
        assert set(body) == {"error"}
        assert {"message", "type", "param", "code"} <= set(body["error"])
        ErrorObject.model_validate(body["error"], strict=True)
    assert body["error"]["message"]


@pytest.fixture
def fuzz_server(server: Live, caplog: pytest.LogCaptureFixture) -> Iterator[tuple[Live, httpx.Client]]:
    """The threaded server and a client; fails the test if anything was logged as an error."""
    caplog.set_level(logging.ERROR)
    with httpx.Client(base_url=server.root, timeout=10) as client:
        yield server, client
    tracebacks = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not tracebacks, tracebacks[0].getMessage()
    assert server.store.counters.by_status.get(500, 0) == 0


@FUZZ
@given(data=st.data(), body=bodies)
def test_fuzz_random_json_on_every_endpoint(fuzz_server: tuple[Live, httpx.Client], data: Any, body: Any) -> None:
    live, client = fuzz_server
    method, path, provider = data.draw(st.sampled_from(endpoints_of(live.app)), label="endpoint")
    headers = {"content-type": "application/json"}
    if provider == "anthropic":
        headers["anthropic-version"] = "2023-06-01"
    response = client.request(method, path, content=json.dumps(body).encode(), headers=headers)
    assert_provider_shape(provider, response)


@FUZZ
@given(data=st.data(), raw=st.binary(max_size=200), ctype=st.sampled_from(CONTENT_TYPES))
def test_fuzz_raw_bytes_bad_utf8_and_content_types(fuzz_server: tuple[Live, httpx.Client], data: Any, raw: bytes,
                                                   ctype: str) -> None:
    live, client = fuzz_server
    method, path, provider = data.draw(st.sampled_from(endpoints_of(live.app)), label="endpoint")
    if data.draw(st.booleans(), label="inside a valid body"):
        raw = b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"' + raw + b'"}]}'
    response = client.request(method, path, content=raw, headers={"content-type": ctype} if ctype else {})
    assert_provider_shape(provider, response)


def test_huge_strings_and_arrays_and_deep_nesting_on_every_endpoint(fuzz_server: tuple[Live, httpx.Client]) -> None:
    live, client = fuzz_server
    deep: dict[str, Any] = {"a": 1}
    for _ in range(MAX_JSON_DEPTH + 5):
        deep = {"a": deep}
    cases = [
        {"model": "m" * 10_000, "max_tokens": 5, "messages": [{"role": "user", "content": "x" * 500_000}]},
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}] * 5_000},
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "metadata": deep},
    ]
    raws = [b"[" * 5_000 + b"]" * 5_000, b"{" * 100_000, b'"' + b"\\" * 10_001 + b'"']
    for method, path, provider in endpoints_of(live.app):
        # bare aliases share handlers
        if method != "POST" or not path.startswith(("/v1/", "/api/", "/openai/", "/model/")):
            continue
        for case in cases:
            assert_provider_shape(provider, client.request(method, path, content=orjson.dumps(case)))
        for raw in raws:
            assert_provider_shape(provider, client.request(method, path, content=raw))


# -- limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_body_over_the_limit_is_refused_with_413_without_reading_it_all(live: Live, path: str) -> None:
    conn = await RawConnection.open(live.handle.port)
    try:
        declared = live.store.config.max_body + 1
        conn.writer.write(
            f"POST {path} HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n"
            f"anthropic-version: 2023-06-01\r\ncontent-length: {declared}\r\n\r\n".encode() + b"{" * 1024
        )
        status, headers = await asyncio.wait_for(conn.read_head(), 5)  # sent 1 KB of 10 MB: not waited for
        body = await conn.read_body(headers)
    finally:
        conn.reset()
    assert status == 413
    provider = "anthropic" if path == "/v1/messages" else "openai"
    assert_provider_shape(provider, httpx.Response(413, headers=headers, content=body))
    assert "limit" in orjson.loads(body)["error"]["message"]


async def test_chunked_body_over_a_settable_limit_is_refused(live: Live) -> None:
    live.store.configure(max_body=64 * 1024)
    conn = await RawConnection.open(live.handle.port)
    try:
        conn.writer.write(f"POST /v1/chat/completions HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n"
                          "transfer-encoding: chunked\r\n\r\n".encode())
        for _ in range(20):
            conn.writer.write(b"2000\r\n" + b" " * 0x2000 + b"\r\n")  # 20 x 8 KB, past 64 KB
        status, headers = await asyncio.wait_for(conn.read_head(), 5)
        body = await conn.read_body(headers)
    finally:
        conn.reset()
    assert status == 413
    assert_provider_shape("openai", httpx.Response(413, headers=headers, content=body))


def test_max_body_option_sets_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    args = cli.build_parser().parse_args(["--max-body-mb", "0.5"])
    assert cli.make_store(args).config.max_body == 512 * 1024
    monkeypatch.setenv("MOCKLLM_MAX_BODY_MB", "2")
    assert cli.make_store(cli.build_parser().parse_args([])).config.max_body == 2 * 1024 * 1024
    with pytest.raises(KnobError):
        cli.make_store(cli.build_parser().parse_args(["--max-body-mb", "0"]))


async def test_deep_json_is_refused_with_400_and_shallower_json_is_not(live: Live) -> None:
    def nested(depth: int) -> Any:
        value: Any = []
        for _ in range(depth - 2):  # the body object and `metadata` are two levels
            value = [value]
        return value

    async with httpx.AsyncClient(base_url=live.root) as client:
        ok = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "x_extra": nested(MAX_JSON_DEPTH)}
        deep = {**ok, "x_extra": nested(MAX_JSON_DEPTH + 1)}
        assert (await client.post("/v1/chat/completions", content=orjson.dumps(ok))).status_code == 200
        refused = await client.post("/v1/chat/completions", content=orjson.dumps(deep))
        assert refused.status_code == 400
        assert f"deeper than {MAX_JSON_DEPTH}" in refused.json()["error"]["message"]
        anthropic = await client.post("/v1/messages", content=b"[" * 300 + b"]" * 300)
        assert_provider_shape("anthropic", anthropic)
        assert anthropic.status_code == 400


@pytest.fixture
async def impatient() -> AsyncIterator[Live]:
    """A server that gives each request 0.3 s to arrive whole."""
    store = make_store()
    app = create_app(store)
    handle = ServerHandle(app, HOST, 0, grace_s=1, read_timeout_s=0.3)
    await handle.start()
    try:
        yield Live(store, app, handle)
    finally:
        await handle.stop()


async def closed_after(conn: RawConnection, trickle: bytes, bound_s: float) -> float:
    """Send `trickle` a byte every 50 ms; seconds until the server closed the connection (or inf)."""
    t0 = time.perf_counter()
    for byte in trickle:
        conn.writer.write(bytes([byte]))
        try:
            if await asyncio.wait_for(conn.reader.read(1), 0.05) == b"":
                return time.perf_counter() - t0
        except TimeoutError:
            pass
        except ConnectionError:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > bound_s:
            break
    return float("inf")


@pytest.mark.parametrize("kind", ["silent", "slow headers", "slow body", "slow second request"])
async def test_slow_loris_clients_are_timed_out(impatient: Live, kind: str) -> None:
    conn = await RawConnection.open(impatient.handle.port)
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n"
    if kind == "slow body":
        conn.writer.write(f"{head}content-length: {len(b'{}') + 100}\r\n\r\n".encode())
    if kind == "slow second request":
        status, _, _ = await conn.request("POST", "/v1/chat/completions", orjson.dumps(
            {"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        assert status == 200
    trickle = b"" if kind == "silent" else (head.encode() * 10 if "headers" in kind or "second" in kind else b" " * 100)
    try:
        if kind == "silent":
            t0 = time.perf_counter()
            assert await asyncio.wait_for(conn.reader.read(1), 3) == b""
            waited = time.perf_counter() - t0
        else:
            waited = await closed_after(conn, trickle, bound_s=3)
    finally:
        conn.reset()
    assert 0.2 <= waited < 2.0, f"connection held {waited:.2f} s"
    store = impatient.store
    assert await wait_for(lambda: store.counters.in_flight == 0)


async def test_the_journal_never_holds_more_than_its_bound() -> None:
    store = Store(journal_size=25)
    store.set_rules(FixedReplies())
    handle = ServerHandle(create_app(store), HOST, 0, grace_s=1)
    await handle.start()
    conn = await RawConnection.open(handle.port)
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    for _ in range(200):
        assert (await conn.request("POST", "/v1/chat/completions", body))[0] == 200
        assert len(store.journal()) <= 25
    await conn.close()
    await handle.stop()
    assert len(store.journal()) == 25
    assert store.counters.total >= 200


# -- security defaults -------------------------------------------------------------------------


def test_binds_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOCKLLM_HOST", raising=False)
    assert cli.build_parser().parse_args([]).host == "127.0.0.1"


@pytest.mark.parametrize(
    ("argv", "warned"),
    [
        (["--host", "0.0.0.0"], True),
        (["--host", "::"], True),
        (["--host", "192.168.1.20"], True),
        (["--host", "0.0.0.0", "--api-key", "k"], False),
        (["--host", "127.0.0.1"], False),
        (["--host", "::1"], False),
        (["--host", "localhost"], False),
    ],
)
def test_one_line_warning_on_a_public_address_without_an_api_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], warned: bool
) -> None:
    monkeypatch.setattr(cli, "run_headless", lambda args, store: 0)
    monkeypatch.setattr(cli, "setup_logging", lambda *a, **k: None)
    assert cli.main(["--headless", *argv]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    if warned:
        assert len(lines) == 1 and lines[0].startswith("warning:") and "--api-key" in lines[0]
    else:
        assert lines == []


async def test_cors_is_off_by_default(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.root) as client:
        post = await client.post("/v1/chat/completions", headers={"origin": "http://app.test"},
                                 json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        preflight = await client.options("/v1/chat/completions", headers={
            "origin": "http://app.test", "access-control-request-method": "POST"})
    assert post.status_code == 200
    assert not any(k.startswith("access-control-") for k in post.headers)
    assert not any(k.startswith("access-control-") for k in preflight.headers)


async def test_cors_origins_cover_the_dispatcher_and_the_admin_routes() -> None:
    store = make_store()
    app = create_app(store)
    app.enable_cors(["http://app.test"])
    handle = ServerHandle(app, HOST, 0, grace_s=1)
    await handle.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{handle.port}") as client:
            preflight = await client.options("/v1/chat/completions", headers={
                "origin": "http://app.test", "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type"})
            post = await client.post("/v1/messages", headers={"origin": "http://app.test"}, json={
                "model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
            admin = await client.get("/_mock/journal", headers={"origin": "http://app.test"})
            stranger = await client.post("/v1/chat/completions", headers={"origin": "http://evil.test"},
                                          json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    finally:
        await handle.stop()
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://app.test"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert post.status_code == 200 and post.headers["access-control-allow-origin"] == "http://app.test"
    assert admin.headers["access-control-allow-origin"] == "http://app.test"
    assert "access-control-allow-origin" not in stranger.headers


async def test_keys_are_redacted_in_the_journal_the_admin_api_and_the_log(live: Live) -> None:
    secret = "sk-hardening-secret-1234567890"
    async with httpx.AsyncClient(base_url=live.root) as client:
        await client.post("/v1/chat/completions", headers={"authorization": f"Bearer {secret}", "x-api-key": secret,
                                                           "api-key": secret, "cookie": f"s={secret}"},
                          json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        journal = await client.get("/_mock/journal")
    assert journal.status_code == 200
    assert secret not in journal.text
    entry = live.store.journal_tail(2)[0]
    assert entry.request_headers["authorization"] == "[redacted]"
    assert secret not in format_json(entry) and secret not in format_text(entry)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    from mockllm_tui.rules import load_initial

    marker = tmp_path / "pwned"
    path = tmp_path / "responses.yml"
    path.write_text(f'responses:\n  "hi": !!python/object/apply:os.system ["touch {marker}"]\n')
    store = make_store()
    try:
        load_initial(store, path)
    except Exception as exc:  # refusing the file outright is fine too, as long as nothing ran
        assert "python/object" in str(exc) or "tag" in str(exc).lower()
    assert not marker.exists()
    for source in Path(cli.__file__).parent.rglob("*.py"):
        text = source.read_text()
        unsafe = ['typ="unsafe"', "typ='unsafe'", "UnsafeLoader", "eval(", "exec("]
        if "import yaml" in text:  # PyYAML: only safe_load
            unsafe += ["yaml.load(", "yaml.unsafe_load", "yaml.full_load", "Loader=yaml.Loader"]
        found = [u for u in unsafe if u in text]
        assert not found, f"{found} in {source.name}"


async def test_templates_never_evaluate_code(tmp_path: Path) -> None:
    from mockllm_tui.rules import load_initial

    marker = tmp_path / "pwned"
    path = tmp_path / "responses.yml"
    evil = (f"{{{{ 7*7 }}}} {{{{ __import__('os').system('touch {marker}') }}}} "
            "{{ model.__class__.__mro__ }} {{ config }}")
    path.write_text(f"responses:\n  \"evil\": {json.dumps(evil)}\n")
    store = make_store()
    load_initial(store, path)
    app = create_app(store)
    handle = ServerHandle(app, HOST, 0, grace_s=1)
    await handle.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{handle.port}") as client:
            reply = await client.post("/v1/chat/completions",
                                      json={"model": "m", "messages": [{"role": "user", "content": "evil"}]})
    finally:
        await handle.stop()
    assert reply.status_code == 200
    text = reply.json()["choices"][0]["message"]["content"]
    assert "49" not in text and "class" not in text.replace("__class__", "")
    assert not marker.exists()
