"""Start-up: the dispatcher serves model requests and /health before the FastAPI fallback exists."""

from __future__ import annotations

import subprocess
import sys

import httpx
import orjson
from openai import AsyncOpenAI

from mockllm_tui.http.app import ServerHandle, create_app
from tests.conftest import HOST, make_store


def test_importing_the_cli_leaves_fastapi_and_pydantic_out() -> None:
    code = "import sys, mockllm_tui.cli; print([m for m in ('fastapi', 'pydantic', 'starlette') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "[]"


async def test_model_requests_and_health_do_not_wait_for_the_fallback() -> None:
    store = make_store()
    app = create_app(store)
    app._fallback_lock.acquire()  # hold the FastAPI build back until the model requests are answered
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
            assert app._fallback is None
            app._fallback_lock.release()
            providers = await client.get("/_mock/providers")
            docs = await client.get("/_mock/openapi.json")
            unknown = await client.get("/nowhere")
    finally:
        if app._fallback_lock.locked():
            app._fallback_lock.release()
        await handle.stop()
    assert health.status_code == 200 and orjson.loads(health.content) == {"status": "ok"}
    assert health.headers["content-type"] == "application/json"
    assert chat.choices[0].message.content
    assert providers.status_code == 200
    assert {p["name"] for p in providers.json()["data"]} >= {"openai", "anthropic"}
    assert "/health" in docs.json()["paths"]
    assert unknown.status_code == 404 and unknown.json()["error"]["message"]
    assert [(e.path, e.status) for e in store.journal()][:2] == [("/health", 200), ("/v1/chat/completions", 200)]
