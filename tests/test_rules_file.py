"""The responses file: validation messages, --check, hot reload, surgical write-back, conflicts, admin API."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from mockllm_tui.rules import check_file, load_initial, watch_rules
from mockllm_tui.rules.commands import (
    ConflictError,
    RuleError,
    add_rule,
    list_rules,
    save_settings,
    update_rule,
)
from mockllm_tui.rules.fileio import read_document
from mockllm_tui.rules.model import RulesFileError
from tests.conftest import Live

MOCKLLM_TUI = Path(sys.executable).parent / "mockllm-tui"

COMMENTED = """\
# Replies for the demo.   (keep this header)
rules:
  - name: tool turn          # keep above the text rule
    match: {tool_result: get_weather}
    reply: 'Sunny.'

  # --- the text rules ---
  - name: weather
    match:
      contains: "weather"
    tool_calls: [{name: get_weather, arguments: {city: "Paris"}}]
  - match: {regex: "^say (?P<word>\\\\w+)"}
    reply: "You said {{word}}"

responses:
  "what colour is the sky?": "Blue."     # classic
  'hello':   "Hi!"
  "default": 'Mock.'

defaults:
  unknown_response: "?"   # never used: there is a default key
"""


async def chat_text(live: Live, text: str) -> str:
    async with openai.AsyncOpenAI(base_url=live.openai_url, api_key="k", max_retries=0) as client:
        done = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])
    return done.choices[0].message.content or ""


@pytest.fixture
async def watched(live: Live, tmp_path: Path) -> AsyncIterator[tuple[Live, Path]]:
    """The live server serving a commented file in tmp_path, with the watcher running."""
    path = tmp_path / "responses.yml"
    path.write_text(COMMENTED)
    load_initial(live.store, path)
    assert live.store.file_error is None
    task = asyncio.create_task(watch_rules(live.store, path))
    await asyncio.sleep(0.15)  # let the watcher start watching before the test edits (not a sync stand-in)
    try:
        yield live, path
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for(live: Live, kind: str, timeout: float) -> float:
    """Wait for an event of `kind` on a fresh subscription; returns the seconds it took."""
    sub = live.store.subscribe()
    start = time.perf_counter()
    try:
        while True:
            left = timeout - (time.perf_counter() - start)
            assert left > 0 and await sub.wait(left), f"no {kind!r} event within {timeout}s"
            if any(k == kind for k, _ in sub.drain()):
                return time.perf_counter() - start
    finally:
        live.store.unsubscribe(sub)


# -- validation and --check ----------------------------------------------------------------------


def test_error_names_file_line_and_rule(tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text("rules:\n  - match: {contains: a}\n    reply: x\n  - match: {regex: '(unclosed'}\n    reply: y\n")
    with pytest.raises(RulesFileError) as caught:
        read_document(path)
    assert str(caught.value.errors[0]).startswith(
        "responses.yml:4: rule 2: 'regex' is not a valid regular expression: missing ), unterminated subpattern"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "rules:\n  - match: {contains: a}\n    repy: x\n",
            "responses.yml:3: rule 1: unknown key 'repy'; did you mean 'reply'?",
        ),
        (
            "rules:\n  - match: {contains: a}\n",
            "responses.yml:2: rule 1: give a 'reply', 'replies', 'tool_calls', 'image', 'audio', 'moderation' or "
            "'error'",
        ),
        ("rules:\n  - match: {exact: a}\n    reply: '{{nope}}'\n", "rule 1: unknown template variable {{nope}}"),
        ("rules:\n  - match: {contains: a}\n    error: {status: 200}\n", "responses.yml:3: rule 1: 'error.status'"),
        ("responses:\n  a: b\n  A : c\n", "responses.yml:3: response 'A': the same prompt as 'a'"),
        ("responses:\n  a: b\n  a: c\n", "responses.yml:3: invalid YAML: found duplicate key"),
        ("responses: [a\n", "responses.yml:2: invalid YAML"),
        ("settings:\n  error_rate: 3\n", "responses.yml:2: settings: error_rate: must be between 0 and 1"),
        ("defaults:\n  mirror: maybe\n", "responses.yml:2: defaults: 'mirror' must be true or false"),
        ("respones:\n  a: b\n", "responses.yml:1: unknown section 'respones'; did you mean 'responses'?"),
        ("responses:\n  a: !!python/object:os.system x\n", "responses.yml:2: unsupported value"),
        ("models: [{id: 3}]\n", "responses.yml:1: models: models[0].id: expected a non-empty string"),
    ],
)
def test_validation_messages(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "responses.yml"
    path.write_text(text)
    with pytest.raises(RulesFileError) as caught:
        read_document(path)
    assert expected in str(caught.value.errors[0])


def test_check_cli_exit_codes_and_shadow_warning(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(
        "rules:\n  - match: {contains: weather}\n    tool_calls: [{name: w}]\n"
        "  - match: {tool_result: w}\n    reply: done\n"
    )
    bad = tmp_path / "bad.yml"
    bad.write_text("rules:\n  - match: {regex: '['}\n    reply: x\n  - match: {exact: 1}\n    replies: []\n")
    ok = subprocess.run([MOCKLLM_TUI, "--check", str(good)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "good.yml:4: warning: rule 2 (tool_result 'w') is shadowed by rule 1" in ok.stdout
    failed = subprocess.run([MOCKLLM_TUI, "--check", str(bad)], capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert "bad.yml:2: rule 1: 'regex' is not a valid regular expression" in failed.stdout
    assert "bad.yml:5: rule 2: 'replies' must be a non-empty list of strings" in failed.stdout
    out = io.StringIO()
    assert check_file(tmp_path / "missing.yml", out) == 1


def test_repository_example_is_valid_and_unshadowed() -> None:
    out = io.StringIO()
    assert check_file(Path(__file__).parent.parent / "responses.yml", out) == 0
    assert "warning" not in out.getvalue()


# -- hot reload ------------------------------------------------------------------------------------


async def test_valid_edit_takes_effect_within_300ms(watched: tuple[Live, Path]) -> None:
    live, path = watched
    assert await chat_text(live, "hello") == "Hi!"
    path.write_text(COMMENTED.replace('"Hi!"', '"Hi, reloaded!"'))
    took = await wait_for(live, "rules", 0.3)
    assert took < 0.3
    assert await chat_text(live, "hello") == "Hi, reloaded!"


async def test_atomic_rename_by_an_editor_is_seen(watched: tuple[Live, Path]) -> None:
    live, path = watched
    tmp = path.with_name(".responses.yml.swp")
    tmp.write_text(COMMENTED.replace("Blue.", "Azure."))
    os.replace(tmp, path)
    await wait_for(live, "rules", 0.3)
    assert await chat_text(live, "what colour is the sky?") == "Azure."


async def test_broken_edit_keeps_old_rules_and_reports_line(watched: tuple[Live, Path]) -> None:
    live, path = watched
    path.write_text(COMMENTED.replace('{regex: "^say (?P<word>\\\\w+)"}', '{regex: "^say ("}'))
    await wait_for(live, "file", 0.3)
    error = live.store.file_error or ""
    assert error.startswith("responses.yml:12: rule 3: 'regex' is not a valid regular expression"), error
    assert await chat_text(live, "say cheese") == "You said cheese"
    path.write_text(COMMENTED.replace("Hi!", "Fixed"))
    await wait_for(live, "rules", 0.3)
    assert live.store.file_error is None
    assert await chat_text(live, "hello") == "Fixed"


async def test_own_write_is_not_reloaded_again(watched: tuple[Live, Path]) -> None:
    live, _path = watched
    hello = next(r for r in list_rules(live.store) if r.spec.match.exact == "hello")
    update_rule(live.store, hello.id, {"match": {"exact": "hello"}, "reply": "Written"})
    rules_before = live.store.rules
    sub = live.store.subscribe()
    assert not await sub.wait(0.25)  # the watcher sees our write, compares hashes, and does nothing
    assert live.store.rules is rules_before
    assert await chat_text(live, "hello") == "Written"


# -- surgical write-back ------------------------------------------------------------------------------


async def test_admin_put_changes_only_that_line(watched: tuple[Live, Path]) -> None:
    live, path = watched
    rules = list_rules(live.store)
    hello = next(r for r in rules if r.spec.match.exact == "hello")
    async with httpx.AsyncClient(base_url=live.root) as client:
        body = {"match": {"exact": "hello"}, "reply": "Hey there"}
        got = await client.put(f"/_mock/rules/{hello.index + 1}", json=body)  # by its position
    assert got.status_code == 200, got.text
    assert got.json()["persisted"] is True
    before, after = COMMENTED.splitlines(keepends=True), path.read_text().splitlines(keepends=True)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert changed == [16]
    assert after[16] == "  'hello':   \"Hey there\"\n"
    assert await chat_text(live, "hello") == "Hey there"


async def test_admin_rich_rule_edit_keeps_everything_else(watched: tuple[Live, Path]) -> None:
    live, path = watched
    async with httpx.AsyncClient(base_url=live.root) as client:
        body = {
            "name": "weather",
            "match": {"contains": "rain"},
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}],
        }
        got = await client.put("/_mock/rules/weather", json=body)  # by its name
        assert got.status_code == 200, got.text
    text = path.read_text()
    assert text.replace('contains: "rain"', 'contains: "weather"').replace('"Oslo"', '"Paris"') == COMMENTED


async def test_short_entry_converts_to_rich_only_when_needed(watched: tuple[Live, Path]) -> None:
    live, path = watched
    sky = next(r for r in list_rules(live.store) if r.spec.match.exact == "what colour is the sky?")
    update_rule(live.store, sky.id, {"match": {"regex": "sky"}, "reply": "Blue."})
    text = path.read_text()
    assert '"what colour is the sky?"' not in text
    assert '  - match: {regex: "sky"}\n    reply: "Blue."\n' in text
    assert "# classic" not in text and "# --- the text rules ---" in text and "'hello':   \"Hi!\"" in text
    assert next(r for r in list_rules(live.store) if r.id == sky.id).kind == "rule"
    assert await chat_text(live, "is the sky blue?") == "Blue."


async def test_admin_api_crud_reorder_and_400s(watched: tuple[Live, Path]) -> None:
    live, path = watched
    async with httpx.AsyncClient(base_url=live.root) as client:
        bad = await client.post("/_mock/rules", json={"match": {"regex": "("}, "reply": "x"})
        assert bad.status_code == 400
        assert bad.json()["error"]["message"].startswith("rule: 'regex' is not a valid regular expression")
        made = await client.post("/_mock/rules", json={"match": {"contains": "ping"}, "reply": "pong"})
        assert made.status_code == 201, made.text
        assert made.json()["rule"]["id"] == "#4"  # after the three rich rules; the responses move down
        assert made.json()["rule"]["kind"] == "rule"
        assert await chat_text(live, "ping?") == "pong"
        moved = await client.post("/_mock/rules/reorder", json={"id": "#4", "index": 0})
        assert moved.status_code == 200 and moved.json()["rule"]["index"] == 0
        assert moved.json()["rule"]["id"] == "#1"
        assert path.read_text().startswith(
            '# Replies for the demo.   (keep this header)\nrules:\n  - match: {contains: "ping"}\n'
        )
        assert (await client.get("/_mock/rules/1")).json()["reply"] == "pong"
        assert (await client.get("/_mock/rules/%231")).json()["reply"] == "pong"
        memory = await client.post(
            "/_mock/rules?persist=false", json={"match": {"exact": "temp"}, "reply": "only here"}
        )
        assert memory.json()["persisted"] is False and memory.json()["rule"]["in_memory_only"] is True
        assert "temp" not in path.read_text()
        assert await chat_text(live, "temp") == "only here"
        gone = await client.delete("/_mock/rules/1")
        assert gone.status_code == 200 and "ping" not in path.read_text()
        assert (await client.get("/_mock/rules/1")).json()["id"] == "tool turn"
        missing = await client.get("/_mock/rules/99")
        assert missing.status_code == 404 and missing.json()["error"]["message"] == "no rule 99"
        assert await chat_text(live, "temp") == "only here"  # the memory-only rule survived the write
        listing = (await client.get("/_mock/rules")).json()
        assert listing["file_error"] is None and len(listing["data"]) == 7
        path.write_text(path.read_text().replace("Blue.", "Navy."))
        reloaded = await client.post("/_mock/reload")
        assert reloaded.status_code == 200
        assert await chat_text(live, "what colour is the sky?") == "Navy."
        path.write_text("rules: [\n")
        broken = await client.post("/_mock/reload")
        assert broken.status_code == 400 and "responses.yml:2: invalid YAML" in broken.json()["error"]["message"]
        assert await chat_text(live, "what colour is the sky?") == "Navy."


async def test_concurrent_hand_edit_is_not_lost(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text(COMMENTED)
    load_initial(live.store, path)  # no watcher: the hand edit below is not yet reloaded
    path.write_text(COMMENTED.replace("'Mock.'", "'Hand edited.'"))
    hello = next(r for r in list_rules(live.store) if r.spec.match.exact == "hello")
    result = update_rule(live.store, hello.id, {"match": {"exact": "hello"}, "reply": "From the panel"})
    assert result.persisted
    text = path.read_text()
    assert "'Hand edited.'" in text and '"From the panel"' in text
    assert await chat_text(live, "something") == "Hand edited."  # memory follows the merged file
    # the hand edit changed the very entry the panel edits: refused, nothing lost
    path.write_text(text.replace('"From the panel"', '"By hand again"'))
    with pytest.raises(ConflictError):
        update_rule(live.store, hello.id, {"match": {"exact": "hello"}, "reply": "Panel again"})
    assert '"By hand again"' in path.read_text()


async def test_read_only_file_keeps_change_in_memory(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text(COMMENTED)
    load_initial(live.store, path)
    path.chmod(0o444)
    try:
        result = add_rule(live.store, {"match": {"exact": "new"}, "reply": "in memory"})
    finally:
        path.chmod(0o644)
    assert not result.persisted and "read-only" in (result.message or "")
    assert path.read_text() == COMMENTED
    assert await chat_text(live, "new") == "in memory"


def test_settings_are_written_surgically(tmp_path: Path) -> None:
    from tests.conftest import make_store

    path = tmp_path / "responses.yml"
    path.write_text(COMMENTED + "settings:\n  latency_ms: 5   # ms\n")
    store = make_store(path)
    assert store.knobs.latency_ms == 5
    result = save_settings(store, None, {"stream_speed": 40, "latency_ms": 7})
    assert result.persisted
    assert path.read_text() == COMMENTED + "settings:\n  latency_ms: 7   # ms\n  stream_speed: 40\n"
    assert store.knobs.stream_speed == 40 and store.knobs.latency_ms == 7
    with pytest.raises(RuleError, match="error_rate"):
        save_settings(store, None, {"error_rate": 2})
