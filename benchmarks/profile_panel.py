"""Profile the panel process under wrk: `python -m benchmarks.profile_panel [--duration S] [--top N]`.

Runs `benchmarks.panel_server` under cProfile, loads it with wrk (the throughput settings), and
prints the functions with the most cumulative and own time, so the panel's per-tick costs show.
"""

from __future__ import annotations

import argparse
import pstats
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import need_wrk, run_wrk, server, wait_answering


def main(argv: list[str] | None = None) -> int:
    """Profile, print the top functions, and the throughput wrk saw under the profiler."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_panel", description=__doc__)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--top", type=int, default=35)
    p.add_argument("--out", type=Path, default=None, help="keep the .prof file here")
    opts = p.parse_args(argv)
    need_wrk()
    with tempfile.TemporaryDirectory(prefix="mockllm-prof-") as tmp:
        out = opts.out or Path(tmp) / "panel.prof"
        cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "benchmarks.panel_server", "--port", "0"]
        with server(cmd, stdin=True) as srv:
            wait_answering(srv.root)
            result = run_wrk(srv.root, duration_s=opts.duration, threads=2, connections=32)
            assert srv.proc.stdin is not None
            srv.proc.stdin.write(b"quit\n")
            srv.proc.stdin.flush()
            deadline = time.monotonic() + 20
            while srv.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
        print(f"under the profiler: {result.rps:,.0f} req/s, p99 {result.p99_ms:.1f} ms")
        if not out.exists():
            print("no profile written (the panel did not exit cleanly)")
            return 1
        stats = pstats.Stats(str(out))
        stats.sort_stats("cumulative").print_stats(opts.top)
        stats.sort_stats("tottime").print_stats(opts.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
