"""Profile the hot path: the headless server in this process under cProfile while wrk loads it.

`python -m benchmarks.profile_hot [--seconds 5] [--top 30] [--no-log] [--http uvicorn|fast]` prints the
functions with the most time of their own, then by cumulative time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys

from benchmarks.common import run_wrk
from mockllm_tui.cli import build_parser, knob_values
from mockllm_tui.core.request_log import RequestLogWriter
from mockllm_tui.core.store import Store
from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import DEFAULT_HTTP, HTTP_PROTOCOLS, ServerHandle


async def profile(seconds: float, with_log: bool, http: str = DEFAULT_HTTP) -> cProfile.Profile:
    """Serve with the request log writer (as headless does), run wrk in a thread, return the profile."""
    from mockllm_tui.cli import PACKAGED_RESPONSES
    from mockllm_tui.rules import load_initial

    args = build_parser().parse_args([])
    store = Store(journal_size=args.journal_size)
    store.set_knobs("cli", knob_values(args))
    load_initial(store, PACKAGED_RESPONSES)
    handle = ServerHandle(create_app(store), "127.0.0.1", 0, http=http)
    await handle.start()
    sink = io.StringIO()
    writer = RequestLogWriter(store, [sink]) if with_log else None
    log_task = asyncio.create_task(writer.run()) if writer else None
    root = f"http://127.0.0.1:{handle.port}"
    await asyncio.to_thread(run_wrk, root, duration_s=1, threads=2, connections=32)
    prof = cProfile.Profile()
    prof.enable()
    result = await asyncio.to_thread(run_wrk, root, duration_s=seconds, threads=2, connections=32)
    prof.disable()
    print(f"{result.rps:,.0f} req/s under the profiler, {result.errors} errors", file=sys.stderr)
    if log_task:
        log_task.cancel()
    await handle.stop()
    return prof


def main() -> None:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--no-log", action="store_true", help="without the request log writer")
    p.add_argument("--http", choices=HTTP_PROTOCOLS, default=DEFAULT_HTTP, help="the HTTP protocol to profile")
    opts = p.parse_args()
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        prof = runner.run(profile(opts.seconds, not opts.no_log, opts.http))
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(opts.top)
    stats.sort_stats("cumulative").print_stats(opts.top)


if __name__ == "__main__":
    main()
