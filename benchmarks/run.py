"""Run the benchmarks and write benchmarks/RESULTS.md: `python -m benchmarks.run [--quick] [--write]`.

Every throughput figure is a ratio against a baseline measured in the same run with the same wrk
settings, because timings on a shared machine are noisy. Rounds interleave the servers
(baseline, headless, panel, workers, baseline, ...) and each figure is the median of its rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import httpx

from benchmarks.aimock import REPLY as AIMOCK_REPLY
from benchmarks.aimock import aimock_cmd
from benchmarks.common import (
    CHAT_BODY,
    CHAT_LUA,
    CHAT_STREAM_LUA,
    HERE,
    BenchError,
    Server,
    WrkResult,
    mockllm_cmd,
    need_wrk,
    run_wrk,
    server,
    wait_answering,
)
from benchmarks.streams import run_streams
from benchmarks.ttft import run_ttft

LONG_REPLY = " ".join(
    ["Streaming replies arrive a few tokens at a time, paced by the speed knob, so clients see"]
    + ["realistic timing while the tests stay deterministic and fast to run in CI."] * 2
)
BENCH_RESPONSES = f'responses:\n  "Stream me a reply.": "{LONG_REPLY}"\n  "ping": "version 1"\n'
#: The throughput request gets the same reply from every server compared.
CHAT_RESPONSES = f'responses:\n  "default": "{AIMOCK_REPLY}"\n'
NOTES_MARK = "<!-- notes: kept across runs -->"
SECTIONS = (
    "throughput", "dialogs", "stream_rps", "streams", "ttft", "realtime", "load", "memory", "startup", "edit", "attach",
    "state",
)
#: aimock cuts a streamed reply every this many characters: 3 text chunks for its reply, as many as
#: mockllm-tui's word chunking gives the same reply.
AIMOCK_CHUNK_CHARS = 7


@dataclass
class Figure:
    """One line of RESULTS.md."""

    name: str
    value: str
    target: str
    ratio: float | None
    ok: bool | None
    command: str = ""


@dataclass
class Report:
    """Everything one run measured."""

    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, fig: Figure) -> None:
        """Record a figure and print it as it arrives."""
        self.figures.append(fig)
        mark = {True: "ok", False: "MISSED", None: "-"}[fig.ok]
        print(f"  {fig.name}: {fig.value}  [{fig.target}] {mark}", flush=True)


# -- throughput --------------------------------------------------------------------------------


def responses_file(tmp: Path, text: str = BENCH_RESPONSES) -> Path:
    """A responses file for the benchmark (by default: a long reply for streams, a `ping` rule for edits)."""
    path = tmp / ("chat.yml" if text == CHAT_RESPONSES else "responses.yml")
    path.write_text(text)
    return path


def node_version() -> str:
    """The Node.js version, for the report."""
    return subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()


def measure(cmd: list[str], opts: argparse.Namespace, *, stdin: bool = False,
            during: Callable[[Server], list[float]] | None = None,
            script: Path = CHAT_LUA) -> tuple[WrkResult, list[float]]:
    """Start a server, warm it up, run wrk against it; `during` runs alongside the measured wrk."""
    with server(cmd, stdin=stdin) as srv:
        wait_answering(srv.root)
        run_wrk(srv.root, duration_s=1, threads=opts.threads, connections=opts.connections, script=script)
        extra: list[float] = []
        if during is None:
            result = run_wrk(srv.root, duration_s=opts.duration, threads=opts.threads, connections=opts.connections,
                             script=script)
        else:
            import threading

            out: list[WrkResult] = []
            worker = threading.Thread(target=lambda: out.append(run_wrk(
                srv.root, duration_s=opts.duration, threads=opts.threads, connections=opts.connections)))
            worker.start()
            time.sleep(min(1.0, opts.duration / 4))
            extra = during(srv)
            worker.join()
            result = out[0]
        return result, extra


def key_presses(count: int) -> Callable[[Server], list[float]]:
    """Press `[` `[` `]` `]` ... in the panel under load; the milliseconds each took to show."""

    def press(srv: Server) -> list[float]:
        assert srv.proc.stdin is not None
        times: list[float] = []
        for i in range(count):
            seen = srv.log.read_text().count("key_ms")
            srv.proc.stdin.write(b"key [\n" if i % 4 < 2 else b"key ]\n")  # slower twice, faster twice
            srv.proc.stdin.flush()
            deadline = time.perf_counter() + 5
            while time.perf_counter() < deadline:
                found = re.findall(r"key_ms (\S+)", srv.log.read_text())
                if len(found) > seen:
                    times.append(float(found[-1]))
                    break
                time.sleep(0.01)
            time.sleep(0.2)
        return times

    return press


def supports_workers() -> bool:
    """Whether this build has `--workers`."""
    out = subprocess.run(mockllm_cmd("--help"), capture_output=True, text=True, check=False).stdout
    return "--workers" in out


def throughput(opts: argparse.Namespace, report: Report, tmp: Path) -> None:
    """Baseline vs headless vs panel vs 2 workers, interleaved rounds."""
    need_wrk()
    names = ("raw", "aimock", "headless", "fast", "panel", "workers")
    runs: dict[str, list[WrkResult]] = {k: [] for k in names}
    keys: list[float] = []
    chat = responses_file(tmp, CHAT_RESPONSES)
    peer, peer_note = aimock_cmd(tmp)
    report.notes.append(peer_note if peer is None else f"Peer baseline: {peer_note} (Node {node_version()}).")
    commands = {
        "raw": [sys.executable, "-m", "benchmarks.raw_asgi"],
        "aimock": peer or [],
        "headless": mockllm_cmd("--headless", "--port", "0", "--responses", str(chat)),
        "fast": mockllm_cmd("--headless", "--port", "0", "--responses", str(chat), "--http", "fast"),
        "panel": [sys.executable, "-m", "benchmarks.panel_server", "--port", "0"],
        "workers": mockllm_cmd("--headless", "--port", "0", "--workers", "2"),
    }
    with_workers = not opts.no_workers and supports_workers()
    if not with_workers:
        report.notes.append("`--workers` is not available in this build: the 2-worker figure was skipped.")
    for rnd in range(opts.rounds):
        print(f"throughput round {rnd + 1}/{opts.rounds}", flush=True)
        for name in names:
            if (name == "panel" and opts.no_panel) or (name == "workers" and not with_workers) or not commands[name]:
                continue
            if name == "panel":
                result, extra = measure(commands[name], opts, stdin=True, during=key_presses(opts.key_presses))
                keys += extra
            else:
                result, _ = measure(commands[name], opts)
            runs[name].append(result)
            print(f"  {name}: {result.rps:,.0f} req/s, p99 {result.p99_ms:.1f} ms, errors {result.errors}", flush=True)
    med = {k: statistics.median(r.rps for r in v) for k, v in runs.items() if v}
    settings = f"-t{opts.threads} -c{opts.connections} -d{opts.duration:g}s, {opts.rounds} rounds, median"
    wrk_cmd = runs["raw"][0].command
    report.add(Figure("raw ASGI baseline", f"{med['raw']:,.0f} req/s", "baseline", None, None, wrk_cmd))
    if runs["aimock"]:
        report.add(Figure("aimock (the fastest peer), same request", f"{med['aimock']:,.0f} req/s "
                          f"({med['aimock'] / med['raw']:.2f}x raw)", "peer baseline", None, None, settings))
        peer_ratio = med["headless"] / med["aimock"]
        report.add(Figure("headless pure Python (the default: --http uvicorn) vs aimock, side by side",
                          f"{peer_ratio:.2f}x aimock ({med['headless']:,.0f} req/s)", ">= 1.0x aimock", peer_ratio,
                          peer_ratio >= 1.0, settings))
        fast_ratio = med["fast"] / med["aimock"]
        report.add(Figure("headless pure Python, --http fast vs aimock, side by side",
                          f"{fast_ratio:.2f}x aimock ({med['fast']:,.0f} req/s, {med['fast'] / med['headless']:.2f}x "
                          "the default)", "reported", fast_ratio, None, settings))
    ratio = med["headless"] / med["raw"]
    errors = sum(r.errors for r in runs["headless"])
    report.add(Figure("headless, non-streaming chat completion", f"{med['headless']:,.0f} req/s ({ratio:.2f}x raw, "
                      f"{errors} errors)", ">= 0.5x raw", ratio, ratio >= 0.5 and errors == 0, settings))
    if runs["panel"]:
        pratio = med["panel"] / med["headless"]
        report.add(Figure("panel open (run_test, headless)", f"{med['panel']:,.0f} req/s ({pratio:.2f}x headless)",
                          ">= 0.8x headless", pratio, pratio >= 0.8, settings))
        good = sorted(k for k in keys if k == k)
        if good:
            p95 = good[min(len(good) - 1, math.ceil(0.95 * len(good)) - 1)]
            report.add(Figure("key press shown on screen under load",
                              f"p95 {p95:.0f} ms, median {statistics.median(good):.0f} ms, max {good[-1]:.0f} ms "
                              f"({len(good)}/{len(keys)} presses)", "p95 <= 150 ms", p95 / 150,
                              p95 <= 150 and len(good) == len(keys)))
        else:
            report.add(Figure("key press shown on screen under load", f"not seen ({len(keys)} presses)",
                              "p95 <= 150 ms",
                              None, False))
    if runs["workers"]:
        wratio = med["workers"] / med["headless"]
        report.add(Figure("headless, --workers 2", f"{med['workers']:,.0f} req/s ({wratio:.2f}x one worker, "
                          f"{med['workers'] / med['raw']:.2f}x raw)", "reported", wratio, None, settings))


def attach(opts: argparse.Namespace, report: Report, tmp: Path) -> None:
    """Headless with one attached panel vs alone, and the attached panel's key press (benchmarks/attach.py)."""
    from benchmarks.attach import attach_section

    attach_section(opts, report, tmp)


