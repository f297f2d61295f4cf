"""Record and replay: a second in-process server (our own, with its own rules) is the "real" upstream.

Requests no rule matches go to it; its 2xx answers become rules in the proxy's responses file; a
restart without the upstream replays them.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anthropic
import boto3
import httpx
import ollama
import orjson
import pytest
from anthropic.types import Message as AnthropicMessage
from anthropic.types import RawMessageStreamEvent
from botocore.config import Config as BotoConfig
from google import genai
from openai import APIStatusError, AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response
from pydantic import TypeAdapter

from mockllm_tui.core.store import Store
from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import EmbeddedServer, ServerHandle, bind_socket, uvicorn_config
from mockllm_tui.http.upstream import (
    Upstream,
    UpstreamError,
    forwarded_headers,
    parse_upstreams,
    upstream_for,
)
from mockllm_tui.providers.registry import build_providers
from mockllm_tui.rules import load_initial
from mockllm_tui.rules.commands import list_rules
from mockllm_tui.rules.recording import Timing, measure_pace
from tests.conftest import HOST, Live, serving

SECRET = "sk-live-SECRET-7f3a9c"
EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
CLAUDE = "claude-haiku-4-5"
BEDROCK_MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
SLOW_TEXT = "one two three four five six seven eight nine ten eleven twelve"
UPSTREAM_RULES = f"""\
rules:
  - match: {{exact: "Weather in Paris?", tool_result: "get_weather"}}
    reply: "It is sunny in Paris."
  - match: {{exact: "Weather in Paris?"}}
    tool_calls: [{{name: "get_weather", arguments: {{city: "Paris"}}}}]
  - match: {{contains: "again"}}
    replies: ["first answer", "second answer"]
  - match: {{exact: "slow"}}
    reply: "{SLOW_TEXT}"
    latency_ms: 150
    stream_speed: 40
  - match: {{exact: "limit me"}}
    error: {{status: 429, message: "Slow down, you are rate limited"}}
  - match: {{exact: "hang"}}
    reply: "late"
    latency_ms: 3000
responses:
  "hello": "Hello from upstream"
  "default": "upstream default"
"""
PROXY_RULES = """\
# my mock rules (hand-written; recording must keep every byte of this)
rules:
  - match: {exact: "local"}   # answered here, never forwarded
    reply: "answered locally"

responses:
  "default": "the proxy's own fallback"
