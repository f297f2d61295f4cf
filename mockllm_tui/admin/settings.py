"""`/_mock/settings` and `/_mock/fail-next`: the knobs over HTTP (the "live" layer).

PATCH sets values in the live layer; a `null` removes a value from it, so the file, CLI or
default value shows through again. DELETE clears the live layer. POST /_mock/settings/save writes
the live values into the responses file's `settings:` (surgically) and then clears the live layer,
since the file layer now holds them. The API key is never shown, and never written to the file.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mockllm_tui.admin.errors import AdminError
from mockllm_tui.admin.journal import store_of
from mockllm_tui.core.knobs import ERROR_MODES, KNOB_NAMES, KnobError
from mockllm_tui.core.store import Store
from mockllm_tui.rules.commands import RuleError, save_settings

router = APIRouter(prefix="/_mock")

LAYERS = ("cli", "file", "live")


def redact_layer(values: dict[str, Any]) -> dict[str, Any]:
    """A layer's values with the API key hidden."""
    out = dict(values)
    if "api_key" in out:
        out["api_key"] = "***" if out["api_key"] else None
    if isinstance(out.get("error_status"), tuple):
        out["error_status"] = list(out["error_status"])
    return out


def settings_view(store: Store, session: str | None = None) -> dict[str, Any]:
    """The effective knob values, each layer's own values, and any pending fail-next (of a session:
    its overrides as the `session` layer, and its own fail-next)."""
    count, status = store.fail_next_of(session)
    layers = {name: redact_layer(store.knob_layer(name)) for name in LAYERS}
    out: dict[str, Any] = {"effective": store.knobs_for(session).public(), "layers": layers}
    if session is not None:
        layers["session"] = redact_layer(store.session(session).knobs)
        out["session"] = session
    out["fail_next"] = {"count": count, "status": status}
    return out


async def json_object(request: Request) -> dict[str, Any] | JSONResponse:
    """The request body as a JSON object, or a 400 response saying what is wrong."""
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise AdminError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise AdminError(400, "the request body must be a JSON object")
    return body


@router.get("/settings")
async def get_settings(request: Request, session: str | None = None) -> dict[str, Any]:
    """The knobs in force and where each value comes from (`?session=ID`: for that session)."""
    return settings_view(store_of(request), session or None)


@router.patch("/settings", response_model=None)
async def patch_settings(request: Request, session: str | None = None) -> dict[str, Any] | JSONResponse:
    """Change knobs live; `null` drops a value from the live layer (`?session=ID`: that session's
    overrides, on top of the live knobs)."""
    body = await json_object(request)
    if isinstance(body, JSONResponse):
        return body
    store = store_of(request)
    if session:
        try:
            store.set_session_knobs(session, body)
        except KnobError as exc:
            name = str(exc).split(":", 1)[0]
            raise AdminError(400, str(exc), param=name if name in KNOB_NAMES else None) from None
        return settings_view(store, session)
    live = {**store.knob_layer("live"), **body}
    live = {name: value for name, value in live.items() if value is not None}
    try:
        store.set_knobs("live", live, replace_layer=True)
    except KnobError as exc:
        name = str(exc).split(":", 1)[0]
        raise AdminError(400, str(exc), param=name if name in KNOB_NAMES else None) from None
    return settings_view(store)


@router.delete("/settings")
async def clear_live_settings(request: Request, session: str | None = None) -> dict[str, Any]:
    """Forget every live change: the file, CLI and default values apply again (`?session=ID`: that
    session's overrides only)."""
    store = store_of(request)
    if session:
        store.set_session_knobs(session, {}, replace_all=True)
        return settings_view(store, session)
    store.set_knobs("live", {}, replace_layer=True)
    return settings_view(store)


@router.post("/settings/save", response_model=None)
async def save_live_settings(request: Request) -> dict[str, Any] | JSONResponse:
    """Write the live values (except the API key) into the responses file's `settings:`."""
    store = store_of(request)
    live = store.knob_layer("live")
    values = {name: value for name, value in live.items() if name != "api_key"}
    try:
        result = save_settings(store, None, values)
    except RuleError as exc:
        raise AdminError(400, str(exc)) from None
    kept = {name: value for name, value in live.items() if name == "api_key"}
    store.set_knobs("live", kept, replace_layer=True)
    return {"saved": sorted(values), "persisted": result.persisted, "message": result.message, **settings_view(store)}


@router.post("/fail-next", response_model=None)
async def fail_next(request: Request, session: str | None = None) -> dict[str, Any] | JSONResponse:
    """Fail exactly the next `count` model requests, with `status` and `mode` (default: the knobs');
    `?session=ID`: that session's next requests."""
    body = await json_object(request)
    if isinstance(body, JSONResponse):
        return body
    count = body.get("count", 1)
    status = body.get("status")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise AdminError(400, f"count: expected a whole number of at least 0, got {count!r}", param="count")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599):
        raise AdminError(400, f"status: expected an HTTP error status (400-599), got {status!r}", param="status")
    mode = body.get("mode")
    if mode is not None and mode not in ERROR_MODES:
        raise AdminError(400, f"mode: expected one of {', '.join(ERROR_MODES)}, got {mode!r}", param="mode")
    store = store_of(request)
    store.set_fail_next(count, status, mode, session=session or None)
    pending, pending_status = store.fail_next_of(session or None)
    return {"count": pending, "status": pending_status}
