"""Azure OpenAI against the real server, with the openai package's AzureOpenAI clients and strict
`openai` types."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import openai
import orjson
import pytest
from openai.types import Completion, CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageToolCall
from openai.types.responses import Response

from mockllm_tui.core.store import Store
from mockllm_tui.http.app import create_app
from mockllm_tui.providers.base import Endpoint, path_pattern
from tests.conftest import Live
from tests.openai_testkit import assert_openai_error, sse_data
from tests.test_openai_misc import StreamedCompletion

VERSION = "2024-10-21"
DEPLOYMENT = "my-gpt4o"
CHAT = f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={VERSION}"
RULES = """\
rules:
  - name: weather-result
    match: {tool_result: get_weather}
    reply: "Sunny, says {{model}}."
  - name: weather
    match: {contains: "weather", provider: azure}
    tool_calls: [{name: get_weather, arguments: {city: "Paris"}}]
  - name: anthropic-only
    match: {contains: "who", provider: anthropic}
    reply: "not for azure"
  - name: teapot
    match: {exact: "brew"}
    error: {status: 418, message: "I am a teapot"}
  - name: long
    match: {exact: "long"}
    reply: "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
responses:
  "default": "Hello from Azure."
"""
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["name", "tags"],
    "additionalProperties": False,
}
USER = [{"role": "user", "content": "hi"}]


def sync_client(live: Live, **kw: Any) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=live.root, api_version=VERSION, api_key=kw.pop("api_key", "k"), **kw)


def async_client(live: Live, **kw: Any) -> openai.AsyncAzureOpenAI:
    kw.setdefault("max_retries", 0)
    return openai.AsyncAzureOpenAI(azure_endpoint=live.root, api_version=VERSION, api_key=kw.pop("api_key", "k"), **kw)


async def post(live: Live, path: str, payload: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    async with httpx.AsyncClient(base_url=live.root, timeout=10) as http:
        return await http.post(path, content=content, headers={"content-type": "application/json", **(headers or {})})


def azure_error(response: httpx.Response, status: int, code: str) -> str:
    """The message of an Azure gateway error, after checking it is exactly `{"error": {"code", "message"}}`."""
    assert response.status_code == status, response.text
    body = orjson.loads(response.content)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code
    assert response.headers["apim-request-id"]
    return str(body["error"]["message"])


def check_filters(body: dict[str, Any]) -> None:
    """Azure's content-filter annotations on a whole completion."""
    assert body["prompt_filter_results"][0]["prompt_index"] == 0
    assert body["prompt_filter_results"][0]["content_filter_results"]["jailbreak"] == {"filtered": False,
                                                                                        "detected": False}
    assert all(c["content_filter_results"]["hate"] == {"filtered": False, "severity": "safe"} for c in body["choices"])


# -- text --------------------------------------------------------------------------------------


def test_sync_chat_plain_and_streamed_on_a_deployment(rules_server: Live) -> None:
    client = sync_client(rules_server, azure_deployment=DEPLOYMENT)
    reply = client.chat.completions.create(model="whatever", messages=USER)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "Hello from Azure." and reply.model == DEPLOYMENT
    chunks = list(client.chat.completions.create(model="x", messages=USER, stream=True))  # type: ignore[arg-type]
    assert chunks[0].choices == [] and chunks[0].model_extra and "prompt_filter_results" in chunks[0].model_extra
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from Azure."
    entries = [e for e in rules_server.store.journal() if DEPLOYMENT in e.path]
    assert [(e.provider, e.model) for e in entries] == [("azure", DEPLOYMENT)] * 2
    assert entries[0].transcript() == [("user", "hi")] and entries[1].stream


async def test_async_chat_bodies_and_stream_lines_are_strictly_openai_types(rules_live: Live) -> None:
    client = async_client(rules_live)
    reply = await client.chat.completions.create(model=DEPLOYMENT, messages=USER)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "Hello from Azure."
    stream = await client.chat.completions.create(model=DEPLOYMENT, messages=USER, stream=True)  # type: ignore[arg-type]
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "Hello from Azure."
    whole = await post(rules_live, CHAT, {"messages": USER})  # the deployment in the path is enough
    ChatCompletion.model_validate_json(whole.content, strict=True)
    check_filters(whole.json())
    assert whole.headers["x-ms-region"] and whole.headers["x-ratelimit-remaining-requests"]
    usage = {"include_usage": True}
    streamed = await post(rules_live, CHAT, {"messages": USER, "stream": True, "stream_options": usage})
    payloads = sse_data(streamed.content)
    chunks = [ChatCompletionChunk.model_validate_json(p, strict=True) for p in payloads]
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    first = orjson.loads(payloads[0])
    assert first["choices"] == [] and first["prompt_filter_results"][0]["prompt_index"] == 0
    assert all("content_filter_results" in orjson.loads(p)["choices"][0] for p in payloads[1:-1])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


