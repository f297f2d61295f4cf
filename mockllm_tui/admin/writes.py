"""The write guard: an admin request that changes something first asks the state backend whether a
change can reach every process (`LocalState.write_refusal`), and answers its refusal when not:
409 under `--workers N` with no shared state (the change would reach one worker of N), 503 while a
shared Redis state is lost. Reads are never refused: GET and HEAD, and the POSTs in `READS`, which
take a body but change nothing. Every admin route gets the guard (`install_admin`), so a new route
that changes something is guarded without a word.
"""

from __future__ import annotations

from fastapi import Request

from mockllm_tui.admin.errors import AdminError
from mockllm_tui.admin.journal import store_of

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: (method, route path) of the requests that send a body but only ask something.
READS = frozenset({("POST", "/_mock/try")})


def changes_state(request: Request) -> bool:
    """Whether this admin request changes something (rules, knobs, counters, the journal)."""
    if request.method in SAFE_METHODS:
        return False
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    return (request.method, path) not in READS


async def refuse_unshared_writes(request: Request) -> None:
    """Refuse a change that cannot reach every process now, before the route does anything
    (a dependency of every admin route)."""
    if not changes_state(request):
        return
    refusal = store_of(request).state.write_refusal()
    if refusal is not None:
        status, message = refusal
        raise AdminError(status, message)
