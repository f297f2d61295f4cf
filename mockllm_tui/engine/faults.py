"""Faults and timing as pure decisions: knobs + rule + headers + a random source -> a FaultPlan.

The async part (http/answer.py, http/chat.py, http/simple.py) only carries the plan out. Precedence, highest first:
per-request header > matched rule > knobs (live > file > CLI/env > default; merged by the store).

- A latency from `x-mock-latency-ms` is exact; a rule's or the knob's gets the knob's jitter.
- A rule's error reply is an error `before`, below the headers and above `fail_next` and `error_rate`.
- `x-mock-error: <status>` injects that error; `x-mock-error-mode` says when (default `before`).
  The `disconnect` and `timeout` modes work without a status; `mid_stream` needs one.
  The header's mode also applies to a `fail_next` or `error_rate` error of the same request.
- Modes: `before` answers with the status before any byte; `mid_stream` sends the provider's
  error event halfway through a stream; `disconnect` cuts the connection (halfway through a
  stream); `timeout` hangs (a stream stalls halfway) until the client gives up, or until
  `timeout_cap_s`, then ends with 504. A non-streamed request takes `mid_stream` as `before`.
- `stream_jitter` lets each chunk be late by up to that fraction of its own interval. Pacing
  stays deadline-based, so the lateness never accumulates.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from mockllm_tui.core.conversation import Reply
from mockllm_tui.core.knobs import ERROR_MODES, Knobs

#: Injected retryable errors ask the SDKs to wait this long (`retry-after-ms`), so tests stay fast.
INJECTED_RETRY_AFTER_MS = 100
TIMEOUT_STATUS = 504


@dataclass(slots=True, frozen=True)
class PlannedError:
    """An error the plan injects: its status, when (`mode`) and why (`reason`: header, rule, rate, fail_next)."""

    status: int
    mode: str
    reason: str

    def describe(self) -> str:
        """One line for the journal, e.g. "529 mid_stream (header)" or "disconnect (rate)"."""
        if self.mode in ("disconnect", "timeout"):
            return f"{self.mode} ({self.reason})"
        return f"{self.status} {self.mode} ({self.reason})"


@dataclass(slots=True, frozen=True)
class FaultPlan:
    """How one request is to be served.

    `speed_override` is a fixed speed from a header or rule (None: follow the live knob).
    """

    latency_s: float = 0.0
    speed_override: float | None = None
    error: PlannedError | None = None


QUIET_PLAN = FaultPlan()


def header_number(headers: dict[str, str], name: str) -> float | None:
    """A non-negative number from a header, or None when absent or not a number."""
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def sample_latency_ms(knobs: Knobs, base_ms: float, rng: random.Random) -> float:
    """Latency with jitter: uniform in [base, base + jitter], or lognormal with mean `base` and
    spread about `jitter` (sigma = jitter / base, capped at 3)."""
    if knobs.jitter_ms <= 0:
        return base_ms
    if knobs.latency_distribution == "lognormal" and base_ms > 0:
        sigma = min(knobs.jitter_ms / base_ms, 3.0)
        return base_ms * rng.lognormvariate(-sigma * sigma / 2, sigma)
    return base_ms + rng.uniform(0.0, knobs.jitter_ms)


MOCK_HEADERS = ("x-mock-latency-ms", "x-mock-stream-speed", "x-mock-error", "x-mock-error-mode")


def has_mock_headers(headers: dict[str, str]) -> bool:
    """Whether the request carries any per-request fault header."""
    return any(name in headers for name in MOCK_HEADERS)


def decide(
    knobs: Knobs,
    reply: Reply,
    headers: dict[str, str],
    rng: random.Random,
    *,
    fail_next: int = 0,
    fail_next_status: int | None = None,
    fail_next_mode: str | None = None,
) -> FaultPlan:
    """Decide latency, speed and any injected error for one request (see the module docstring)."""
    if (
        fail_next <= 0
        and knobs.latency_ms == 0
        and knobs.jitter_ms == 0
        and knobs.error_rate == 0
        and reply.error is None
        and reply.latency_ms is None
        and reply.stream_speed is None
        and not has_mock_headers(headers)
    ):
        return QUIET_PLAN
    header_latency = header_number(headers, "x-mock-latency-ms")
    if header_latency is not None:
        latency_ms = header_latency
    else:
        base = reply.latency_ms if reply.latency_ms is not None else knobs.latency_ms
        latency_ms = sample_latency_ms(knobs, base, rng)

    speed: float | None = reply.stream_speed
    header_speed = header_number(headers, "x-mock-stream-speed")
    if header_speed is not None:
        speed = header_speed

    error = _decide_error(knobs, reply, headers, rng, fail_next, fail_next_status, fail_next_mode)
    return FaultPlan(latency_s=max(latency_ms, 0.0) / 1000.0, speed_override=speed, error=error)


def _decide_error(
    knobs: Knobs,
    reply: Reply,
    headers: dict[str, str],
    rng: random.Random,
    fail_next: int,
    fail_next_status: int | None,
    fail_next_mode: str | None = None,
) -> PlannedError | None:
    header_mode = headers.get("x-mock-error-mode")
    mode = header_mode if header_mode in ERROR_MODES else None
    raw_status = headers.get("x-mock-error")
    if raw_status is not None and raw_status.isascii() and raw_status.isdigit() and 400 <= int(raw_status) <= 599:
        return PlannedError(int(raw_status), mode or "before", "header")
    if mode in ("disconnect", "timeout"):
        return PlannedError(knobs.error_status[0], mode, "header")
    if reply.error is not None:
        return PlannedError(reply.error.status, "before", "rule")
    if fail_next > 0:
        mode = mode or fail_next_mode or knobs.error_mode
        return PlannedError(fail_next_status or knobs.error_status[0], mode, "fail_next")
    if knobs.error_rate > 0 and rng.random() < knobs.error_rate:
        status = knobs.error_status[0] if len(knobs.error_status) == 1 else rng.choice(knobs.error_status)
        return PlannedError(status, mode or knobs.error_mode, "rate")
    return None


def chunk_lateness(knobs: Knobs, interval_s: float, rng: random.Random) -> float:
    """How late (seconds) one chunk goes out beyond its deadline: up to `stream_jitter` x its interval."""
    if knobs.stream_jitter <= 0 or interval_s <= 0:
        return 0.0
    return rng.uniform(0.0, knobs.stream_jitter * interval_s)
