"""`--state redis://…`: what several processes count together (a `replies:` sequence, `fail_next`,
the rate limits), with real headless processes on one real Redis and the real openai SDK as client;
and the Lua pieces on their own against the same real Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import redis.asyncio as aredis

from mockllm_tui.core.conversation import ChoiceContext, Conversation, Message
from mockllm_tui.core.sessions import SessionState
from mockllm_tui.core.store import Store
from mockllm_tui.rules.document import Document
from mockllm_tui.rules.matcher import RuleSet
from mockllm_tui.shared.counters import NEXT_POSITION, RAISE_POSITION, SET_FAIL, TAKE_FAIL, TAKE_RATE
from mockllm_tui.shared.group import redis_state
from tests.redis_server import RedisServer
from tests.test_realtime_openai import Events, say, text_session
from tests.test_shared_state import root_of

REPLIES = """\
rules:
  - name: counting
    match: {contains: count}
    replies: ["one", "two", "three", "four", "five"]
responses:
  default: "plain"
"""
ITEMS = ["one", "two", "three", "four", "five"]
#: How long a change may take to reach the other processes (pub/sub) or the watch to notice Redis.
SETTLE_S = 15.0

Group = Callable[..., list[str]]


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    """Start N headless processes with the same arguments and a responses file; their root URLs."""
    procs: list[subprocess.Popen[str]] = []

    def start(redis_url: str, *args: str, count: int = 3, responses: str = REPLIES) -> list[str]:
        path = tmp_path / "responses.yml"
        path.write_text(responses)
        cmd = [sys.executable, "-m", "mockllm_tui", "--headless", "--quiet", "--port", "0"]
        cmd += ["--state", redis_url, "--responses", str(path), *args]
        started = [
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
            for _ in range(count)
        ]  # side by side: start-up is most of these tests' time
        procs.extend(started)
        return [root_of(proc) for proc in started]

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def client(root: str, session: str | None = None) -> openai.OpenAI:
    headers = {"x-mock-session": session} if session else None
    return openai.OpenAI(base_url=root + "/v1", api_key="sk-test", max_retries=0, default_headers=headers)


def ask(root: str, prompt: str = "count", session: str | None = None) -> str:
    reply = client(root, session).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": prompt}]
    )
    return reply.choices[0].message.content or ""


def until(check: Callable[[], bool], what: str, timeout_s: float = SETTLE_S) -> None:
    """Wait for a condition another process brings about (pub/sub, the watch), up to a deadline."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pending(root: str, session: str | None = None) -> int:
    params = {"session": session} if session else None
    return int(httpx.get(root + "/_mock/settings", params=params).json()["fail_next"]["count"])


# -- behaviour: three processes on one Redis ---------------------------------------------------------


def test_a_sequence_runs_once_across_three_processes(redis_server: RedisServer, group: Group) -> None:
    roots = group(redis_server.url)
    texts = [ask(roots[i % 3]) for i in range(7)]
    assert texts == [*ITEMS, "five", "five"]  # each once, in order; the last repeats after the end
    assert {ask(root, "anything else") for root in roots} == {"plain"}


def test_concurrent_requests_across_processes_each_get_a_different_item(
    redis_server: RedisServer, group: Group
) -> None:
    roots = group(redis_server.url)
    with ThreadPoolExecutor(5) as pool:
        texts = list(pool.map(lambda i: ask(roots[i % 3]), range(5)))
    assert sorted(texts) == sorted(ITEMS)  # each item once, whichever process answered first


def test_a_sequence_runs_once_across_workers(redis_server: RedisServer, group: Group) -> None:
    (root,) = group(redis_server.url, "--workers", "3", count=1)
    assert [ask(root) for _ in range(6)] == [*ITEMS, "five"]


