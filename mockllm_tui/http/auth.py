"""The API key check: off until `api_key` is set; then model endpoints and `/_mock/*` need it.

Both `x-api-key` and `Authorization: Bearer` are accepted, compared in constant time. `/health`
never needs a key. Keys are never echoed: the journal redacts credential headers
(exchange.redact_headers) and the error messages do not quote what was sent.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

import orjson

from mockllm_tui.core.conversation import RequestError
from mockllm_tui.core.store import Store
from mockllm_tui.engine.exchange import Exchange, Send
from mockllm_tui.providers.base import Provider
from mockllm_tui.providers.openai_common import openai_error

INVALID_KEY_CODE = "invalid_api_key"
ADMIN_PREFIX = "/_mock"


def presented_keys(headers: dict[str, str]) -> list[str]:
    """The keys a request carries: `x-api-key` and a bearer token, if present."""
    keys = []
    api_key = headers.get("x-api-key")
    if api_key:
        keys.append(api_key)
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    return keys


def key_matches(expected: str, headers: dict[str, str]) -> bool:
    """Whether any presented key equals `expected` (constant-time on the raw header bytes)."""
    want = expected.encode("utf-8")
    found = False
    for key in presented_keys(headers):
        found |= hmac.compare_digest(key.encode("latin-1", "replace"), want)
    return found


def refusal_message(provider_name: str, headers: dict[str, str]) -> str:
    """The provider's wording for a missing or wrong key (never quoting the key)."""
    missing = not presented_keys(headers)
    if provider_name == "anthropic":
        return "x-api-key header is required" if missing else "invalid x-api-key"
    if missing:
        return (
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    return "Incorrect API key provided. (mockllm-tui was started with --api-key; send that key.)"


class AuthGuard:
    """The dispatcher guard for model endpoints: 401 in the provider's shape without the right key."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, ex: Exchange, provider: Provider) -> None:
        """Raise RequestError(401) when a key is required and not given."""
        expected = self.store.knobs.api_key
        if expected is None or key_matches(expected, ex.headers):
            return
        ex.entry.fault = "401 auth (missing key)" if not presented_keys(ex.headers) else "401 auth (wrong key)"
        raise RequestError(refusal_message(provider.name, ex.headers), status=401, code=INVALID_KEY_CODE)


def admin_allowed(store: Store, path: str, raw_headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request outside the model endpoints may go on: `/_mock/*` needs the key when one is set."""
    expected = store.knobs.api_key
    if expected is None or not path.startswith(ADMIN_PREFIX):
        return True
    return key_matches(expected, dict(headers_text(raw_headers)))


async def send_unauthorized(send: Send, raw_headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """A 401 for `/_mock/*` in OpenAI's shape, straight over ASGI."""
    message = refusal_message("openai", dict(headers_text(raw_headers)))
    body = orjson.dumps(openai_error(401, message, code=INVALID_KEY_CODE))
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def headers_text(raw_headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Raw ASGI headers as text pairs, names lower-cased."""
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw_headers]
