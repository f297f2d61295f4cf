"""The journal keeps each request's body (bounded) and parses it on demand; `/_mock/journal` shows it redacted."""

from __future__ import annotations

import httpx
import orjson

from mockllm_tui.admin.journal import redact_body
from mockllm_tui.core.store import MAX_STORED_BODY
from tests.conftest import Live

SECRET = "sk-server-secret"


async def test_the_admin_journal_shows_the_body_with_credentials_redacted(live: Live) -> None:
    live.store.set_knobs("live", {"api_key": SECRET})
    auth = {"authorization": f"Bearer {SECRET}"}
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": f"my key is {SECRET}"}],
        "temperature": 0.5,
        "api_key": "sk-in-the-body",
    }
    async with httpx.AsyncClient(base_url=live.root) as client:
        sent = await client.post("/v1/chat/completions", json=body, headers=auth)
        journal = await client.get("/_mock/journal", headers=auth)
    assert sent.status_code == 200
    shown = journal.json()["data"][0]["body"]
    assert shown == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "my key is [redacted]"}],
        "temperature": 0.5,
        "api_key": "[redacted]",
    }
    assert "sk-in-the-body" not in journal.text
    assert live.store.journal()[0].body_json() == body  # the store itself keeps it as sent


async def test_a_body_past_the_bound_is_not_parsed_from_its_cut(live: Live) -> None:
    long = "x" * MAX_STORED_BODY
    async with httpx.AsyncClient(base_url=live.root) as client:
        sent = await client.post(
            "/v1/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": long}]}
        )
    assert sent.status_code == 200
    entry = live.store.journal()[0]
    assert len(entry.request_body) == MAX_STORED_BODY
    assert entry.body_json() is None


def test_redaction_walks_nested_values() -> None:
    value = {"a": [{"Password": "p", "x-api-key": "k", "note": "has KEY inside"}], "n": 1}
    assert redact_body(value, "KEY") == {
        "a": [{"Password": "[redacted]", "x-api-key": "[redacted]", "note": "has [redacted] inside"}],
        "n": 1,
    }


def test_the_event_streams_entry_data_redacts_credentials_in_the_body() -> None:
    from mockllm_tui.core.journal_data import entry_data
    from mockllm_tui.core.store import JournalEntry

    entry = JournalEntry(id=1, time=0.0, method="POST", path="/v1/chat/completions")
    entry.request_body = b'{"model": "m", "api_key": "sk-secret", "note": "uses KEY-123 inside"}'
    data = entry_data(entry, api_key="KEY-123")
    assert "sk-secret" not in data["body"]["text"] and "KEY-123" not in data["body"]["text"]
    assert orjson.loads(data["body"]["text"])["model"] == "m"
    entry.request_body = b"not json, kept as it is"
    assert entry_data(entry)["body"] == {"text": "not json, kept as it is"}


def test_a_body_with_no_credential_is_kept_as_it_is_and_escapes_do_not_hide_one() -> None:
    from mockllm_tui.core.redaction import redacted_bytes

    plain = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    assert redacted_bytes(plain, "KEY") is plain  # nothing to redact: not parsed, not rewritten
    escaped_name = b'{"api\\u005fkey": "abc123"}'
    assert orjson.loads(redacted_bytes(escaped_name)) == {"api_key": "[redacted]"}
    assert orjson.loads(redacted_bytes(b'{"Client-Secret": "s2"}')) == {"Client-Secret": "[redacted]"}
    quoted_key = 'K"EY'
    body = orjson.dumps({"note": f"uses {quoted_key} inside"})
    assert orjson.loads(redacted_bytes(body, quoted_key)) == {"note": "uses [redacted] inside"}
    assert orjson.loads(redacted_bytes(b'{"Authorization": "Bearer x"}')) == {"Authorization": "[redacted]"}
