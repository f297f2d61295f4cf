"""What a shared state costs one process: `python -m benchmarks.state [--quick]`.

Interleaved rounds of the same wrk run against `--headless` with the memory state and against
`--headless --state redis://…` (a redis-server this starts on a free loopback port), first with
nothing the group counts (no Redis round trip per request), then with a `replies:` sequence and a
rate limit in play (two Lua calls per request). Also run by `benchmarks.run --only state`.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.aimock import REPLY
from benchmarks.common import BenchError, mockllm_cmd, need_wrk, run_wrk, server, wait_answering

#: The issue's bar: one worker with a Redis state keeps this share of its memory-state throughput.
STATE_TARGET = 0.7
#: The wrk request ("Say hello in five words.") answered from a `replies:` sequence: every request
#: moves the group's position.
COUNTED_RESPONSES = f'rules:\n  - match: {{contains: hello}}\n    replies: ["{REPLY}", "{REPLY}"]\n'
#: A limit no run reaches: every request takes from the group's bucket and none is refused.
HIGH_RPM = "1000000000"


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A redis-server on a free loopback port, no persistence; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    folder.mkdir(parents=True, exist_ok=True)
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", str(folder), "--daemonize", "no", "--loglevel", "warning"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise BenchError(f"redis-server exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"redis-server did not answer on port {port}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(10)


def one_run(cmd: list[str], opts: argparse.Namespace) -> float:
    """Warm a server up, then wrk it; req/s (a run with errors is an error: every answer must be 200)."""
    with server(cmd) as srv:
        wait_answering(srv.root)
        run_wrk(srv.root, duration_s=1, threads=opts.threads, connections=opts.connections)
        result = run_wrk(srv.root, duration_s=opts.duration, threads=opts.threads, connections=opts.connections)
        if result.errors:
            raise BenchError(f"{result.errors} errors against {' '.join(cmd[2:])}")
        return result.rps


def measure_state(opts: argparse.Namespace, tmp: Path) -> dict[str, float]:
    """Median req/s of each configuration: memory and redis, plain and counted."""
    from benchmarks.run import CHAT_RESPONSES, responses_file

    need_wrk()
    plain = responses_file(tmp, CHAT_RESPONSES)
    counted = tmp / "counted.yml"
    counted.write_text(COUNTED_RESPONSES)
    runs: dict[str, list[float]] = {"memory": [], "redis": [], "memory counted": [], "redis counted": []}
    with redis_server(tmp / "redis") as url:
        for rnd in range(opts.rounds):
            print(f"state round {rnd + 1}/{opts.rounds}", flush=True)
            for name in runs:
                args = ["--headless", "--quiet", "--port", "0"]
                if name.endswith("counted"):
                    args += ["--responses", str(counted), "--rate-limit-rpm", HIGH_RPM]
                else:
                    args += ["--responses", str(plain)]
                if name.startswith("redis"):
                    args += ["--state", url, "--state-prefix", f"bench{rnd}{name.replace(' ', '')}"]
                rps = one_run(mockllm_cmd(*args), opts)
                runs[name].append(rps)
                print(f"  {name}: {rps:,.0f} req/s", flush=True)
    return {name: statistics.median(values) for name, values in runs.items()}


def state_section(opts: argparse.Namespace, report: Any, tmp: Path) -> None:
    """The `state` section of benchmarks.run: two figures in its report (a `Report`; see attach.py)."""
    from benchmarks.run import Figure

    med = measure_state(opts, tmp)
    settings = f"-t{opts.threads} -c{opts.connections} -d{opts.duration:g}s, {opts.rounds} rounds, median"
    ratio = med["redis"] / med["memory"]
    report.add(
        Figure(
            "headless, --state redis:// vs memory, side by side (nothing counted by the group)",
            f"{ratio:.2f}x ({med['redis']:,.0f} vs {med['memory']:,.0f} req/s)",
            f">= {STATE_TARGET}x memory",
            ratio / STATE_TARGET,
            ratio >= STATE_TARGET,
            settings,
        )
    )
    counted = med["redis counted"] / med["memory counted"]
    report.add(
        Figure(
            "headless, --state redis:// vs memory, a `replies:` sequence and a rate limit in play",
            f"{counted:.2f}x ({med['redis counted']:,.0f} vs {med['memory counted']:,.0f} req/s)",
            "reported",
            counted,
            None,
            settings,
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Run the state section alone and print its figures."""
    from benchmarks.run import run_alone

    return run_alone(state_section, argv)


if __name__ == "__main__":
    raise SystemExit(main())
