"""The admin API as the attached panel calls it: short synchronous calls for commands (on loopback
they take a few milliseconds, and a refusal comes back in time to show in the dialog that asked),
and an async client for the event stream and the journal."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from mockllm_tui.remote.errors import NotConnected, RefusedCommand

COMMAND_TIMEOUT_S = 5.0
#: Where a command's answer says which events were made before it (admin/journal.py EVENT_ID_HEADER).
EVENT_ID_HEADER = "x-mock-event-id"
#: Three heartbeats missed.
STREAM_SILENCE_S = 45.0


def error_message(response: httpx.Response) -> str:
    """The message in an error body of any provider's shape (or the status line)."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.reason_phrase}"
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def answer_of(response: httpx.Response) -> Any:
    """A command's JSON answer (None for an empty one); RefusedCommand for an error status."""
    if response.status_code >= 400:
        raise RefusedCommand(response.status_code, error_message(response))
    return response.json() if response.content else None


def auth_headers(api_key: str | None) -> dict[str, str]:
    """How the admin API is given the key (as a bearer token, which every provider shape accepts)."""
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


def rule_path(ident: str) -> str:
    """`/_mock/rules/IDENT`, the identity escaped (`#3` is `%233`)."""
    return "/_mock/rules/" + quote(ident, safe="")


class AdminClient:
    """Commands to a running server's admin API (`/_mock/*`)."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.root = url.rstrip("/").removesuffix("/v1")
        self.api_key = api_key
        self._http = httpx.Client(base_url=self.root, headers=auth_headers(api_key), timeout=timeout_s)
        self._async: httpx.AsyncClient | None = None

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    async def aclose(self) -> None:
        """Close the connection pools (the async one too)."""
        if self._async is not None:
            await self._async.aclose()
            self._async = None
        self.close()

    async def get(self, path: str) -> Any:
        """A resource read without holding up the panel (as `call` answers)."""
        if self._async is None:
            self._async = self.async_client()
        try:
            response = await self._async.get(path)
        except httpx.TransportError as exc:
            raise NotConnected(type(exc).__name__) from None
        return answer_of(response)

    def call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """One command: its JSON answer; RefusedCommand when refused, NotConnected when unreachable."""
        return self.exchange(method, path, json=json, params=params)[0]

    def exchange(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> tuple[Any, str | None]:
        """One command: its JSON answer and the id of the last event the server had made when it
        answered (None when nobody follows its event stream)."""
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise NotConnected(type(exc).__name__) from None
        return answer_of(response), response.headers.get(EVENT_ID_HEADER)

    def text(self, path: str) -> tuple[str, str]:
        """A text resource and its ETag."""
        try:
            response = self._http.get(path)
        except httpx.TransportError as exc:
            raise NotConnected(type(exc).__name__) from None
        if response.status_code >= 400:
            raise RefusedCommand(response.status_code, error_message(response))
        return response.text, response.headers.get("etag", "")

    def async_client(self) -> httpx.AsyncClient:
        """A new async client for the event stream and the journal. The stream sends at least a
        heartbeat every 15 s: a longer silence means the connection is dead, and it is dropped."""
        timeout = httpx.Timeout(COMMAND_TIMEOUT_S, read=STREAM_SILENCE_S)
        return httpx.AsyncClient(base_url=self.root, headers=auth_headers(self.api_key), timeout=timeout)
