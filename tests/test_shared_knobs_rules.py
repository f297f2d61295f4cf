"""`--state redis://…`: the live knobs and the rules document shared by several headless processes.

Every test runs real headless processes on a real redis-server, each with its own responses file
(unless the test says otherwise), and talks to them over HTTP and with the openai SDK.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from mockllm_tui.core.store import Store
from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import ServerHandle
from mockllm_tui.rules import commands
from mockllm_tui.rules.fileio import DocumentHome, StaleDocument, digest_of, load_initial, set_home
from mockllm_tui.rules.model import FileSource
from mockllm_tui.shared.connection import RedisState
from mockllm_tui.shared.group import redis_state
from mockllm_tui.shared.rules_doc import HISTORY, SharedRules
from mockllm_tui.tui.app import MockPanel
from mockllm_tui.tui.screens.rule_editor import RuleEditor
from tests.redis_server import RedisServer
from tests.test_panel import SIZE

DEADLINE_S = 8.0

RULES = """# the group's rules
responses:
  "hello": "Hello from the first file."
  "default": "fallback"
"""

OTHER = """responses:
  "hello": "Hello from another file."
"""


@dataclass
class Proc:
    """One headless mockllm-tui in the group."""

    name: str
    proc: subprocess.Popen[str]
    root: str
    file: Path
    stderr: Path

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.root + path, params=params, timeout=10)

    def settings(self, session: str | None = None) -> dict[str, Any]:
        params = {"session": session} if session else {}
        return dict(self.get("/_mock/settings", **params).json()["effective"])

    def rules_file(self) -> httpx.Response:
        return self.get("/_mock/rules/file")

    def chat(self, prompt: str) -> str:
        client = openai.OpenAI(base_url=self.root + "/v1", api_key="test", max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
        return reply.choices[0].message.content or ""

    def add_rule(self, name: str, contains: str, reply: str) -> httpx.Response:
        body = {"name": name, "match": {"contains": contains}, "reply": reply}
        return httpx.post(self.root + "/_mock/rules", json=body, timeout=10)

    def errors(self) -> str:
        return self.stderr.read_text()


Start = Callable[..., list[Proc]]


def until(check: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> float:
    """Poll `check` until it holds (the seconds it took); fail naming `what` after `timeout`."""
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except (httpx.HTTPError, openai.APIError, OSError):
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


@pytest.fixture
def start(tmp_path: Path, redis_server: RedisServer) -> Iterator[Start]:
    """Start headless processes on the test's Redis: `start("a", "b", text=..., file=...)`."""
    procs: list[Proc] = []

    def launch(*names: str, text: str | None = RULES, file: Path | None = None) -> list[Proc]:
        pending = []
        for name in names:
            folder = tmp_path / name
            folder.mkdir(exist_ok=True)
            path = file or folder / "responses.yml"
            if text is not None and file is None:
                path.write_text(text)
            err = folder / "stderr.log"
            cmd = [sys.executable, "-m", "mockllm_tui", "--headless", "--quiet", "--port", "0"]
            cmd += ["--state", redis_server.url, "--instance-name", name, "--responses", str(path)]
            with err.open("w") as handle:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=handle, text=True, cwd=folder)
            pending.append((name, proc, path, err))
        started = []
        for name, proc, path, err in pending:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "serving on" in line, err.read_text()
            started.append(Proc(name, proc, line.split("serving on ")[1].split()[0], path, err))
        procs.extend(started)
        return started

    try:
        yield launch
    finally:
        for p in procs:
            p.proc.terminate()
        for p in procs:
            try:
                p.proc.wait(15)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait(5)
            print(f"--- {p.name}'s stderr (shown when the test fails)\n{p.errors()}")