def state(opts: argparse.Namespace, report: Report, tmp: Path) -> None:
    """Headless with a Redis state vs the memory state, side by side (benchmarks/state.py)."""
    from benchmarks.state import state_section

    state_section(opts, report, tmp)


# -- dialogs -----------------------------------------------------------------------------------

DIALOG_KEYS = ("a", "e", "n")  # add, edit, a rule from the selected request: all open the rule editor


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of `values` (share in 0..1)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def dialog_opens(srv: Server, count: int, still: Callable[[], bool] = lambda: True) -> list[float]:
    """Open and close the rule editor `count` times (a, e, n in turn) while `still()` holds (the load
    generator runs); the milliseconds from each key press to the editor drawn."""
    assert srv.proc.stdin is not None
    times: list[float] = []
    for i in range(count):
        if not still():
            break
        seen = srv.log.read_text().count("dialog_ms")
        srv.proc.stdin.write(f"dialog {DIALOG_KEYS[i % len(DIALOG_KEYS)]}\n".encode())
        srv.proc.stdin.flush()
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline:
            found = re.findall(r"dialog_ms (\S+)", srv.log.read_text())
            if len(found) > seen:
                times.append(float(found[-1]))
                break
            time.sleep(0.01)
        time.sleep(0.1)
    return times