def test_plain_requests_leave_no_counter_in_redis(redis_server: RedisServer, group: Group) -> None:
    (root,) = group(redis_server.url, count=1)
    for _ in range(5):
        assert ask(root, "hello") == "plain"
    conn = redis.Redis.from_url(redis_server.url)
    try:
        assert conn.keys("mockllm:seq:*") == [] and conn.keys("mockllm:rate:*") == []
        assert conn.keys("mockllm:fail:*") == []
        assert ask(root) == "one"
        assert conn.keys("mockllm:seq:*") == [b"mockllm:seq:rule:counting:" + sequence_hash(REPLIES)]
    finally:
        conn.close()


def sequence_hash(text: str) -> bytes:
    """The spec hash a rule named `counting` gets in its sequence key."""
    rules = RuleSet(Document(text).model)
    reply = rules.choose(Conversation("openai", "chat", "gpt-4o", [Message("user", "count")]))
    assert reply.sequence is not None
    return reply.sequence.key.rsplit(":", 1)[1].encode()


def test_each_session_has_its_own_sequence_across_processes(redis_server: RedisServer, group: Group) -> None:
    roots = group(redis_server.url)
    seen: dict[str | None, list[str]] = {"a": [], "b": [], None: []}
    order = ["a", "b", "a", None, "a", "b", "a", "b", None]
    for i, session in enumerate(order):
        seen[session].append(ask(roots[i % 3], session=session))
    assert seen["a"] == ["one", "two", "three", "four"]
    assert seen["b"] == ["one", "two", "three"]
    assert seen[None] == ["one", "two"]


async def test_a_sequence_runs_once_across_realtime_sessions_on_two_processes(
    redis_server: RedisServer, group: Group
) -> None:
    roots = group(redis_server.url, count=2)
    clients = [openai.AsyncOpenAI(base_url=root + "/v1", api_key="sk-test", max_retries=0) for root in roots]
    async with (
        clients[0].realtime.connect(model="gpt-realtime") as first,
        clients[1].realtime.connect(model="gpt-realtime") as second,
    ):
        conns = [(first, Events(first)), (second, Events(second))]
        for conn, events in conns:
            await text_session(conn, events)
        texts = []
        for i in range(4):
            conn, events = conns[i % 2]
            await say(conn, "count")
            await events.until("conversation.item.done")
            await conn.response.create()
            response = await events.until("response.done")
            texts.append("".join(e.delta for e in response if e.type == "response.output_text.delta"))
    assert texts == ITEMS[:4]


def test_fail_next_fails_exactly_two_across_three_processes(redis_server: RedisServer, group: Group) -> None:
    roots = group(redis_server.url)
    answer = httpx.post(roots[1] + "/_mock/fail-next", json={"count": 2, "status": 503})
    assert answer.json() == {"count": 2, "status": 503}
    until(lambda: all(pending(root) == 2 for root in roots), "every process to hear of fail_next")
    outcomes: list[int] = []
    for i in range(9):
        try:
            ask(roots[i % 3], "hello")
            outcomes.append(200)
        except openai.InternalServerError as exc:
            assert exc.status_code == 503
            assert isinstance(exc.body, dict) and "Injected error 503" in str(exc.body.get("message"))
            outcomes.append(503)
    assert outcomes == [503, 503, *[200] * 7]
    until(lambda: all(pending(root) == 0 for root in roots), "every process to see none pending")


def test_a_session_fail_next_is_counted_by_the_group(redis_server: RedisServer, group: Group) -> None:
    roots = group(redis_server.url)
    answer = httpx.post(roots[0] + "/_mock/fail-next", params={"session": "s1"}, json={"count": 3, "status": 429})
    assert answer.json() == {"count": 3, "status": 429}
    until(lambda: all(pending(root, "s1") == 3 for root in roots), "every process to hear of the session's")
    failed = 0
    for i in range(6):
        assert ask(roots[i % 3], "hello") == "plain"  # the default session has nothing pending
        try:
            ask(roots[(i + 1) % 3], "hello", session="s1")
        except openai.RateLimitError:
            failed += 1
    assert failed == 3