def save_by_hand(path: Path, text: str) -> None:
    """Save a file as editors do: a new file renamed over the old one (never half written)."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def shared_doc(server: RedisServer) -> dict[str, str]:
    """The shared document as Redis holds it."""
    client = redis.Redis.from_url(server.url)
    try:
        return {k.decode(): v.decode() for k, v in client.hgetall("mockllm:rules:doc").items()}
    finally:
        client.close()


def commands_during(server: RedisServer, action: Callable[[], None]) -> list[str]:
    """Every command Redis ran while `action` ran (through MONITOR, between two marker commands)."""
    seen: list[str] = []
    watcher = redis.Redis.from_url(server.url)
    poker = redis.Redis.from_url(server.url)

    def watch() -> None:
        with watcher.monitor() as monitor:
            for command in monitor.listen():
                seen.append(str(command["command"]))
                if "end-of-action" in seen[-1]:
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    until(lambda: bool(poker.echo("start-of-action")) and any("start-of-action" in c for c in seen), "MONITOR on")
    try:
        action()
    finally:
        poker.echo("end-of-action")
        thread.join(10)
        poker.close()
        watcher.close()
    start = max(i for i, c in enumerate(seen) if "start-of-action" in c)
    return seen[start + 1 : -1]


def test_live_knobs_reach_every_process(start: Start, redis_server: RedisServer) -> None:
    a, b, c = start("a", "b", "c")
    assert httpx.patch(a.root + "/_mock/settings", json={"error_rate": 1.0, "error_status": [503]}).status_code == 200
    took = until(lambda: all(p.settings()["error_rate"] == 1.0 for p in (b, c)), "the PATCH through a reached b and c")
    assert took < 3.0  # within a second or so, even on a busy machine
    with pytest.raises(openai.APIStatusError) as failed:
        c.chat("hello")
    assert failed.value.status_code == 503

    assert httpx.delete(b.root + "/_mock/settings").status_code == 200
    until(lambda: all(p.settings()["error_rate"] == 0.0 for p in (a, c)), "the DELETE through b reached a and c")
    assert a.chat("hello") == "Hello from the first file."

    # two processes changing different knobs at the same moment: both changes stay
    barrier = threading.Barrier(2)

    def patch(proc: Proc, values: dict[str, Any]) -> None:
        barrier.wait()
        assert httpx.patch(proc.root + "/_mock/settings", json=values).status_code == 200

    threads = [
        threading.Thread(target=patch, args=(a, {"latency_ms": 1.0})),
        threading.Thread(target=patch, args=(b, {"stream_speed": 50.0})),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    def both_everywhere() -> bool:
        return all(p.settings()["latency_ms"] == 1.0 and p.settings()["stream_speed"] == 50.0 for p in (a, b, c))

    until(both_everywhere, "both concurrent PATCHes in force on every process")

    # the knobs and rules serve from each process's own copy: requests do not ask Redis for them
    client = openai.OpenAI(base_url=a.root + "/v1", api_key="test", max_retries=0)
    requests = 40
    started = time.monotonic()

    def serve_requests() -> None:
        for _ in range(requests):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])

    ran = commands_during(redis_server, serve_requests)
    ours = [c for c in ran if "mockllm:knobs" in c or "mockllm:rules" in c]
    # only the processes' looks at the versions (two every 0.5 s each), however many requests
    assert set(ours) <= {"GET mockllm:knobs:version", "HMGET mockllm:rules:doc digest version"}, ours
    assert len(ours) <= 3 * 2 * (int((time.monotonic() - started) / 0.5) + 2)

    # a session's overrides too
    got = httpx.patch(a.root + "/_mock/settings", params={"session": "s1"}, json={"latency_ms": 3})
    assert got.status_code == 200
    until(lambda: c.settings("s1")["latency_ms"] == 3.0, "session s1's override reached c")
    assert c.settings()["latency_ms"] == 1.0


def test_rule_added_through_one_process_is_served_by_the_others(start: Start, redis_server: RedisServer) -> None:
    a, b, c = start("a", "b", "c")
    made = a.add_rule("ping", "ping", "pong from the group")
    assert made.status_code == 201 and made.json()["persisted"] is True
    for p in (b, c):
        until(lambda p=p: p.chat("ping?") == "pong from the group", f"{p.name} serves the rule added through a")
    for p in (a, b, c):
        until(lambda p=p: "pong from the group" in p.file.read_text(), f"{p.name}'s file holds the rule")
        assert "Hello from the first file." in p.file.read_text()
    doc = shared_doc(redis_server)
    assert doc["version"] == "2" and "pong from the group" in doc["text"]
    for p in (a, b, c):
        got = p.rules_file()
        assert got.headers["etag"] == '"2"' and got.text == doc["text"]
    assert httpx.get(c.root + "/_mock/rules/file", headers={"if-none-match": '"2"'}).status_code == 304

    # the live values saved into the file's settings: through b are every process's file layer
    assert httpx.patch(b.root + "/_mock/settings", json={"latency_ms": 9}).status_code == 200
    saved = httpx.post(b.root + "/_mock/settings/save")
    assert saved.status_code == 200 and saved.json()["persisted"] is True

    def saved_everywhere(p: Proc) -> bool:
        layers = p.get("/_mock/settings").json()["layers"]
        return layers["file"] == {"latency_ms": 9} and layers["live"] == {} and "latency_ms: 9" in p.file.read_text()

    for p in (a, b, c):
        until(lambda p=p: saved_everywhere(p), f"{p.name} has the saved settings in its file layer and file")
    assert shared_doc(redis_server)["version"] == "3"
    assert a.chat("ping") == "pong from the group"


def test_two_concurrent_edits_through_two_processes_both_survive(start: Start, redis_server: RedisServer) -> None:
    a, b = start("a", "b")
    rounds = 4
    barrier = threading.Barrier(2)
    failures: list[str] = []

    def edit(proc: Proc) -> None:
        for i in range(rounds):
            barrier.wait()
            got = proc.add_rule(f"{proc.name}-{i}", f"ask {proc.name} {i}", f"answer {proc.name} {i}")
            if got.status_code != 201 or not got.json()["persisted"]:
                failures.append(got.text)

    threads = [threading.Thread(target=edit, args=(p,)) for p in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    names = [f"{p}-{i}" for p in "ab" for i in range(rounds)]
    doc = shared_doc(redis_server)
    assert all(f"name: {n}\n" in doc["text"] for n in names), doc["text"]
    assert doc["version"] == str(1 + 2 * rounds)
    for p in (a, b):
        until(lambda p=p: all(f"name: {n}\n" in p.file.read_text() for n in names), f"{p.name}'s file has every rule")
        until(lambda p=p: p.rules_file().text == doc["text"], f"{p.name} serves the shared text")
    assert a.chat("ask b 3") == "answer b 3" and b.chat("ask a 0") == "answer a 0"


def test_a_later_process_takes_the_shared_document_and_says_so(start: Start) -> None:
    (a,) = start("a")
    assert a.add_rule("ping", "ping", "pong").status_code == 201
    (b,) = start("b", text=OTHER)
    assert b.chat("hello") == "Hello from the first file."
    assert b.chat("ping") == "pong"
    lines = [line for line in b.errors().splitlines() if "shared rules" in line]
    assert len(lines) == 1, b.errors()
    assert "joined the group at redis://127.0.0.1:" in lines[0] and "(version 2)" in lines[0]
    assert b.file.read_text() == a.file.read_text()
    assert "joined the group" not in a.errors()


def test_an_unwritable_file_is_said_once_and_serving_goes_on(start: Start) -> None:
    (a,) = start("a")
    folder = a.file.parent.parent / "b"
    folder.mkdir()
    file = folder / "responses.yml"
    file.write_text(OTHER)
    file.chmod(0o444)  # a read-only ConfigMap
    try:
        (b,) = start("b", file=file)
        assert b.chat("hello") == "Hello from the first file."
        assert a.add_rule("one", "first", "one").status_code == 201
        until(lambda: b.chat("first") == "one", "b serves the rule added through a")
        made = b.add_rule("two", "second", "two")
        assert made.status_code == 201 and made.json()["persisted"] is True
        until(lambda: a.chat("second") == "two", "a serves the rule added through b")
        assert file.read_text() == OTHER
        said = [line for line in b.errors().splitlines() if "without writing them" in line]
        assert len(said) == 1, b.errors()
        assert "read-only" in said[0] and "responses.yml" in said[0]
        assert b.get("/health").json()["status"] == "ok"
    finally:
        file.chmod(0o644)


def test_a_hand_edit_reaches_the_group_and_a_broken_one_does_not(start: Start, redis_server: RedisServer) -> None:
    a, b = start("a", "b")
    save_by_hand(a.file, RULES.replace("Hello from the first file.", "Hello, edited by hand."))
    until(lambda: b.chat("hello") == "Hello, edited by hand.", "b serves a's hand edit")
    until(lambda: "edited by hand" in b.file.read_text(), "b's file holds a's hand edit")
    assert shared_doc(redis_server)["version"] == "2"

    save_by_hand(b.file, "responses: [unclosed\n")
    until(lambda: b.get("/_mock/rules").json()["file_error"] is not None, "b reports its broken file")
    assert b.chat("hello") == "Hello, edited by hand."
    assert a.chat("hello") == "Hello, edited by hand."
    assert shared_doc(redis_server)["version"] == "2"
    assert a.add_rule("after", "later", "still shared").status_code == 201
    until(lambda: b.chat("later") == "still shared", "b serves a's later rule while its file is broken")
    assert b.file.read_text() == "responses: [unclosed\n"  # the hand edit under way is left alone


def test_processes_sharing_one_file_do_not_loop(start: Start, tmp_path: Path, redis_server: RedisServer) -> None:
    file = tmp_path / "one.yml"
    file.write_text(RULES)
    a, b, c = start("a", "b", "c", file=file)
    assert a.add_rule("ping", "ping", "pong").status_code == 201
    for p in (b, c):
        until(lambda p=p: p.rules_file().headers["etag"] == '"2"', f"{p.name} took the change")
    save_by_hand(file, file.read_text().replace("Hello from the first file.", "Hello again."))
    for p in (a, b, c):
        until(lambda p=p: p.chat("hello") == "Hello again." and p.chat("ping") == "pong", f"{p.name} serves both")
    version = shared_doc(redis_server)["version"]
    assert version == "3"
    # nothing echoes: the version stays where it is while the watchers settle
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        assert shared_doc(redis_server)["version"] == version
        time.sleep(0.1)
    assert "Hello again." in file.read_text() and "pong" in file.read_text()


def test_redis_restarted_empty_is_seeded_again(start: Start, redis_server: RedisServer) -> None:
    a, b, c = start("a", "b", "c")
    assert a.add_rule("ping", "ping", "pong").status_code == 201
    assert httpx.patch(a.root + "/_mock/settings", json={"latency_ms": 2}).status_code == 200
    until(lambda: all(p.settings()["latency_ms"] == 2.0 and p.chat("ping") == "pong" for p in (b, c)), "in step")

    redis_server.stop()
    until(lambda: all(p.get("/health").json()["state"] == "degraded" for p in (a, b, c)), "everyone degraded")
    assert b.chat("ping") == "pong"  # serving goes on with the last known rules
    save_by_hand(a.file, a.file.read_text().replace("Hello from the first file.", "Hello, edited while apart."))
    until(lambda: a.chat("hello") == "Hello, edited while apart.", "a serves its hand edit made while Redis is away")
    redis_server.start()
    until(lambda: all(p.get("/health").json()["state"] == "redis" for p in (a, b, c)), "everyone back")
    until(lambda: "pong" in shared_doc(redis_server).get("text", ""), "the rules seeded again")
    for p in (b, c):
        until(lambda p=p: p.chat("hello") == "Hello, edited while apart.", f"{p.name} has a's hand edit made meanwhile")
    client = redis.Redis.from_url(redis_server.url)
    try:
        seeded = lambda: json.loads(client.hget("mockllm:knobs:live", "latency_ms") or "null") == 2  # noqa: E731
        until(seeded, "the live knobs seeded again")
    finally:
        client.close()

    assert b.add_rule("after", "later", "still shared").status_code == 201
    for p in (a, c):
        until(lambda p=p: p.chat("later") == "still shared", f"{p.name} serves the rule added after the restart")
    assert httpx.patch(c.root + "/_mock/settings", json={"latency_ms": 4}).status_code == 200
    until(lambda: all(p.settings()["latency_ms"] == 4.0 for p in (a, b)), "a PATCH after the restart reached all")


def test_a_change_that_lost_the_race_is_planned_again_on_the_new_text(tmp_path: Path) -> None:
    """The seam the shared document plugs into: a home whose text another writer changes between
    a command's read and its write (StaleDocument) gets the command planned again on the new text."""
    file = tmp_path / "responses.yml"
    file.write_text(RULES)
    store = Store()
    load_initial(store, file)

    class Racing(DocumentHome):
        def __init__(self) -> None:
            self.text = RULES
            self.writes = 0

        def read(self, store: Store, path: Path) -> bytes:
            return self.text.encode()

        def write(self, store: Store, base: FileSource, text: str) -> FileSource:
            self.writes += 1
            if self.writes == 1:  # another process got there first
                self.text = self.text.replace('  "default"', '  "other": "from elsewhere"\n  "default"')
            if base.digest != digest_of(self.text.encode()):
                raise StaleDocument()
            self.text = text
            return FileSource(base.path, text, digest_of(text.encode()))

    home = Racing()
    set_home(store, home)
    result = commands.add_rule(store, {"name": "ping", "match": {"contains": "ping"}, "reply": "pong"})
    assert result.persisted and home.writes == 2
    assert '"other": "from elsewhere"' in home.text and "name: ping" in home.text
    served = [view.label for view in commands.list_rules(store)]
    assert "ping" in served and "#3" in served and len(served) == 4
    assert file.read_text() == RULES  # this home keeps the document itself


