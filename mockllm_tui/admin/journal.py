"""`/_mock/journal` and `/_mock/providers`."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from mockllm_tui.admin.errors import AdminError
from mockllm_tui.core.journal_data import entry_data
from mockllm_tui.core.redaction import redact_body
from mockllm_tui.core.store import Store
from mockllm_tui.providers.base import Provider
from mockllm_tui.providers.registry import plugin_errors

router = APIRouter(prefix="/_mock")
#: The last event id of the event stream when a command was answered (see admin/event_feed.py).
EVENT_ID_HEADER = "x-mock-event-id"


def store_of(request: Request) -> Store:
    """The app's store."""
    store: Store = request.app.state.store
    return store


def mark_events(request: Request, response: Response) -> None:
    """Put the event stream's last id on a command's answer (when anyone follows the stream): the
    events up to it tell of the state before the command, which an attached panel then skips."""
    feed = getattr(request.app.state, "event_feed", None)
    if feed is not None:
        response.headers[EVENT_ID_HEADER] = feed.event_id()


@router.get("/journal", response_model=None)
async def get_journal(
    request: Request, limit: int = 100, session: str | None = None, full: bool = False
) -> dict[str, Any] | Response:
    """The newest `limit` requests, oldest first, with the rule each matched (`?session=ID`: only
    that session's; `full`: everything the event stream tells of a request, as an attached panel
    rebuilds it)."""
    store = store_of(request)
    size = max(0, min(limit, store.journal_size))
    if session:
        entries = [e for e in store.journal() if e.session == session][-size:] if size else []
    else:
        entries = store.journal_tail(size)
    if full:  # up to the whole journal: serialized in one go, not through FastAPI's encoder
        key = store.knobs.api_key
        data = [entry_data(e, api_key=key) for e in entries]
        body = {"object": "list", "data": data, "counters": store.counters.public()}
        return Response(orjson.dumps(body), media_type="application/json")
    key = store.knobs.api_key
    data = [{**e.public(), "body": redact_body(e.body_json(), key)} for e in entries]
    return {"object": "list", "data": data, "counters": store.counters.public()}


@router.get("/journal/{entry_id}")
async def get_entry(request: Request, entry_id: int) -> dict[str, Any]:
    """One request, as `GET /_mock/journal` lists it, with the near misses of a fallback's answer
    (worked out now, when first asked for)."""
    store = store_of(request)
    entry = store.entry(entry_id)
    if entry is None:
        raise AdminError(404, f"request #{entry_id} is not in the journal", param="entry_id")
    return {**entry.public(), "body": redact_body(entry.body_json(), store.knobs.api_key)}


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