"""
WEATHER = (("get_weather", {"city": "Paris"}), "It is sunny in Paris.")
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


def store_for(path: Path, **config: Any) -> Store:
    """A store reading `path`, with start-up values."""
    store = Store()
    store.configure(responses_path=str(path), **config)
    load_initial(store, path)
    return store


class Pair:
    """The upstream and the recording proxy in front of it."""

    def __init__(self, upstream: Live, proxy: Live, path: Path, original: str) -> None:
        self.upstream = upstream
        self.proxy = proxy
        self.path = path
        self.original = original

    def openai(self, key: str = SECRET) -> AsyncOpenAI:
        return AsyncOpenAI(base_url=self.proxy.openai_url, api_key=key, max_retries=0)

    def anthropic(self, key: str = SECRET) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.proxy.anthropic_url, api_key=key, max_retries=0)

    def upstream_hits(self) -> int:
        return len([e for e in self.upstream.store.journal() if e.status == 200])

    def added_lines(self) -> list[str]:
        """The lines recording added; fails when any earlier byte changed."""
        now = self.path.read_text()
        ops = difflib.SequenceMatcher(None, self.original, now, autojunk=False).get_opcodes()
        assert [op for op in ops if op[0] not in ("equal", "insert")] == []
        return [now[j1:j2] for tag, _, _, j1, j2 in ops if tag == "insert"]


@asynccontextmanager
async def recording_pair(tmp_path: Path, *, record: bool = True, **config: Any) -> AsyncIterator[Pair]:
    """An upstream that requires SECRET, and a proxy recording into its own responses file."""
    up_path = tmp_path / "upstream.yml"
    up_path.write_text(UPSTREAM_RULES)
    upstream_store = store_for(up_path)
    upstream_store.set_knobs("cli", {"api_key": SECRET})
    path = tmp_path / "responses.yml"
    path.write_text(PROXY_RULES)
    async with serving(upstream_store) as upstream:
        pairs = config.pop("upstreams", (("openai", upstream.root), ("anthropic", upstream.root)))
        store = store_for(path, upstreams=pairs, **config)
        store.set_knobs("cli", {"record": record})
        async with serving(store) as proxy:
            yield Pair(upstream, proxy, path, PROXY_RULES)


@asynccontextmanager
async def replaying(path: Path) -> AsyncIterator[Live]:
    """A restart on the recorded file, without any upstream."""
    async with serving(store_for(path)) as live:
        yield live


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def openai_stream_text(client: AsyncOpenAI, prompt: str, model: str = "gpt-4o") -> str:
    stream = await client.chat.completions.create(model=model, messages=user(prompt), stream=True)
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


def sse_data(text: str) -> list[str]:
    """The JSON `data:` payloads of an SSE body."""
    return [line[6:] for line in text.split("\n") if line.startswith("data: {")]


async def answer(client: AsyncOpenAI, prompt: str) -> str | None:
    done = await client.chat.completions.create(model="gpt-4o", messages=user(prompt))
    return done.choices[0].message.content


def recorded(store: Store) -> list[dict[str, Any]]:
    return [r.spec.to_data() for r in list_rules(store) if r.spec.match.provider]


# -- OpenAI ----------------------------------------------------------------------------------------


async def test_openai_plain_and_streamed_replies_are_recorded_and_replayed_offline(tmp_path: Path) -> None:
    async with recording_pair(tmp_path) as pair:
        client = pair.openai()
        plain = await client.chat.completions.create(model="gpt-4o", messages=user("hello"))
        assert plain.choices[0].message.content == "Hello from upstream"
        streamed = await openai_stream_text(client, "slow")
        assert streamed == SLOW_TEXT
        async with httpx.AsyncClient() as http:  # the pass-through, strictly in the SDK's own types
            raw = await http.post(
                pair.proxy.openai_url + "/chat/completions",
                json={"model": "gpt-4o", "messages": user("hello"), "stream": True},
                headers={"authorization": f"Bearer {SECRET}"},
            )
        assert raw.headers["content-type"].startswith("text/event-stream")
        chunks = [ChatCompletionChunk.model_validate_json(data, strict=True) for data in sse_data(raw.text)]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from upstream"
        local = await client.chat.completions.create(model="gpt-4o", messages=user("local"))
        assert local.choices[0].message.content == "answered locally"
        assert pair.upstream_hits() == 3
        sent = [e.request_body for e in pair.proxy.store.journal()[:3]]
        assert sent == [e.request_body for e in pair.upstream.store.journal()]  # byte for byte
        entries = pair.proxy.store.journal()
        assert [e.rule for e in entries] == ["upstream", "upstream", "upstream", "#1"]
        assert len(entries[1].chunks) > 3 and "".join(entries[1].chunks) == SLOW_TEXT  # the stream, chunk by chunk

        added = "".join(pair.added_lines())
        assert added.count("# recorded ") == 2 and f"from {HOST}:{pair.upstream.handle.port}" in added
        rules = recorded(pair.proxy.store)
        assert [r["match"] for r in rules] == [
            {"exact": "hello", "provider": "openai", "model": "gpt-4o", "turn": 1},
            {"exact": "slow", "provider": "openai", "model": "gpt-4o", "turn": 1},
        ]
        assert rules[0]["reply"] == "Hello from upstream" and "stream_speed" not in rules[0]
        slow = rules[1]
        assert slow["reply"] == SLOW_TEXT
        assert slow["latency_ms"] >= 140  # the upstream's 150 ms before the first token
        assert 10 <= slow["stream_speed"] <= 80  # about the upstream's 40 tokens/s (loose: busy CI)

    async with replaying(pair.path) as live:
        client = AsyncOpenAI(base_url=live.openai_url, api_key="sk-anything", max_retries=0)
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=user("hello"))
        body = ChatCompletion.model_validate_json(raw.http_response.content, strict=True)
        assert body.choices[0].message.content == "Hello from upstream"
        started = time.perf_counter()
        response = await httpx.AsyncClient().post(
            live.openai_url + "/chat/completions",
            json={"model": "gpt-4o", "messages": user("slow"), "stream": True},
        )
        elapsed = time.perf_counter() - started
        chunks = [ChatCompletionChunk.model_validate_json(data, strict=True) for data in sse_data(response.text)]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == SLOW_TEXT
        assert elapsed >= 0.14 + 0.5 * (11 / slow["stream_speed"])  # latency plus most of the recorded pace
        other = await client.chat.completions.create(model="gpt-4o", messages=user("something else"))
        assert other.choices[0].message.content == "the proxy's own fallback"


async def stream_until(pair: Pair, prompt: str, last: Callable[[str], bool]) -> None:
    """Stream a chat completion through the proxy and hang up after the line `last` accepts."""
    async with (
        httpx.AsyncClient() as http,
        http.stream(
            "POST",
            pair.proxy.openai_url + "/chat/completions",
            json={"model": "gpt-4o", "messages": user(prompt), "stream": True},
            headers={"authorization": f"Bearer {SECRET}"},
        ) as response,
    ):
        async for line in response.aiter_lines():
            if last(line):
                return


async def test_a_client_that_hangs_up_mid_stream_still_records_the_whole_answer(tmp_path: Path) -> None:
    async with recording_pair(tmp_path) as pair:
        events = pair.proxy.store.subscribe()
        await stream_until(pair, "slow", lambda line: '"content":"one' in line)  # after the first words
        assert recorded(pair.proxy.store) == []
        while not recorded(pair.proxy.store):
            assert await events.wait(10.0), "the recording never came"
            events.drain()
        assert recorded(pair.proxy.store)[0]["reply"] == SLOW_TEXT
        assert pair.proxy.store.journal()[0].status == 499


async def test_the_sdk_closing_right_after_done_still_records(tmp_path: Path) -> None:
    async with recording_pair(tmp_path) as pair:
        await stream_until(pair, "hello", lambda line: line == "data: [DONE]")
        assert [r["reply"] for r in recorded(pair.proxy.store)] == ["Hello from upstream"]


def sse_chunk(content: str | None, finish: str | None = None) -> bytes:
    """One `chat.completion.chunk` as an SSE event."""
    delta = {"role": "assistant", "content": content} if content is not None else {}
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    body = {"id": "chatcmpl-5", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [choice]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


FIVE_CHUNKS = [sse_chunk("one "), sse_chunk("two "), sse_chunk("three"), sse_chunk(None, "stop"), b"data: [DONE]\n\n"]


class ChunkedUpstream:
    """A stand-in real API (plain ASGI on our HTTP protocol: each send is one write) that streams
    FIVE_CHUNKS, chunk-framed or with a content-length; `paced`: each once the client has seen the
    one before (`seen[i]` set), else all at once."""

    def __init__(self, *, framing: str, paced: bool) -> None:
        self.framing = framing
        self.paced = paced
        self.seen: list[asyncio.Event] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        self.seen = [asyncio.Event() for _ in FIVE_CHUNKS]
        headers = [(b"content-type", b"text/event-stream")]
        if self.framing == "length":
            headers.append((b"content-length", str(sum(map(len, FIVE_CHUNKS))).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk, seen in zip(FIVE_CHUNKS, self.seen, strict=True):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if self.paced:
                await asyncio.wait_for(seen.wait(), 10.0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@asynccontextmanager
async def proxy_of(tmp_path: Path, upstream: ChunkedUpstream) -> AsyncIterator[Live]:
    """The stand-in upstream on a free loopback port, and a recording proxy in front of it."""
    sock = bind_socket(HOST, 0)
    server = EmbeddedServer(uvicorn_config(upstream, timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await server.ready.wait()
    path = tmp_path / "responses.yml"
    path.write_text(PROXY_RULES)
    store = store_for(path, upstreams=(("openai", f"http://{HOST}:{sock.getsockname()[1]}"),))
    store.set_knobs("cli", {"record": True})
    try:
        async with serving(store) as proxy:
            yield proxy
    finally:
        server.request_exit()
        await task
        sock.close()


def stream_request(http: httpx.AsyncClient, proxy: Live, prompt: str) -> Any:
    body = {"model": "gpt-4o", "messages": user(prompt), "stream": True}
    return http.stream("POST", proxy.openai_url + "/chat/completions", json=body)


@pytest.mark.parametrize("framing", ["chunked", "length"])
async def test_a_passed_through_stream_goes_on_chunk_by_chunk_as_it_arrives(tmp_path: Path, framing: str) -> None:
    upstream = ChunkedUpstream(framing=framing, paced=True)
    async with proxy_of(tmp_path, upstream) as proxy:
        async with httpx.AsyncClient() as http, stream_request(http, proxy, "count") as raw:
            pieces = raw.aiter_raw()
            for i, expected in enumerate(FIVE_CHUNKS):
                received = b""
                while len(received) < len(expected):  # a held-back chunk never comes: the upstream waits
                    received += await asyncio.wait_for(anext(pieces), 10.0)
                assert received == expected, i
                upstream.seen[i].set()
        client = AsyncOpenAI(base_url=proxy.openai_url, api_key="x", max_retries=0)
        stream = await client.chat.completions.create(model="gpt-4o", messages=user("count again"), stream=True)
        words = []
        async for chunk in stream:  # the SDK sees each chunk before the upstream sends the next
            words.append(chunk.choices[0].delta.content or "")
            upstream.seen[len(words) - 1].set()
        assert words == ["one ", "two ", "three", ""]
        assert [r["reply"] for r in recorded(proxy.store)] == ["one two three"] * 2


@pytest.mark.parametrize("framing", ["chunked", "length"])
async def test_a_passed_through_stream_keeps_the_upstreams_chunks_sent_at_once(tmp_path: Path, framing: str) -> None:
    # Five writes at once: without chunked framing the proxy reads them together, and cuts them into
    # their events again.
    async with proxy_of(tmp_path, ChunkedUpstream(framing=framing, paced=False)) as proxy:
        async with httpx.AsyncClient() as http, stream_request(http, proxy, "count") as raw:
            pieces = [piece async for piece in raw.aiter_raw()]
        assert pieces == FIVE_CHUNKS
        data = [p[len(b"data: ") : -2] for p in pieces[:-1]]
        assert [ChatCompletionChunk.model_validate_json(d, strict=True).choices[0].delta.content for d in data] == [
            "one ",
            "two ",
            "three",
            None,
        ]
        assert proxy.store.journal()[0].chunks == ["one ", "two ", "three", "", ""]


@pytest.mark.parametrize("api", ["responses", "completions"])
async def test_the_other_openai_endpoints_record_through_the_openai_upstream(tmp_path: Path, api: str) -> None:
    async with recording_pair(tmp_path) as pair:
        client = pair.openai()
        if api == "responses":
            stream = await client.responses.create(model="gpt-4o", input="hello", stream=True)
            text = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])
        else:
            done = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hello")
            text = done.choices[0].text
        assert text == "Hello from upstream"
        assert [r["reply"] for r in recorded(pair.proxy.store)] == ["Hello from upstream"]
    async with replaying(pair.path) as live:
        client = AsyncOpenAI(base_url=live.openai_url, api_key="x", max_retries=0)
        if api == "responses":
            again = (await client.responses.create(model="gpt-4o", input="hello")).output_text
        else:
            again = (await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hello")).choices[0].text
        assert again == "Hello from upstream"


async def test_a_repeated_prompt_goes_upstream_again_and_extends_the_replies_sequence(tmp_path: Path) -> None:
    async with recording_pair(tmp_path) as pair:
        client = pair.openai()
        answers = [await answer(client, "say it again") for _ in range(3)]
        assert answers == ["first answer", "second answer", "second answer"]
        assert pair.upstream_hits() == 3
        rules = recorded(pair.proxy.store)
        assert len(rules) == 1 and rules[0]["replies"] == ["first answer", "second answer"]
        assert "".join(pair.added_lines()).count("# recorded ") == 1
    async with replaying(pair.path) as live:
        client = AsyncOpenAI(base_url=live.openai_url, api_key="x", max_retries=0)
        replayed = [await answer(client, "say it again") for _ in range(2)]
        assert replayed == ["first answer", "second answer"]


async def test_a_request_only_the_upstream_understands_is_passed_through_unrecorded(tmp_path: Path) -> None:
    async with recording_pair(tmp_path) as pair:
        client = pair.openai()
        direct = AsyncOpenAI(base_url=pair.upstream.openai_url, api_key=SECRET, max_retries=0)
        first = await direct.responses.create(model="gpt-4o", input="hello", store=True)
        assert recorded(pair.proxy.store) == []
        # the proxy never saw that response id (asked of the upstream directly); the upstream knows it
        stream = await client.responses.create(
            model="gpt-4o", input="say it again", previous_response_id=first.id, stream=True
        )
        text = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])
        assert text == "first answer"
        assert pair.proxy.store.journal()[-1].rule == "upstream"
        assert recorded(pair.proxy.store) == []
        await direct.close()


# -- Anthropic -------------------------------------------------------------------------------------


async def test_anthropic_tool_turns_are_recorded_in_replay_order(tmp_path: Path) -> None:
    async def conversation(client: anthropic.AsyncAnthropic, *, stream: bool) -> tuple[Any, str]:
        first: AnthropicMessage
        if stream:
            async with client.messages.stream(
                model=CLAUDE, max_tokens=100, tools=TOOLS, messages=user("Weather in Paris?")
            ) as events:
                first = await events.get_final_message()
        else:
            first = await client.messages.create(
                model=CLAUDE, max_tokens=100, tools=TOOLS, messages=user("Weather in Paris?")
            )
        call = next(b for b in first.content if b.type == "tool_use")
        follow = [
            *user("Weather in Paris?"),
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "22 C"}]},
        ]
        second = await client.messages.create(model=CLAUDE, max_tokens=100, tools=TOOLS, messages=follow)
        return (call.name, call.input), "".join(b.text for b in second.content if b.type == "text")

    async with recording_pair(tmp_path) as pair:
        assert await conversation(pair.anthropic(), stream=True) == WEATHER
        pair.added_lines()
        rules = recorded(pair.proxy.store)
        assert [r["match"] for r in rules] == [
            {
                "exact": "Weather in Paris?",
                "provider": "anthropic",
                "model": CLAUDE,
                "tool_result": "get_weather",
                "turn": 1,
            },
            {"exact": "Weather in Paris?", "provider": "anthropic", "model": CLAUDE, "turn": 1},
        ]
        assert rules[1]["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
        assert rules[0]["reply"] == "It is sunny in Paris."
    async with replaying(pair.path) as live:
        client = anthropic.AsyncAnthropic(base_url=live.anthropic_url, api_key="x", max_retries=0)
        for stream in (False, True):
            assert await conversation(client, stream=stream) == WEATHER


async def test_anthropic_plain_and_streamed_replies_are_recorded_and_replayed(tmp_path: Path) -> None:
    async with recording_pair(tmp_path) as pair:
        client = pair.anthropic()
        message = await client.messages.create(model=CLAUDE, max_tokens=50, messages=user("hello"))
        assert message.content[0].type == "text" and message.content[0].text == "Hello from upstream"
        async with client.messages.stream(model=CLAUDE, max_tokens=50, messages=user("slow")) as events:
            assert await events.get_final_text() == SLOW_TEXT
        async with httpx.AsyncClient() as http:  # the pass-through, strictly in the SDK's own types
            raw = await http.post(
                pair.proxy.anthropic_url + "/v1/messages",
                json={"model": CLAUDE, "max_tokens": 50, "messages": user("hello"), "stream": True},
                headers={"x-api-key": SECRET, "anthropic-version": "2023-06-01"},
            )
        kinds = [EVENTS.validate_json(data, strict=True).type for data in sse_data(raw.text) if '"ping"' not in data]
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        pair.added_lines()
        rules = recorded(pair.proxy.store)
        assert [r["reply"] for r in rules] == ["Hello from upstream", SLOW_TEXT]
        assert rules[1]["latency_ms"] >= 140 and 10 <= rules[1]["stream_speed"] <= 80
    async with replaying(pair.path) as live:
        client = anthropic.AsyncAnthropic(base_url=live.anthropic_url, api_key="x", max_retries=0)
        async with client.messages.stream(model=CLAUDE, max_tokens=50, messages=user("hello")) as events:
            assert await events.get_final_text() == "Hello from upstream"
        replayed = await client.messages.create(model=CLAUDE, max_tokens=50, messages=user("slow"))
        assert replayed.content[0].type == "text" and replayed.content[0].text == SLOW_TEXT


# -- secrets, failures, the knob ---------------------------------------------------------------------


async def test_the_callers_secret_lands_nowhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with recording_pair(tmp_path) as pair:
        await openai_stream_text(pair.openai(), "slow")
        await pair.anthropic().messages.create(model=CLAUDE, max_tokens=50, messages=user("hello"))
        async with httpx.AsyncClient(base_url=pair.proxy.root) as http:
            journal = (await http.get("/_mock/journal")).text + (await http.get("/_mock/journal?body=true")).text
        assert '"upstream"' in journal
        assert SECRET not in journal
        assert recorded(pair.proxy.store)
    for file in tmp_path.rglob("*"):
        if file.is_file() and file.name != "upstream.yml":
            assert SECRET.encode() not in file.read_bytes(), file
    assert SECRET not in caplog.text


async def test_the_upstream_key_variable_replaces_the_callers_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with recording_pair(tmp_path, record=False) as pair:
        with pytest.raises(APIStatusError) as refused:
            await pair.openai("sk-wrong").chat.completions.create(model="gpt-4o", messages=user("hello"))
        assert refused.value.status_code == 401  # the caller's own key went upstream
        monkeypatch.setenv("MOCKLLM_UPSTREAM_KEY_OPENAI", SECRET)
        monkeypatch.setenv("MOCKLLM_UPSTREAM_KEY_ANTHROPIC", SECRET)
        done = await pair.openai("sk-wrong").chat.completions.create(model="gpt-4o", messages=user("hello"))
        assert done.choices[0].message.content == "Hello from upstream"
        message = await pair.anthropic("sk-wrong").messages.create(model=CLAUDE, max_tokens=50, messages=user("hello"))
        assert message.content[0].type == "text" and message.content[0].text == "Hello from upstream"
        assert pair.path.read_text() == PROXY_RULES  # not recording: a pass-through proxy


async def test_an_upstream_429_passes_through_with_its_headers_and_is_not_recorded(tmp_path: Path) -> None:
    async with recording_pair(tmp_path) as pair, httpx.AsyncClient() as http:
        response = await http.post(
            pair.proxy.openai_url + "/chat/completions",
            json={"model": "gpt-4o", "messages": user("limit me")},
            headers={"authorization": f"Bearer {SECRET}"},
        )
        assert response.status_code == 429
        assert response.headers["retry-after"] and response.headers["x-should-retry"] == "true"
        assert response.json()["error"]["message"] == "Slow down, you are rate limited"
        upstream_entry = pair.upstream.store.journal()[-1]
        assert response.headers["x-request-id"] == upstream_entry.request_id  # the upstream's own headers
        assert pair.path.read_text() == PROXY_RULES


@pytest.mark.parametrize("mode", ["mid_stream", "disconnect"])
async def test_an_upstream_stream_that_fails_midway_is_passed_on_and_not_recorded(tmp_path: Path, mode: str) -> None:
    async with recording_pair(tmp_path) as pair:
        pair.upstream.store.set_knobs("live", {"error_rate": 1.0, "error_mode": mode, "error_status": [500]})
        async with httpx.AsyncClient() as http:
            raw = await http.post(
                pair.proxy.openai_url + "/chat/completions",
                json={"model": "gpt-4o", "messages": user("slow"), "stream": True},
                headers={"authorization": f"Bearer {SECRET}"},
            )
        assert raw.status_code == 200 and '"error"' in raw.text and "[DONE]" not in raw.text
        if mode == "disconnect":
            assert ") failed: " in raw.text and pair.proxy.store.journal()[-1].status == 502
        assert pair.path.read_text() == PROXY_RULES


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_upstream_is_a_502_in_the_providers_shape(tmp_path: Path) -> None:
    dead = f"http://{HOST}:{closed_port()}"
    path = tmp_path / "responses.yml"
    path.write_text(PROXY_RULES)
    store = store_for(path, upstreams=(("openai", dead), ("anthropic", dead)))
    async with serving(store) as proxy:
        with pytest.raises(APIStatusError) as failed:
            await AsyncOpenAI(base_url=proxy.openai_url, api_key="k", max_retries=0).chat.completions.create(
                model="gpt-4o", messages=user("hello")
            )
        assert failed.value.status_code == 502
        assert f"{HOST}:{dead.rsplit(':', 1)[1]} (openai) could not be reached" in failed.value.message
        assert failed.value.type == "server_error"
        client = anthropic.AsyncAnthropic(base_url=proxy.anthropic_url, api_key="k", max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as refused:
            await client.messages.create(model=CLAUDE, max_tokens=10, messages=user("hello"))
        assert refused.value.status_code == 502 and refused.value.body["type"] == "error"  # type: ignore[index]
        local = await AsyncOpenAI(base_url=proxy.openai_url, api_key="k").chat.completions.create(
            model="gpt-4o", messages=user("local")
        )
        assert local.choices[0].message.content == "answered locally"


async def test_an_upstream_that_takes_too_long_is_a_504(tmp_path: Path) -> None:
    async with recording_pair(tmp_path, upstream_timeout_s=0.3) as pair:
        with pytest.raises(APIStatusError) as failed:
            await pair.openai().chat.completions.create(model="gpt-4o", messages=user("hang"))
        assert failed.value.status_code == 504 and "did not answer within 0.3 s" in failed.value.message


async def test_record_is_a_live_knob_and_fallbacks_answer_for_a_provider_without_upstream(tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text(PROXY_RULES)
    store = store_for(path, upstreams=(("anthropic", f"http://{HOST}:{closed_port()}"),))
    async with serving(store) as proxy, httpx.AsyncClient(base_url=proxy.root) as http:
        assert (await http.get("/_mock/settings")).json()["effective"]["record"] is False
        patched = await http.patch("/_mock/settings", json={"record": True})
        assert patched.json()["effective"]["record"] is True and store.knobs.record
        bad = await http.patch("/_mock/settings", json={"record": "yes"})
        assert bad.status_code == 400
        done = await AsyncOpenAI(base_url=proxy.openai_url, api_key="k").chat.completions.create(
            model="gpt-4o", messages=user("hello")
        )
        assert done.choices[0].message.content == "the proxy's own fallback"  # no upstream for openai
        assert path.read_text() == PROXY_RULES


# -- the pure parts ----------------------------------------------------------------------------------


def test_pace_is_the_time_to_the_first_token_and_the_rate_after_it() -> None:
    assert measure_pace(0.0, []) == Timing()
    assert measure_pace(1.0, [(1.25, 3)]) == Timing(250.0)
    assert measure_pace(0.0, [(0.1, 2), (0.6, 10), (1.1, 10)]) == Timing(100.0, 20.0)
    assert measure_pace(0.0, [(0.2, 2), (0.2, 5)]) == Timing(200.0)  # all at once: no pace


def test_upstream_names_urls_and_headers() -> None:
    names = [p.name for p in build_providers()]
    pairs = parse_upstreams(["openai=https://api.example.com/v1/, anthropic=http://127.0.0.1:9"], names)
    assert pairs == (("openai", "https://api.example.com/v1"), ("anthropic", "http://127.0.0.1:9"))
    with pytest.raises(UpstreamError, match="unknown provider 'nope'"):
        parse_upstreams(["nope=http://x"], names)
    with pytest.raises(UpstreamError, match="PROVIDER=URL"):
        parse_upstreams(["openai"], names)
    openai = upstream_for(pairs, "openai-responses")
    assert openai == Upstream("openai", "https://api.example.com/v1")
    assert openai.target("/v1/chat/completions", "a=1") == "https://api.example.com/v1/chat/completions?a=1"
    assert openai.target("/chat/completions", "") == "https://api.example.com/v1/chat/completions"
    assert upstream_for(pairs, "gemini") is None
    assert Upstream("x", "https://user:pw@host.example:8443/v1").host == "host.example:8443"
    provider = next(p for p in build_providers() if p.name == "anthropic")
    raw = [
        (b"x-api-key", b"caller"),
        (b"cookie", b"c=1"),
        (b"connection", b"keep-alive"),
        (b"host", b"me"),
        (b"accept-encoding", b"gzip"),
        (b"content-length", b"12"),
        (b"anthropic-version", b"2023-06-01"),
        (b"x-mock-error", b"500"),
    ]
    request = ("POST", "https://api.example.com/v1/messages", b"{}")
    assert forwarded_headers(raw, provider, None, *request) == [
        (b"x-api-key", b"caller"),
        (b"anthropic-version", b"2023-06-01"),
        (b"accept-encoding", b"identity"),
    ]
    assert forwarded_headers(raw, provider, "mine", *request) == [
        (b"anthropic-version", b"2023-06-01"),
        (b"x-api-key", b"mine"),
        (b"accept-encoding", b"identity"),
    ]


# -- the panel -------------------------------------------------------------------------------------


async def test_the_panel_toggles_recording_with_R_and_shows_the_upstream(tmp_path: Path) -> None:
    from textual.widgets import Static

    from mockllm_tui.tui.app import MockPanel
    from mockllm_tui.tui.widgets.request_log import RequestLog
    from mockllm_tui.tui.widgets.rule_table import RuleTable
    from tests.support import rendered

    async with recording_pair(tmp_path, record=False) as pair:
        handle = ServerHandle(create_app(pair.proxy.store), HOST, 0, grace_s=1)
        app = MockPanel(pair.proxy.store, handle, watch_file=False, keymap_file=tmp_path / "keymap.yml")
        async with app.run_test(size=(160, 45)) as pilot:
            status = app.query_one("#status-knobs", Static)
            host = f"{HOST}:{pair.upstream.handle.port}"
            assert f"upstream {host}" in rendered(status)
            await pilot.press("R")
            assert pair.proxy.store.knobs.record
            await pilot.pause()
            assert f"recording {host}" in rendered(status)
            table = app.query_one(RuleTable)
            rows = table.row_count
            client = AsyncOpenAI(base_url=handle.url, api_key=SECRET, max_retries=0)
            assert await answer(client, "hello") == "Hello from upstream"
            deadline = time.monotonic() + 5
            while table.row_count == rows or not app.query_one(RequestLog).rows_by_id:
                assert time.monotonic() < deadline, "the recorded rule never showed"
                await pilot.pause(0.02)
            assert [e.rule for e in app.query_one(RequestLog).rows_by_id.values()] == ["upstream"]
            selected = table.selected_view()
            assert selected is not None and selected.spec.match.exact == "hello"  # highlighted, ready to edit
            await pilot.press("R")
            assert not pair.proxy.store.knobs.record
        await handle.app.upstream.aclose()


# -- the second wave's wire formats ----------------------------------------------------------------


async def test_ollama_and_gemini_answers_are_recorded_and_replayed(tmp_path: Path) -> None:
    async with recording_pair(tmp_path, upstreams=()) as pair:
        root = pair.upstream.root
        pair.proxy.store.configure(upstreams=(("ollama", root), ("gemini", root)))
        llama = ollama.AsyncClient(host=pair.proxy.root, headers={"Authorization": f"Bearer {SECRET}"})
        chat = await llama.chat(model="llama3.2", messages=user("hello"), stream=False)
        assert chat.message.content == "Hello from upstream"
        streamed = "".join(
            [
                part.message.content or ""
                async for part in await llama.chat(model="llama3.2", messages=user("slow"), stream=True)
            ]
        )
        assert streamed == SLOW_TEXT
        gemini = genai.Client(api_key=SECRET, http_options={"base_url": pair.proxy.root})
        answer = await gemini.aio.models.generate_content(model="gemini-2.5-flash", contents="Weather in Paris?")
        assert answer.function_calls and answer.function_calls[0].name == "get_weather"
        assert pair.upstream_hits() == 3
        pair.added_lines()
        rules = recorded(pair.proxy.store)
        assert [(r["match"]["provider"], r.get("reply")) for r in rules] == [
            ("ollama", "Hello from upstream"),
            ("ollama", SLOW_TEXT),
            ("gemini", None),
        ]
        assert rules[2]["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    async with replaying(pair.path) as live:
        again = await ollama.AsyncClient(host=live.root).chat(model="llama3.2", messages=user("slow"), stream=False)
        assert again.message.content == SLOW_TEXT
        replayed = await genai.Client(api_key="x", http_options={"base_url": live.root}).aio.models.generate_content(
            model="gemini-2.5-flash", contents="Weather in Paris?"
        )
        assert replayed.function_calls and replayed.function_calls[0].args == {"city": "Paris"}


def invoke_texts(root: str) -> list[str]:
    """InvokeModel (whole, then streamed) with Anthropic bodies through boto3: what each answer said."""
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=root,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=BotoConfig(retries={"total_max_attempts": 1}, read_timeout=10),
    )

    def body(prompt: str) -> bytes:
        return orjson.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "messages": user(prompt)})

    whole = orjson.loads(client.invoke_model(modelId=BEDROCK_MODEL, body=body("hello"))["body"].read())
    streamed = client.invoke_model_with_response_stream(modelId=BEDROCK_MODEL, body=body("slow"))["body"]
    events = [orjson.loads(e["chunk"]["bytes"]) for e in streamed]
    deltas = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
    return [whole["content"][0]["text"], "".join(deltas)]


async def test_bedrock_invoke_model_answers_are_recorded_and_replayed(tmp_path: Path) -> None:
    async with recording_pair(tmp_path, upstreams=()) as pair:
        pair.proxy.store.configure(upstreams=(("bedrock", pair.upstream.root),))
        assert await asyncio.to_thread(invoke_texts, pair.proxy.root) == ["Hello from upstream", SLOW_TEXT]
        rules = recorded(pair.proxy.store)
        assert [(r["match"]["provider"], r["match"]["exact"], r["reply"]) for r in rules] == [
            ("bedrock", "hello", "Hello from upstream"),
            ("bedrock", "slow", SLOW_TEXT),
        ]
        assert rules[1]["stream_speed"] > 0
    async with replaying(pair.path) as live:
        assert await asyncio.to_thread(invoke_texts, live.root) == ["Hello from upstream", SLOW_TEXT]
        assert all(e.rule is not None and e.rule.startswith("#") for e in live.store.journal())


# -- a recorded agent loop replays turn by turn ----------------------------------------------------------

AGENT_UPSTREAM = """\
rules:
  - {match: {tool_result: get_hotels}, reply: "Hotel Lutetia has a room."}
  - {match: {tool_result: get_weather}, tool_calls: [{name: get_hotels, arguments: {city: Paris}}]}
  - {match: {contains: trip, turn: 1}, tool_calls: [{name: get_weather, arguments: {city: Paris}}]}
  - {match: {contains: trip, turn: 2}, reply: "Enjoy the trip."}