async def test_the_panel_is_one_process_of_the_group(tmp_path: Path, start: Start, redis_server: RedisServer) -> None:
    """The panel's keys change the group's knobs and rules, and it serves what the others change."""
    folder = tmp_path / "panel"
    folder.mkdir()
    path = folder / "responses.yml"
    path.write_text(RULES)
    store = Store(state=redis_state(redis_server.url, "mockllm", "panel"))
    load_initial(store, path)
    handle = ServerHandle(create_app(store), "127.0.0.1", 0, grace_s=1)
    app = MockPanel(store, handle, keymap_file=tmp_path / "keymap.yml", export_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        (other,) = await asyncio.to_thread(start, "other", text=OTHER)
        assert await asyncio.to_thread(other.chat, "hello") == "Hello from the first file."

        await pilot.press("plus")  # latency one step up
        latency = store.knobs.latency_ms
        assert latency > 0
        await asyncio.to_thread(
            until, lambda: other.settings()["latency_ms"] == latency, "the panel's key reached other"
        )

        await pilot.press("a", *"ping", "tab", *"pong from the panel", "ctrl+s")
        assert not isinstance(app.screen, RuleEditor)
        await asyncio.to_thread(
            until, lambda: other.chat("ping") == "pong from the panel", "other serves the panel's rule"
        )
        assert "pong from the panel" in path.read_text()

        assert (await asyncio.to_thread(other.add_rule, "far", "far away", "from the other process")).status_code == 201
        deadline = time.monotonic() + DEADLINE_S
        while "far" not in [view.name for view in commands.list_rules(store)]:
            assert time.monotonic() < deadline, "the panel did not take the other process's rule"
            await pilot.pause(0.05)
        assert "from the other process" in path.read_text()
        client = openai.AsyncOpenAI(base_url=handle.url, api_key="test", max_retries=0)
        reply = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "far away"}])
        await client.close()
        assert reply.choices[0].message.content == "from the other process"


