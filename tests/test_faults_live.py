"""Faults through the real server and the real SDKs: retries, mid-stream errors, disconnects,
timeouts, auth, rate limits and the admin API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion

from tests.conftest import Live

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
LONG_TEXT = " ".join(f"word{i}" for i in range(40))


class Fixed:
    """A reply source with one fixed reply (stands in for the rules engine)."""

    def __init__(self, **reply: Any) -> None:
        from mockllm_tui.core.conversation import Reply

        self.reply = Reply(**reply)

    def choose(self, conversation: object) -> Any:
        from dataclasses import replace

        return replace(self.reply)


def oai(live: Live, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=live.openai_url, api_key=kw.pop("api_key", "sk-test"), **kw)


def ant(live: Live, **kw: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=live.anthropic_url, api_key=kw.pop("api_key", "sk-ant-test"), **kw)


def model_entries(live: Live) -> list[Any]:
    return [e for e in live.store.journal() if e.path.startswith("/v1/")]


async def test_fail_next_429_is_retried_by_the_sdk_then_succeeds(live: Live) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{live.root}/_mock/fail-next", json={"count": 2, "status": 429})
        assert r.json() == {"count": 2, "status": 429}
    client = oai(live)  # default max_retries=2
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    ChatCompletion.model_validate_json(raw.http_response.content, strict=True)
    entries = model_entries(live)
    assert [e.status for e in entries] == [429, 429, 200]
    assert [e.request_headers.get("x-stainless-retry-count") for e in entries] == ["0", "1", "2"]
    assert entries[0].fault == "429 before (fail_next)" and entries[2].fault is None
    assert len({e.request_headers.get("idempotency-key") for e in entries}) == 1
    assert live.store.fail_next == (0, None)


LEVELS = ("default", "cli", "file", "live", "rule", "header")


@pytest.mark.parametrize("level", LEVELS)
async def test_precedence_through_the_server(live: Live, level: str) -> None:
    """Each level set up to `level` (the status tells which one won): header > rule > live > file > cli > default."""
    from mockllm_tui.core.conversation import ErrorReply

    store = live.store
    store.set_knobs("live", {"error_rate": 1.0})
    status = {name: 500 + i for i, name in enumerate(LEVELS)}
    upto = LEVELS[: LEVELS.index(level) + 1]
    for layer in ("cli", "file"):
        if layer in upto:
            store.set_knobs(layer, {"error_status": status[layer]})
    if "live" in upto:
        store.set_knobs("live", {"error_status": status["live"]})
    if "rule" in upto:
        store.set_rules(Fixed(error=ErrorReply(status=status["rule"], message="rule"), rule="r"))
    headers = {"x-mock-error": str(status["header"])} if "header" in upto else {}
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{live.openai_url}/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES}, headers=headers
        )
    assert r.status_code == status[level]
    assert model_entries(live)[-1].fault.endswith({"header": "(header)", "rule": "(rule)"}.get(level, "(rate)"))


async def test_injected_error_shape_and_retry_headers(live: Live) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{live.openai_url}/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES},
            headers={"x-mock-error": "503"},
        )
    assert r.status_code == 503
    assert r.headers["x-should-retry"] == "true"
    assert r.headers["retry-after-ms"] == "100" and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "service_unavailable_error"
    assert "x-ratelimit-remaining-requests" in r.headers
    assert model_entries(live)[-1].fault == "503 before (header)"


async def test_rule_error_keeps_its_type_and_a_header_error_beats_it(live: Live) -> None:
    from mockllm_tui.core.conversation import ErrorReply

    live.store.set_rules(Fixed(error=ErrorReply(status=529, message="busy", type="overloaded_error"), rule="busy"))
    async with httpx.AsyncClient() as http:
        url = f"{live.openai_url}/chat/completions"
        body = {"model": "gpt-4o", "messages": MESSAGES}
        r = await http.post(url, json=body)
        assert r.status_code == 529
        assert r.json()["error"] == {"message": "busy", "type": "overloaded_error", "param": None, "code": None}
        assert r.headers["x-should-retry"] == "true"
        r = await http.post(url, json=body, headers={"x-mock-error": "418"})
        assert r.status_code == 418 and "x-should-retry" not in r.headers


async def test_openai_529_mid_stream_raises_api_error_after_some_text(live: Live) -> None:
    live.store.set_rules(Fixed(text=LONG_TEXT, rule="long"))
    client = oai(live, max_retries=0)
    got: list[str] = []
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        extra_headers={"x-mock-error": "529", "x-mock-error-mode": "mid_stream"},
    )
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    assert "529" in str(info.value.message)
    assert got and 0 < len("".join(got)) < len(LONG_TEXT)
    entry = model_entries(live)[-1]
    assert entry.status == 529 and entry.fault == "529 mid_stream (header)"
    assert live.store.counters.streams_open == 0


async def test_anthropic_529_mid_stream_raises_overloaded_after_some_text(live: Live) -> None:
    if not any(p.name == "anthropic" for p in live.app.providers):
        pytest.skip("the anthropic provider is not installed")
    live.store.set_rules(Fixed(text=LONG_TEXT, rule="long"))
    # this time from the knobs (every request fails, mid-stream) rather than a header
    live.store.set_knobs("live", {"error_rate": 1.0, "error_status": [529], "error_mode": "mid_stream"})
    client = ant(live, max_retries=0)
    got: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        async with client.messages.stream(model="claude-haiku-4-5", max_tokens=200, messages=MESSAGES) as stream:
            async for text in stream.text_stream:
                got.append(text)
    assert isinstance(info.value, anthropic.APIStatusError)
    body = info.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "overloaded_error"
    assert got and 0 < len("".join(got)) < len(LONG_TEXT)
    assert model_entries(live)[-1].fault == "529 mid_stream (rate)"


async def test_latency_delays_the_answer_and_a_client_leaving_ends_the_wait(live: Live) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await oai(live).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, extra_headers={"x-mock-latency-ms": "150"}
    )
    assert loop.time() - started >= 0.15
    live.store.set_knobs("live", {"latency_ms": 30_000})
    with pytest.raises(openai.APITimeoutError):
        await oai(live, max_retries=0, timeout=0.2).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    await until(live, lambda: live.store.counters.in_flight == 0, timeout=1.0)
    assert model_entries(live)[-1].status == 499


@pytest.mark.parametrize("stream", [False, True])
async def test_disconnect_raises_a_connection_error(live: Live, stream: bool) -> None:
    live.store.set_rules(Fixed(text=LONG_TEXT, rule="long"))
    client = oai(live, max_retries=0)
    headers = {"x-mock-error-mode": "disconnect"}
    with pytest.raises(openai.APIConnectionError):
        if stream:
            response = await client.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, stream=True, extra_headers=headers
            )
            async for _ in response:
                pass
        else:
            await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers=headers)
    entry = model_entries(live)[-1]
    assert entry.fault == "disconnect (header)" and entry.status == 499
    assert live.store.counters.in_flight == 0 and live.store.counters.streams_open == 0


async def test_timeout_hangs_until_the_client_gives_up_and_is_capped(live: Live) -> None:
    client = oai(live, max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers={"x-mock-error-mode": "timeout"}
        )
    await until(live, lambda: live.store.counters.in_flight == 0)
    assert model_entries(live)[-1].status == 499
    live.store.set_knobs("live", {"timeout_cap_s": 0.2})
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{live.openai_url}/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES},
            headers={"x-mock-error-mode": "timeout"},
        )
        assert r.status_code == 504 and r.json()["error"]["type"] == "server_error"
        assert r.headers["x-should-retry"] == "true"
        stalled = await http.post(
            f"{live.openai_url}/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES, "stream": True},
            headers={"x-mock-error-mode": "timeout"},
        )
    assert stalled.status_code == 200
    assert stalled.text.count("chat.completion.chunk") >= 2
    assert '"error":{"message":"mockllm-tui held the stream' in stalled.text and "[DONE]" not in stalled.text
    assert model_entries(live)[-1].status == 504


async def until(live: Live, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until a condition on the store holds, woken by the store's events (no fixed sleeps)."""
    sub = live.store.subscribe()
    try:
        while not condition():
            assert await sub.wait(timeout), "the condition was not reached"
            sub.drain()
    finally:
        live.store.unsubscribe(sub)