def dialog_figure(name: str, times: list[float], count: int, target_ms: float, command: str) -> Figure:
    """A figure for the editor's open times: p50 and p95, against a p95 target."""
    good = [t for t in times if t == t]
    if not good:
        return Figure(name, f"not seen ({len(times)} opens)", f"p95 <= {target_ms:g} ms", None, False, command)
    p95 = percentile(good, 0.95)
    complete = len(good) == len(times) == count
    return Figure(name, f"p50 {percentile(good, 0.5):.0f} ms, p95 {p95:.0f} ms, max {max(good):.0f} ms "
                  f"({len(good)}/{count} opens)", f"p95 <= {target_ms:g} ms", p95 / target_ms,
                  p95 <= target_ms and complete, command)


def dialogs(opts: argparse.Namespace, report: Report, tmp: Path) -> None:
    """The rule editor (`a`, `e`, `n`) from key press to drawn: idle, then while wrk loads the server."""
    need_wrk()
    count = opts.dialog_opens
    command = f"python -m benchmarks.run --only dialogs --dialog-opens {count}"
    cmd = [sys.executable, "-m", "benchmarks.panel_server", "--port", "0"]
    with server(cmd, stdin=True) as srv:
        wait_answering(srv.root)  # also a request for `n` to act on
        assert srv.proc.stdin is not None
        srv.proc.stdin.write(b"focus rules\n")  # `e` edits the highlighted rule (from the log: the one that answered)
        srv.proc.stdin.flush()
        time.sleep(1.0)  # start-up work (building the editor, freezing objects) is over
        idle = dialog_opens(srv, count)
        import threading

        out: list[WrkResult] = []
        done = threading.Event()

        def load() -> None:  # wrk in slices until the opens are over
            while not done.is_set():
                out.append(run_wrk(srv.root, duration_s=min(opts.duration, 5.0), threads=opts.threads,
                                   connections=opts.connections))

        worker = threading.Thread(target=load)
        worker.start()
        time.sleep(1.0)
        loaded = dialog_opens(srv, count, worker.is_alive)
        done.set()
        worker.join()
    report.add(dialog_figure("rule editor drawn after a/e/n, idle", idle, count, 150, command))
    loaded_figure = dialog_figure("rule editor drawn after a/e/n, under load", loaded, count, 300,
                                  f"{command} (wrk -t{opts.threads} -c{opts.connections} alongside)")
    if out:
        loaded_figure.value += f"; wrk {statistics.median(r.rps for r in out):,.0f} req/s alongside"
    report.add(loaded_figure)


