"""Credentials out of what the journal shows: request body fields that hold them, and the server's own key."""

from __future__ import annotations

from typing import Any

import orjson

from mockllm_tui.core.store import REDACTED

#: Body fields whose values are credentials (compared lower-cased, with `-` read as `_`).
CREDENTIAL_FIELDS = frozenset(
    {"api_key", "apikey", "x_api_key", "authorization", "password", "secret", "client_secret", "access_token"}
)


def redact_body(value: Any, api_key: str | None = None) -> Any:
    """A parsed request body with credentials replaced: credential fields, and the server's own key anywhere."""
    if isinstance(value, dict):
        return {
            k: REDACTED if str(k).lower().replace("-", "_") in CREDENTIAL_FIELDS else redact_body(v, api_key)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_body(v, api_key) for v in value]
    if api_key and isinstance(value, str) and api_key in value:
        return value.replace(api_key, REDACTED)
    return value


def may_hold_credentials(raw: bytes, api_key: str | None = None) -> bool:
    """Whether a body could hold a credential field or the key (False: it surely holds none, so it
    need not be parsed). A JSON escape could hide either, so a body with one is parsed."""
    if b"\\" in raw or (api_key and api_key.encode() in raw):
        return True
    folded = raw.lower().replace(b"-", b"_")
    return any(name in folded for name in _CREDENTIAL_BYTES)


_CREDENTIAL_BYTES = tuple(name.encode() for name in CREDENTIAL_FIELDS)


def redacted_bytes(raw: bytes, api_key: str | None = None) -> bytes:
    """A request body as sent, with its credentials replaced when it is JSON (other bodies as they are)."""
    if not may_hold_credentials(raw, api_key):
        return raw
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    cleaned = redact_body(parsed, api_key)
    return raw if cleaned == parsed else orjson.dumps(cleaned)
