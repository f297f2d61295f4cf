"""Shared pieces of the benchmarks: start a server process, run wrk, read figures."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHAT_LUA = HERE / "chat.lua"
CHAT_STREAM_LUA = HERE / "chat_stream.lua"
URL_LINE = re.compile(rb"http://127\.0\.0\.1:(\d+)")
CHAT_BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hello in five words."}],
    "max_tokens": 32,
}


class BenchError(RuntimeError):
    """A benchmark could not run (a missing tool, a server that did not start)."""


def mockllm_cmd(*args: str) -> list[str]:
    """The `mockllm-tui` command (as `python -m mockllm_tui`, so it runs from this checkout)."""
    return [sys.executable, "-m", "mockllm_tui", *args]


@dataclass
class Server:
    """A server process whose stdout goes to a file; `port` is parsed from its first line."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    started_s: float

    @property
    def root(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> float:
        """Resident memory of the process, in MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise BenchError("no VmRSS")


@contextmanager
def server(cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout_s: float = 20.0,
           cwd: Path | None = None, stdin: bool = False) -> Iterator[Server]:
    """Start `cmd`, wait for the `http://127.0.0.1:PORT` line on its stdout, stop it on exit.

    Stdout goes to a file (as it would when a CI job redirects the request log), never to a pipe
    nobody reads.
    """
    with tempfile.TemporaryDirectory(prefix="mockllm-bench-") as tmp:
        log = Path(tmp) / "stdout.log"
        started = time.perf_counter()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                list(cmd), stdout=out, stderr=subprocess.PIPE, cwd=cwd or ROOT,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, start_new_session=True,
            )
        try:
            port = _wait_port(proc, log, timeout_s)
            yield Server(proc, port, log, started)
        finally:
            stop(proc)


def _wait_port(proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> int:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        match = URL_LINE.search(log.read_bytes()[:4096])
        if match:
            return int(match.group(1))
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise BenchError(f"server exited with {proc.returncode}: {err.strip()[-2000:]}")
        time.sleep(0.002)
    raise BenchError(f"server printed no port within {timeout_s} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
    for pipe in (proc.stderr, proc.stdin):
        if pipe is not None:
            pipe.close()


def wait_answering(root: str, timeout_s: float = 10.0) -> float:
    """Post chat completions until one answers 200; the time it took, in seconds."""
    t0 = time.perf_counter()
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() - t0 < timeout_s:
            try:
                if client.post(root + "/v1/chat/completions", json=CHAT_BODY).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.TransportError:
                time.sleep(0.002)
    raise BenchError(f"{root} did not answer within {timeout_s} s")


# -- wrk ---------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    """One wrk run."""

    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    command: str

    @property
    def errors(self) -> int:
        """Non-2xx answers plus socket errors."""
        return self.non_2xx + self.socket_errors


def need_wrk() -> str:
    """The wrk binary, or a one-line BenchError saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk is not installed: apt-get update && apt-get install -y wrk")
    return path


def run_wrk(root: str, *, duration_s: float, threads: int, connections: int, script: Path = CHAT_LUA) -> WrkResult:
    """wrk POSTing the small chat completion of chat.lua (or another script's request) at `root`."""
    cmd = [need_wrk(), f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s", "--latency", "-s", str(script), root]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration_s + 60).stdout
    return parse_wrk(out, " ".join(["wrk", *cmd[1:-1]]).replace(str(HERE), "benchmarks") + " URL")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(out: str, command: str) -> WrkResult:
    """Figures from wrk's text output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not rps or not total:
        raise BenchError(f"could not read wrk output:\n{out}")
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    non2 = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        rps=float(rps.group(1)),
        requests=int(total.group(1)),
        p50_ms=_ms(p50.group(1)) if p50 else float("nan"),
        p99_ms=_ms(p99.group(1)) if p99 else float("nan"),
        non_2xx=int(non2.group(1)) if non2 else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
        command=command,
    )