# -- streamed chat completions a second -------------------------------------------------------


def stream_rps(opts: argparse.Namespace, report: Report, tmp: Path) -> None:
    """Whole streamed chat completions a second (no pacing), the default install and --http fast
    against aimock, interleaved rounds; the same reply in three text chunks from each."""
    need_wrk()
    chat = responses_file(tmp, CHAT_RESPONSES)
    peer, peer_note = aimock_cmd(tmp, "-c", str(AIMOCK_CHUNK_CHARS))
    commands = {
        "aimock": peer or [],
        "headless": mockllm_cmd("--headless", "--port", "0", "--responses", str(chat), "--quiet"),
        "fast": mockllm_cmd("--headless", "--port", "0", "--responses", str(chat), "--quiet", "--http", "fast"),
    }
    runs: dict[str, list[WrkResult]] = {k: [] for k in commands}
    for rnd in range(opts.rounds):
        print(f"streamed throughput round {rnd + 1}/{opts.rounds}", flush=True)
        for name, cmd in commands.items():
            if not cmd:
                continue
            result, _ = measure(cmd, opts, script=CHAT_STREAM_LUA)
            runs[name].append(result)
            print(f"  {name}: {result.rps:,.0f} streams/s, p99 {result.p99_ms:.1f} ms, errors {result.errors}",
                  flush=True)
    med = {k: statistics.median(r.rps for r in v) for k, v in runs.items() if v}
    settings = f"-t{opts.threads} -c{opts.connections} -d{opts.duration:g}s, {opts.rounds} rounds, median, " \
               "benchmarks/chat_stream.lua"
    if "aimock" not in med:
        report.notes.append(peer_note)
        report.add(Figure("streamed chat completions a second", f"{med['headless']:,.0f} streams/s (no aimock)",
                          "reported", None, None, settings))
        return
    ratio, fast = med["headless"] / med["aimock"], med["fast"] / med["aimock"]
    report.add(Figure("streamed chat completions a second vs aimock, side by side",
                      f"{ratio:.2f}x aimock ({med['headless']:,.0f} against {med['aimock']:,.0f} streams/s); "
                      f"--http fast {fast:.2f}x ({med['fast']:,.0f})", "reported", ratio, None, settings))


# -- streams -----------------------------------------------------------------------------------


def streams(opts: argparse.Namespace, report: Report, tmp: Path) -> None:
    """N concurrent streams at a set speed against the ideal duration."""
    cmd = mockllm_cmd("--headless", "--port", "0", "--responses", str(responses_file(tmp)),
                      "--stream-speed", f"{opts.stream_speed:g}")
    with server(cmd) as srv:
        wait_answering(srv.root)
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            res = runner.run(run_streams(srv.port, opts.streams, opts.stream_speed))
    report.add(Figure(
        f"{res.streams} concurrent streams at {res.speed:g} tok/s",
        f"ideal {res.ideal_s:.2f} s; per stream p50 {res.p50_ratio:.3f}x, p99 {res.p99_ratio:.3f}x, "
        f"max {res.max_ratio:.3f}x; whole batch {res.batch_ratio:.3f}x; {res.errors} errors",
        "<= 1.05x ideal", res.p99_ratio, res.p99_ratio <= 1.05 and res.errors == 0,
        f"python -m benchmarks.run --only streams --streams {res.streams} --stream-speed {res.speed:g}"))


