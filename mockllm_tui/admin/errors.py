"""The admin API's errors, in one shape: every refusal under `/_mock/` (a bad body, a bad query or
path parameter, an unknown rule) is rendered in the default provider's error shape, and bad input
is a 400 that names the field. (The fallback app renders its 404s and bad parameters the same way.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError

from mockllm_tui.providers.base import Provider


class AdminError(Exception):
    """A refused admin request: its status, a message that names the problem, and the field."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


def first_problem(errors: Sequence[Any]) -> AdminError:
    """The first of pydantic's errors as a 400 naming its field (`count: ...`)."""
    error = errors[0]
    if error["type"] == "json_invalid":
        return AdminError(400, f"the request body is not valid JSON: {error['ctx']['error']}")
    where = [str(part) for part in error["loc"] if part not in ("body", "query", "path")]
    field = ".".join(where) or None
    message = str(error["msg"]).removeprefix("Value error, ")
    if field is None:
        return AdminError(400, f"the request body: {message}")
    shown = f", got {error['input']!r}" if "input" in error and not isinstance(error["input"], dict) else ""
    return AdminError(400, f"{field}: {message}{shown}", param=field)


def render(shape: Provider, exc: AdminError) -> Response:
    """An admin error as a response in `shape`'s error format."""
    body = shape.error_body(exc.status, exc.message, param=exc.param)
    return Response(body, status_code=exc.status, media_type="application/json")


def install_error_handlers(app: FastAPI, shape: Provider) -> None:
    """Render admin errors and bodies that do not validate in `shape`'s error format."""

    @app.exception_handler(AdminError)
    async def admin_error(request: Request, exc: AdminError) -> Response:
        return render(shape, exc)

    @app.exception_handler(ValidationError)
    async def bad_body(request: Request, exc: ValidationError) -> Response:
        return render(shape, first_problem(exc.errors()))