def test_a_rate_limit_is_for_the_whole_group(redis_server: RedisServer, group: Group) -> None:
    roots = group(redis_server.url, "--rate-limit-rpm", "6")
    remaining: list[str] = []
    refused: list[openai.RateLimitError] = []
    for i in range(9):
        try:
            raw = client(roots[i % 3]).chat.completions.with_raw_response.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
            )
            remaining.append(raw.headers["x-ratelimit-remaining-requests"])
            assert raw.parse().choices[0].message.content == "plain"
        except openai.RateLimitError as exc:
            refused.append(exc)
    assert remaining == ["5", "4", "3", "2", "1", "0"]
    assert len(refused) == 3
    for exc in refused:
        assert exc.code == "rate_limit_exceeded" and isinstance(exc.body, dict)
        assert "Limit 6" in str(exc.body["message"]) and "(RPM)" in str(exc.body["message"])
        assert exc.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert float(exc.response.headers["retry-after-ms"]) > 0


def test_a_token_limit_counts_the_tokens_every_process_served(redis_server: RedisServer, group: Group) -> None:
    # Each reply here uses 10 tokens, taken from the group's bucket when its process next asks.
    roots = group(redis_server.url, "--rate-limit-tpm", "25")
    outcomes: list[int | str] = []
    for i in range(6):
        try:
            reply = client(roots[i % 3]).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
            )
            assert reply.usage is not None and reply.usage.total_tokens == 10
            outcomes.append(200)
        except openai.RateLimitError as exc:
            assert isinstance(exc.body, dict)
            outcomes.append(str(exc.body["message"]).split(":")[0])
    # By the sixth, 30 tokens were taken from 25: refused, though no process alone served 25.
    assert outcomes == [200] * 5 + ["Rate limit reached on tokens per min (TPM)"]


def test_a_lost_redis_falls_back_to_counting_here(redis_server: RedisServer, group: Group) -> None:
    roots = group(redis_server.url, "--rate-limit-rpm", "1000", count=2)
    assert [ask(roots[0]), ask(roots[1])] == ["one", "two"]
    httpx.post(roots[1] + "/_mock/fail-next", json={"count": 5, "status": 500})
    until(lambda: pending(roots[0]) == 5, "the other process to hear of fail_next")
    httpx.post(roots[1] + "/_mock/fail-next", json={"count": 0})
    until(lambda: pending(roots[0]) == 0, "the other process to hear fail_next cleared")
    redis_server.stop()
    # Before the watch notices, a call to Redis fails and falls back; after, Redis is not asked.
    assert ask(roots[0]) == "two"  # this process last knew the group at position 1
    until(lambda: httpx.get(roots[0] + "/health").json()["state"] == "degraded", "the watch to notice")
    assert [ask(roots[0]), ask(roots[0])] == ["three", "four"]
    assert ask(roots[1]) == "three"
    assert ask(roots[1], "hello") == "plain"
    redis_server.start()  # back, empty: the positions counted here are carried into the group's
    until(lambda: all(httpx.get(root + "/health").json()["state"] == "redis" for root in roots), "the reconnect")
    assert ask(roots[1]) == "five"


async def test_a_fail_next_set_from_synchronous_code_reaches_another_process_state(redis_server: RedisServer) -> None:
    """What the panel's fail-next control does (`Store.set_fail_next`, blocking), seen by a second
    state on the same Redis, even one that had not subscribed yet; then a take there is seen here."""
    here, there = (
        Store(state=redis_state(redis_server.url, "t", "here")),
        Store(state=redis_state(redis_server.url, "t", "there")),
    )
    await here.state.start(here)
    await there.state.start(there)
    try:
        here.set_fail_next(2, 418, "before")

        async def settled(store: Store, wanted: tuple[int, int | None, str | None]) -> None:
            deadline = time.monotonic() + SETTLE_S
            while store.pending_fail_next(None) != wanted:
                assert time.monotonic() < deadline, store.pending_fail_next(None)
                await asyncio.sleep(0.02)

        await settled(there, (2, 418, "before"))
        assert await there.state.take_fail_next(there, None) == (1, 418, "before")
        assert there.pending_fail_next(None)[0] == 1
        await settled(here, (1, 418, "before"))
        assert await here.state.take_fail_next(here, None) == (1, 418, "before")
        assert await there.state.take_fail_next(there, None) == (0, None, None)  # its copy said 1: Redis said none
        assert there.pending_fail_next(None)[0] == 0
    finally:
        await here.state.stop()
        await there.state.stop()