def realtime(opts: argparse.Namespace, report: Report, tmp: Path) -> None:
    """N open realtime sessions against N open SSE streams, same reply and speed: the server's cost."""
    from benchmarks.realtime import compare

    count = opts.realtime_sessions
    cmd = mockllm_cmd("--headless", "--port", "0", "--responses", str(responses_file(tmp)),
                      "--stream-speed", f"{opts.stream_speed:g}")
    with server(cmd) as srv:
        wait_answering(srv.root)
        streams_cost, sessions = asyncio.run(compare(srv, count))
    cpu_ratio = sessions.cpu_s / max(streams_cost.cpu_s, 1e-6)
    report.add(Figure(
        f"{count} open realtime sessions vs {count} open streams",
        f"server CPU {sessions.cpu_s:.2f} s vs {streams_cost.cpu_s:.2f} s ({cpu_ratio:.2f}x); peak memory "
        f"+{sessions.rss_growth_mb:.1f} MB vs +{streams_cost.rss_growth_mb:.1f} MB; "
        f"{sessions.ok}/{count} sessions and {streams_cost.ok}/{count} streams completed",
        "<= 1.5x the streams' CPU", cpu_ratio, cpu_ratio <= 1.5 and sessions.ok == count,
        f"python -m benchmarks.run --only realtime --realtime-sessions {count}"))


# -- time to first token under load ------------------------------------------------------------


def ttft(opts: argparse.Namespace, report: Report, tmp: Path) -> None:
    """With `latency_ms: 200`, N streams at once: how far past 200 ms is each first token?"""
    latency = 200.0
    cmd = mockllm_cmd("--headless", "--port", "0", "--quiet", "--responses", str(responses_file(tmp)),
                      "--latency-ms", f"{latency:g}", "--stream-speed", f"{opts.stream_speed:g}")
    with server(cmd) as srv:
        wait_answering(srv.root)
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run_ttft(srv.port, 10, latency, opts.stream_speed))  # warm-up: every route built
            res = runner.run(run_ttft(srv.port, opts.ttft_streams, latency, opts.stream_speed))
    report.add(Figure(
        f"time to first token with latency_ms {latency:g}, {res.streams} streams at once "
        f"at {opts.stream_speed:g} tok/s",
        f"TTFT minus {latency:g} ms: p50 {res.p50_minus_latency_ms:+.1f} ms, p99 {res.p99_minus_latency_ms:+.1f} ms; "
        f"minus its due time ({res.due_ms:.0f} ms: the latency and the first chunk's own tokens at that speed): "
        f"p50 {res.p50_over_ms:+.1f} ms, p99 {res.p99_over_ms:+.1f} ms, max {res.max_over_ms:+.1f} ms; "
        f"{res.errors} errors", "reported", None, None,
        f"python -m benchmarks.run --only ttft --ttft-streams {res.streams} --stream-speed {opts.stream_speed:g}"))


# -- load --------------------------------------------------------------------------------------


def load(opts: argparse.Namespace, report: Report, tmp: Path) -> None:
    """20,000 requests on 256 connections, then 1,000 concurrent streams: zero errors, counters add up."""
    from benchmarks.load import counters, hammer

    requests, connections, count = opts.load_requests, 256, opts.load_streams
    with server(mockllm_cmd("--headless", "--port", "0", "--stream-speed", "20")) as srv:
        wait_answering(srv.root)
        base = counters(srv.root)
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            res = runner.run(hammer(srv.port, requests, connections, count))
        after = counters(srv.root)
    added = int(after["total"]) - int(base["total"])  # type: ignore[call-overload]
    open_now = (after["in_flight"], after["streams_open"], after["errors"])
    ok = res["failed"] == 0 and res["streams_ok"] == count and added == requests + count and open_now == (0, 0, 0)
    report.add(Figure(
        f"load: {requests:,} requests on {connections} connections, then {count:,} concurrent streams",
        f"{res['ok']:,.0f} ok in {res['plain_s']:.1f} s, {res['streams_ok']:,.0f} streams ok in "
        f"{res['streams_s']:.1f} s; counters +{added:,}, in flight/streams open/errors {open_now}",
        "zero errors, counters add up", None, ok,
        f"python -m benchmarks.run --only load --load-requests {requests} --load-streams {count}"))


# -- memory ------------------------------------------------------------------------------------


def served(root: str) -> int:
    """Requests the server has finished, from its admin API."""
    data = httpx.get(root + "/_mock/journal", params={"limit": 0}, timeout=10).json()
    return int(data["counters"]["total"])