"""
AGENT_TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("get_weather", "get_hotels")
]


async def openai_loop(root: str) -> list[str]:
    """A three-request tool loop, then a second user turn with the same words: what each answer was."""
    client = AsyncOpenAI(base_url=root + "/v1", api_key="k", max_retries=0)
    messages: list[Any] = user("Plan a trip")
    said: list[str] = []
    for _ in range(5):
        out = await client.chat.completions.create(model="gpt-4o", messages=messages, tools=AGENT_TOOLS)  # type: ignore[arg-type]
        message = out.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        calls = message.tool_calls or []
        said.append(", ".join(c.function.name for c in calls) or message.content or "")  # type: ignore[union-attr]
        for c in calls:
            messages.append({"role": "tool", "tool_call_id": c.id, "content": "ok"})
        if not calls:
            break
    messages += user("Plan a trip")
    out = await client.chat.completions.create(model="gpt-4o", messages=messages)
    await client.close()
    return [*said, out.choices[0].message.content or ""]


async def anthropic_loop(root: str) -> list[str]:
    """The same loop through the anthropic SDK."""
    client = anthropic.AsyncAnthropic(base_url=root, api_key=SECRET, max_retries=0)
    tools: Any = [{"name": n, "input_schema": {"type": "object"}} for n in ("get_weather", "get_hotels")]
    messages: list[Any] = user("Plan a trip")
    said: list[str] = []
    for _ in range(5):
        out = await client.messages.create(model=CLAUDE, max_tokens=100, messages=messages, tools=tools)
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in out.content]})
        uses = [b for b in out.content if b.type == "tool_use"]
        said.append(", ".join(b.name for b in uses) or "".join(b.text for b in out.content if b.type == "text"))
        if not uses:
            break
        results = [{"type": "tool_result", "tool_use_id": b.id, "content": "ok"} for b in uses]
        messages.append({"role": "user", "content": results})
    messages += user("Plan a trip")
    out = await client.messages.create(model=CLAUDE, max_tokens=100, messages=messages)
    await client.close()
    return [*said, "".join(b.text for b in out.content if b.type == "text")]


async def gemini_loop(root: str) -> list[str]:
    """The same loop through google-genai."""
    from google.genai import types as gtypes

    client = genai.Client(api_key=SECRET, http_options={"base_url": root})
    names = ("get_weather", "get_hotels")
    declarations = [gtypes.FunctionDeclaration(name=n, parameters_json_schema={"type": "object"}) for n in names]
    config = gtypes.GenerateContentConfig(tools=[gtypes.Tool(function_declarations=declarations)])
    contents: list[Any] = [gtypes.Content(role="user", parts=[gtypes.Part(text="Plan a trip")])]
    said: list[str] = []
    for _ in range(5):
        out = await client.aio.models.generate_content(model="gemini-2.5-flash", contents=contents, config=config)
        contents.append(out.candidates[0].content)  # type: ignore[index]
        calls = out.function_calls or []
        said.append(", ".join(c.name or "" for c in calls) or out.text or "")
        if not calls:
            break
        parts = [gtypes.Part.from_function_response(name=c.name or "", response={"result": "ok"}) for c in calls]
        contents.append(gtypes.Content(role="user", parts=parts))
    contents.append(gtypes.Content(role="user", parts=[gtypes.Part(text="Plan a trip")]))
    out = await client.aio.models.generate_content(model="gemini-2.5-flash", contents=contents, config=config)
    return [*said, out.text or ""]


async def respond(client: AsyncOpenAI, stream: bool, **params: Any) -> Response:
    """A Responses answer, whole or (`stream`) as the final event of its stream carries it."""
    if not stream:
        return await client.responses.create(**params)
    final = [
        e.response async for e in await client.responses.create(stream=True, **params) if e.type == "response.completed"
    ]
    assert len(final) == 1
    return final[0]


async def responses_loop(root: str, *, chained: bool = False) -> list[str]:
    """The same loop through the Responses API: each answer's output items passed back in `input`, or
    (`chained`) streamed and named by `previous_response_id` with only the new items sent."""
    client = AsyncOpenAI(base_url=root + "/v1", api_key="k", max_retries=0)
    tools: Any = [
        {"type": "function", "name": n, "parameters": {"type": "object"}} for n in ("get_weather", "get_hotels")
    ]
    items: list[Any] = user("Plan a trip")
    previous: dict[str, Any] = {}
    said: list[str] = []
    for _ in range(5):
        out = await respond(client, chained, model="gpt-4o", input=items, tools=tools, **previous)
        calls = [i for i in out.output if i.type == "function_call"]
        said.append(", ".join(c.name for c in calls) or out.output_text)
        results = [{"type": "function_call_output", "call_id": c.call_id, "output": "ok"} for c in calls]
        if chained:
            items, previous = results, {"previous_response_id": out.id}
        else:
            items += [*(i.model_dump(exclude_none=True) for i in out.output), *results]
        if not calls:
            break
    items += user("Plan a trip")
    out = await respond(client, chained, model="gpt-4o", input=items, tools=tools, **previous)
    await client.close()
    return [*said, out.output_text]


def converse(client: Any, stream: bool, **params: Any) -> dict[str, Any]:
    """A Converse answer's message, whole or (`stream`) put together from its events."""
    if not stream:
        return dict(client.converse(**params)["output"]["message"])
    blocks: dict[int, dict[str, Any]] = {}
    for event in client.converse_stream(**params)["stream"]:
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            blocks[start["contentBlockIndex"]] = {"toolUse": {**start["start"]["toolUse"], "input": ""}}
        elif "contentBlockDelta" in event:
            at, delta = event["contentBlockDelta"]["contentBlockIndex"], event["contentBlockDelta"]["delta"]
            if "text" in delta:
                blocks.setdefault(at, {"text": ""})["text"] += delta["text"]
            else:
                blocks[at]["toolUse"]["input"] += delta["toolUse"]["input"]
    for block in blocks.values():
        if "toolUse" in block:
            block["toolUse"]["input"] = orjson.loads(block["toolUse"]["input"] or "{}")
    return {"role": "assistant", "content": [blocks[i] for i in sorted(blocks)]}


