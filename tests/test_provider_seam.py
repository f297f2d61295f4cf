"""The provider seam, proved by a plugin: a toy wire format (tests/toy_provider.py) gets rules,
faults, auth, rate limits, the journal and the panel with no change anywhere else."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from textual.widgets import Static

from mockllm_tui.core.store import Store
from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import ServerHandle
from mockllm_tui.providers.registry import register_provider, unregister_provider
from mockllm_tui.rules import load_initial
from mockllm_tui.tui.app import MockPanel
from mockllm_tui.tui.widgets.request_log import RequestLog
from tests.conftest import HOST, Live, serving
from tests.support import rendered

PLUGIN = "tests.toy_provider"
ROOT = Path(__file__).resolve().parent.parent
RULES = """\
rules:
  - name: toy-only
    match: {contains: "hello", provider: toy}
    reply: "Hello from the toy rule"
  - name: tooly
    match: {exact: "use a tool"}
    tool_calls: [{name: lookup, arguments: {q: "x"}}]
  - name: teapot
    match: {exact: "brew"}
    error: {status: 418, message: "I am a teapot"}
responses:
  "default": "fallback text"
"""


@pytest.fixture
def toy() -> Iterator[None]:
    """The toy plugin registered for this test only (other tests must not see its routes)."""
    module = importlib.import_module(PLUGIN)
    register_provider(module.Toy)
    try:
        yield
    finally:
        unregister_provider("toy")


def toy_store(tmp_path: Path) -> Store:
    path = tmp_path / "responses.yml"
    path.write_text(RULES)
    store = Store()
    load_initial(store, path)
    return store


@pytest.fixture
async def toy_live(toy: None, tmp_path: Path) -> AsyncIterator[Live]:
    store = toy_store(tmp_path)
    async with serving(store, create_app(store, plugins=[PLUGIN])) as running:
        yield running


async def ask(live: Live, prompt: str, *, headers: dict[str, str] | None = None, **extra: object) -> httpx.Response:
    async with httpx.AsyncClient(base_url=live.root, timeout=10) as client:
        return await client.post("/toy/ask", json={"model": "toy-1", "prompt": prompt, **extra}, headers=headers)


def toy_error(response: httpx.Response, status: int) -> str:
    """The toy error's text, after checking the status and that the body is strictly the toy shape."""
    assert response.status_code == status, response.text
    body = orjson.loads(response.content)
    assert set(body) == {"toy_error"} and body["toy_error"]["status"] == status
    return str(body["toy_error"]["text"])


async def test_rules_answer_in_the_toy_shape_and_the_journal_records_it(toy_live: Live) -> None:
    hello = await ask(toy_live, "hello there")
    assert hello.status_code == 200 and hello.json()["answer"] == "Hello from the toy rule"
    assert (await ask(toy_live, "use a tool")).json()["calls"] == [{"tool": "lookup", "args": {"q": "x"}}]
    assert (await ask(toy_live, "anything else")).json()["answer"] == "fallback text"
    streamed = await ask(toy_live, "hello stream", stream=True)
    assert streamed.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in streamed.text.splitlines()]
    assert "".join(line.get("piece", "") for line in lines) == "Hello from the toy rule"
    assert lines[-1] == {"done": True}
    entries = [e for e in toy_live.store.journal() if e.path == "/toy/ask"]
    assert [e.provider for e in entries] == ["toy"] * 4
    assert entries[0].rule == "toy-only" and entries[0].transcript() == [("user", "hello there")]
    assert entries[-1].stream and entries[-1].chunks and entries[-1].status == 200


async def test_errors_take_the_toy_shape_with_its_own_retry_headers(toy_live: Live) -> None:
    async with httpx.AsyncClient(base_url=toy_live.root, timeout=10) as client:
        assert "unknown path" in toy_error(await client.get("/toy/nowhere"), 404)
        assert "not allowed" in toy_error(await client.get("/toy/ask"), 405)
        assert "prompt" in toy_error(await client.post("/toy/ask", json={"model": "m"}), 400)
    assert toy_error(await ask(toy_live, "brew"), 418) == "I am a teapot"
    injected = await ask(toy_live, "hi", headers={"x-mock-error": "529"})
    assert "Injected error 529" in toy_error(injected, 529)
    assert injected.headers["x-toy-retry-in-ms"] == "100" and "x-should-retry" not in injected.headers
    toy_live.store.set_fail_next(1, 429)
    toy_error(await ask(toy_live, "hi"), 429)
    mid = await ask(toy_live, "hello", stream=True, headers={"x-mock-error": "503", "x-mock-error-mode": "mid_stream"})
    assert json.loads(mid.text.splitlines()[-1])["toy_error"]["status"] == 503


async def test_token_counts_and_embeddings_go_through_the_shared_flow(toy_live: Live) -> None:
    async with httpx.AsyncClient(base_url=toy_live.root, timeout=10) as client:
        counted = await client.post("/toy/count", json={"model": "toy-1", "prompt": "count these words"})
        assert counted.status_code == 200 and counted.json()["tokens"] > 0
        embedded = await client.post(
            "/toy/embed", json={"model": "toy-1", "texts": ["a cat", "a cat", "dog"], "size": 4}
        )
        vectors = embedded.json()["vectors"]
        assert [len(v) for v in vectors] == [4, 4, 4] and vectors[0] == vectors[1] != vectors[2]
        assert "texts" in toy_error(await client.post("/toy/embed", json={"model": "toy-1", "texts": []}), 400)
        injected = await client.post(
            "/toy/embed", json={"model": "toy-1", "texts": ["x"]}, headers={"x-mock-error": "503"}
        )
        assert "Injected error 503" in toy_error(injected, 503) and injected.headers["x-toy-retry-in-ms"] == "100"
    by_path = {e.path: e for e in toy_live.store.journal() if e.status == 200}
    assert by_path["/toy/count"].model == "toy-1" and by_path["/toy/count"].transcript() == [
        ("user", "count these words")
    ]
    assert by_path["/toy/embed"].model == "toy-1" and by_path["/toy/embed"].preview == "a cat"
    assert by_path["/toy/embed"].operation == "embeddings"


