"""Rate limits: `rate_limit_rpm` and `rate_limit_tpm`, one bucket each across every provider.

Only model requests count (the dispatcher's guards never see `/health` or `/_mock/*`). Each
bucket holds a minute's allowance and refills continuously. A request takes one from the
request bucket; the tokens a reply used are taken from the token bucket when the next request
arrives (the reply's size is not known before it is made), so the token bucket may go into debt,
as real limits do. Every model response carries the provider's rate-limit headers; with no limit
set they are constants, rebuilt only when the knobs change (and once a second for Anthropic's
reset time).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from mockllm_tui.core.knobs import Knobs
from mockllm_tui.core.store import Store
from mockllm_tui.engine.exchange import Exchange
from mockllm_tui.engine.faults import retry_headers
from mockllm_tui.http.chat import InjectedFailure
from mockllm_tui.providers.base import Provider

#: What the headers report while no limit is set.
UNLIMITED_RPM = 10_000
UNLIMITED_TPM = 30_000_000
RATE_LIMIT_CODE = "rate_limit_exceeded"

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Bucket:
    """A minute's allowance that refills continuously."""

    capacity: float
    level: float
    stamp: float

    @classmethod
    def full(cls, per_minute: int, now: float) -> Bucket:
        """A full bucket for this limit."""
        return cls(float(per_minute), float(per_minute), now)

    @property
    def rate(self) -> float:
        """Refill per second."""
        return self.capacity / 60.0

    def refill(self, now: float) -> None:
        """Add what has refilled since the last look."""
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_s(self, need: float = 1.0) -> float:
        """Seconds until the bucket holds `need`."""
        return max(0.0, (need - self.level) / self.rate)

    def reset_s(self) -> float:
        """Seconds until the bucket is full again."""
        return self.wait_s(self.capacity)

    def remaining(self) -> int:
        """Whole units left (never below zero)."""
        return max(0, math.floor(self.level))


def openai_duration(seconds: float) -> str:
    """A reset as OpenAI writes it: "12ms", "1s", "1.5s", "6m0s"."""
    if seconds < 1.0:
        return f"{math.ceil(seconds * 1000.0)}ms"
    if seconds < 60.0:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