# -- what a reply says of its sequence (in process) ---------------------------------------------------

SEQUENCE_RULES = """\
rules:
  - name: counting
    match: {regex: 'count (?P<what>\\w+)'}
    replies: ["one {{what}}", "two {{what}}"]
  - match: {contains: plain}
    reply: "plain"
scenarios:
  - name: booking
    steps:
      - match: {contains: book}
        replies: ["first", "second"]
"""


def test_a_sequence_reply_names_its_sequence_and_can_pick_any_item() -> None:
    rules = RuleSet(Document(SEQUENCE_RULES).model)
    session = SessionState("s1")
    context = ChoiceContext({}, session)
    reply = rules.choose(Conversation("openai", "chat", "gpt-4o", [Message("user", "count sheep")]), context)
    sequence = reply.sequence
    assert sequence is not None and reply.text == "one sheep"
    assert sequence.key.startswith("rule:counting:") and sequence.session == "s1"
    assert (sequence.length, sequence.index, sequence.pick(1)) == (2, 0, "two sheep")
    sequence.follow(5)  # the group's position becomes this session's own
    again = rules.choose(Conversation("openai", "chat", "gpt-4o", [Message("user", "count sheep")]), context)
    assert again.text == "two sheep" and again.sequence is not None and again.sequence.index == 1
    plain = rules.choose(Conversation("openai", "chat", "gpt-4o", [Message("user", "plain")]), context)
    assert plain.sequence is None  # not from a sequence: nothing for the group to count
    step = rules.choose(Conversation("openai", "chat", "gpt-4o", [Message("user", "book")]), context)
    assert step.sequence is not None and step.sequence.key.startswith("step:booking step 1:")
    edited = RuleSet(Document(SEQUENCE_RULES.replace("two {{what}}", "deux {{what}}")).model)
    other = edited.choose(Conversation("openai", "chat", "gpt-4o", [Message("user", "count sheep")]))
    assert other.sequence is not None and other.sequence.session is None
    assert other.sequence.key != sequence.key  # an edited rule starts again
    same = RuleSet(Document(SEQUENCE_RULES).model).choose(
        Conversation("openai", "chat", "gpt-4o", [Message("user", "count sheep")])
    )
    assert same.sequence is not None and same.sequence.key == sequence.key  # the same in every process


def test_pending_failures_are_seeded_again_when_redis_comes_back_empty(redis_server: RedisServer, group: Group) -> None:
    roots = group(redis_server.url, count=2)
    httpx.post(roots[0] + "/_mock/fail-next", json={"count": 3, "status": 502})
    until(lambda: pending(roots[1]) == 3, "the other process to hear of fail_next")
    client_ = redis.Redis.from_url(redis_server.url)
    redis_server.restart()
    until(lambda: client_.hget("mockllm:fail:default", "count") == b"3", "a process to seed fail_next again")
    client_.close()
    # A process that saw Redis lost counts here until it is back in step (then takes the group's again).
    until(lambda: all(httpx.get(root + "/health").json()["state"] == "redis" for root in roots), "the reconnect")
    until(lambda: all(pending(root) == 3 for root in roots), "every process to take the group's in again")
    statuses = []
    for i in range(6):
        try:
            ask(roots[i % 2], "hello")
            statuses.append(200)
        except openai.APIStatusError as exc:
            statuses.append(exc.status_code)
    assert sorted(statuses) == [200, 200, 200, 502, 502, 502]


# -- the Lua pieces against the real Redis -----------------------------------------------------------


@pytest.fixture
def sync_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_server.url)
    yield conn
    conn.close()


def test_next_position_counts_and_expires_only_with_a_ttl(sync_redis: redis.Redis) -> None:
    script = sync_redis.register_script(NEXT_POSITION)
    assert [script(["s"], [0]) for _ in range(3)] == [1, 2, 3]
    assert sync_redis.ttl("s") == -1
    assert script(["t"], [60]) == 1 and 0 < sync_redis.ttl("t") <= 60


