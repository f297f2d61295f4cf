"""Faults and timing as pure decisions: knobs + rule + headers + a random source -> a FaultPlan.

The async part (pipeline.py) only carries the plan out.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from mockllm_tui.conversation import Reply
from mockllm_tui.knobs import ERROR_MODES, Knobs


@dataclass(slots=True, frozen=True)
class InjectedError:
    """An error to inject: its status, when (`mode`) and why (`reason`: header, rule, rate, fail_next)."""

    status: int
    mode: str
    reason: str

    def describe(self) -> str:
        """One line for the journal."""
        return f"{self.status} {self.mode} ({self.reason})"


@dataclass(slots=True, frozen=True)
class FaultPlan:
    """How one request is to be served.

    `speed_override` is a fixed speed from a header or rule (None: follow the live knob).
    """

    latency_s: float = 0.0
    speed_override: float | None = None
    error: InjectedError | None = None


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
    """Latency with jitter: uniform in [base, base + jitter], or lognormal with that mean and spread."""
    if knobs.jitter_ms <= 0:
        return base_ms
    if knobs.latency_distribution == "lognormal" and base_ms > 0:
        sigma = min(knobs.jitter_ms / base_ms, 3.0)
        return base_ms * rng.lognormvariate(-sigma * sigma / 2, sigma)
    return base_ms + rng.uniform(0.0, knobs.jitter_ms)


def decide(
    knobs: Knobs,
    reply: Reply,
    headers: dict[str, str],
    rng: random.Random,
    *,
    fail_next: int = 0,
    fail_next_status: int | None = None,
) -> FaultPlan:
    """Decide latency, speed and any injected error. Precedence (highest first):
    per-request header > matched rule > knobs (live > file > CLI > default)."""
    latency_ms = knobs.latency_ms
    if reply.latency_ms is not None:
        latency_ms = reply.latency_ms
    header_latency = header_number(headers, "x-mock-latency-ms")
    if header_latency is not None:
        latency_ms = header_latency
    latency_ms = sample_latency_ms(knobs, latency_ms, rng)

    speed: float | None = reply.stream_speed
    header_speed = header_number(headers, "x-mock-stream-speed")
    if header_speed is not None:
        speed = header_speed

    error = _decide_error(knobs, headers, rng, fail_next, fail_next_status)
    return FaultPlan(latency_s=max(latency_ms, 0.0) / 1000.0, speed_override=speed, error=error)


def _decide_error(
    knobs: Knobs, headers: dict[str, str], rng: random.Random, fail_next: int, fail_next_status: int | None
) -> InjectedError | None:
    header_mode = headers.get("x-mock-error-mode")
    mode = header_mode if header_mode in ERROR_MODES else None
    raw_status = headers.get("x-mock-error")
    if raw_status is not None and raw_status.isdigit() and 400 <= int(raw_status) <= 599:
        return InjectedError(int(raw_status), mode or "before", "header")
    if mode in ("disconnect", "timeout"):
        return InjectedError(knobs.error_status[0], mode, "header")
    if fail_next > 0:
        return InjectedError(fail_next_status or knobs.error_status[0], knobs.error_mode, "fail_next")
    if knobs.error_rate > 0 and rng.random() < knobs.error_rate:
        status = knobs.error_status[0] if len(knobs.error_status) == 1 else rng.choice(knobs.error_status)
        return InjectedError(status, knobs.error_mode, "rate")
    return None


def describe_plan(plan: FaultPlan) -> dict[str, Any]:
    """The plan as plain data (for the journal and the admin API)."""
    return {
        "latency_ms": round(plan.latency_s * 1000.0, 3),
        "speed_override": plan.speed_override,
        "error": plan.error.describe() if plan.error else None,
    }
