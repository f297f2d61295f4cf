"""Ollama's native API against the real server, with the real `ollama` SDK and strict SDK types."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jsonschema
import ollama
import orjson
import pytest
from ollama import (
    ChatResponse,
    EmbedResponse,
    GenerateResponse,
    ListResponse,
    ProcessResponse,
    ProgressResponse,
    ShowResponse,
)

from mockllm_tui.core.models import ModelRegistry
from tests.conftest import Live

MODEL = "llama3.2"
RULES = """\
rules:
  - name: weather-result
    match: {tool_result: get_weather}
    reply: "It is sunny in {{model}} land."
  - name: weather
    match: {contains: "weather", provider: ollama}
    tool_calls: [{name: get_weather, arguments: {city: "Paris", days: 2}}]
  - name: not-ollama
    match: {contains: "who", provider: openai}
    reply: "openai only"
  - name: teapot
    match: {exact: "brew"}
    error: {status: 418, message: "I am a teapot"}
  - name: long
    match: {exact: "long"}
    reply: "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
responses:
  "default": "Hello from the mock."
"""
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def ndjson(raw: bytes) -> list[dict[str, Any]]:
    """The objects of an NDJSON stream: one per line, every line ending in a newline."""
    assert raw.endswith(b"\n")
    return [orjson.loads(line) for line in raw.split(b"\n")[:-1]]


def check_final(obj: dict[str, Any]) -> None:
    """The last object of a reply: done, a reason, and counts and durations as positive ints."""
    assert obj["done"] is True and obj["done_reason"] in ("stop", "length")
    for key in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
                "eval_duration"):
        assert isinstance(obj[key], int) and obj[key] > 0, key
    assert obj["total_duration"] >= obj["load_duration"] + obj["prompt_eval_duration"] + obj["eval_duration"]


async def raw_post(live: Live, path: str, payload: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    async with httpx.AsyncClient(base_url=live.root, timeout=10) as http:
        return await http.post(path, content=content, headers={"content-type": "application/json", **(headers or {})})


def error_text(response: httpx.Response, status: int) -> str:
    """The text of an Ollama error, after checking it is exactly `{"error": "<text>"}`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = orjson.loads(response.content)
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return str(body["error"])


# -- text --------------------------------------------------------------------------------------


def test_sync_chat_and_generate_plain_and_streamed(rules_server: Live) -> None:
    client = ollama.Client(host=rules_server.root)
    reply = client.chat(model=MODEL, messages=user("hi"), stream=False)
    assert isinstance(reply, ChatResponse) and reply.message.content == "Hello from the mock."
    assert reply.done and reply.done_reason == "stop" and reply.model == MODEL
    parts = list(client.chat(model=MODEL, messages=user("hi"), stream=True))
    assert len(parts) > 2 and all(not p.done for p in parts[:-1]) and parts[-1].done
    assert "".join(p.message.content or "" for p in parts) == "Hello from the mock."
    generated = client.generate(model=MODEL, prompt="hi")
    assert isinstance(generated, GenerateResponse) and generated.response == "Hello from the mock."
    assert generated.context and all(isinstance(t, int) for t in generated.context)
    pieces = list(client.generate(model=MODEL, prompt="hi", stream=True))
    assert "".join(p.response or "" for p in pieces) == "Hello from the mock." and pieces[-1].done


async def test_async_chat_streams_and_the_journal_records_it(rules_live: Live) -> None:
    client = ollama.AsyncClient(host=rules_live.root)
    reply = await client.chat(model=MODEL, messages=[{"role": "system", "content": "be brief"}, *user("hi")])
    assert reply.message.content == "Hello from the mock."
    parts = [p async for p in await client.chat(model=MODEL, messages=user("hi"), stream=True)]
    assert "".join(p.message.content or "" for p in parts) == "Hello from the mock."
    entries = [e for e in rules_live.store.journal() if e.path == "/api/chat"]
    assert [e.provider for e in entries] == ["ollama", "ollama"]
    assert entries[0].model == MODEL and entries[0].transcript() == [("system", "be brief"), ("user", "hi")]
    assert entries[0].reply_text == "Hello from the mock." and not entries[0].stream
    assert entries[1].stream and len(entries[1].chunks) > 2 and entries[1].status == 200