def memory(opts: argparse.Namespace, report: Report, tmp: Path) -> None:
    """RSS once `first` requests are served and once `last` are (wrk in slices until the count is reached)."""
    need_wrk()
    first, last = opts.memory_requests
    deadline = time.perf_counter() + opts.memory_max_s
    with server(mockllm_cmd("--headless", "--port", "0")) as srv:
        wait_answering(srv.root)
        rate = 2000.0

        def load_to(total: int) -> None:
            nonlocal rate
            while (done := served(srv.root)) < total:
                if time.perf_counter() > deadline:
                    raise BenchError(f"memory test: only {done:,} requests served within {opts.memory_max_s:g} s")
                slice_s = min(10.0, max(1.0, (total - done) / rate))
                result = run_wrk(srv.root, duration_s=round(slice_s), threads=opts.threads,
                                 connections=opts.connections)
                rate = max(result.rps, 100.0)

        load_to(first)
        rss_first, n_first = srv.rss_mb(), served(srv.root)
        load_to(last)
        rss_last, n_last = srv.rss_mb(), served(srv.root)
    growth = rss_last - rss_first
    report.add(Figure(f"resident memory growth {n_first:,} -> {n_last:,} requests",
                      f"{rss_first:.1f} MB -> {rss_last:.1f} MB (+{growth:.1f} MB)", "< 20 MB", growth / 20,
                      growth < 20, f"python -m benchmarks.run --only memory --memory-requests {first} {last}"))


# -- start-up and file edits -------------------------------------------------------------------


def startup(opts: argparse.Namespace, report: Report, tmp: Path) -> None:
    """Process start to the first answered chat completion (median of a few)."""
    times = []
    for _ in range(opts.startup_runs):
        t0 = time.perf_counter()
        with server(mockllm_cmd("--headless", "--port", "0")) as srv:
            wait_answering(srv.root)
            times.append(time.perf_counter() - t0)
    worst = max(times)
    report.add(Figure("start-up to first answered request",
                      f"median {statistics.median(times) * 1000:.0f} ms, max {worst * 1000:.0f} ms "
                      f"({len(times)} starts)", "< 1 s", worst, worst < 1.0,
                      "python -m benchmarks.run --only startup"))


def reply_of(client: httpx.Client, root: str) -> str:
    """The reply text to `ping`."""
    body = {**CHAT_BODY, "messages": [{"role": "user", "content": "ping"}]}
    data = client.post(root + "/v1/chat/completions", json=body).json()
    return str(data["choices"][0]["message"]["content"])


def edit(opts: argparse.Namespace, report: Report, tmp: Path) -> None:
    """Time from writing the responses file to the first reply that uses the new content."""
    path = responses_file(tmp)
    times: list[float] = []
    with server(mockllm_cmd("--headless", "--port", "0", "--responses", str(path))) as srv, \
            httpx.Client(timeout=5) as client:
        wait_answering(srv.root)
        if reply_of(client, srv.root) != "version 1":
            report.add(Figure("file edit serving", "the responses file is not loaded in this build", "<= 300 ms",
                              None, False))
            return
        for i in range(2, 2 + opts.edits):
            time.sleep(0.3)  # let the watcher settle between edits
            new = f"version {i}"
            t0 = time.perf_counter()
            path.write_text(BENCH_RESPONSES.replace("version 1", new))
            while time.perf_counter() - t0 < 5:
                if reply_of(client, srv.root) == new:
                    times.append(time.perf_counter() - t0)
                    break
                time.sleep(0.002)
    worst = max(times) if len(times) == opts.edits else float("inf")
    report.add(Figure("file edit serving", f"median {statistics.median(times) * 1000:.0f} ms, max "
                      f"{worst * 1000:.0f} ms ({len(times)}/{opts.edits} edits)" if times else "never served",
                      "<= 300 ms", worst / 0.3, worst <= 0.3, "python -m benchmarks.run --only edit"))


# -- the report --------------------------------------------------------------------------------