async def test_v1_paths_take_no_api_version_and_a_bearer_key(rules_live: Live) -> None:
    client = openai.AsyncOpenAI(base_url=rules_live.root + "/openai/v1", api_key="k", max_retries=0)
    reply = await client.chat.completions.create(model="gpt-4o", messages=USER)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "Hello from Azure." and reply.model == "gpt-4o"
    models = [m.id async for m in client.models.list()]
    assert "gpt-4o" in models
    assert (await client.models.retrieve("gpt-4o")).id == "gpt-4o"
    entry = next(e for e in rules_live.store.journal() if e.path == "/openai/v1/chat/completions")
    assert entry.provider == "azure" and entry.model == "gpt-4o"


async def test_streams_follow_the_live_speed(rules_live: Live) -> None:
    import time

    rules_live.store.set_knobs("live", {"stream_speed": 40})
    client = async_client(rules_live)
    t0 = time.perf_counter()
    stream = await client.chat.completions.create(model=DEPLOYMENT, messages=[{"role": "user", "content": "long"}],
                                                  stream=True)
    assert len([c async for c in stream]) > 10
    assert time.perf_counter() - t0 >= 0.2


async def test_the_responses_api_on_azures_paths(rules_live: Live) -> None:
    client = async_client(rules_live)
    made = await client.responses.create(model=DEPLOYMENT, input="hi")
    assert made.output_text == "Hello from Azure."
    assert (await client.responses.retrieve(made.id)).id == made.id
    follow = await client.responses.create(model=DEPLOYMENT, input="what is the weather?", previous_response_id=made.id)
    assert follow.output[0].type == "function_call"
    v1 = openai.AsyncOpenAI(base_url=rules_live.root + "/openai/v1", api_key="k", max_retries=0)
    async with httpx.AsyncClient(base_url=rules_live.root) as http:
        raw = await http.post("/openai/v1/responses", json={"model": "gpt-4o", "input": "hi"})
        assert (await http.get(f"/openai/responses/{made.id}")).status_code == 404  # no api-version
    Response.model_validate_json(raw.content, strict=True)
    await v1.responses.delete(made.id)
    entries = [e for e in rules_live.store.journal() if "/responses" in e.path]
    assert {e.provider for e in entries} == {"azure"} and entries[0].model == DEPLOYMENT


# -- tools and JSON ----------------------------------------------------------------------------


def test_a_rules_tool_call_and_the_tool_result_turn(rules_server: Live) -> None:
    client = sync_client(rules_server)
    ask = [{"role": "user", "content": "what is the weather?"}]
    first = client.chat.completions.create(model=DEPLOYMENT, messages=ask, tools=[TOOL])  # type: ignore[arg-type, list-item]
    call = (first.choices[0].message.tool_calls or [])[0]
    assert isinstance(call, ChatCompletionMessageToolCall) and first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and orjson.loads(call.function.arguments) == {"city": "Paris"}
    history = [*ask, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "22C"}]
    second = client.chat.completions.create(model=DEPLOYMENT, messages=history, tools=[TOOL])  # type: ignore[arg-type, list-item]
    assert second.choices[0].message.content == f"Sunny, says {DEPLOYMENT}."
    who = client.chat.completions.create(model=DEPLOYMENT, messages=[{"role": "user", "content": "who"}])
    assert who.choices[0].message.content == "Hello from Azure."  # the anthropic-only rule does not match


async def test_tool_call_bodies_and_chunks_are_strictly_openai_types(rules_live: Live) -> None:
    payload = {"messages": [{"role": "user", "content": "weather?"}], "tools": [TOOL]}
    whole = ChatCompletion.model_validate_json((await post(rules_live, CHAT, payload)).content, strict=True)
    assert whole.choices[0].finish_reason == "tool_calls" and whole.choices[0].message.tool_calls
    streamed = await post(rules_live, CHAT, {**payload, "stream": True})
    chunks = [ChatCompletionChunk.model_validate_json(p, strict=True) for p in sse_data(streamed.content)]
    calls = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert calls and calls[0].choices[0].delta.tool_calls[0].function.name == "get_weather"  # type: ignore[index, union-attr]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_json_schema_output_is_valid(rules_live: Live) -> None:
    client = async_client(rules_live)
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}}
    reply = await client.chat.completions.create(model=DEPLOYMENT, messages=USER, response_format=fmt)  # type: ignore[arg-type]
    jsonschema.validate(orjson.loads(reply.choices[0].message.content or ""), SCHEMA)


