"""`/_mock/journal` and `/_mock/providers`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from mockllm_tui.core.store import Store
from mockllm_tui.providers.base import Provider
from mockllm_tui.providers.registry import plugin_errors

router = APIRouter(prefix="/_mock")


def store_of(request: Request) -> Store:
    """The app's store."""
    store: Store = request.app.state.store
    return store


@router.get("/journal")
async def get_journal(request: Request, limit: int = 100) -> dict[str, Any]:
    """The newest `limit` requests, oldest first, with the rule each matched."""
    store = store_of(request)
    entries = store.journal_tail(max(0, min(limit, store.journal_size)))
    return {"object": "list", "data": [e.public() for e in entries], "counters": store.counters.public()}


@router.delete("/journal")
async def clear_journal(request: Request) -> dict[str, Any]:
    """Forget the journal and reset the counters."""
    store_of(request).clear_journal()
    return {"cleared": True}


@router.get("/providers")
async def list_providers(request: Request) -> dict[str, Any]:
    """The providers loaded, their endpoints, and any plugin that failed to load."""
    providers: list[Provider] = request.app.state.providers
    return {
        "object": "list",
        "data": [
            {
                "name": p.name,
                "endpoints": [{"method": e.method, "paths": list(e.paths), "name": e.name} for e in p.endpoints],
            }
            for p in providers
        ],
        "errors": list(plugin_errors),
    }