async def test_client_disconnect_mid_stream_stops_the_sender(live: Live) -> None:
    live.store.set_rules(Fixed(text=LONG_TEXT, rule="long"))
    live.store.set_knobs("live", {"stream_speed": 20})  # 40+ tokens: about 3 s if it ran to the end
    async with (
        httpx.AsyncClient() as http,
        http.stream(
            "POST",
            f"{live.openai_url}/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES, "stream": True},
        ) as response,
    ):
        async for _ in response.aiter_bytes():
            break
    await until(live, lambda: live.store.counters.in_flight == 0, timeout=1.0)
    entry = model_entries(live)[-1]
    assert entry.status == 499 and not entry.open
    assert live.store.counters.streams_open == 0 and live.store.counters.in_flight == 0
    sent = len(entry.chunks)
    assert sent < 10
    await asyncio.sleep(0.2)  # a window of about two chunk intervals: nothing more goes out
    assert len(entry.chunks) == sent


# -- auth ----------------------------------------------------------------------------------------


async def test_auth_refuses_missing_or_wrong_keys_in_each_providers_shape(live: Live) -> None:
    live.store.set_knobs("cli", {"api_key": "sk-secret-123"})
    with pytest.raises(openai.AuthenticationError) as oai_info:
        await oai(live, api_key="sk-wrong", max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert oai_info.value.code == "invalid_api_key"
    assert oai_info.value.type == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError) as ant_info:
        await ant(live, api_key="sk-wrong", max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES
        )
    body = ant_info.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "authentication_error"
    # the right key works through either header
    ok = await oai(live, api_key="sk-secret-123").chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert ok.choices[0].message.content
    done = await ant(live, api_key="sk-secret-123").messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES
    )
    assert done.content
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{live.openai_url}/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
        assert r.status_code == 401 and "didn't provide an API key" in r.json()["error"]["message"]
        # /_mock/* needs the key too; /health never does
        assert (await http.get(f"{live.root}/_mock/settings")).status_code == 401
        assert (await http.get(f"{live.root}/_mock/journal", headers={"x-api-key": "nope"})).status_code == 401
        r = await http.get(f"{live.root}/_mock/settings", headers={"authorization": "Bearer sk-secret-123"})
        assert r.status_code == 200 and r.json()["effective"]["api_key"] == "***"
        assert r.json()["layers"]["cli"]["api_key"] == "***"
        assert (await http.get(f"{live.root}/health")).status_code == 200
    faults = [e.fault for e in model_entries(live)]
    assert faults.count("401 auth (wrong key)") == 2 and "401 auth (missing key)" in faults
    for entry in live.store.journal():
        text = repr(entry.public(with_body=True))
        assert "sk-secret-123" not in text


