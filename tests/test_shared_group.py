"""A group on one Redis as a whole: a process killed with `kill -9` mid-stream, a new one joining,
and `--workers 3` sharing what the admin API changes and what the journal holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import openai

from tests.redis_server import RedisServer
from tests.test_shared_knobs_rules import Start, start, until  # noqa: F401 (`start` is a fixture)

LONG = " ".join(f"word{i}" for i in range(60))


def test_a_process_killed_mid_stream_leaves_the_others_serving_and_a_newcomer_takes_the_state(
    start: Start,  # noqa: F811
) -> None:
    a, b = start("a", "b")
    assert httpx.patch(a.root + "/_mock/settings", json={"stream_speed": 20}).status_code == 200
    assert a.add_rule("long", "tell me", LONG).status_code == 201
    until(lambda: b.settings()["stream_speed"] == 20 and b.chat("tell me please") == LONG, "b has a's changes")

    first_chunk = threading.Event()
    outcome: list[str] = []

    def stream_from_a() -> None:
        client = openai.OpenAI(base_url=a.root + "/v1", api_key="test", max_retries=0, timeout=30)
        try:
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "tell me"}], stream=True
            )
            for _chunk in stream:
                first_chunk.set()
            outcome.append("finished")
        except (openai.APIError, httpx.HTTPError) as exc:
            outcome.append(type(exc).__name__)
        finally:
            first_chunk.set()

    reader = threading.Thread(target=stream_from_a)
    reader.start()
    assert first_chunk.wait(30)
    os.kill(a.proc.pid, signal.SIGKILL)
    reader.join(30)
    assert outcome and outcome[0] != "finished"  # a's stream was cut at 20 tokens/s, mid-way

    # The survivor is unaffected: it serves, streams whole, and still takes changes.
    client = openai.OpenAI(base_url=b.root + "/v1", api_key="test", max_retries=0, timeout=30)
    assert httpx.patch(b.root + "/_mock/settings", json={"stream_speed": 0}).status_code == 200
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "tell me"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == LONG
    assert b.add_rule("later", "later", "added after a died").status_code == 201

    # A newcomer takes the group's current rules and knobs, not its own file's.
    (c,) = start("c")
    assert c.settings()["stream_speed"] == 0 and b.settings()["stream_speed"] == 0
    assert c.chat("tell me") == LONG and c.chat("later on") == "added after a died"
    assert "serving its shared rules" in c.errors()
    assert httpx.get(b.root + "/health").json() == {"status": "ok", "state": "redis"}


def test_workers_on_a_redis_state_share_changes_and_the_journal(tmp_path: Path, redis_server: RedisServer) -> None:
    responses = tmp_path / "responses.yml"
    responses.write_text('responses:\n  "default": "from a worker"\n')
    cmd = [sys.executable, "-m", "mockllm_tui", "--headless", "--quiet", "--port", "0", "--workers", "3"]
    cmd += ["--state", redis_server.url, "--responses", str(responses)]
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

    def fresh_statuses(n: int) -> list[int]:
        # a new connection each time, so the kernel spreads them over the workers
        return [httpx.post(root + "/v1/chat/completions", json=body, timeout=10).status_code for _ in range(n)]

    try:
        assert proc.stdout is not None
        root = proc.stdout.readline().split("serving on ")[1].split()[0]
        until(lambda: httpx.get(root + "/_mock/settings").json()["shared"] is True, "the workers joined", 30)
        assert all(status == 200 for status in fresh_statuses(12))
        patch = httpx.patch(root + "/_mock/settings", json={"error_rate": 1.0, "error_status": [503]})
        assert patch.status_code == 200
        until(lambda: set(fresh_statuses(12)) == {503}, "every worker fails as the one patch said", 15)
        assert httpx.delete(root + "/_mock/settings").status_code == 200
        until(lambda: set(fresh_statuses(12)) == {200}, "every worker serves again", 15)

        def instances() -> set[str]:
            entries = httpx.get(root + "/_mock/journal", params={"limit": 500}).json()["data"]
            return {e["instance"] for e in entries if e["path"] == "/v1/chat/completions"}

        def spread_and_seen() -> bool:
            fresh_statuses(3)
            return len(instances()) >= 2

        until(spread_and_seen, "two workers' requests in one journal", 20)
    finally:
        proc.terminate()
        proc.wait(20)


async def test_a_panel_attached_to_one_process_sees_the_requests_of_another(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    from tests.test_attach import attached_panel
    from tests.test_headless import start_headless

    async with attached_panel(tmp_path, "--state", redis_server.url, "--instance-name", "one") as attached:
        other_dir = tmp_path / "other"
        other_dir.mkdir()
        other, port, _ = start_headless("--quiet", "--state", redis_server.url, "--instance-name", "two", cwd=other_dir)
        try:
            client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0)
            reply = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
            )
            assert reply.choices[0].message.content == "Hello from the server."  # the group's rules
            await attached.until(
                lambda: any(e.instance == "two" and not e.open for e in attached.mirror.journal()), timeout=20
            )
            assert await attached.chat("hello") == "Hello from the server."
            await attached.until(lambda: {e.instance for e in attached.mirror.journal()} == {"one", "two"})
            await client.close()
        finally:
            other.kill()
            other.wait(10)
