"""`/_mock/settings` and `/_mock/fail-next`: the knobs over HTTP (the "live" layer).

PATCH sets values in the live layer; a `null` removes a value from it, so the file, CLI or
default value shows through again. DELETE clears the live layer. POST /_mock/settings/save writes
the live values into the responses file's `settings:` (surgically) and then clears the live layer,
since the file layer now holds them. The API key is never shown, and never written to the file.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from mockllm_tui.admin.bodies import ANY_OBJECT, FAIL_NEXT, read_body
from mockllm_tui.admin.errors import AdminError
from mockllm_tui.admin.journal import mark_events, store_of
from mockllm_tui.core.knobs import KNOB_NAMES, KnobError
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
    """The effective knob values, each layer's own values, any pending fail-next (of a session:
    its overrides as the `session` layer, and its own fail-next), and whether a change made here
    reaches every process serving this mock (`shared`: false under `--workers N` without a shared
    state, and while a shared state is lost)."""
    count, status = store.fail_next_of(session)
    layers = {name: redact_layer(store.knob_layer(name)) for name in LAYERS}
    out: dict[str, Any] = {"effective": store.knobs_for(session).public(), "layers": layers}
    if session is not None:
        layers["session"] = redact_layer(store.session(session).knobs)
        out["session"] = session
    out["fail_next"] = {"count": count, "status": status}
    out["shared"] = store.state.write_refusal() is None
    return out


@router.get("/settings")
async def get_settings(request: Request, session: str | None = None) -> dict[str, Any]:
    """The knobs in force and where each value comes from (`?session=ID`: for that session)."""
    return settings_view(store_of(request), session or None)


@router.patch("/settings")
async def patch_settings(request: Request, response: Response, session: str | None = None) -> dict[str, Any]:
    """Change knobs live; `null` drops a value from the live layer (`?session=ID`: that session's
    overrides, on top of the live knobs)."""
    body = await read_body(request, ANY_OBJECT)
    store = store_of(request)
    mark_events(request, response)
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
async def clear_live_settings(request: Request, response: Response, session: str | None = None) -> dict[str, Any]:
    """Forget every live change: the file, CLI and default values apply again (`?session=ID`: that
    session's overrides only)."""
    store = store_of(request)
    mark_events(request, response)
    if session:
        store.set_session_knobs(session, {}, replace_all=True)
        return settings_view(store, session)
    store.set_knobs("live", {}, replace_layer=True)
    return settings_view(store)


@router.post("/settings/save")
async def save_live_settings(request: Request, response: Response) -> dict[str, Any]:
    """Write the live values (except the API key) into the responses file's `settings:`."""
    store = store_of(request)
    mark_events(request, response)
    live = store.knob_layer("live")
    values = {name: value for name, value in live.items() if name != "api_key"}
    try:
        result = save_settings(store, None, values)
    except RuleError as exc:
        raise AdminError(400, str(exc)) from None
    kept = {name: value for name, value in live.items() if name == "api_key"}
    store.set_knobs("live", kept, replace_layer=True)
    return {"saved": sorted(values), "persisted": result.persisted, "message": result.message, **settings_view(store)}


@router.post("/fail-next")
async def fail_next(request: Request, response: Response, session: str | None = None) -> dict[str, Any]:
    """Fail exactly the next `count` model requests, with `status` and `mode` (default: the knobs');
    `?session=ID`: that session's next requests."""
    body = await read_body(request, FAIL_NEXT)
    store = store_of(request)
    mark_events(request, response)
    store.set_fail_next(body.count, body.status, body.mode, session=session or None)
    pending, pending_status = store.fail_next_of(session or None)
    return {"count": pending, "status": pending_status}