def test_the_toy_plugin_imports_only_the_public_seam() -> None:
    import ast

    tree = ast.parse((ROOT / "tests" / "toy_provider.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m for m in imported if m.startswith("mockllm_tui")} == {"mockllm_tui.plugin"}


async def test_auth_and_rate_limits_through_the_toy_headers(toy_live: Live) -> None:
    toy_live.store.set_knobs("live", {"api_key": "toy-secret"})
    assert toy_error(await ask(toy_live, "hi"), 401) == "toy: no key"
    assert toy_error(await ask(toy_live, "hi", headers={"x-toy-key": "wrong"}), 401) == "toy: bad key"
    assert (await ask(toy_live, "hi", headers={"x-toy-key": "toy-secret"})).status_code == 200
    assert all(e.request_headers.get("x-toy-key") in (None, "[redacted]") for e in toy_live.store.journal())
    toy_live.store.set_knobs("live", {"api_key": None, "rate_limit_rpm": 1})
    first = await ask(toy_live, "hi")
    assert first.status_code == 200 and first.headers["x-toy-limit"] == "1" and first.headers["x-toy-left"] == "0"
    refused = await ask(toy_live, "hi")
    assert "Rate limit reached" in toy_error(refused, 429)
    assert int(refused.headers["x-toy-retry-in-ms"]) > 0 and "x-ratelimit-limit-requests" not in refused.headers


async def test_the_panel_shows_toy_requests_with_no_panel_change(toy: None, tmp_path: Path) -> None:
    store = toy_store(tmp_path)
    handle = ServerHandle(create_app(store, plugins=[PLUGIN]), HOST, 0, grace_s=1)
    app = MockPanel(store, handle, watch_file=False, keymap_file=tmp_path / "keymap.yml", export_dir=tmp_path)
    async with app.run_test(size=(160, 45)) as pilot:
        live = Live(store, handle.app, handle)
        assert (await ask(live, "hello panel")).status_code == 200
        log = app.query_one(RequestLog)
        detail = app.query_one("#detail-body", Static)
        for _ in range(250):
            shown = rendered(detail)
            if log.row_count == 1 and "hello panel" in shown and "Hello from the toy rule" in shown:
                break
            await pilot.pause(0.02)
        row = [str(cell) for cell in log.get_row_at(0)]
        assert "hello panel" in row and "toy-1" in row
        assert "user: hello panel" in rendered(detail) and " · toy · toy-1 · 200" in rendered(detail)


def test_a_plugin_loads_with_the_plugin_option(tmp_path: Path) -> None:
    responses = tmp_path / "responses.yml"
    responses.write_text(RULES)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "mockllm_tui", "--headless", "--port", "0", "--responses", str(responses)]
    proc = subprocess.Popen([*cmd, "--plugin", PLUGIN], stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        root = first.split("serving on ")[1].split()[0]
        answer = httpx.post(root + "/toy/ask", json={"model": "m", "prompt": "hello"}, timeout=10)
        providers = httpx.get(root + "/_mock/providers", timeout=30).json()
    finally:
        proc.terminate()
        proc.wait(10)
    assert answer.status_code == 200 and answer.json()["answer"] == "Hello from the toy rule"
    assert "toy" in {p["name"] for p in providers["data"]} and providers["errors"] == []


async def test_a_plugin_records_through_an_upstream_with_only_a_reply_reader(toy: None, tmp_path: Path) -> None:
    """The toy implements `reply_reader` (NDJSON framing from the base class) and nothing else for recording."""
    upstream_dir = tmp_path / "up"
    upstream_dir.mkdir()
    upstream_store = toy_store(upstream_dir)
    path = tmp_path / "responses.yml"
    path.write_text("responses: {}\n")
    async with serving(upstream_store, create_app(upstream_store, plugins=[PLUGIN])) as upstream:
        store = Store()
        store.configure(upstreams=(("toy", upstream.root),))
        store.set_knobs("cli", {"record": True})
        load_initial(store, path)
        async with serving(store, create_app(store, plugins=[PLUGIN])) as live:
            streamed = await ask(live, "hello stream", stream=True)
            assert streamed.headers["content-type"] == "application/x-ndjson"
            assert (await ask(live, "use a tool")).json()["calls"] == [{"tool": "lookup", "args": {"q": "x"}}]
    text = path.read_text()
    assert 'exact: "hello stream"' in text and 'reply: "Hello from the toy rule"' in text
    assert 'tool_calls: [{name: "lookup", arguments: {q: "x"}}]' in text
    replay = Store()
    load_initial(replay, path)
    async with serving(replay, create_app(replay, plugins=[PLUGIN])) as live:
        assert (await ask(live, "hello stream")).json()["answer"] == "Hello from the toy rule"
