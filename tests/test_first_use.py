"""A newcomer's first hour with the user's file: the packaged example is read-only, and its first
change (panel, admin API, recording, saved settings) creates ./responses.yml in the folder the program
runs in; recording into an empty `rules: []` comments its first rule; messages about a missing or
broken file say truthfully what serves meanwhile."""

from __future__ import annotations

import difflib
import hashlib
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
from textual.widgets import Static

from mockllm_tui.cli import build_parser, make_store
from mockllm_tui.core.conversation import Conversation, Message, Reply
from mockllm_tui.core.store import Store
from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import ServerHandle
from mockllm_tui.rules import load_initial
from mockllm_tui.rules.commands import add_rule, rules_file, save_settings, try_prompt
from mockllm_tui.rules.fileio import PACKAGED_EXAMPLE, reload_from_disk
from mockllm_tui.rules.recording import Recorder, Timing
from mockllm_tui.tui.app import MockPanel
from mockllm_tui.tui.widgets.rule_table import RuleTable
from tests.conftest import serving
from tests.test_headless import start_headless
from tests.test_record import SECRET, UPSTREAM_RULES, store_for

EXAMPLE_TEXT = PACKAGED_EXAMPLE.read_text()
CREATED = "created ./responses.yml from the packaged example"


def package_hash() -> str:
    return hashlib.sha256(PACKAGED_EXAMPLE.read_bytes()).hexdigest()


PACKAGE_HASH = package_hash()


def added_to_example(path: Path) -> list[str]:
    """The lines a file adds to the example's text; fails when any of the example's lines changed."""
    now = path.read_text()
    ops = difflib.SequenceMatcher(None, EXAMPLE_TEXT, now, autojunk=False).get_opcodes()
    assert [op for op in ops if op[0] not in ("equal", "insert")] == []
    return [line for tag, _, _, j1, j2 in ops if tag == "insert" for line in now[j1:j2].splitlines() if line.strip()]


