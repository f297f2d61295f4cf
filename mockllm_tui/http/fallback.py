"""The FastAPI app behind the dispatcher: the admin API, its docs, and 404s for everything else.

Its errors take the default provider's shape (`Provider.default_shape`), so a client that strays
off the model endpoints still gets an error its SDK can read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mockllm_tui import __version__
from mockllm_tui.core.store import Store
from mockllm_tui.providers.base import Provider

if TYPE_CHECKING:
    from fastapi import FastAPI

def health(store: Store) -> dict[str, str]:
    """`GET /health`: ok, and which state is in force (memory, redis, or degraded while Redis is lost)."""
    return {"status": "ok", "state": store.state.mode}


def build_fallback(store: Store, providers: list[Provider], shape: Provider) -> FastAPI:
    """The FastAPI app for what the dispatcher does not serve itself."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from mockllm_tui.admin import install_admin
    from mockllm_tui.admin.errors import first_problem, render

    app = FastAPI(
        title="mockllm-tui",
        version=__version__,
        docs_url="/_mock/docs",
        redoc_url=None,
        openapi_url="/_mock/openapi.json",
    )

    def error(status: int, message: str, param: str | None = None) -> Response:
        body = shape.error_body(status, message, param=param)
        return Response(body, status_code=status, media_type="application/json")

    @app.get("/health")
    async def health_route() -> dict[str, str]:  # served by the dispatcher; here for the docs and other methods
        return health(store)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return render(shape, first_problem(exc.errors()))

    install_admin(app, store, providers, shape)
    return app
