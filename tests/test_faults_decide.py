"""The pure parts of faults and timing: decide(), precedence of every level, retry headers,
the rate-limit buckets and header formats. No server needed."""

from __future__ import annotations

import random
import statistics
from typing import Any

import pytest

from mockllm_tui.core.conversation import ErrorReply, Reply
from mockllm_tui.core.knobs import Knobs
from mockllm_tui.core.store import Store
from mockllm_tui.engine.faults import FaultPlan, PlannedError, chunk_lateness, decide, sample_latency_ms
from mockllm_tui.http.ratelimit import Bucket
from mockllm_tui.providers.anthropic import rfc3339
from mockllm_tui.providers.base import retry_headers
from mockllm_tui.providers.base import short_duration as openai_duration


def plan(knobs: Knobs, reply: Reply | None = None, headers: dict[str, str] | None = None, **kw: Any) -> FaultPlan:
    return decide(knobs, reply or Reply(text="hi"), headers or {}, random.Random(1), **kw)


# Each row sets the levels from the bottom up to its own; the highest level given must win.
PRECEDENCE = [
    # (level that wins, cli, file, live, rule, header)
    ("default", None, None, None, None, None),
    ("cli", 10, None, None, None, None),
    ("file", 10, 20, None, None, None),
    ("live", 10, 20, 30, None, None),
    ("rule", 10, 20, 30, 40, None),
    ("header", 10, 20, 30, 40, 50),
]


@pytest.mark.parametrize(("level", "cli", "file", "live", "rule", "header"), PRECEDENCE, ids=[r[0] for r in PRECEDENCE])
def test_precedence_header_over_rule_over_live_over_file_over_cli_over_default(
    level: str, cli: int | None, file: int | None, live: int | None, rule: int | None, header: int | None
) -> None:
    store = Store()
    for layer, value in (("cli", cli), ("file", file), ("live", live)):
        if value is not None:
            store.set_knobs(layer, {"latency_ms": value, "stream_speed": value, "error_status": 400 + value})
    store.set_knobs("cli", {"error_rate": 1.0})
    reply = Reply(text="x", latency_ms=rule, stream_speed=rule)
    headers = {} if header is None else {"x-mock-latency-ms": str(header), "x-mock-stream-speed": str(header)}
    expected = {"default": 0, "cli": 10, "file": 20, "live": 30, "rule": 40, "header": 50}[level]
    result = decide(store.knobs, reply, headers, store.rng)
    assert result.latency_s == pytest.approx(expected / 1000.0)
    speed = result.speed_override if result.speed_override is not None else store.knobs.stream_speed
    assert speed == expected
    assert result.error is not None
    if level in ("cli", "file", "live"):
        assert result.error.status == 400 + expected


def test_error_sources_in_order_header_rule_fail_next_rate() -> None:
    knobs = Knobs(error_rate=1.0, error_status=(503,), error_mode="mid_stream")
    rule_reply = Reply(error=ErrorReply(status=418, message="teapot"))
    header = {"x-mock-error": "429"}
    assert plan(knobs, rule_reply, header, fail_next=1).error == PlannedError(429, "before", "header")
    assert plan(knobs, rule_reply, {}, fail_next=1).error == PlannedError(418, "before", "rule")
    assert plan(knobs, None, {}, fail_next=1, fail_next_status=529).error == PlannedError(
        529, "mid_stream", "fail_next"
    )
    assert plan(knobs).error == PlannedError(503, "mid_stream", "rate")
    assert plan(Knobs()).error is None


def test_header_modes() -> None:
    knobs = Knobs(error_status=(500,))
    assert plan(knobs, headers={"x-mock-error": "529", "x-mock-error-mode": "mid_stream"}).error == PlannedError(
        529, "mid_stream", "header"
    )
    # disconnect and timeout need no status; mid_stream alone does nothing
    assert plan(knobs, headers={"x-mock-error-mode": "disconnect"}).error == PlannedError(500, "disconnect", "header")
    assert plan(knobs, headers={"x-mock-error-mode": "timeout"}).error == PlannedError(500, "timeout", "header")
    assert plan(knobs, headers={"x-mock-error-mode": "mid_stream"}).error is None
    # the header's mode applies to a fail_next error of the same request
    assert plan(knobs, headers={"x-mock-error-mode": "mid_stream"}, fail_next=1).error == PlannedError(
        500, "mid_stream", "fail_next"
    )
    # nonsense headers are ignored
    for bad in ({"x-mock-error": "abc"}, {"x-mock-error": "200"}, {"x-mock-error-mode": "sideways"}):
        assert plan(knobs, headers=bad).error is None
    assert plan(Knobs(latency_ms=7), headers={"x-mock-latency-ms": "-5"}).latency_s == pytest.approx(0.007)


def test_seeded_rng_makes_jitter_and_error_picks_repeat() -> None:
    knobs = Knobs(latency_ms=100, jitter_ms=50, error_rate=0.5, error_status=(429, 500, 529))

    def run(seed: int) -> list[FaultPlan]:
        rng = random.Random(seed)
        return [decide(knobs, Reply(text="x"), {}, rng) for _ in range(50)]

    first, second, other = run(7), run(7), run(8)
    assert first == second
    assert first != other
    latencies = [p.latency_s for p in first]
    assert all(0.1 <= v <= 0.15 for v in latencies)
    statuses = {p.error.status for p in first if p.error}
    assert statuses == {429, 500, 529}
    assert 10 < sum(p.error is not None for p in first) < 40


