"""`/_mock/rules` and `/_mock/reload`: the rules through the same commands the panel uses.

Bodies are rules in the file's rich form (`{"match": {...}, "reply": ...}`). Bad input is a 400 with
the file's own validation message; `?persist=false` keeps a change in memory only.

A rule is named by its identity, as everything else names it: its `name`, or its 1-based position
in listing order as `#N` (`%23N` in a path) or plain `N`. A name wins over a position; a name that
several rules share is a 400.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mockllm_tui.admin.bodies import ANY_OBJECT, NEW_RULE, REORDER, read_body
from mockllm_tui.admin.errors import AdminError
from mockllm_tui.admin.journal import mark_events, store_of
from mockllm_tui.core.store import Store
from mockllm_tui.rules import commands
from mockllm_tui.rules.commands import ConflictError, RuleError, RuleNotFound

router = APIRouter(prefix="/_mock")


def _run(action: Any, status: int = 200) -> Response:
    try:
        result = action()
    except RuleNotFound as exc:
        raise AdminError(404, str(exc)) from None
    except ConflictError as exc:
        raise AdminError(409, str(exc)) from None
    except RuleError as exc:
        raise AdminError(400, str(exc)) from None
    body = result.public() if hasattr(result, "public") else result
    return JSONResponse(body, status_code=status)


def _rule_id(store: Store, ident: str | int) -> int:
    """The internal id of the rule an identity names (a JSON number is a position)."""
    return commands.find_rule(store, str(ident)).id


@router.get("/rules")
async def list_rules(request: Request, response: Response, session: str | None = None) -> dict[str, Any]:
    """Every rule in listing order, with identities, hit counts and the file's state (`?session=ID`:
    that session's own rules)."""
    store = store_of(request)
    mark_events(request, response)
    if session:
        return {"object": "list", "data": commands.list_session_rules(store, session), "session": session}
    return {
        "object": "list",
        "data": [view.public() for view in commands.list_rules(store)],
        "file": store.config.responses_path,
        "file_error": store.file_error,
    }


@router.post("/rules")
async def add_rule(request: Request, persist: bool = True, session: str | None = None) -> Response:
    """Add a rule; `index` in the body places it (default: the end of its form). With `?session=ID`
    the rule is that session's only, tried before the shared rules and never written to the file."""
    body = await read_body(request, NEW_RULE)
    data = body.model_dump(exclude_unset=True)
    if session:
        return _run(lambda: commands.add_session_rule(store_of(request), session, data, body.index), 201)
    return _run(lambda: commands.add_rule(store_of(request), data, index=body.index, persist=persist), 201)


@router.post("/rules/reorder")
async def reorder(request: Request, persist: bool = True) -> Response:
    """Move one rule to a 0-based `index`: `{"id": "weather", "index": 0}`; or give the whole order
    as identities, read before anything moves: `{"order": ["#3", "weather", "#2"]}`."""
    store = store_of(request)
    body = await read_body(request, REORDER)
    order = body.order
    if order is not None:

        def move_all() -> dict[str, Any]:
            ids = [_rule_id(store, ident) for ident in order]
            for position, rule_id in enumerate(ids):
                commands.move_rule(store, rule_id, position, persist=persist)
            return {"object": "list", "data": [v.public() for v in commands.list_rules(store)]}

        return _run(move_all)
    ident, index = body.id, body.index
    assert ident is not None and index is not None  # Reorder.one_form
    return _run(lambda: commands.move_rule(store, _rule_id(store, ident), index, persist=persist))


@router.get("/rules/{rule:path}")
async def get_rule(request: Request, rule: str) -> Response:
    """One rule, by name or position (`#N` or `N`)."""
    return _run(lambda: commands.find_rule(store_of(request), rule))


@router.put("/rules/{rule:path}")
async def update_rule(request: Request, rule: str, persist: bool = True) -> Response:
    """Replace a rule's content (same position)."""
    body = await read_body(request, ANY_OBJECT)
    store = store_of(request)
    return _run(lambda: commands.update_rule(store, _rule_id(store, rule), body, persist=persist))


@router.delete("/rules/{rule:path}")
async def delete_rule(request: Request, rule: str, persist: bool = True, session: str | None = None) -> Response:
    """Remove a rule (`?session=ID`: one of that session's, by its identity or id)."""
    store = store_of(request)
    if session:
        return _run(lambda: commands.delete_session_rule(store, session, rule))
    return _run(lambda: commands.delete_rule(store, _rule_id(store, rule), persist=persist))


@router.get("/scenarios")
async def list_scenarios(request: Request, session: str | None = None) -> dict[str, Any]:
    """Every scenario and where the session (default: the default one) is in it."""
    views = commands.list_scenarios(store_of(request), session or None)
    return {"object": "list", "data": [v.public() for v in views], "session": session or None}


@router.post("/scenarios/{name}/reset")
async def reset_scenario(request: Request, name: str, session: str | None = None) -> dict[str, Any]:
    """Back to step 1 in every session (`?session=ID`: in that one only); 404 for an unknown name."""
    try:
        view = commands.reset_scenario(store_of(request), name, session or None, every=not session)
    except LookupError as exc:
        raise AdminError(404, str(exc.args[0])) from None
    return {"reset": True, "session": session or None, **view.public()}


@router.post("/reload")
async def reload(request: Request) -> Response:
    """Read the responses file again now (a 400 with the file's error when it is invalid)."""
    store = store_of(request)

    def run() -> dict[str, Any]:
        commands.reload_rules(store)
        return {"reloaded": True, "rules": len(commands.list_rules(store)), "file": store.config.responses_path}

    return _run(run)