def test_raise_position_never_moves_back(sync_redis: redis.Redis) -> None:
    script = sync_redis.register_script(RAISE_POSITION)
    sync_redis.set("s", 4)
    script(["s"], [2, 0])
    assert sync_redis.get("s") == b"4"
    script(["s"], [7, 0])
    assert sync_redis.get("s") == b"7"


async def test_take_fail_takes_exactly_the_count_under_contention(redis_server: RedisServer) -> None:
    conn = aredis.Redis.from_url(redis_server.url)
    try:
        await conn.hset("f", mapping={"count": 10, "status": "503", "mode": "before"})
        take = conn.register_script(TAKE_FAIL)
        results: list[Any] = await asyncio.gather(*(take(["f", "v"], ["ch", "me", ""]) for _ in range(40)))
        taken = [r for r in results if r[0] == 1]
        assert len(taken) == 10
        assert sorted(int(r[1]) for r in taken) == list(range(10))  # each count left seen once
        assert {(r[2], r[3]) for r in taken} == {(b"503", b"before")}
        assert await conn.exists("f") == 0
        assert int(await conn.get("v") or 0) == 10  # a version per take
    finally:
        await conn.aclose()


async def test_fail_next_changes_are_published_with_their_session_and_version(redis_server: RedisServer) -> None:
    conn = aredis.Redis.from_url(redis_server.url)
    pubsub = conn.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe("ch")
        set_fail, take = conn.register_script(SET_FAIL), conn.register_script(TAKE_FAIL)
        assert await set_fail(["f", "v"], [2, 429, "disconnect", 60, "ch", "me", "s1", "0"]) == 1
        assert await set_fail(["f", "v"], [5, 500, "", 60, "ch", "me", "s1", "1"]) == 0  # only if absent: kept
        assert 0 < await conn.ttl("f") <= 60
        assert (await take(["f", "v"], ["ch", "other", "s1"]))[:4] == [1, 1, b"429", b"disconnect"]
        messages = []
        deadline = time.monotonic() + SETTLE_S
        while len(messages) < 2:  # None: the subscription's own confirmation, or nothing yet
            assert time.monotonic() < deadline, f"only {messages} were published"
            message = await pubsub.get_message(timeout=1)
            if message is not None:
                messages.append(json.loads(message["data"]))
        assert messages == [
            {
                "kind": "fail_next",
                "from": "me",
                "session": "s1",
                "count": 2,
                "status": "429",
                "mode": "disconnect",
                "version": 1,
            },
            {
                "kind": "fail_next",
                "from": "other",
                "session": "s1",
                "count": 1,
                "status": "429",
                "mode": "disconnect",
                "version": 2,
            },
        ]
    finally:
        await pubsub.aclose()
        await conn.aclose()


def test_take_rate_refuses_past_the_limit_and_refills_by_redis_time(sync_redis: redis.Redis) -> None:
    script = sync_redis.register_script(TAKE_RATE)
    keys = ["r", "t"]
    levels = [script(keys, [3, 0, 0, 120]) for _ in range(4)]
    assert [float(x[0]) for x in levels[:3]] == pytest.approx([2, 1, 0], abs=0.01)
    assert levels[3][2] == b"requests" and levels[0][1] == b""
    # The stamp moved back a minute: the bucket is full again (refill by Redis's clock).
    stamp = float(sync_redis.hget("r", "stamp") or 0)
    sync_redis.hset("r", "stamp", str(stamp - 60))
    assert float(script(keys, [3, 0, 0, 120])[0]) == pytest.approx(2, abs=0.01)
    # A changed limit starts full; tokens served go into debt and refuse the next request.
    assert float(script(keys, [10, 0, 0, 120])[0]) == pytest.approx(9, abs=0.01)
    first = script(keys, [0, 100, 150, 120])
    assert float(first[1]) == pytest.approx(-50, abs=0.1) and first[2] == b"tokens" and first[0] == b""