def test_store_reseeds_when_the_seed_knob_changes() -> None:
    a, b = Store(), Store()
    a.set_knobs("cli", {"seed": 42})
    b.set_knobs("live", {"seed": 42})
    knobs = Knobs(latency_ms=10, jitter_ms=10)
    assert [sample_latency_ms(knobs, 10, a.rng) for _ in range(5)] == [
        sample_latency_ms(knobs, 10, b.rng) for _ in range(5)
    ]


def test_lognormal_latency_has_the_base_as_mean_and_a_long_tail() -> None:
    knobs = Knobs(latency_ms=100, jitter_ms=50, latency_distribution="lognormal")
    rng = random.Random(3)
    samples = [sample_latency_ms(knobs, 100, rng) for _ in range(20_000)]
    assert statistics.fmean(samples) == pytest.approx(100, rel=0.03)
    assert statistics.pstdev(samples) == pytest.approx(50, rel=0.15)
    assert min(samples) > 0
    assert max(samples) > 250  # a tail well beyond base + jitter, which uniform never gives
    uniform = Knobs(latency_ms=100, jitter_ms=50)
    assert all(100 <= sample_latency_ms(uniform, 100, rng) <= 150 for _ in range(1000))


def test_header_latency_is_exact_rule_latency_gets_jitter() -> None:
    knobs = Knobs(latency_ms=100, jitter_ms=50)
    assert plan(knobs, headers={"x-mock-latency-ms": "20"}).latency_s == 0.02
    assert 0.3 <= plan(knobs, Reply(latency_ms=300)).latency_s <= 0.35


def test_chunk_lateness_is_bounded_by_the_jitter_fraction() -> None:
    rng = random.Random(0)
    assert chunk_lateness(Knobs(), 0.1, rng) == 0.0
    values = [chunk_lateness(Knobs(stream_jitter=0.5), 0.1, rng) for _ in range(200)]
    assert all(0 <= v <= 0.05 for v in values) and max(values) > 0.04


def test_retry_headers_follow_the_sdk_contract() -> None:
    for status in (408, 409, 429, 500, 503, 529):
        headers = dict(retry_headers(status))
        assert headers[b"x-should-retry"] == b"true"
        assert headers[b"retry-after-ms"] == b"100"
        assert headers[b"retry-after"] == b"1"
    for status in (400, 401, 404, 422):
        assert retry_headers(status) == []
    assert dict(retry_headers(429, 20_500))[b"retry-after"] == b"21"


def test_bucket_refills_continuously() -> None:
    bucket = Bucket.full(60, now=0.0)  # one a second
    bucket.level = 0.0
    assert bucket.wait_s() == pytest.approx(1.0)
    bucket.refill(0.5)
    assert bucket.level == pytest.approx(0.5) and bucket.remaining() == 0
    bucket.refill(1000.0)
    assert bucket.level == 60 and bucket.reset_s() == 0
    bucket.level = -30  # a token bucket may be in debt
    assert bucket.wait_s() == pytest.approx(31.0)


def test_reset_formats() -> None:
    assert openai_duration(0.0) == "0ms"
    assert openai_duration(0.0123) == "13ms"
    assert openai_duration(1.0) == "1s"
    assert openai_duration(1.5) == "1.5s"
    assert openai_duration(360.0) == "6m0s"
    assert rfc3339(0.2) == "1970-01-01T00:00:01Z"


def test_key_matching_accepts_either_header_and_nothing_else() -> None:
    from mockllm_tui.http.auth import admin_allowed, headers_text
    from mockllm_tui.http.auth import key_matches as keys_match
    from mockllm_tui.providers.openai_chat import OpenAIChat

    shape = OpenAIChat()

    def key_matches(expected: str, headers: dict[str, str]) -> bool:
        return keys_match(expected, shape.presented_keys(headers))

    assert key_matches("k1", {"x-api-key": "k1"})
    assert key_matches("k1", {"authorization": "Bearer k1"})
    assert key_matches("k1", {"authorization": "bearer  k1 "})
    assert key_matches("k1", {"x-api-key": "wrong", "authorization": "Bearer k1"})
    assert key_matches("ключ", {"x-api-key": "ключ".encode().decode("latin-1")})  # raw header bytes are UTF-8
    for headers in ({}, {"x-api-key": "k2"}, {"authorization": "k1"}, {"authorization": "Basic k1"}, {"api-key": "k1"}):
        assert not key_matches("k1", headers)
    store = Store()
    assert admin_allowed(store, "/_mock/settings", {}, shape)
    store.set_knobs("cli", {"api_key": "k1"})
    assert not admin_allowed(store, "/_mock/settings", {}, shape)
    assert admin_allowed(store, "/_mock/settings", headers_text([(b"X-Api-Key", b"k1")]), shape)
    assert admin_allowed(store, "/health", {}, shape)
