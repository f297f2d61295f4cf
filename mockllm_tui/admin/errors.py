"""The admin API's errors: raised by its routes, rendered in the default provider's error shape."""

from __future__ import annotations


class AdminError(Exception):
    """A refused admin request: its status, a message that names the problem, and the field."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
