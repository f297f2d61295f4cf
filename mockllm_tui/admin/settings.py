"""`/_mock/settings` and `/_mock/fail-next`: the knobs over HTTP (the "live" layer).

PATCH sets values in the live layer; a `null` removes a value from it, so the file, CLI or
default value shows through again. DELETE clears the live layer. POST /_mock/settings/save writes
the live values into the responses file's `settings:` (surgically) and then clears the live layer,
since the file layer now holds them. The API key is never shown, and never written to the file.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from mockllm_tui.admin.bodies import ANY_OBJECT, FAIL_NEXT, read_body
from mockllm_tui.admin.errors import AdminError
from mockllm_tui.admin.journal import store_of
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


def settings_view(store: Store) -> dict[str, Any]:
    """The effective knob values, each layer's own values, and any pending fail-next."""
    count, status = store.fail_next
    return {
        "effective": store.knobs.public(),
        "layers": {name: redact_layer(store.knob_layer(name)) for name in LAYERS},
        "fail_next": {"count": count, "status": status},
    }


@router.get("/settings")
async def get_settings(request: Request) -> dict[str, Any]:
    """The knobs in force and where each value comes from."""
    return settings_view(store_of(request))


@router.patch("/settings")
async def patch_settings(request: Request) -> dict[str, Any]:
    """Change knobs live; `null` drops a value from the live layer."""
    body = await read_body(request, ANY_OBJECT)
    store = store_of(request)
    live = {**store.knob_layer("live"), **body}
    live = {name: value for name, value in live.items() if value is not None}
    try:
        store.set_knobs("live", live, replace_layer=True)
    except KnobError as exc:
        name = str(exc).split(":", 1)[0]
        raise AdminError(400, str(exc), param=name if name in KNOB_NAMES else None) from None
    return settings_view(store)


@router.delete("/settings")
async def clear_live_settings(request: Request) -> dict[str, Any]:
    """Forget every live change: the file, CLI and default values apply again."""
    store = store_of(request)
    store.set_knobs("live", {}, replace_layer=True)
    return settings_view(store)


@router.post("/settings/save")
async def save_live_settings(request: Request) -> dict[str, Any]:
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


@router.post("/fail-next")
async def fail_next(request: Request) -> dict[str, Any]:
    """Fail exactly the next `count` model requests, with `status` and `mode` (default: the knobs')."""
    body = await read_body(request, FAIL_NEXT)
    store = store_of(request)
    store.set_fail_next(body.count, body.status, body.mode)
    pending, pending_status = store.fail_next
    return {"count": pending, "status": pending_status}
