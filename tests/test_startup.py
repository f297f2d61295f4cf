"""Start-up: the dispatcher serves model requests and /health before the FastAPI fallback exists."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import httpx
import orjson
import pytest
from openai import AsyncOpenAI

from mockllm_tui.http import app as app_module
from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import ServerHandle
from tests.conftest import HOST, make_store


def test_importing_the_cli_leaves_fastapi_and_pydantic_out() -> None:
    code = "import sys, mockllm_tui.cli; print([m for m in ('fastapi', 'pydantic', 'starlette') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "[]"


async def test_model_requests_and_health_do_not_wait_for_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store()
    app = create_app(store)
    gate = threading.Event()  # holds the FastAPI build back until the model requests are answered
    build = app_module.build_fallback

    def held_build(*args: Any) -> Any:
        gate.wait(30)
        return build(*args)

    monkeypatch.setattr(app_module, "build_fallback", held_build)
    handle = ServerHandle(app, HOST, 0, grace_s=1)
    await handle.start()
    try:
        root = f"http://{HOST}:{handle.port}"
        async with httpx.AsyncClient(base_url=root) as client:
            health = await client.get("/health")
            async with AsyncOpenAI(base_url=root + "/v1", api_key="k", max_retries=0) as sdk:
                chat = await sdk.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
            assert not app.fallback_built
            gate.set()
            providers = await client.get("/_mock/providers")
            docs = await client.get("/_mock/openapi.json")
            unknown = await client.get("/nowhere")
    finally:
        gate.set()
        await handle.stop()
    assert health.status_code == 200 and orjson.loads(health.content) == {"status": "ok", "state": "memory"}
    assert health.headers["content-type"] == "application/json"
    assert chat.choices[0].message.content
    assert providers.status_code == 200
    assert {p["name"] for p in providers.json()["data"]} >= {"openai", "anthropic"}
    assert "/health" in docs.json()["paths"]
    assert unknown.status_code == 404 and unknown.json()["error"]["message"]
    assert [(e.path, e.status) for e in store.journal()][:2] == [("/health", 200), ("/v1/chat/completions", 200)]