async def test_completions_embeddings_and_models(rules_live: Live) -> None:
    client = async_client(rules_live)
    completion = await client.completions.create(model=DEPLOYMENT, prompt="hi")
    assert completion.choices[0].text.startswith("Hello")
    path = f"/openai/deployments/{DEPLOYMENT}/completions?api-version={VERSION}"
    raw = await post(rules_live, path, {"prompt": "hi"})
    Completion.model_validate_json(raw.content, strict=True)
    check_filters(raw.json())
    stream = await post(rules_live, path, {"prompt": ["a", "b"], "stream": True})
    payloads = sse_data(stream.content)
    assert [p["prompt_index"] for p in orjson.loads(payloads[0])["prompt_filter_results"]] == [0, 1]
    for payload in payloads:
        StreamedCompletion.model_validate_json(payload, strict=True)
    vectors = await client.embeddings.create(model="emb-deploy", input=["a", "b"], dimensions=16)
    assert [len(d.embedding) for d in vectors.data] == [16, 16] and vectors.model == "emb-deploy"
    raw_emb = await post(rules_live, f"/openai/deployments/emb-deploy/embeddings?api-version={VERSION}", {"input": "a"})
    CreateEmbeddingResponse.model_validate_json(raw_emb.content, strict=True)
    assert [e.model for e in rules_live.store.journal() if "emb-deploy" in e.path] == ["emb-deploy", "emb-deploy"]
    listed = [m async for m in client.models.list()]
    assert "gpt-4o" in [m.id for m in listed] and "llama3.2:latest" in [m.id for m in listed]
    async with httpx.AsyncClient(base_url=rules_live.root) as http:
        body = (await http.get(f"/openai/models?api-version={VERSION}")).json()
        one = await http.get(f"/openai/models/gpt-4o?api-version={VERSION}")
        unknown = await http.get(f"/openai/models/nope?api-version={VERSION}")
    assert "nope" in azure_error(unknown, 404, "404")
    for item in body["data"]:
        Model.model_validate(item, strict=True)
    assert Model.model_validate_json(one.content, strict=True).id == "gpt-4o"
    assert one.json()["capabilities"]["chat_completion"] is True


# -- errors ------------------------------------------------------------------------------------


async def test_a_missing_api_version_is_azures_404(rules_live: Live) -> None:
    for path in (f"/openai/deployments/{DEPLOYMENT}/chat/completions", f"/openai/deployments/{DEPLOYMENT}/embeddings",
                 f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version="):
        response = await post(rules_live, path, {"messages": USER, "input": "x"})
        assert azure_error(response, 404, "404") == "Resource not found"
    async with httpx.AsyncClient(base_url=rules_live.root) as http:
        assert azure_error(await http.get("/openai/models"), 404, "404") == "Resource not found"
        assert azure_error(await http.get("/openai/nowhere"), 404, "404")
        wrong_method = await http.get(CHAT)
    assert wrong_method.status_code == 405


async def test_a_rules_error_and_injected_errors_raise_the_sdks_exceptions(rules_live: Live) -> None:
    client = async_client(rules_live)
    with pytest.raises(openai.APIStatusError) as teapot:
        await client.chat.completions.create(model=DEPLOYMENT, messages=[{"role": "user", "content": "brew"}])
    assert teapot.value.status_code == 418 and "I am a teapot" in teapot.value.message
    retrying = async_client(rules_live, max_retries=2)
    for status, kind in ((429, openai.RateLimitError), (529, openai.InternalServerError)):
        before = rules_live.store.counters.total
        with pytest.raises(kind):
            await retrying.chat.completions.create(model=DEPLOYMENT, messages=USER,  # type: ignore[arg-type]
                                                   extra_headers={"x-mock-error": str(status)})
        assert rules_live.store.counters.total == before + 3  # retried twice, as the SDK does
    rules_live.store.set_fail_next(1, 429)
    assert (await retrying.chat.completions.create(model=DEPLOYMENT, messages=USER)).choices  # type: ignore[arg-type]
    injected = await post(rules_live, CHAT, {"messages": USER}, {"x-mock-error": "429"})
    assert "Injected error 429" in azure_error(injected, 429, "429")
    assert injected.headers["retry-after-ms"] == "100" and "x-should-retry" not in injected.headers
    server_error = await post(rules_live, CHAT, {"messages": USER}, {"x-mock-error": "500"})
    assert_openai_error(server_error, 500)


async def test_a_mid_stream_error(rules_live: Live) -> None:
    client = async_client(rules_live)
    headers = {"x-mock-error": "529", "x-mock-error-mode": "mid_stream"}
    seen = []
    with pytest.raises(openai.APIError):
        stream = await client.chat.completions.create(model=DEPLOYMENT, messages=[{"role": "user", "content": "long"}],
                                                      stream=True, extra_headers=headers)
        async for chunk in stream:
            seen.append(chunk)
    assert seen


async def test_bad_input_is_a_400_in_openais_shape(rules_live: Live) -> None:
    client = async_client(rules_live)
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model=DEPLOYMENT, messages=[{"role": "wizard", "content": "x"}])  # type: ignore[list-item, misc]
    assert info.value.status_code == 400
    for payload in (b"{oops", {"messages": []}, {"messages": USER, "n": 0}, {"messages": "hi"}):
        assert_openai_error(await post(rules_live, CHAT, payload), 400)


