"""The API key check: off until `api_key` is set; then model endpoints and `/_mock/*` need it.

Each provider says where its clients put the key (`Provider.presented_keys`) and how it words a
refusal (`Provider.auth_refusal`); keys are compared in constant time. `/health` never needs a
key. Keys are never echoed: the journal redacts credential headers and the refusals do not quote
what was sent.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from mockllm_tui.core.conversation import RequestError
from mockllm_tui.core.store import Store
from mockllm_tui.http.exchange import Exchange, Send
from mockllm_tui.providers.base import Provider

INVALID_KEY_CODE = "invalid_api_key"
ADMIN_PREFIX = "/_mock"


def key_matches(expected: str, keys: Iterable[str]) -> bool:
    """Whether any presented key equals `expected` (constant-time on the raw header bytes)."""
    want = expected.encode("utf-8")
    found = False
    for key in keys:
        found |= hmac.compare_digest(key.encode("latin-1", "replace"), want)
    return found


class AuthGuard:
    """The dispatcher guard for model endpoints: 401 in the provider's shape without the right key."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, ex: Exchange, provider: Provider) -> None:
        """Raise RequestError(401) when a key is required and not given."""
        expected = self.store.knobs.api_key
        if expected is None:
            return
        keys = provider.request_keys(ex.request)
        if key_matches(expected, keys) or provider.accepts_unchecked(ex.headers):
            return
        ex.journal.faulted("401 auth (wrong key)" if keys else "401 auth (missing key)")
        raise RequestError(provider.auth_refusal(not keys), status=401, code=INVALID_KEY_CODE)


def admin_allowed(store: Store, path: str, headers: Mapping[str, str], provider: Provider) -> bool:
    """Whether a request outside the model endpoints may go on: `/_mock/*` needs the key when one is set."""
    expected = store.knobs.api_key
    if expected is None or not path.startswith(ADMIN_PREFIX):
        return True
    return key_matches(expected, provider.presented_keys(headers))


async def send_unauthorized(send: Send, headers: Mapping[str, str], provider: Provider) -> None:
    """A 401 for `/_mock/*` in the default provider's shape, straight over ASGI."""
    message = provider.auth_refusal(not provider.presented_keys(headers))
    body = provider.error_body(401, message, code=INVALID_KEY_CODE)
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def headers_text(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Raw ASGI headers as text, names lower-cased."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