def bedrock_turns(root: str, stream: bool) -> list[str]:
    """The same loop through boto3's bedrock-runtime Converse (or ConverseStream)."""
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=root,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=BotoConfig(retries={"total_max_attempts": 1}, read_timeout=10),
    )
    specs = [
        {"toolSpec": {"name": n, "inputSchema": {"json": {"type": "object"}}}} for n in ("get_weather", "get_hotels")
    ]
    params: dict[str, Any] = {"modelId": BEDROCK_MODEL, "toolConfig": {"tools": specs}}
    messages: list[Any] = [{"role": "user", "content": [{"text": "Plan a trip"}]}]
    said: list[str] = []
    for _ in range(5):
        message = converse(client, stream, messages=messages, **params)
        messages.append(message)
        uses = [b["toolUse"] for b in message["content"] if "toolUse" in b]
        said.append(", ".join(u["name"] for u in uses) or "".join(b.get("text", "") for b in message["content"]))
        if not uses:
            break
        results = [{"toolResult": {"toolUseId": u["toolUseId"], "content": [{"text": "ok"}]}} for u in uses]
        messages.append({"role": "user", "content": results})
    messages.append({"role": "user", "content": [{"text": "Plan a trip"}]})
    final = converse(client, stream, messages=messages, **params)
    return [*said, "".join(b.get("text", "") for b in final["content"])]