async def test_streaming_is_on_unless_the_request_says_false(rules_live: Live) -> None:
    for path, key in (("/api/chat", "messages"), ("/api/generate", "prompt")):
        payload = {"model": MODEL, key: user("hi") if key == "messages" else "hi"}
        streamed = await raw_post(rules_live, path, payload)
        assert streamed.headers["content-type"] == "application/x-ndjson"
        lines = ndjson(streamed.content)
        kind = ChatResponse if key == "messages" else GenerateResponse
        for obj, raw in zip(lines, streamed.content.split(b"\n"), strict=False):
            kind.model_validate_json(raw, strict=True)
            assert obj["model"] == MODEL and obj["created_at"].endswith("Z")
        assert all(obj["done"] is False and "done_reason" not in obj for obj in lines[:-1])
        check_final(lines[-1])
        whole = await raw_post(rules_live, path, {**payload, "stream": False})
        assert whole.headers["content-type"] == "application/json"
        kind.model_validate_json(whole.content, strict=True)
        check_final(orjson.loads(whole.content))


async def test_a_request_without_messages_or_prompt_only_loads_the_model(rules_live: Live) -> None:
    client = ollama.AsyncClient(host=rules_live.root)
    loaded = await client.generate(model=MODEL)
    assert loaded.done and loaded.done_reason == "load" and loaded.response == ""
    chat = await client.chat(model=MODEL, messages=[])
    assert chat.done_reason == "load" and chat.message.content == ""
    for path, payload in (("/api/generate", {"model": MODEL}), ("/api/chat", {"model": MODEL, "messages": []})):
        streamed = ndjson((await raw_post(rules_live, path, payload)).content)
        assert len(streamed) == 1 and streamed[0]["done_reason"] == "load"
        (ChatResponse if path == "/api/chat" else GenerateResponse).model_validate(streamed[0], strict=True)


async def test_options_num_predict_and_stop(rules_live: Live) -> None:
    client = ollama.AsyncClient(host=rules_live.root)
    cut = await client.chat(model=MODEL, messages=user("long"), options={"num_predict": 3})
    assert cut.done_reason == "length" and cut.eval_count == 3
    stopped = await client.generate(model=MODEL, prompt="long", options={"stop": ["four"]})
    assert stopped.response == "one two three " and stopped.done_reason == "stop"


async def test_streams_follow_the_live_speed(rules_live: Live) -> None:
    rules_live.store.set_knobs("live", {"stream_speed": 40})  # 15 words: about 0.4 s
    client = ollama.AsyncClient(host=rules_live.root)
    t0 = time.perf_counter()
    parts = [p async for p in await client.generate(model=MODEL, prompt="long", stream=True)]
    assert time.perf_counter() - t0 >= 0.2
    assert len(parts) > 10


# -- tools and JSON ----------------------------------------------------------------------------


def test_a_rules_tool_call_and_the_tool_result_turn(rules_server: Live) -> None:
    client = ollama.Client(host=rules_server.root)
    first = client.chat(model=MODEL, messages=user("what is the weather?"), tools=[TOOL], stream=False)
    calls = first.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert isinstance(calls[0], ollama.Message.ToolCall)
    assert calls[0].function.name == "get_weather" and calls[0].function.arguments == {"city": "Paris", "days": 2}
    result = {"role": "tool", "content": "22C", "tool_name": "get_weather"}
    history = [*user("what is the weather?"), first.message, result]
    second = client.chat(model=MODEL, messages=history, tools=[TOOL])
    assert second.message.content == f"It is sunny in {MODEL} land." and not second.message.tool_calls
    unnamed = [*history[:-1], {"role": "tool", "content": "22C"}]  # named after the assistant's call
    assert client.chat(model=MODEL, messages=unnamed).message.content == f"It is sunny in {MODEL} land."
    streamed = list(client.chat(model=MODEL, messages=user("weather please"), tools=[TOOL], stream=True))
    with_calls = [p for p in streamed if p.message.tool_calls]
    assert len(with_calls) == 1 and not with_calls[0].done and streamed[-1].done
    assert with_calls[0].message.tool_calls[0].function.arguments["city"] == "Paris"  # type: ignore[index]
    entry = [e for e in rules_server.store.journal() if e.path == "/api/chat"][1]
    assert entry.rule is not None and "weather-result" in entry.rule


