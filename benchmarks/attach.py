"""What an attached panel costs the server, and how soon its keys show: `python -m benchmarks.attach [--quick]`.

Interleaved rounds of the same wrk run against `--headless` alone and against `--headless` with one
panel attached (`benchmarks.attached_panel`, following the event stream; every request it is told of
lands in its log). During the attached runs the panel's `[` / `]` keys are pressed and timed from the
key to the screen showing the server's new stream speed. Also run by `benchmarks.run --only attach`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BenchError, WrkResult, mockllm_cmd, need_wrk, run_wrk, server, wait_answering

ATTACH_TARGET = 0.8
KEY_TARGET_MS = 300.0


def attached_round(cmd: list[str], opts: argparse.Namespace, presses: int) -> tuple[WrkResult, list[float]]:
    """wrk against a headless server with a panel attached; the key times measured meanwhile."""
    import threading

    from benchmarks.run import key_presses

    with server(cmd) as srv:
        wait_answering(srv.root)
        panel_cmd = [sys.executable, "-m", "benchmarks.attached_panel", srv.root]
        with server(panel_cmd, stdin=True, timeout_s=30) as panel:
            if "not connected" in panel.log.read_text():
                raise BenchError("the attached panel did not connect")
            run_wrk(srv.root, duration_s=1, threads=opts.threads, connections=opts.connections)
            out: list[WrkResult] = []
            worker = threading.Thread(
                target=lambda: out.append(
                    run_wrk(srv.root, duration_s=opts.duration, threads=opts.threads, connections=opts.connections)
                )
            )
            worker.start()
            time.sleep(min(1.0, opts.duration / 4))
            keys = key_presses(presses)(panel)
            worker.join()
            assert panel.proc.stdin is not None
            panel.proc.stdin.write(b"quit\n")
            panel.proc.stdin.flush()
            return out[0], keys


def alone_round(cmd: list[str], opts: argparse.Namespace) -> WrkResult:
    """wrk against a headless server alone."""
    with server(cmd) as srv:
        wait_answering(srv.root)
        run_wrk(srv.root, duration_s=1, threads=opts.threads, connections=opts.connections)
        return run_wrk(srv.root, duration_s=opts.duration, threads=opts.threads, connections=opts.connections)


def measure_attach(opts: argparse.Namespace, responses: Path) -> tuple[float, float, list[float]]:
    """Median req/s alone and attached, and every key time (ms; nan when not shown)."""
    need_wrk()
    cmd = mockllm_cmd("--headless", "--quiet", "--port", "0", "--responses", str(responses))
    alone: list[float] = []
    attached: list[float] = []
    keys: list[float] = []
    for rnd in range(opts.rounds):
        print(f"attach round {rnd + 1}/{opts.rounds}", flush=True)
        result = alone_round(cmd, opts)
        alone.append(result.rps)
        print(f"  headless alone: {result.rps:,.0f} req/s, errors {result.errors}", flush=True)
        result, times = attached_round(cmd, opts, opts.key_presses)
        attached.append(result.rps)
        keys += times
        print(f"  headless + attached panel: {result.rps:,.0f} req/s, errors {result.errors}", flush=True)
    return statistics.median(alone), statistics.median(attached), keys


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    good = sorted(values)
    return good[min(len(good) - 1, math.ceil(0.95 * len(good)) - 1)]


def attach_section(opts: argparse.Namespace, report: Any, tmp: Path) -> None:
    """The `attach` section of benchmarks.run: two figures in its report (a `Report`; run as
    `python -m benchmarks.run` its class lives in `__main__`, so it is not checked here)."""
    from benchmarks.run import CHAT_RESPONSES, Figure, responses_file

    alone, attached, keys = measure_attach(opts, responses_file(tmp, CHAT_RESPONSES))
    settings = f"-t{opts.threads} -c{opts.connections} -d{opts.duration:g}s, {opts.rounds} rounds, median"
    ratio = attached / alone
    report.add(
        Figure(
            "headless with one attached panel vs headless alone, side by side",
            f"{ratio:.2f}x ({attached:,.0f} vs {alone:,.0f} req/s)",
            f">= {ATTACH_TARGET}x headless",
            ratio / ATTACH_TARGET,
            ratio >= ATTACH_TARGET,
            settings,
        )
    )
    good = [k for k in keys if k == k]
    if good:
        worst = p95(good)
        report.add(
            Figure(
                "key press in an attached panel shown on screen, server under load",
                f"p95 {worst:.0f} ms, median {statistics.median(good):.0f} ms ({len(good)}/{len(keys)} presses)",
                f"p95 <= {KEY_TARGET_MS:.0f} ms",
                worst / KEY_TARGET_MS,
                worst <= KEY_TARGET_MS and len(good) == len(keys),
            )
        )
    else:
        report.add(Figure("key press in an attached panel shown on screen", "not seen", "p95 <= 300 ms", None, False))


def main(argv: list[str] | None = None) -> int:
    """Run the attach section alone and print its figures."""
    from benchmarks.run import run_alone

    return run_alone(attach_section, argv)


if __name__ == "__main__":
    raise SystemExit(main())
