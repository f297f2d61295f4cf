"""What an attached panel needs beyond the rest of the admin API.

`GET /_mock/events` (the event stream, see event_feed.py), `POST /_mock/try` (which rule answers a
prompt, counting nothing), `GET /_mock/rules/file` (the rules file as served, its version as the
ETag) and `POST /_mock/rules/from-request` (a rule that answers a journaled request, placed where
it is not shadowed, as the panel's `n` does).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, StrictInt, StrictStr, TypeAdapter

from mockllm_tui.admin.bodies import read_body
from mockllm_tui.admin.errors import AdminError
from mockllm_tui.admin.event_feed import EventFeed
from mockllm_tui.admin.journal import store_of
from mockllm_tui.rules import commands
from mockllm_tui.rules.commands import ConflictError, RuleError, RuleNotFound
from mockllm_tui.rules.fileio import home_of

router = APIRouter(prefix="/_mock")

STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class TryBody(BaseModel):
    """`POST /_mock/try`: a prompt, and the model and provider it would come with."""

    prompt: StrictStr
    model: StrictStr | None = None
    provider: StrictStr | None = None


class FromRequest(BaseModel):
    """`POST /_mock/rules/from-request`: a journaled request's id and the rule (rich form) that answers it."""

    request: StrictInt
    rule: Any = None


TRY = TypeAdapter(TryBody)
FROM_REQUEST = TypeAdapter(FromRequest)


def event_feed(request: Request) -> EventFeed:
    """The app's event feed (made on first use: a server nobody attaches to pays nothing)."""
    state = request.app.state
    feed: EventFeed | None = getattr(state, "event_feed", None)
    if feed is None:
        feed = state.event_feed = EventFeed(store_of(request))
    return feed


@router.get("/events")
async def events(request: Request) -> StreamingResponse:
    """Server-Sent Events: requests (started, chunk, ended), knobs, rules and state as they change.
    `Last-Event-ID` resumes; an id no longer held starts with `reset`."""
    feed = event_feed(request)
    last = request.headers.get("last-event-id")
    return StreamingResponse(feed.stream(last), media_type="text/event-stream", headers=STREAM_HEADERS)


@router.post("/try")
async def try_prompt(request: Request) -> dict[str, Any]:
    """Which rule answers `prompt` (for `model` and `provider`), and its reply; counts nothing."""
    body = await read_body(request, TRY)
    result = commands.try_prompt(store_of(request), body.prompt, model=body.model, provider=body.provider)
    reply = result.reply
    return {
        "rule": result.label if result.rule_id is not None else None,
        "reply": reply.text if reply.error is None and (reply.text or not reply.tool_calls) else None,
        "label": result.label,
        "rid": result.rule_id,
        "error": None if reply.error is None else {"status": reply.error.status, "message": reply.error.message},
        "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in reply.tool_calls],
    }


@router.get("/rules/file")
async def rules_file(request: Request) -> Response:
    """The rules file's text as served (the packaged example when that serves; with a shared state,
    the shared document), its version as the ETag."""
    store = store_of(request)
    ruleset = commands.ruleset_of(store)
    source = ruleset.source
    if source is None:
        raise AdminError(404, "no rules file is served (the rules are built in)")
    version = f'"{home_of(store).version(source)}"'
    headers = {"etag": version, "x-mockllm-file": str(source.path)}
    if request.headers.get("if-none-match") == version:
        return Response(status_code=304, headers=headers)
    return Response(source.text, media_type="application/yaml; charset=utf-8", headers=headers)


@router.post("/rules/from-request")
async def rule_from_request(request: Request, persist: bool = True) -> JSONResponse:
    """Add a rule that answers journaled request `request` again: `{"request": 12, "rule": {...}}`."""
    body = await read_body(request, FROM_REQUEST)
    store = store_of(request)
    entry_id = body.request
    entry = store.entry(entry_id)
    if entry is None or entry.conversation is None:
        raise AdminError(404, f"request #{entry_id} is not in the journal, or has no conversation", param="request")
    conversation = entry.conversation
    try:
        result = commands.add_rule_for(store, body.rule, conversation, persist=persist)
    except RuleNotFound as exc:
        raise AdminError(404, str(exc)) from None
    except ConflictError as exc:
        raise AdminError(409, str(exc)) from None
    except RuleError as exc:
        raise AdminError(400, str(exc)) from None
    return JSONResponse(result.public(), status_code=201)