async def test_tool_call_bodies_and_lines_are_strictly_the_sdks_types(rules_live: Live) -> None:
    payload = {"model": MODEL, "messages": user("weather?"), "tools": [TOOL]}
    whole = await raw_post(rules_live, "/api/chat", {**payload, "stream": False})
    parsed = ChatResponse.model_validate_json(whole.content, strict=True)
    assert parsed.message.tool_calls and parsed.message.tool_calls[0].function.arguments["days"] == 2
    streamed = await raw_post(rules_live, "/api/chat", payload)
    lines = [ChatResponse.model_validate_json(raw, strict=True) for raw in streamed.content.splitlines()]
    assert [bool(p.message.tool_calls) for p in lines] == [True, False] and lines[-1].done


async def test_rules_provider_matcher_sees_ollama(rules_live: Live) -> None:
    client = ollama.AsyncClient(host=rules_live.root)
    assert (await client.chat(model=MODEL, messages=user("who are you"))).message.content == "Hello from the mock."


async def test_format_schema_and_json(rules_live: Live) -> None:
    client = ollama.AsyncClient(host=rules_live.root)
    shaped = await client.chat(model=MODEL, messages=user("a person"), format=SCHEMA)
    jsonschema.validate(orjson.loads(shaped.message.content or ""), SCHEMA)
    parts = [p async for p in await client.generate(model=MODEL, prompt="a person", format=SCHEMA, stream=True)]
    jsonschema.validate(orjson.loads("".join(p.response or "" for p in parts)), SCHEMA)
    as_json = await client.generate(model=MODEL, prompt="hi", format="json")
    assert isinstance(orjson.loads(as_json.response or ""), dict)


# -- models and embeddings ---------------------------------------------------------------------


async def test_a_body_without_a_json_content_type_is_read_as_json(rules_live: Live) -> None:
    # curl -d sends form encoding; Ollama reads the body as JSON whatever the header says
    body = b'{"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": false}'
    form = {"content-type": "application/x-www-form-urlencoded"}
    async with httpx.AsyncClient(base_url=rules_live.root, timeout=10) as http:
        answer = await http.post("/api/chat", content=body, headers=form)
    assert answer.status_code == 200 and ChatResponse.model_validate_json(answer.content, strict=True).done


async def test_tags_lists_the_registrys_ollama_models_only(rules_live: Live) -> None:
    listed = await ollama.AsyncClient(host=rules_live.root).list()
    names = [m.model for m in listed.models]
    assert {"llama3.2:latest", "qwen3:8b", "gpt-oss:20b", "nomic-embed-text:latest"} <= set(names)
    assert all(":" in name for name in names)
    assert not [n for n in names if n.startswith(("gpt-5", "gpt-4", "claude", "gemini", "anthropic.", "text-"))]
    rules_live.store.set_models(
        ModelRegistry.from_config([{"id": "my-model:7b", "owned_by": "library"}, "not-local"], include_defaults=False)
    )
    async with httpx.AsyncClient(base_url=rules_live.root) as http:
        tags = await http.get("/api/tags")
    only = ListResponse.model_validate_json(tags.content, strict=True)
    assert [m.model for m in only.models] == ["my-model:7b"]


async def test_embed_without_input_embeds_nothing(rules_live: Live) -> None:
    client = ollama.AsyncClient(host=rules_live.root)
    assert list((await client.embed(model="nomic-embed-text")).embeddings) == []
    assert list((await client.embeddings(model="nomic-embed-text")).embedding) == []
    bare = await raw_post(rules_live, "/api/embed", {"model": "nomic-embed-text"})
    assert bare.status_code == 200
    assert EmbedResponse.model_validate_json(bare.content, strict=True).embeddings == []
    one = await client.embed(model="nomic-embed-text", input="hello")
    assert [len(v) for v in one.embeddings] == [768]


