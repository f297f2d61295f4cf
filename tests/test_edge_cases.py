"""Edge cases found in review: counters, odd headers, bad environment values, bind errors, HEAD."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tests.conftest import Live

STREAM = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def test_a_stream_refused_before_its_first_byte_leaves_the_stream_count_at_zero(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.root) as client:
        refused = await client.post("/v1/chat/completions", json=STREAM, headers={"x-mock-error": "429"})
        unknown = await client.post("/v1/chat/completions", json={**STREAM, "n": 0})
        served = await client.post("/v1/chat/completions", json=STREAM)
    assert (refused.status_code, unknown.status_code, served.status_code) == (429, 400, 200)
    assert live.store.counters.streams_open == 0
    assert live.store.counters.in_flight == 0


@pytest.mark.parametrize("value", ["4²9".encode(), b"abc", b"600", b"42"])
async def test_odd_error_headers_are_ignored_not_a_500(live: Live, value: bytes) -> None:
    async with httpx.AsyncClient(base_url=live.root) as client:
        reply = await client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            headers=[(b"x-mock-error", value)],
        )
    assert reply.status_code == 200


async def test_head_health_is_answered(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.root) as client:
        reply = await client.head("/health")
    assert reply.status_code == 200


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mockllm_tui", "--headless", *args],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, **(env or {})},
    )


def test_a_bad_environment_value_is_a_usage_error_not_a_traceback() -> None:
    result = run_cli(env={"MOCKLLM_PORT": "tcp://10.0.0.1:8000"})
    assert result.returncode == 2
    assert "--port" in result.stderr and "invalid int value" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "says"), [(("--port", "70000"), "port 70000"), (("--host", "no-such-host.invalid"), "no-such-host")]
)
def test_an_address_that_cannot_be_listened_on_is_one_line(args: tuple[str, ...], says: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot listen on") and says in last


async def test_processing_time_header_counts_the_latency(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.root) as client:
        reply = await client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            headers={"x-mock-latency-ms": "120"},
        )
    assert reply.status_code == 200
    assert int(reply.headers["openai-processing-ms"]) >= 120


async def test_a_wrong_method_on_an_id_route_is_405(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.root) as client:
        wrong = await client.put("/v1/models/gpt-4o", json={})
        unknown = await client.get("/v1/models/gpt-4o/extra")
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"
    assert unknown.status_code == 404


async def test_strict_models_from_the_command_line_refuses_unknown_models(live: Live) -> None:
    from mockllm_tui.cli import build_parser, make_store

    assert make_store(build_parser().parse_args(["--strict-models"])).config.strict_models
    live.store.configure(strict_models=True)
    body = {"messages": [{"role": "user", "content": "x"}]}
    async with httpx.AsyncClient(base_url=live.root) as client:
        unknown = await client.post("/v1/chat/completions", json={**body, "model": "no-such-model"})
        known = await client.post("/v1/chat/completions", json={**body, "model": "gpt-4o"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    assert known.status_code == 200
