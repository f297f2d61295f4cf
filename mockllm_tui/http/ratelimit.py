"""Rate limits: `rate_limit_rpm` and `rate_limit_tpm`, one bucket each across every provider.

Only model requests count (the dispatcher's guards never see `/health` or `/_mock/*`). Each
bucket holds a minute's allowance and refills continuously. A request takes one from the
request bucket; the tokens a reply used are taken from the token bucket when the next request
arrives (the reply's size is not known before it is made), so the token bucket may go into debt,
as real limits do. Every model response carries the provider's rate-limit headers
(`Provider.rate_limit_headers`); with no limit set they are rebuilt at most once a second.
With a shared state (`--state redis://…`) the buckets are the group's, kept in Redis, so a limit
holds for every process together (each process's own while Redis is lost).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import NoReturn

from mockllm_tui.core.conversation import RequestError
from mockllm_tui.core.knobs import Knobs
from mockllm_tui.core.store import Store
from mockllm_tui.http.exchange import Exchange
from mockllm_tui.providers.base import Allowance, Headers, Provider, RateLimitReport, short_duration

#: What the headers report while no limit is set.
UNLIMITED_RPM = 10_000
UNLIMITED_TPM = 30_000_000
RATE_LIMIT_CODE = "rate_limit_exceeded"
UNLIMITED = RateLimitReport(
    Allowance(UNLIMITED_RPM, UNLIMITED_RPM, 0.0), Allowance(UNLIMITED_TPM, UNLIMITED_TPM, 0.0), 0.0
)


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


class RateLimiter:
    """The guard that counts model requests and tokens, refuses with 429 beyond the limits,
    and adds the provider's rate-limit headers to every model response."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._knobs: Knobs | None = None
        self._requests: Bucket | None = None
        self._tokens: Bucket | None = None
        self._tokens_seen = store.tokens_used
        self._unlimited: dict[str, tuple[int, Headers]] = {}

    def _reconfigure(self, knobs: Knobs) -> None:
        old = self._knobs
        self._knobs = knobs
        if old is not None and (old.rate_limit_rpm, old.rate_limit_tpm) == (knobs.rate_limit_rpm, knobs.rate_limit_tpm):
            return
        now = time.monotonic()
        self._requests = Bucket.full(knobs.rate_limit_rpm, now) if knobs.rate_limit_rpm > 0 else None
        self._tokens = Bucket.full(knobs.rate_limit_tpm, now) if knobs.rate_limit_tpm > 0 else None
        self._tokens_seen = self.store.tokens_used
        self._unlimited.clear()

    def __call__(self, ex: Exchange, provider: Provider) -> Awaitable[None] | None:
        """Count this request; add the headers; raise RequestError(429) beyond a limit. With a
        shared state and a limit set, the group's buckets count it: returns that check to await."""
        knobs = self.store.knobs
        if knobs is not self._knobs:
            self._reconfigure(knobs)
        if self._requests is None and self._tokens is None:
            ex.extra_headers += self._unlimited_headers(provider)
            return None
        if self.store.state.counters is not None:
            return self._shared_limit(ex, provider, knobs)
        self._limit(ex, provider)
        return None

    async def _shared_limit(self, ex: Exchange, provider: Provider, knobs: Knobs) -> None:
        """Count the request in the group's buckets (this process's own while the group is lost)."""
        used = self.store.tokens_used
        levels = await self.store.state.take_rate(knobs.rate_limit_rpm, knobs.rate_limit_tpm, used - self._tokens_seen)
        if levels is None:
            self._limit(ex, provider)
            return
        self._tokens_seen = used
        now = time.monotonic()
        requests = _shared_bucket(knobs.rate_limit_rpm, levels.requests, now)
        tokens = _shared_bucket(knobs.rate_limit_tpm, levels.tokens, now)
        report = RateLimitReport(_report(requests, UNLIMITED.requests), _report(tokens, UNLIMITED.tokens), time.time())
        ex.extra_headers += provider.rate_limit_headers(report)
        if levels.refused is not None:
            refused = requests if levels.refused == "requests" else tokens
            if refused is not None:
                self._refuse(ex, levels.refused, refused)

    def _unlimited_headers(self, provider: Provider) -> Headers:
        now = time.time()
        second = int(now)
        cached = self._unlimited.get(provider.name)
        if cached is None or cached[0] != second:
            cached = (second, provider.rate_limit_headers(replace(UNLIMITED, now=now)))
            self._unlimited[provider.name] = cached
        return cached[1]

    def _limit(self, ex: Exchange, provider: Provider) -> None:
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
        report = RateLimitReport(_report(requests, UNLIMITED.requests), _report(tokens, UNLIMITED.tokens), time.time())
        ex.extra_headers += provider.rate_limit_headers(report)
        if refused is not None:
            kind, bucket = refused
            self._refuse(ex, kind, bucket)

    def _refuse(self, ex: Exchange, kind: str, bucket: Bucket) -> NoReturn:
        wait_s = bucket.wait_s(1.0)
        per = "RPM" if kind == "requests" else "TPM"
        limit = int(bucket.capacity)
        used = limit - math.floor(bucket.level)
        message = (
            f"Rate limit reached on {kind} per min ({per}): Limit {limit}, Used {used}, Requested 1. "
            f"Please try again in {short_duration(wait_s)}. (mockllm-tui rate_limit_{per.lower()})"
        )
        ex.journal.faulted(f"429 rate_limit ({per.lower()})")
        raise RequestError(message, status=429, retry_after_ms=wait_s * 1000.0, code=RATE_LIMIT_CODE)


def _shared_bucket(per_minute: int, level: float | None, now: float) -> Bucket | None:
    """The group's bucket as the headers and the refusal read it (None: no such limit)."""
    if per_minute <= 0 or level is None:
        return None
    return Bucket(float(per_minute), level, now)


def _report(bucket: Bucket | None, unlimited: Allowance) -> Allowance:
    if bucket is None:
        return unlimited
    return Allowance(int(bucket.capacity), bucket.remaining(), bucket.reset_s())