async def test_tags_show_version_and_embed(rules_live: Live) -> None:
    client = ollama.AsyncClient(host=rules_live.root)
    listed = await client.list()
    names = [m.model for m in listed.models]
    assert "llama3.2:latest" in names and "nomic-embed-text:latest" in names
    async with httpx.AsyncClient(base_url=rules_live.root) as http:
        providers = {p["name"] for p in (await http.get("/_mock/providers")).json()["data"]}
        tags = await http.get("/api/tags")
        version = await http.get("/api/version")
        show = await http.post("/api/show", json={"model": "nomic-embed-text"})
    assert {"openai", "anthropic", "ollama", "azure"} <= providers
    ListResponse.model_validate_json(tags.content, strict=True)
    assert all(m["name"] == m["model"] and len(m["digest"]) == 64 for m in tags.json()["models"])
    assert version.json()["version"].count(".") == 2
    shown = ShowResponse.model_validate_json(show.content, strict=True)
    assert shown.modelinfo and shown.modelinfo["nomic.embedding_length"] == 768
    assert shown.capabilities == ["embedding"] and shown.details and shown.details.family == "nomic"
    llama = await client.show(MODEL)
    assert llama.capabilities == ["completion", "tools"] and llama.modelinfo
    embedded = await client.embed(model="nomic-embed-text", input=["hello world", "hello there"])
    assert [len(v) for v in embedded.embeddings] == [768, 768]
    payload = {"model": "nomic-embed-text", "input": "hello world", "dimensions": 8}
    again = await raw_post(rules_live, "/api/embed", payload)
    strict = EmbedResponse.model_validate_json(again.content, strict=True)
    assert len(strict.embeddings[0]) == 8 and strict.prompt_eval_count
    progress = [p.status async for p in await client.pull(MODEL, stream=True)]
    assert progress[-1] == "success" and (await client.pull(MODEL)).status == "success"
    assert (await client.ps()).models == []
    async with httpx.AsyncClient(base_url=rules_live.root) as http:
        pulled = await http.post("/api/pull", json={"model": MODEL})
        ps = await http.get("/api/ps")
    assert pulled.headers["content-type"] == "application/x-ndjson"
    for raw in pulled.content.splitlines():
        ProgressResponse.model_validate_json(raw, strict=True)
    ProcessResponse.model_validate_json(ps.content, strict=True)
    legacy = await client.embeddings(model="all-minilm", prompt="hello")
    assert len(legacy.embedding) == 384


# -- errors ------------------------------------------------------------------------------------


async def test_a_rules_error_and_injected_errors_raise_response_error(rules_live: Live) -> None:
    client = ollama.AsyncClient(host=rules_live.root)
    with pytest.raises(ollama.ResponseError) as teapot:
        await client.chat(model=MODEL, messages=user("brew"))
    assert teapot.value.status_code == 418 and teapot.value.error == "I am a teapot"
    for status in (429, 529):
        injected = ollama.AsyncClient(host=rules_live.root, headers={"x-mock-error": str(status)})
        before = rules_live.store.counters.total
        with pytest.raises(ollama.ResponseError) as info:
            await injected.chat(model=MODEL, messages=user("hi"))
        assert info.value.status_code == status and f"Injected error {status}" in info.value.error
        assert rules_live.store.counters.total == before + 1  # the ollama SDK does not retry
    rules_live.store.set_fail_next(1, 503)
    with pytest.raises(ollama.ResponseError) as failed:
        await client.generate(model=MODEL, prompt="hi", stream=False)
    assert failed.value.status_code == 503
    payload = {"model": MODEL, "messages": user("hi")}
    response = await raw_post(rules_live, "/api/chat", payload, {"x-mock-error": "429"})
    assert "Injected error 429" in error_text(response, 429) and response.headers["retry-after"] == "1"


