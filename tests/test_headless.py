"""The real CLI in a subprocess: headless serving, SIGTERM, port in use, imports."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion

FIRST_LINE = re.compile(r"^mockllm-tui serving on http://127\.0\.0\.1:(\d+) \(responses: (.+)\)$")


def start_headless(*args: str, cwd: Path | None = None) -> tuple[subprocess.Popen[str], int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mockllm_tui", "--headless", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().rstrip("\n")
    match = FIRST_LINE.match(line)
    assert match, f"unexpected first line {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
    return proc, int(match.group(1)), match.group(2)


def port_is_free(port: int) -> bool:
    """Nothing listens on the port (closed connections may linger in TIME_WAIT, which is fine)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def headless(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, str]]:
    proc, port, responses = start_headless(cwd=tmp_path)
    yield proc, port, responses
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_headless_serves_the_sdk_and_stops_cleanly_on_sigterm(headless: tuple[subprocess.Popen[str], int, str]) -> None:
    proc, port, responses = headless
    assert responses.endswith("responses.yml")
    assert httpx.get(f"http://127.0.0.1:{port}/health").json() == {"status": "ok", "state": "memory"}
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
    )
    ChatCompletion.model_validate_json(raw.http_response.content, strict=True)
    assert raw.parse().choices[0].message.content
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert time.monotonic() - started < 5.0  # within the 1 s grace and an exit, loosely (shared cores)
    assert proc.returncode == 0
    assert port_is_free(port)
    lines = [line for line in out.splitlines() if line]
    assert any("GET /health 200" in line for line in lines)
    assert any("POST /v1/chat/completions 200" in line and "gpt-4o" in line for line in lines)


def test_ctrl_c_stops_with_exit_zero(headless: tuple[subprocess.Popen[str], int, str]) -> None:
    proc, port, _ = headless
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    assert port_is_free(port)


def test_json_log_lines(tmp_path: Path) -> None:
    log_file = tmp_path / "requests.log"
    proc, port, _ = start_headless("--log-format", "json", "--log-file", str(log_file), cwd=tmp_path)
    try:
        httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "m", "messages": []})
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=5)
    import orjson

    records = [orjson.loads(line) for line in out.splitlines() if line]
    assert records and records[0]["status"] == 400 and records[0]["path"] == "/v1/chat/completions"
    assert orjson.loads(log_file.read_text().splitlines()[0])["status"] == 400


def test_quiet_keeps_stdout_to_the_first_line_and_the_log_file_gets_the_requests(tmp_path: Path) -> None:
    log_file = tmp_path / "requests.log"
    proc, port, _ = start_headless("--quiet", "--log-file", str(log_file), cwd=tmp_path)
    try:
        ok = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "m", "messages": []})
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=5)
    assert ok.status_code == 400
    assert out.strip() == ""
    assert "/v1/chat/completions 400" in log_file.read_text()


def test_port_in_use_exits_2_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "mockllm_tui", "--headless", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    assert result.returncode == 2
    assert result.stderr == f"error: port {port} on 127.0.0.1 is in use (try --port 0 for a free one)\n"
    assert result.stdout == ""


def test_environment_variables_set_options(tmp_path: Path) -> None:
    env = {**os.environ, "MOCKLLM_PORT": "0", "MOCKLLM_HEADLESS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mockllm_tui"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    try:
        assert FIRST_LINE.match(proc.stdout.readline().rstrip("\n"))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
    assert proc.returncode == 0


def test_help_explains_each_option() -> None:
    out = subprocess.run([sys.executable, "-m", "mockllm_tui", "--help"], capture_output=True, text=True).stdout
    for flag in ("--responses", "--host", "--port", "--headless", "--log-file", "--log-format", "--version"):
        assert flag in out
    assert "MOCKLLM_PORT" in out


def test_domain_modules_never_import_textual() -> None:
    code = (
        "import sys, mockllm_tui.core.store, mockllm_tui.http.app, mockllm_tui.cli;"
        "assert not [m for m in sys.modules if m == 'textual' or m.startswith('textual.')], 'textual imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