def test_the_compare_and_set_script(redis_server: RedisServer) -> None:
    """The one Lua script every change of the shared document goes through."""
    state = RedisState(redis_server.url, "mockllm", "unit")
    rules = SharedRules(state)
    texts = [f'responses:\n  "hello": "version {i}"\n' for i in range(300)]
    digests = [digest_of(text.encode()) for text in texts]
    assert rules._swap("seed", "", texts[0], digests[0]) == ("written", 1)
    assert rules._swap("seed", "", texts[1], digests[1]) == ("stale", 1)  # only when there is none
    assert rules._swap("cas", digests[1], texts[1], digests[1]) == ("stale", 1)  # not what it was planned on
    for i in range(1, 300):
        assert rules._swap("cas", digests[i - 1], texts[i], digests[i]) == ("written", i + 1)
    assert rules._swap("cas", "whatever", texts[299], digests[299]) == ("same", 300)
    # a hand edit that is a version the group had (another process's late copy) is not an edit...
    assert rules._swap("hand", digests[0], texts[100], digests[100]) == ("past", 300)
    # ...but only the last versions are remembered; a text never seen is an edit (the caller retries)
    assert rules._swap("hand", digests[0], texts[10], digests[10]) == ("stale", 300)
    assert rules._swap("hand", digests[299], "responses: {}\n", digest_of(b"responses: {}\n"))[0] == "written"
    assert state.sync_client.zcard("mockllm:rules:history") == HISTORY
    state.sync_client.close()


