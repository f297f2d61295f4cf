"""The attached panel's pure pieces: journal entries as plain data and back, and `w`'s surgical
update of an existing rules file."""

from __future__ import annotations

from pathlib import Path
from time import perf_counter

import orjson

from mockllm_tui.core.conversation import Conversation, Message, ToolCall, ToolSpec
from mockllm_tui.core.journal_data import entry_data, entry_from_data, update_entry
from mockllm_tui.core.store import Store
from mockllm_tui.remote.rules_file import save_rules_text
from mockllm_tui.rules.document import Document

LOCAL = """\
# my copy: these comments are mine
rules:
  - name: weather   # the forecast
    match: {contains: weather}
    reply: "Sunny."
  - name: tea
    match: {contains: tea}
    reply: "Earl Grey."
responses:
  "hello": "Hi."   # greeting
settings:
  latency_ms: 10
"""


def test_an_entry_survives_the_trip_as_plain_data() -> None:
    store = Store()
    entry = store.begin_request("POST", "/v1/chat/completions")
    entry.model, entry.provider, entry.rule, entry.status = "gpt-4o", "openai", "weather", 200
    entry.request_body = b'{"messages": []}'
    entry.response_body = b"\xff\xfe not utf-8"
    entry.request_headers = {"authorization": "[redacted]"}
    entry.conversation = Conversation(
        "openai",
        "chat",
        "gpt-4o",
        [Message("user", "weather?"), Message("assistant", "", [ToolCall("lookup", {"city": "Oslo"}, "call_1")])],
        system="be brief",
        tools=[ToolSpec("lookup", "find", {"type": "object"})],
    )
    store.open_stream(entry)
    store.add_chunks(entry, ["Sun", "ny."], 20)
    first = entry_data(entry, chunks_from=0)
    wire = orjson.loads(orjson.dumps(first))
    copy = entry_from_data(wire)
    assert (copy.id, copy.model, copy.rule, copy.status, copy.stream) == (entry.id, "gpt-4o", "weather", 200, True)
    assert copy.request_body == entry.request_body and copy.response_body == entry.response_body
    assert copy.transcript() == entry.transcript()
    assert copy.conversation is not None and copy.conversation.messages[1].tool_calls[0].arguments == {"city": "Oslo"}
    assert copy.chunks == ["Sun", "ny."]
    # chunk times keep their offsets from the start, on this side's clock
    gap = (entry.chunk_times[0] - entry.started) - (copy.chunk_times[0] - copy.started)
    assert abs(gap) < 0.001
    assert copy.started <= perf_counter()

    # more chunks: a replay of what is held is skipped, the rest appended in place
    store.add_chunks(entry, [" Warm."], 6)
    store.end_request(entry, 200)
    update_entry(copy, orjson.loads(orjson.dumps(entry_data(entry, chunks_from=1))))
    assert copy.chunks == ["Sun", "ny.", " Warm."] and not copy.open


def server_text(local: str) -> str:
    """The same rules as the server holds them: its own layout, one rule changed, one added, one gone."""
    return (
        local.replace("# my copy: these comments are mine\n", "")
        .replace('"Sunny."', '"Rain."')
        .replace('  - name: tea\n    match: {contains: tea}\n    reply: "Earl Grey."\n', "")
        .replace('  "hello": "Hi."   # greeting\n', '  "hello": "Hi."   # greeting\n  "bye": "Bye."\n')
        .replace("latency_ms: 10", "latency_ms: 250")
    )


def test_w_writes_a_new_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    message = save_rules_text(path, LOCAL)
    assert path.read_text() == LOCAL and "new file" in message


def test_w_changes_only_the_entries_that_differ(tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text(LOCAL)
    target = server_text(LOCAL)
    message = save_rules_text(path, target)
    mine = path.read_text()
    assert "only the changed entries" in message
    assert Document(mine).model.entries == Document(target).model.entries
    assert Document(mine).model.settings == {"latency_ms": 250}
    assert "# my copy: these comments are mine" in mine and "# greeting" in mine  # the untouched lines stay
    assert mine.count("\n") == LOCAL.count("\n") - 2  # the rule gone (3 lines), a response added (1)
    assert "Earl Grey" not in mine and "Bye." in mine and "Rain." in mine
    assert save_rules_text(path, target).endswith("already has the server's rules")


def test_w_replaces_a_broken_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text("rules: [unclosed\n")
    assert "replaced whole" in save_rules_text(path, LOCAL)
    assert path.read_text() == LOCAL