async def test_api_key_strict_models_and_rate_limits_in_azures_shape(rules_live: Live) -> None:
    rules_live.store.set_knobs("live", {"api_key": "azure-key"})
    assert "missing subscription key" in azure_error(await post(rules_live, CHAT, {"messages": USER}), 401, "401")
    wrong = await post(rules_live, CHAT, {"messages": USER}, {"api-key": "nope"})
    assert "invalid subscription key" in azure_error(wrong, 401, "401")
    with pytest.raises(openai.AuthenticationError):
        await async_client(rules_live, api_key="nope").chat.completions.create(model=DEPLOYMENT, messages=USER)  # type: ignore[arg-type]
    right = await async_client(rules_live, api_key="azure-key").chat.completions.create(model=DEPLOYMENT, messages=USER)  # type: ignore[arg-type]
    assert right.choices[0].message.content
    bearer = await post(rules_live, CHAT, {"messages": USER}, {"authorization": "Bearer azure-key"})
    assert bearer.status_code == 200
    rules_live.store.set_knobs("live", {"api_key": None})
    rules_live.store.configure(strict_models=True)
    with pytest.raises(openai.NotFoundError):
        await async_client(rules_live).chat.completions.create(model="no-such-deployment", messages=USER)  # type: ignore[arg-type]
    missing = await post(rules_live, "/openai/deployments/nope/chat/completions?api-version=1", {"messages": USER})
    assert "deployment" in azure_error(missing, 404, "DeploymentNotFound")
    rules_live.store.configure(strict_models=False)
    rules_live.store.set_knobs("live", {"rate_limit_rpm": 1})
    assert (await post(rules_live, CHAT, {"messages": USER})).status_code == 200
    limited = await post(rules_live, CHAT, {"messages": USER})
    assert "Rate limit reached" in azure_error(limited, 429, "429") and limited.headers["retry-after-ms"]


# -- the dispatcher's path templates -----------------------------------------------------------


def test_path_templates_match_one_segment_per_placeholder() -> None:
    pattern = path_pattern("/a/{x}/b/{y}:do")
    assert pattern is not None and path_pattern("/a/b") is None
    assert pattern.fullmatch("/a/1/b/2:do") and not pattern.fullmatch("/a/1/2/b/3:do")
    assert not pattern.fullmatch("/a//b/2:do") and not pattern.fullmatch("/a/1/b/2:undo")

    class Probe(Endpoint):
        paths = ("/p/{name}/q", "/r/{name}/{other}/s")

    probe = Probe.__new__(Probe)
    assert probe.path_params("/r/one/two/s") == {"name": "one", "other": "two"}
    assert probe.path_params("/p/x/q") == {"name": "x"} and probe.path_params("/p/x/y/q") == {}


def test_the_dispatcher_routes_deployment_paths_and_keeps_exact_routes_first() -> None:
    app = create_app(Store())
    endpoint = app.endpoint_for("POST", f"/openai/deployments/{DEPLOYMENT}/chat/completions")
    assert endpoint is not None and endpoint.provider.name == "azure"
    assert endpoint.path_params(f"/openai/deployments/{DEPLOYMENT}/chat/completions") == {"deployment": DEPLOYMENT}
    assert app.endpoint_for("POST", "/openai/deployments/a/b/chat/completions") is None
    assert app.endpoint_for("GET", f"/openai/deployments/{DEPLOYMENT}/chat/completions") is None
    exact = app.endpoint_for("POST", "/v1/chat/completions")
    assert exact is not None and exact.provider.name == "openai"
    assert any(r.path == "/openai/deployments/{deployment}/embeddings" for r in app.routes())