def configmap_update(folder: Path, text: str, n: int) -> None:
    """Write a ConfigMap volume's contents as the kubelet does: a new timestamped folder, then the
    `..data` link swapped to it by a rename (responses.yml links through `..data`)."""
    data = folder / f"..2026_12_06_{n}"
    data.mkdir()
    (data / "responses.yml").write_text(text)
    (data / "responses.yml").chmod(0o444)
    data.chmod(0o555)
    link = folder / "..data_tmp"
    link.symlink_to(data.name)
    os.replace(link, folder / "..data")
    if not (folder / "responses.yml").is_symlink():
        (folder / "responses.yml").symlink_to("..data/responses.yml")


def test_a_configmap_update_reaches_the_group(start: Start, tmp_path: Path) -> None:
    (a,) = start("a")
    mount = tmp_path / "config"
    mount.mkdir()
    configmap_update(mount, RULES, 1)
    mount.chmod(0o555)  # read-only, as the volume is
    try:
        (b,) = start("b", file=mount / "responses.yml")
        assert a.add_rule("api", "through the api", "made through a").status_code == 201
        until(lambda: b.chat("through the api") == "made through a", "b serves a's rule")
        said = [line for line in b.errors().splitlines() if "without writing them" in line]
        assert len(said) == 1, b.errors()

        mount.chmod(0o755)
        configmap_update(mount, RULES.replace("Hello from the first file.", "Hello from the ConfigMap."), 2)
        mount.chmod(0o555)
        for p in (a, b):
            until(lambda p=p: p.chat("hello") == "Hello from the ConfigMap.", f"{p.name} serves the ConfigMap's update")
        assert "Hello from the ConfigMap." in a.file.read_text()
    finally:
        mount.chmod(0o755)


async def test_a_change_is_made_on_top_of_a_hand_edit_not_read_yet(tmp_path: Path, redis_server: RedisServer) -> None:
    """As with the file alone: a hand edit the watcher has not read yet is kept under a change."""
    path = tmp_path / "responses.yml"
    path.write_text(RULES)
    state = redis_state(redis_server.url, "mockllm", "one")
    store = Store(state=state)
    load_initial(store, path)
    await state.start(store)  # no watcher runs here
    try:
        save_by_hand(path, RULES.replace("Hello from the first file.", "Hello, by hand."))
        result = commands.add_rule(store, {"name": "ping", "match": {"contains": "ping"}, "reply": "pong"})
        assert result.persisted
        for text in (shared_doc(redis_server)["text"], path.read_text()):
            assert "Hello, by hand." in text and "name: ping" in text
        assert shared_doc(redis_server)["version"] == "3"  # the seed, the hand edit, the change
        assert len(commands.list_rules(store)) == 3
    finally:
        await state.stop()
