"""`--state redis://…`: joining a real Redis, and the clear word when it cannot be reached."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.redis_server import RedisServer, free_port


def serve(*args: str, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    """A headless mockllm-tui on a free port; its root URL."""
    cmd = [sys.executable, "-m", "mockllm_tui", "--headless", "--quiet", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    return proc, root_of(proc)


def root_of(proc: subprocess.Popen[str]) -> str:
    """The root URL a headless process prints on its first line."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "serving on" in line, proc.stderr.read() if proc.stderr else line
    return line.split("serving on ")[1].split()[0]


def test_health_names_the_redis_state(tmp_path: Path, redis_server: RedisServer) -> None:
    proc, root = serve("--state", redis_server.url, cwd=tmp_path)
    try:
        assert httpx.get(root + "/health").json() == {"status": "ok", "state": "redis"}
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_unreachable_redis_exits_2_with_one_line_naming_it(tmp_path: Path) -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    cmd = [sys.executable, "-m", "mockllm_tui", "--headless", "--port", "0", "--state", url]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: cannot reach the shared state at redis://127.0.0.1:{url.rsplit(':', 1)[1]}")
    assert "secret" not in done.stderr and done.stdout == ""


def test_state_must_be_memory_or_redis(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mockllm_tui", "--headless", "--port", "0", "--state", "postgres://x"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "--state: expected memory or redis://" in done.stderr