def machine() -> list[str]:
    """What the figures were measured on."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.1f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split("\n")[0] or "wrk ?"
    pkgs = ", ".join(f"{p} {version(p)}" for p in ("mockllm-tui", "uvicorn", "uvloop", "httptools", "fastapi",
                                                    "starlette", "orjson", "textual", "httpx"))
    return [
        f"- Machine: {cpu}, {os.cpu_count()} cores{mem}; {platform.platform()}",
        f"- Python {platform.python_version()}; {pkgs}; {wrk.strip()}",
    ]


def render(report: Report, argv: list[str], elapsed_s: float) -> str:
    """RESULTS.md's text."""
    lines = [
        "# Benchmark results",
        "",
        "Made by `python -m benchmarks.run " + " ".join(argv) + f"` in {elapsed_s:.0f} s. Every ratio is taken in "
        "one run, against a baseline measured in the same run (the machine is shared and noisy).",
        "",
        *machine(),
        "",
        "| figure | measured | target | met |",
        "|---|---|---|---|",
    ]
    for f in report.figures:
        met = {True: "yes", False: "**no**", None: "-"}[f.ok]
        lines.append(f"| {f.name} | {f.value} | {f.target} | {met} |")
    lines += ["", "## Commands", ""]
    lines += [f"- {f.name}: `{f.command}`" for f in report.figures if f.command]
    if report.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in report.notes]]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of: {', '.join(SECTIONS)}")
    p.add_argument("--quick", action="store_true", help="a short smoke run (2 s wrk, 1 round, fewer requests)")
    p.add_argument("--write", action="store_true", help="write benchmarks/RESULTS.md (the figures part)")
    p.add_argument("--duration", type=float, default=10.0, help="wrk seconds per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--no-panel", action="store_true")
    p.add_argument("--no-workers", action="store_true")
    p.add_argument("--key-presses", type=int, default=20, help="per round (a p95 needs a few dozen in all)")
    p.add_argument("--dialog-opens", type=int, default=30, help="rule editor opens, idle and again under load")
    p.add_argument("--streams", type=int, default=500)
    p.add_argument("--realtime-sessions", type=int, default=200)
    p.add_argument("--stream-speed", type=float, default=20.0)
    p.add_argument("--ttft-streams", type=int, default=500)
    p.add_argument("--load-requests", type=int, default=20_000)
    p.add_argument("--load-streams", type=int, default=1_000)
    p.add_argument("--memory-requests", type=int, nargs=2, default=(10_000, 200_000), metavar=("FIRST", "LAST"))
    p.add_argument("--memory-max-s", type=float, default=300.0, help="bound on the whole memory test")
    p.add_argument("--startup-runs", type=int, default=5)
    p.add_argument("--edits", type=int, default=5)
    opts = p.parse_args(argv)
    if opts.quick:
        opts.duration, opts.rounds, opts.key_presses, opts.dialog_opens = 2.0, 1, 2, 6
        opts.streams, opts.memory_requests, opts.startup_runs, opts.edits = 100, (2_000, 10_000), 2, 2
        opts.realtime_sessions, opts.ttft_streams = 50, 100
        opts.load_requests, opts.load_streams = 2_000, 200
    return opts


def run_alone(section: Callable[[argparse.Namespace, Report, Path], None], argv: list[str] | None = None) -> int:
    """Run one section on its own (its module's `python -m benchmarks.NAME`) and print its figures."""
    import tempfile

    opts = parse_args(sys.argv[1:] if argv is None else argv)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="mockllm-bench-") as tmp:
        try:
            section(opts, report, Path(tmp))
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(render(report, sys.argv[1:] if argv is None else argv, 0.0))
    return 0 if all(f.ok is not False for f in report.figures) else 3


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections; print the figures and optionally write RESULTS.md."""
    import tempfile

    argv = sys.argv[1:] if argv is None else argv
    opts = parse_args(argv)
    report = Report()
    t0 = time.perf_counter()
    sections = {"throughput": throughput, "dialogs": dialogs, "stream_rps": stream_rps, "streams": streams,
                "ttft": ttft, "realtime": realtime, "load": load, "memory": memory, "startup": startup, "edit": edit,
                "attach": attach, "state": state}
    with tempfile.TemporaryDirectory(prefix="mockllm-bench-") as tmp:
        for name in opts.only.split(","):
            print(f"== {name}", flush=True)
            try:
                sections[name.strip()](opts, report, Path(tmp))
            except BenchError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
    if opts.quick:
        report.notes.insert(0, "A smoke run (`--quick`: short wrk runs, one round, fewer requests): not final figures.")
    text = render(report, argv, time.perf_counter() - t0)
    if opts.write:
        results = HERE / "RESULTS.md"
        old = results.read_text() if results.exists() else ""
        if NOTES_MARK in old:  # hand-written notes below the mark survive a new run
            text += "\n" + old[old.index(NOTES_MARK):]
        results.write_text(text)
        print(f"wrote {HERE / 'RESULTS.md'}")
    else:
        print(text)
    return 0 if all(f.ok is not False for f in report.figures) else 3


if __name__ == "__main__":
    raise SystemExit(main())