def rfc3339(epoch_s: float) -> str:
    """A UTC time as RFC 3339 with whole seconds (rounded up), as Anthropic's reset headers."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.ceil(epoch_s)))


def openai_headers(limit_r: int, left_r: int, reset_r: float, limit_t: int, left_t: int, reset_t: float) -> Headers:
    """`x-ratelimit-{limit,remaining,reset}-{requests,tokens}`."""
    return [
        (b"x-ratelimit-limit-requests", str(limit_r).encode()),
        (b"x-ratelimit-limit-tokens", str(limit_t).encode()),
        (b"x-ratelimit-remaining-requests", str(left_r).encode()),
        (b"x-ratelimit-remaining-tokens", str(left_t).encode()),
        (b"x-ratelimit-reset-requests", openai_duration(reset_r).encode()),
        (b"x-ratelimit-reset-tokens", openai_duration(reset_t).encode()),
    ]


def anthropic_headers(
    now: float, limit_r: int, left_r: int, reset_r: float, limit_t: int, left_t: int, reset_t: float
) -> Headers:
    """`anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}` (resets in RFC 3339)."""
    return [
        (b"anthropic-ratelimit-requests-limit", str(limit_r).encode()),
        (b"anthropic-ratelimit-requests-remaining", str(left_r).encode()),
        (b"anthropic-ratelimit-requests-reset", rfc3339(now + reset_r).encode()),
        (b"anthropic-ratelimit-tokens-limit", str(limit_t).encode()),
        (b"anthropic-ratelimit-tokens-remaining", str(left_t).encode()),
        (b"anthropic-ratelimit-tokens-reset", rfc3339(now + reset_t).encode()),
    ]


class RateLimiter:
    """The guard that counts model requests and tokens, refuses with 429 beyond the limits,
    and adds the rate-limit headers to every model response."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._knobs: Knobs | None = None
        self._requests: Bucket | None = None
        self._tokens: Bucket | None = None
        self._tokens_seen = store.tokens_used
        self._openai_const: Headers = []
        self._anthropic_const: Headers = []
        self._anthropic_second = -1

    def _reconfigure(self, knobs: Knobs) -> None:
        old = self._knobs
        self._knobs = knobs
        if old is not None and (old.rate_limit_rpm, old.rate_limit_tpm) == (knobs.rate_limit_rpm, knobs.rate_limit_tpm):
            return
        now = time.monotonic()
        self._requests = Bucket.full(knobs.rate_limit_rpm, now) if knobs.rate_limit_rpm > 0 else None
        self._tokens = Bucket.full(knobs.rate_limit_tpm, now) if knobs.rate_limit_tpm > 0 else None
        self._tokens_seen = self.store.tokens_used
        self._openai_const = openai_headers(UNLIMITED_RPM, UNLIMITED_RPM, 0.0, UNLIMITED_TPM, UNLIMITED_TPM, 0.0)
        self._anthropic_second = -1

    def __call__(self, ex: Exchange, provider: Provider) -> None:
        """Count this request; add the headers; raise InjectedFailure(429) beyond a limit."""
        knobs = self.store.knobs
        if knobs is not self._knobs:
            self._reconfigure(knobs)
        anthropic = provider.name == "anthropic"
        if self._requests is None and self._tokens is None:
            ex.extra_headers += self._anthropic_constants() if anthropic else self._openai_const
            return
        self._limit(ex, anthropic)

    def _anthropic_constants(self) -> Headers:
        now = time.time()
        second = int(now)
        if second != self._anthropic_second:
            self._anthropic_second = second
            self._anthropic_const = anthropic_headers(
                now, UNLIMITED_RPM, UNLIMITED_RPM, 0.0, UNLIMITED_TPM, UNLIMITED_TPM, 0.0
            )
        return self._anthropic_const

    def _limit(self, ex: Exchange, anthropic: bool) -> None:
        now = time.monotonic()
        requests, tokens = self._requests, self._tokens
        refused: tuple[str, Bucket] | None = None
        if tokens is not None:
            used = self.store.tokens_used
            tokens.refill(now)
            tokens.level -= used - self._tokens_seen
            self._tokens_seen = used
            if tokens.level < 1.0:
                refused = ("tokens", tokens)
        if requests is not None:
            requests.refill(now)
            if requests.level < 1.0:
                refused = ("requests", requests)
            elif refused is None:
                requests.level -= 1.0
        limit_r, left_r, reset_r = _report(requests, UNLIMITED_RPM)
        limit_t, left_t, reset_t = _report(tokens, UNLIMITED_TPM)
        if anthropic:
            ex.extra_headers += anthropic_headers(time.time(), limit_r, left_r, reset_r, limit_t, left_t, reset_t)
        else:
            ex.extra_headers += openai_headers(limit_r, left_r, reset_r, limit_t, left_t, reset_t)
        if refused is not None:
            kind, bucket = refused
            self._refuse(ex, kind, bucket)

    def _refuse(self, ex: Exchange, kind: str, bucket: Bucket) -> None:
        wait_s = bucket.wait_s(1.0)
        per = "RPM" if kind == "requests" else "TPM"
        limit = int(bucket.capacity)
        used = limit - math.floor(bucket.level)
        message = (
            f"Rate limit reached on {kind} per min ({per}): Limit {limit}, Used {used}, Requested 1. "
            f"Please try again in {openai_duration(wait_s)}. (mockllm-tui rate_limit_{per.lower()})"
        )
        ex.entry.fault = f"429 rate_limit ({per.lower()})"
        raise InjectedFailure(429, message, retry_headers(429, wait_s * 1000.0), code=RATE_LIMIT_CODE)


def _report(bucket: Bucket | None, unlimited: int) -> tuple[int, int, float]:
    if bucket is None:
        return unlimited, unlimited, 0.0
    return int(bucket.capacity), bucket.remaining(), bucket.reset_s()