async def bedrock_loop(root: str, *, stream: bool = False) -> list[str]:
    """The boto3 loop, in a thread (boto3 blocks; the servers run on this loop)."""
    return await asyncio.to_thread(bedrock_turns, root, stream)


#: A loop's name -> the upstream it records from, and the loop.
LOOPS: dict[str, tuple[str, Callable[[str], Awaitable[list[str]]]]] = {
    "openai": ("openai", openai_loop),
    "responses": ("openai", responses_loop),
    "responses-chained-streamed": ("openai", functools.partial(responses_loop, chained=True)),
    "anthropic": ("anthropic", anthropic_loop),
    "gemini": ("gemini", gemini_loop),
    "bedrock-converse": ("bedrock", bedrock_loop),
    "bedrock-converse-stream": ("bedrock", functools.partial(bedrock_loop, stream=True)),
}


@pytest.mark.parametrize("family", list(LOOPS))
async def test_a_recorded_three_turn_agent_loop_replays_to_its_end(tmp_path: Path, family: str) -> None:
    up_path = tmp_path / "upstream.yml"
    up_path.write_text(AGENT_UPSTREAM)
    path = tmp_path / "responses.yml"
    path.write_text("rules: []\n")
    provider, loop = LOOPS[family]
    expected = ["get_weather", "get_hotels", "Hotel Lutetia has a room.", "Enjoy the trip."]
    async with serving(store_for(up_path)) as upstream:
        store = store_for(path, upstreams=((provider, upstream.root),))
        store.set_knobs("cli", {"record": True})
        async with serving(store) as proxy:
            assert await loop(proxy.root) == expected
        matches = [r["match"] for r in recorded(store)]
        assert len(matches) == 4 and all("turn" in m for m in matches)
        assert sorted(m["turn"] for m in matches) == [1, 1, 1, 2]
        assert sorted(str(m.get("tool_result")) for m in matches) == ["None", "None", "get_hotels", "get_weather"]
    async with replaying(path) as live:
        assert await loop(live.root) == expected
        assert all(e.rule is not None and e.rule.startswith("#") for e in live.store.journal())