# -- rate limits ---------------------------------------------------------------------------------


async def test_every_model_response_carries_rate_limit_headers(live: Live) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{live.openai_url}/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
        assert r.headers["x-ratelimit-limit-requests"] == "10000"
        assert r.headers["x-ratelimit-remaining-tokens"] == "30000000"
        assert r.headers["x-ratelimit-reset-requests"] == "0ms"
        r = await http.post(
            f"{live.anthropic_url}/v1/messages",
            json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": MESSAGES},
            headers={"anthropic-version": "2023-06-01"},
        )
        assert r.status_code == 200
        assert r.headers["anthropic-ratelimit-requests-limit"] == "10000"
        assert r.headers["anthropic-ratelimit-tokens-reset"].endswith("Z")
        assert "x-ratelimit-limit-requests" not in r.headers
        health = await http.get(f"{live.root}/health")
        assert "x-ratelimit-limit-requests" not in health.headers


async def test_rpm_limit_gives_429_with_headers_across_providers(live: Live) -> None:
    live.store.set_knobs("live", {"rate_limit_rpm": 2})
    async with httpx.AsyncClient() as http:
        first = await http.post(f"{live.openai_url}/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        await http.get(f"{live.root}/_mock/settings")  # admin requests do not count
        second = await http.post(
            f"{live.anthropic_url}/v1/messages",
            json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": MESSAGES},
            headers={"anthropic-version": "2023-06-01"},
        )
        assert second.status_code == 200 and second.headers["anthropic-ratelimit-requests-remaining"] == "0"
        third = await http.post(f"{live.openai_url}/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
    assert third.status_code == 429
    error = third.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert "(RPM)" in error["message"]
    assert 1 <= int(third.headers["retry-after"]) <= 30
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    assert model_entries(live)[-1].fault == "429 rate_limit (rpm)"
    with pytest.raises(openai.RateLimitError):
        await oai(live, max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)


async def test_tpm_limit_gives_429_with_code_rate_limit_exceeded(live: Live) -> None:
    live.store.set_knobs("live", {"rate_limit_tpm": 30})
    live.store.set_rules(Fixed(text=LONG_TEXT, rule="long"))  # well over 30 tokens
    async with httpx.AsyncClient() as http:
        url = f"{live.openai_url}/chat/completions"
        first = await http.post(url, json={"model": "gpt-4o", "messages": MESSAGES})
        assert first.status_code == 200 and first.headers["x-ratelimit-limit-tokens"] == "30"
        second = await http.post(url, json={"model": "gpt-4o", "messages": MESSAGES})
        r = await http.post(
            f"{live.anthropic_url}/v1/messages",
            json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": MESSAGES},
            headers={"anthropic-version": "2023-06-01"},
        )
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limit_exceeded" and "(TPM)" in second.json()["error"]["message"]
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"
    assert int(second.headers["retry-after-ms"]) > 1000
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert r.headers["retry-after"]
    # lifting the limit lets requests through at once
    live.store.set_knobs("live", {"rate_limit_tpm": 0})
    ok = await oai(live, max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert ok.choices


# -- admin API -----------------------------------------------------------------------------------


async def test_settings_get_patch_delete_and_fail_next(live: Live) -> None:
    live.store.set_knobs("cli", {"latency_ms": 5})
    live.store.set_knobs("file", {"stream_speed": 100})
    async with httpx.AsyncClient(base_url=live.root) as http:
        view = (await http.get("/_mock/settings")).json()
        assert view["effective"]["latency_ms"] == 5 and view["effective"]["stream_speed"] == 100
        assert view["layers"] == {"cli": {"latency_ms": 5}, "file": {"stream_speed": 100}, "live": {}}
        r = await http.patch("/_mock/settings", json={"stream_speed": 40, "error_status": [429, 529]})
        assert r.status_code == 200
        assert r.json()["effective"]["stream_speed"] == 40 and r.json()["effective"]["error_status"] == [429, 529]
        assert live.store.knobs.stream_speed == 40
        r = await http.patch("/_mock/settings", json={"stream_speed": None})
        assert r.json()["effective"]["stream_speed"] == 100 and r.json()["layers"]["live"] == {
            "error_status": [429, 529]
        }
        for bad, param in (({"error_rate": 2}, "error_rate"), ({"nope": 1}, None), ({"error_mode": "x"}, "error_mode")):
            r = await http.patch("/_mock/settings", json=bad)
            assert r.status_code == 400
            assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["param"] == param
        assert (await http.patch("/_mock/settings", content=b"[1]")).status_code == 400
        assert live.store.knobs.error_rate == 0
        r = await http.delete("/_mock/settings")
        assert r.json()["layers"]["live"] == {} and live.store.knobs.error_status == (500,)
        r = await http.post("/_mock/fail-next", json={"count": 1, "status": 529})
        assert r.json() == {"count": 1, "status": 529}
        assert (await http.get("/_mock/settings")).json()["fail_next"] == {"count": 1, "status": 529}
        assert (await http.post("/_mock/fail-next", json={"count": -1})).status_code == 400
        assert (await http.post("/_mock/fail-next", json={"count": 1, "status": 200})).status_code == 400
        r = await http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
        assert r.status_code == 529
        r = await http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
        assert r.status_code == 200


async def test_settings_save_writes_live_values_into_the_file_but_never_the_key(tmp_path: Path) -> None:
    from mockllm_tui.http.app import create_app
    from mockllm_tui.http.runner import ServerHandle
    from tests.conftest import HOST, make_store

    responses = tmp_path / "responses.yml"
    responses.write_text('# my mocks\nsettings:\n  latency_ms: 5  # keep this comment\nresponses:\n  "hi": "hello"\n')
    store = make_store(responses)
    handle = ServerHandle(create_app(store), HOST, 0, grace_s=1)
    await handle.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{handle.port}") as http:
            await http.patch("/_mock/settings", json={"stream_speed": 25, "api_key": "sk-live-secret"})
            r = await http.post("/_mock/settings/save", headers={"x-api-key": "sk-live-secret"})
            assert r.status_code == 200, r.text
            view = r.json()
    finally:
        await handle.stop()
    assert view["persisted"] is True and view["saved"] == ["stream_speed"]
    assert view["layers"]["live"] == {"api_key": "***"} and view["layers"]["file"]["stream_speed"] == 25
    assert store.knobs.stream_speed == 25 and store.knobs.latency_ms == 5 and store.knobs.api_key == "sk-live-secret"
    text = responses.read_text()
    assert "stream_speed: 25" in text and "# keep this comment" in text and "sk-live-secret" not in text


async def test_bad_admin_input_is_a_400_naming_the_field_in_one_shape(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.root) as http:
        cases = [
            (http.post("/_mock/fail-next", json={"count": -1}), "count"),
            (http.post("/_mock/fail-next", json={"count": "2"}), "count"),
            (http.post("/_mock/fail-next", json={"status": 200}), "status"),
            (http.post("/_mock/rules", json={"index": "top", "match": {"exact": "x"}, "reply": "y"}), "index"),
            (http.post("/_mock/rules/reorder", json={"order": "all"}), "order"),
            (http.post("/_mock/rules/reorder", json={"id": "#1", "index": 0.5}), "index"),
            (http.get("/_mock/journal", params={"limit": "many"}), "limit"),
        ]
        for call, field in cases:
            r = await call
            assert r.status_code == 400, (field, r.text)
            error = r.json()["error"]
            assert set(r.json()) == {"error"} and error["type"] == "invalid_request_error"
            assert error["param"] == field and error["message"].startswith(f"{field}: "), error
        for body in (b"[1]", b"{nope", b'"text"'):
            r = await http.post("/_mock/fail-next", content=body, headers={"content-type": "text/plain"})
            assert r.status_code == 400 and "the request body" in r.json()["error"]["message"]
        move = await http.post("/_mock/rules/reorder", json={"id": 1})
        assert move.status_code == 400 and '{"order": [RULE, ...]}' in move.json()["error"]["message"]
        unknown = await http.get("/_mock/nowhere")
        assert unknown.status_code == 404 and unknown.json()["error"]["message"] == "Not Found"
        # a body sent the way `curl -d` sends it is read as JSON all the same
        ok = await http.post(
            "/_mock/fail-next", content=b'{"count": 0}', headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert ok.status_code == 200 and ok.json() == {"count": 0, "status": None}


async def test_fail_next_takes_a_mode_through_the_admin_api(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.root) as http:
        bad = await http.post("/_mock/fail-next", json={"count": 1, "mode": "sideways"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "mode"
        assert (await http.post("/_mock/fail-next", json={"count": 1, "mode": "disconnect"})).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
    assert live.store.journal()[-1].fault == "disconnect (fail_next)"