@pytest.fixture
def newcomer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder, made the current one, under a home folder of its own."""
    monkeypatch.delenv("MOCKLLM_RESPONSES", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    return project


def example_store() -> Store:
    """The store `mockllm-tui` makes with no options in a folder without responses.yml."""
    store = make_store(build_parser().parse_args([]))
    load_initial(store, Path(store.config.responses_path))
    return store


async def test_the_panels_first_edit_creates_responses_yml_and_leaves_the_package_alone(newcomer: Path) -> None:
    store = example_store()
    assert Path(store.config.responses_path) == PACKAGED_EXAMPLE
    handle = ServerHandle(create_app(store), "127.0.0.1", 0, grace_s=1)
    app = MockPanel(store, handle, keymap_file=newcomer / "keymap.yml", export_dir=newcomer)
    local = newcomer / "responses.yml"
    async with app.run_test(size=(160, 45)) as pilot:

        async def until(condition: Callable[[], bool], timeout: float = 8.0) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                assert time.monotonic() < deadline, "condition not met in time"
                await pilot.pause(0.02)

        status = app.query_one("#status-file", Static)
        assert str(status.content) == "example (read-only) · edits go to ./responses.yml  ✓ valid"
        app.query_one(RuleTable).focus()
        await pilot.press("a")
        await pilot.press(*"ping", "tab", *"pong", "ctrl+s")
        await until(lambda: local.exists())
        added = added_to_example(local)  # every line of the example kept, the new rule added
        assert any("ping" in line for line in added) and any('"pong"' in line for line in added)
        assert package_hash() == PACKAGE_HASH
        await until(lambda: str(status.content) == "~/project/responses.yml  ✓ valid")
        assert [str(n.message) for n in app._notifications].count(CREATED + " (which stays read-only)") == 1
        client = openai.AsyncOpenAI(base_url=handle.url, api_key="sk-test", max_retries=0)
        reply = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "ping"}])
        assert reply.choices[0].message.content == "pong"
        await client.close()

        # the next change (saved settings) goes to the new file too
        await pilot.press("plus", "ctrl+s")
        assert any("latency_ms: 100" in line for line in added_to_example(local))
        # and the watcher follows the new file: a hand edit there is served
        local.write_text(local.read_text().replace('"pong"', '"pong, by hand"'))
        await until(lambda: try_prompt(store, "ping").reply.text == "pong, by hand")
    assert package_hash() == PACKAGE_HASH


def test_the_admin_apis_first_change_creates_responses_yml_in_a_headless_server(newcomer: Path) -> None:
    proc, port, responses = start_headless(cwd=newcomer)
    root = f"http://127.0.0.1:{port}"
    local = newcomer / "responses.yml"
    try:
        assert Path(responses) == PACKAGED_EXAMPLE
        assert httpx.get(f"{root}/_mock/rules").json()["file"] == str(PACKAGED_EXAMPLE)
        created = httpx.post(f"{root}/_mock/rules?persist=true", json={"match": {"exact": "ping"}, "reply": "pong"})
        assert created.status_code == 201 and created.json()["persisted"] is True
        assert added_to_example(local) == ['  "ping": "pong"']
        assert package_hash() == PACKAGE_HASH
        assert Path(httpx.get(f"{root}/_mock/rules").json()["file"]) == local.resolve()
        client = openai.OpenAI(base_url=f"{root}/v1", api_key="sk-test", max_retries=0)
        answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "ping"}])
        assert answer.choices[0].message.content == "pong"

        assert httpx.patch(f"{root}/_mock/settings", json={"latency_ms": 5}).status_code == 200
        saved = httpx.post(f"{root}/_mock/settings/save").json()
        assert saved["persisted"] is True and saved["message"] is None
        assert added_to_example(local)[-2:] == ["settings:", "  latency_ms: 5"]

        local.write_text(local.read_text().replace('"pong"', '"pong, by hand"'))
        deadline = time.monotonic() + 8
        while not any(r["reply"] == "pong, by hand" for r in httpx.get(f"{root}/_mock/rules").json()["data"]):
            assert time.monotonic() < deadline, "the watcher did not follow ./responses.yml"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()  # the stdout read so far may sit in its buffer
    assert "the packaged example is read-only: the first change creates ./responses.yml\n" in err
    assert err.count(CREATED) == 1 and CREATED not in out  # stdout is the request log only
    assert package_hash() == PACKAGE_HASH


def test_recording_into_the_example_creates_responses_yml_with_the_recorded_comment(newcomer: Path) -> None:
    store = example_store()
    conversation = Conversation("openai", "chat", "gpt-4o", [Message("user", "What is new?")])
    result = Recorder().record(store, conversation, Reply(text="Everything."), Timing(), "127.0.0.1:9")
    assert result is not None and result.persisted
    added = added_to_example(newcomer / "responses.yml")
    assert added[0] == "rules:" and added[1].startswith("  # recorded ") and added[1].endswith(" from 127.0.0.1:9")
    assert rules_file(store).path == newcomer / "responses.yml" and rules_file(store).copy_to is None
    assert package_hash() == PACKAGE_HASH


def test_until_the_first_change_the_example_says_where_edits_go(newcomer: Path) -> None:
    store = example_store()
    notices = store.subscribe(kinds=frozenset({"notice"}))
    assert rules_file(store).copy_to == newcomer / "responses.yml"
    assert save_settings(store, None, {"seed": 7}).persisted
    assert [payload for _, payload in notices.drain()] == [CREATED + " (which stays read-only)"]
    assert added_to_example(newcomer / "responses.yml")[-1] == "  seed: 7"
    assert add_rule(store, {"match": {"exact": "second"}, "reply": "change"}).persisted
    assert notices.drain() == []  # said once
    assert package_hash() == PACKAGE_HASH


def test_a_responses_yml_made_meanwhile_is_adopted_not_overwritten(newcomer: Path) -> None:
    store = example_store()
    local = newcomer / "responses.yml"
    local.write_text('responses:\n  "mine": "kept"\n')  # by hand, or by another worker
    assert add_rule(store, {"match": {"exact": "ping"}, "reply": "pong"}).persisted
    assert local.read_text() == 'responses:\n  "mine": "kept"\n  "ping": "pong"\n'
    assert try_prompt(store, "mine").reply.text == "kept"
    assert package_hash() == PACKAGE_HASH


# -- recording's first rule, and truthful messages -----------------------------------------------------


async def test_the_first_rule_recorded_into_an_empty_rules_list_gets_its_comment(tmp_path: Path) -> None:
    upstream_file = tmp_path / "upstream.yml"
    upstream_file.write_text(UPSTREAM_RULES)
    upstream_store = store_for(upstream_file)
    upstream_store.set_knobs("cli", {"api_key": SECRET})
    path = tmp_path / "responses.yml"
    path.write_text("# recorded answers\nrules: []   # none yet\n")
    async with serving(upstream_store) as upstream:
        store = store_for(path, upstreams=(("openai", upstream.root),))
        store.set_knobs("cli", {"record": True})
        async with serving(store) as proxy:
            client = openai.AsyncOpenAI(base_url=proxy.openai_url, api_key=SECRET, max_retries=0)
            for prompt in ("hello", "slow"):
                await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
            await client.close()
    lines = path.read_text().splitlines()
    assert lines[:3] == ["# recorded answers", "rules:   # none yet", lines[2]]
    origin = f"from 127.0.0.1:{upstream.handle.port}"
    comments = [i for i, line in enumerate(lines) if line.startswith("  # recorded ") and line.endswith(origin)]
    assert len(comments) == 2 and comments[0] == 2  # the first rule's comment too, right under `rules:`
    for i in comments:
        assert lines[i + 1].startswith("  - match: {exact: ")


def test_a_missing_file_does_not_claim_last_good_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mockllm_tui.rules")
    store = Store()
    load_initial(store, tmp_path / "responses.yml")
    assert [r.getMessage() for r in caplog.records] == [
        "responses.yml: file not found; starting with no rules (an edit will create it)"
    ]
    assert store.file_error == "responses.yml: file not found; starting with no rules (an edit will create it)"


def test_a_broken_file_says_what_serves_meanwhile(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mockllm_tui.rules")
    path = tmp_path / "responses.yml"
    path.write_text("responses: [unclosed\n")
    store = Store()
    load_initial(store, path)
    assert caplog.records[-1].getMessage().endswith(
        "(no rules are loaded until it is fixed: every prompt gets the fallback reply)"
    )
    path.write_text('responses:\n  "hi": "there"\n')
    assert reload_from_disk(store) is None
    path.write_text("responses: [unclosed again\n")
    assert reload_from_disk(store) is not None
    assert caplog.records[-1].getMessage().endswith("(the last good rules keep serving)")
    assert "last good rules" not in " ".join(r.getMessage() for r in caplog.records[:-1])