async def test_a_mid_stream_error_is_an_error_line(rules_live: Live) -> None:
    headers = {"x-mock-error": "529", "x-mock-error-mode": "mid_stream"}
    client = ollama.AsyncClient(host=rules_live.root, headers=headers)
    seen: list[str] = []
    with pytest.raises(ollama.ResponseError) as info:
        async for part in await client.chat(model=MODEL, messages=user("long"), stream=True):
            seen.append(part.message.content or "")
    assert seen and "Injected error 529" in info.value.error
    raw = await raw_post(rules_live, "/api/generate", {"model": MODEL, "prompt": "long"}, headers)
    lines = ndjson(raw.content)
    assert raw.status_code == 200 and set(lines[-1]) == {"error"} and not any(o.get("done") for o in lines)


async def test_bad_input_gets_a_400_in_ollamas_shape(rules_live: Live) -> None:
    cases = [
        ("/api/chat", b"{not json"),
        ("/api/chat", {"messages": user("hi")}),
        ("/api/chat", {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}),
        ("/api/chat", {"model": MODEL, "messages": user("hi"), "format": "yaml"}),
        ("/api/chat", {"model": MODEL, "messages": user("hi"), "stream": "yes"}),
        ("/api/chat", {"model": MODEL, "messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]}),
        ("/api/generate", {"model": MODEL, "prompt": 5}),
        ("/api/generate", {"model": MODEL, "options": {"num_predict": "many"}}),
        ("/api/embed", {"model": MODEL, "input": [1, 2]}),
        ("/api/show", {}),
    ]
    for path, payload in cases:
        assert error_text(await raw_post(rules_live, path, payload), 400)
    with pytest.raises(ollama.ResponseError) as info:
        await ollama.AsyncClient(host=rules_live.root).chat(model=MODEL, messages=[{"role": "wizard", "content": "x"}])
    assert info.value.status_code == 400 and "role" in info.value.error
    async with httpx.AsyncClient(base_url=rules_live.root) as http:
        assert "unknown path" in error_text(await http.get("/api/nothing"), 404)
        assert "not allowed" in error_text(await http.get("/api/chat"), 405)


async def test_strict_models_answer_ollamas_404(rules_live: Live) -> None:
    rules_live.store.configure(strict_models=True)
    client = ollama.AsyncClient(host=rules_live.root)
    for call in (
        client.chat(model="nope", messages=user("hi")),
        client.generate(model="nope", prompt="hi", stream=True),
        client.embed(model="nope", input="hi"),
    ):
        with pytest.raises(ollama.ResponseError) as info:
            result = await call
            if not isinstance(result, ChatResponse | EmbedResponse | GenerateResponse):
                [p async for p in result]  # type: ignore[union-attr]
        assert info.value.status_code == 404 and info.value.error == 'model "nope" not found, try pulling it first'
    with pytest.raises(ollama.ResponseError) as shown:
        await client.show("nope")
    assert shown.value.status_code == 404
    assert (await client.chat(model=MODEL, messages=user("hi"))).message.content  # an alias is known
    assert (await client.chat(model="llama3.2:latest", messages=user("hi"))).message.content


async def test_api_key_and_rate_limits_in_ollamas_shape(rules_live: Live) -> None:
    rules_live.store.set_knobs("live", {"api_key": "sk-ollama"})
    payload = {"model": MODEL, "messages": user("hi"), "stream": False}
    assert error_text(await raw_post(rules_live, "/api/chat", payload), 401) == "unauthorized"
    wrong = await raw_post(rules_live, "/api/chat", payload, {"authorization": "Bearer nope"})
    assert error_text(wrong, 401) == "unauthorized"
    client = ollama.AsyncClient(host=rules_live.root, headers={"authorization": "Bearer sk-ollama"})
    assert (await client.chat(model=MODEL, messages=user("hi"))).message.content == "Hello from the mock."
    rules_live.store.set_knobs("live", {"api_key": None, "rate_limit_rpm": 1})
    assert (await raw_post(rules_live, "/api/chat", payload)).status_code == 200
    limited = await raw_post(rules_live, "/api/chat", payload)
    assert "Rate limit reached" in error_text(limited, 429) and int(limited.headers["retry-after"]) >= 1
