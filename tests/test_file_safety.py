"""The user's file survives a kill -9 during a write-back, and a read-only folder loses nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from mockllm_tui.rules.commands import add_rule, list_rules
from tests.conftest import Live

BIG_FILE_RULES = 400


def big_file(reply: str) -> str:
    """A commented rules file large enough that a write-back takes measurable time."""
    lines = ["# kept comment", "rules:"]
    for i in range(BIG_FILE_RULES):
        lines.append(f"  - name: rule {i}  # comment {i}")
        lines += [f"    match: {{exact: 'prompt {i}'}}", f"    reply: '{reply} {i}'"]
    return "\n".join(lines) + "\n"


def start(path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mockllm_tui", "--headless", "--port", "0", "--responses", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    port = line.split("http://127.0.0.1:")[1].split(" ")[0]
    return proc, f"http://127.0.0.1:{port}"


def test_kill_9_during_write_back_leaves_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    old = big_file("old")
    new = old.replace("reply: 'old 0'", "reply: 'new 0'")
    endings = []
    for delay_ms in (0, 10, 40, 120):
        path.write_text(old)
        proc, root = start(path)
        first = httpx.get(f"{root}/_mock/rules").json()["data"][0]["id"]
        body = {"name": "rule 0", "match": {"exact": "prompt 0"}, "reply": "new 0"}
        put = threading.Thread(target=put_quietly, args=(f"{root}/_mock/rules/{first}", body))
        put.start()
        time.sleep(delay_ms / 1000)  # the kill lands at varied points of the write-back, by design
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        put.join(5)
        text = path.read_text()
        assert text in (old, new), text[:300]
        endings.append("new" if text == new else "old")
        for leftover in tmp_path.iterdir():  # an interrupted write may leave its temporary file, never a torn target
            if leftover.name != "responses.yml":
                assert leftover.name.startswith(".responses.yml.") and leftover.name.endswith(".tmp")
                leftover.unlink()
    assert len(endings) == 4


def put_quietly(url: str, body: dict[str, object]) -> None:
    """PUT, ignoring the connection dropping when the server is killed."""
    with contextlib.suppress(httpx.HTTPError):
        httpx.put(url, json=body, timeout=5)


async def test_read_only_folder_gives_a_clear_error_and_keeps_the_change(live: Live, tmp_path: Path) -> None:
    from mockllm_tui.rules import load_initial

    folder = tmp_path / "locked"
    folder.mkdir()
    path = folder / "responses.yml"
    path.write_text("responses:\n  'hello': 'Hi.'\n")
    load_initial(live.store, path)
    folder.chmod(0o555)
    try:
        result = add_rule(live.store, {"match": {"exact": "new"}, "reply": "in memory"})
    finally:
        folder.chmod(0o755)
    assert not result.persisted
    assert "folder" in (result.message or "") and "read-only" in (result.message or "")
    assert path.read_text() == "responses:\n  'hello': 'Hi.'\n"
    assert any(r.spec.reply == "in memory" for r in list_rules(live.store))
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            f"{live.openai_url}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "new"}]},
        )
    assert reply.json()["choices"][0]["message"]["content"] == "in memory"


@pytest.mark.parametrize("content", ["responses: [", "rules:\n  - match: {regex: '('}\n    reply: x\n"])
def test_broken_file_at_start_is_reported_and_nothing_is_overwritten(tmp_path: Path, content: str) -> None:
    path = tmp_path / "responses.yml"
    path.write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "mockllm_tui", "--check", str(path)], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 1
    assert "responses.yml:" in result.stdout + result.stderr
    assert path.read_text() == content
