"""Google Gemini against the real server, with the real google-genai SDK and strict SDK types.

Every response the SDK receives passes through a recording transport, and every body and every
stream chunk it saw is validated strictly with `google.genai.types` (camelCase aliases, extra
fields forbidden, strict types).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
from google import genai
from google.genai import errors, types
from google.genai.models import _ListModelsResponse_from_mldev, _Model_from_mldev
from google.oauth2.credentials import Credentials
from pydantic import BaseModel

from mockllm_tui.core.models import ModelRegistry
from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import ServerHandle
from mockllm_tui.rules.commands import list_rules
from tests.conftest import HOST, Live, ServerThread, make_store
from tests.test_headless import start_headless

MODEL = "gemini-2.5-flash"
DEFAULT = "Gemini default reply from the rules."
RULES = f"""\
rules:
  - name: weather result
    match: {{tool_result: get_weather, provider: gemini}}
    reply: "It is sunny in Paris, 22 C."
  - name: weather tool
    match: {{contains: "weather", provider: gemini}}
    tool_calls: [{{name: get_weather, arguments: {{city: "Paris", days: 2}}}}]
  - name: openai only
    match: {{contains: "who", provider: openai}}
    reply: "not for gemini"
  - name: overloaded
    match: {{contains: "explode"}}
    error: {{status: 503, message: "The model is overloaded. Please try again later."}}
  - name: long
    match: {{exact: "long"}}
    reply: "one two six ten red big map cup"
responses:
  "default": "{DEFAULT}"
"""
WEATHER = types.Schema(
    type=types.Type.OBJECT,
    properties={
        "city": types.Schema(type=types.Type.STRING, min_length=3),
        "unit": types.Schema(type=types.Type.STRING, enum=["celsius", "fahrenheit"], format="enum"),
        "days": types.Schema(type=types.Type.INTEGER, minimum=1, maximum=7),
        "tags": types.Schema(type=types.Type.ARRAY, items=types.Schema(type=types.Type.STRING), min_items=2),
        "note": types.Schema(type=types.Type.STRING, nullable=True),
    },
    required=["city", "unit", "days", "tags", "note"],
)
WEATHER_JSON = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 3},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "format": "enum"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "note": {"type": ["string", "null"]},
    },
    "required": ["city", "unit", "days", "tags", "note"],
}
TIME_TOOL = types.FunctionDeclaration(
    name="get_time",
    description="The time in a zone",
    parameters_json_schema={"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
)
TOOLS = [
    types.Tool(function_declarations=[types.FunctionDeclaration(name="get_weather", parameters=WEATHER), TIME_TOOL])
]


class Seen:
    """What the SDK received: (path, status, raw body) per response."""

    def __init__(self) -> None:
        self.responses: list[tuple[str, int, bytes]] = []

    def record(self, request: httpx.Request, status: int, raw: bytes) -> None:
        """Remember one response, whole."""
        self.responses.append((request.url.path, status, raw))

    def last(self) -> tuple[str, int, bytes]:
        """The latest response."""
        return self.responses[-1]


class Tee(httpx.HTTPTransport):
    """A real transport that keeps each response's bytes (read whole) for validation."""

    def __init__(self, seen: Seen) -> None:
        super().__init__()
        self.seen = seen

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        raw = response.read()
        self.seen.record(request, response.status_code, raw)
        return httpx.Response(response.status_code, headers=response.headers, content=raw, request=request)


class AsyncTee(httpx.AsyncHTTPTransport):
    """The async twin of Tee."""

    def __init__(self, seen: Seen) -> None:
        super().__init__()
        self.seen = seen

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        raw = await response.aread()
        self.seen.record(request, response.status_code, raw)
        return httpx.Response(response.status_code, headers=response.headers, content=raw, request=request)


OPEN: list[httpx.Client | httpx.AsyncClient] = []


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """Close every HTTP client a test made, in the test's own loop."""
    yield
    while OPEN:
        http = OPEN.pop()
        if isinstance(http, httpx.AsyncClient):
            await http.aclose()
        else:
            http.close()


def transports(root: str, seen: Seen, **options: Any) -> dict[str, Any]:
    """`http_options` with both of the SDK's clients recording: given both, google-genai makes
    none of its own (an unclosed one of its own closes itself on whatever loop runs later)."""
    sync, aio = httpx.Client(transport=Tee(seen)), httpx.AsyncClient(transport=AsyncTee(seen))
    OPEN.extend((sync, aio))
    return {"base_url": root, "httpx_client": sync, "httpx_async_client": aio, **options}


def client(live: Live, seen: Seen, api_key: str = "gm-key", **options: Any) -> genai.Client:
    """google-genai pointed at the server, both transports recording."""
    return genai.Client(api_key=api_key, http_options=transports(live.root, seen, **options))  # type: ignore[arg-type]


def rules_store(tmp_path: Path) -> Any:
    path = tmp_path / "responses.yml"
    path.write_text(RULES)
    return make_store(path)


@pytest.fixture
def gem(tmp_path: Path) -> Iterator[Live]:
    """The threaded server with the rules above (for the sync SDK)."""
    with ServerThread(rules_store(tmp_path)) as running:
        yield running


@pytest.fixture
async def agem(tmp_path: Path) -> AsyncIterator[Live]:
    """The server in this test's loop with the rules above (for the async SDK)."""
    store = rules_store(tmp_path)
    handle = ServerHandle(create_app(store), HOST, 0, grace_s=1)
    await handle.start()
    try:
        yield Live(store, handle.app, handle)
    finally:
        await handle.stop()


# -- strict validation ------------------------------------------------------------------------


def check_body(raw: bytes) -> types.GenerateContentResponse:
    """A whole generateContent body, strictly, with the fields the API always sends."""
    parsed = types.GenerateContentResponse.model_validate_json(raw, strict=True)
    assert parsed.response_id and parsed.model_version and parsed.usage_metadata
    usage = parsed.usage_metadata
    assert usage.total_token_count == (usage.prompt_token_count or 0) + (usage.candidates_token_count or 0)
    assert parsed.candidates and all(c.finish_reason is not None for c in parsed.candidates)
    return parsed


def sse_chunks(raw: bytes) -> list[bytes]:
    """The `data:` payloads of a Gemini SSE stream: CRLF-separated events, no `[DONE]`."""
    assert raw.endswith(b"\r\n\r\n") and b"[DONE]" not in raw
    events = raw[: -len(b"\r\n\r\n")].split(b"\r\n\r\n")
    assert all(e.startswith(b"data: ") and b"\n" not in e for e in events), raw[:200]
    return [e[len(b"data: ") :] for e in events]


def check_stream(raw: bytes) -> list[types.GenerateContentResponse]:
    """Every chunk strictly; one responseId; finishReason (and the final usage) on the last chunk only."""
    chunks = [types.GenerateContentResponse.model_validate_json(c, strict=True) for c in sse_chunks(raw)]
    assert len({c.response_id for c in chunks}) == 1 and chunks[0].response_id
    assert len({c.model_version for c in chunks}) == 1
    for chunk in chunks[:-1]:
        assert chunk.candidates and chunk.candidates[0].finish_reason is None
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason is not None
    assert last.usage_metadata and last.usage_metadata.candidates_token_count is not None
    return chunks


def streamed_text(chunks: list[types.GenerateContentResponse]) -> str:
    return "".join(c.text or "" for c in chunks)


def wait_until(condition: Any, bound_s: float = 5.0) -> None:
    """Poll a condition the server thread sets right after its last byte (bounded)."""
    deadline = time.monotonic() + bound_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def check_error(raw: bytes, code: int, status: str) -> dict[str, Any]:
    """Google's error shape exactly: `{"error": {"code", "message", "status"}}`."""
    body = orjson.loads(raw)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "status"}, body
    assert body["error"]["code"] == code and body["error"]["status"] == status
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


async def post(live: Live, path: str, payload: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """A raw POST (bytes as they are, anything else as JSON)."""
    content = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    hdrs = {"content-type": "application/json", "x-goog-api-key": "gm-key", **(headers or {})}
    async with httpx.AsyncClient(base_url=live.root) as http:
        return await http.post(path, content=content, headers=hdrs)


def user(text: str) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


# -- text --------------------------------------------------------------------------------------


def test_plain_text_sync_strictly_a_generate_content_response(gem: Live) -> None:
    seen = Seen()
    reply = client(gem, seen).models.generate_content(model=MODEL, contents="Hello there")
    assert reply.text == DEFAULT
    path, status, raw = seen.last()
    assert (path, status) == (f"/v1/models/{MODEL}:generateContent", 200)
    parsed = check_body(raw)
    [candidate] = parsed.candidates or []
    assert candidate.finish_reason == types.FinishReason.STOP and candidate.index == 0
    assert candidate.content and candidate.content.role == "model"
    assert parsed.model_version == MODEL and reply.response_id == parsed.response_id
    usage = parsed.usage_metadata
    assert usage and usage.prompt_token_count and usage.candidates_token_count
    assert usage.prompt_tokens_details and usage.prompt_tokens_details[0].token_count == usage.prompt_token_count
    entry = gem.store.journal()[-1]
    assert (entry.provider, entry.model, entry.status) == ("gemini", MODEL, 200)
    assert entry.rule == next(v.label for v in list_rules(gem.store) if v.kind == "default")  # `#N`
    assert entry.transcript() == [("user", "Hello there")]
    assert entry.request_headers["x-goog-api-key"] == "[redacted]"
    other = client(gem, seen).models.generate_content(model=MODEL, contents="who are you?")
    assert other.text == DEFAULT  # the `provider: openai` rule does not answer Gemini


def test_stream_sync_one_id_finish_on_the_last_chunk(gem: Live) -> None:
    seen = Seen()
    gem.store.set_knobs("live", {"stream_chunk": "word"})
    chunks = list(client(gem, seen).models.generate_content_stream(model=MODEL, contents="long"))
    text = "one two six ten red big map cup"
    assert "".join(c.text or "" for c in chunks) == text
    path, _, raw = seen.last()
    assert path == f"/v1/models/{MODEL}:streamGenerateContent"
    parsed = check_stream(raw)
    assert len(parsed) == len(chunks) > 5 and streamed_text(parsed) == text
    client(gem, seen).models.generate_content(model=MODEL, contents="long")
    whole = check_body(seen.last()[2])
    assert parsed[-1].usage_metadata == whole.usage_metadata
    entry = gem.store.journal()[-2]
    assert entry.stream and "".join(entry.chunks) == text and entry.reply_text == text


async def test_async_text_and_stream(agem: Live) -> None:
    seen = Seen()
    aio = client(agem, seen).aio
    whole = await aio.models.generate_content(model=MODEL, contents="Hi async")
    assert whole.text == DEFAULT
    check_body(seen.last()[2])
    pieces = [chunk.text async for chunk in await aio.models.generate_content_stream(model=MODEL, contents="Hi")]
    assert "".join(p or "" for p in pieces) == DEFAULT and len(pieces) > 1
    parsed = check_stream(seen.last()[2])
    assert parsed[-1].usage_metadata and whole.usage_metadata
    assert parsed[-1].usage_metadata.candidates_token_count == whole.usage_metadata.candidates_token_count


async def test_v1beta_path_and_raw_sse_without_the_sdk(agem: Live) -> None:
    response = await post(agem, f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse", user("hello"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert streamed_text(check_stream(response.content)) == DEFAULT
    plain = await post(agem, f"/v1beta/models/{MODEL}:generateContent", user("hello"))
    assert check_body(plain.content).text == DEFAULT


# -- tools -------------------------------------------------------------------------------------


def test_rule_tool_call_is_the_sdks_function_call(gem: Live) -> None:
    seen = Seen()
    config = types.GenerateContentConfig(tools=TOOLS)
    reply = client(gem, seen).models.generate_content(model=MODEL, contents="weather in Paris?", config=config)
    [call] = reply.function_calls or []
    assert isinstance(call, types.FunctionCall)
    assert (call.name, call.args) == ("get_weather", {"city": "Paris", "days": 2})
    parsed = check_body(seen.last()[2])
    assert parsed.candidates and parsed.candidates[0].finish_reason == types.FinishReason.STOP
    assert gem.store.journal()[-1].rule == "weather tool"
    chunks = list(client(gem, seen).models.generate_content_stream(model=MODEL, contents="weather?", config=config))
    streamed = check_stream(seen.last()[2])
    assert [c.function_calls for c in chunks if c.function_calls] == [[call]]
    assert streamed[-1].function_calls == [call]


def test_tool_result_turn_matches_a_tool_result_rule(gem: Live) -> None:
    seen = Seen()
    contents = [
        types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")]),
        types.Content(role="model", parts=[types.Part(function_call=types.FunctionCall(name="get_weather", args={}))]),
        types.Content(
            role="user", parts=[types.Part.from_function_response(name="get_weather", response={"result": "22C"})]
        ),
    ]
    config = types.GenerateContentConfig(tools=TOOLS)
    reply = client(gem, seen).models.generate_content(model=MODEL, contents=contents, config=config)
    assert reply.text == "It is sunny in Paris, 22 C." and not reply.function_calls
    check_body(seen.last()[2])
    entry = gem.store.journal()[-1]
    assert entry.rule == "weather result"
    conversation = entry.conversation
    assert conversation is not None
    assert [m.role for m in conversation.messages] == ["user", "assistant", "tool"]
    assert conversation.messages[1].tool_calls[0].name == "get_weather"
    assert (conversation.messages[2].name, conversation.messages[2].content) == ("get_weather", "22C")
    assert entry.transcript()[-2:] == [("tool", "[tool result get_weather] 22C"), ("tools", "get_weather, get_time")]


@pytest.mark.parametrize(("allowed", "schema"), [(["get_weather"], WEATHER_JSON), (["get_time"], None)])
def test_forced_calls_get_schema_valid_args(gem: Live, allowed: list[str], schema: dict[str, Any] | None) -> None:
    seen = Seen()
    config = types.GenerateContentConfig(
        tools=TOOLS,
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=allowed
            )
        ),
    )
    gemini = client(gem, seen)
    reply = gemini.models.generate_content(model=MODEL, contents="Tell me a joke", config=config)
    [call] = reply.function_calls or []
    assert call.name == allowed[0]
    jsonschema.validate(call.args, schema or TIME_TOOL.parameters_json_schema)
    check_body(seen.last()[2])
    chunks = list(gemini.models.generate_content_stream(model=MODEL, contents="Tell me a joke", config=config))
    check_stream(seen.last()[2])
    assert [c.function_calls for c in chunks if c.function_calls] == [[call]]


def test_mode_none_gives_text_and_any_without_names_calls_a_tool(gem: Live) -> None:
    seen = Seen()
    gemini = client(gem, seen)

    def config(mode: types.FunctionCallingConfigMode) -> types.GenerateContentConfig:
        calling = types.FunctionCallingConfig(mode=mode)
        return types.GenerateContentConfig(tools=TOOLS, tool_config=types.ToolConfig(function_calling_config=calling))

    none = gemini.models.generate_content(
        model=MODEL, contents="weather?", config=config(types.FunctionCallingConfigMode.NONE)
    )
    assert gem.store.journal()[-1].rule == "weather tool" and not none.function_calls
    check_body(seen.last()[2])
    forced = gemini.models.generate_content(
        model=MODEL, contents="hi", config=config(types.FunctionCallingConfigMode.ANY)
    )
    assert forced.function_calls and forced.function_calls[0].name == "get_weather"
    jsonschema.validate(forced.function_calls[0].args, WEATHER_JSON)


# -- JSON output, limits ---------------------------------------------------------------------


class Forecast(BaseModel):
    city: str
    days: int
    tags: list[str]
    rain: bool | None = None


def test_json_output_is_valid_against_the_schema(gem: Live) -> None:
    seen = Seen()
    gemini = client(gem, seen)
    typed = gemini.models.generate_content(
        model=MODEL,
        contents="forecast",
        config=types.GenerateContentConfig(response_mime_type="application/json", response_schema=Forecast),
    )
    assert isinstance(typed.parsed, Forecast)
    check_body(seen.last()[2])
    plain_schema = Forecast.model_json_schema()
    plain = gemini.models.generate_content(
        model=MODEL,
        contents="forecast",
        config=types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=plain_schema),
    )
    jsonschema.validate(json.loads(plain.text or ""), plain_schema)
    streamed = list(
        gemini.models.generate_content_stream(
            model=MODEL,
            contents="forecast",
            config=types.GenerateContentConfig(response_mime_type="application/json", response_schema=WEATHER),
        )
    )
    jsonschema.validate(json.loads("".join(c.text or "" for c in streamed)), WEATHER_JSON)
    check_stream(seen.last()[2])
    untyped = gemini.models.generate_content(
        model=MODEL, contents="x", config=types.GenerateContentConfig(response_mime_type="application/json")
    )
    assert json.loads(untyped.text or "") == {"response": DEFAULT}


def test_max_output_tokens_stop_sequences_and_candidates(gem: Live) -> None:
    seen = Seen()
    gemini = client(gem, seen)
    short = gemini.models.generate_content(
        model=MODEL, contents="long", config=types.GenerateContentConfig(max_output_tokens=3)
    )
    assert short.text == "one two six"
    parsed = check_body(seen.last()[2])
    assert parsed.candidates and parsed.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert parsed.usage_metadata and parsed.usage_metadata.candidates_token_count == 3
    stopped = gemini.models.generate_content(
        model=MODEL, contents="long", config=types.GenerateContentConfig(stop_sequences=["NEVER", " ten"])
    )
    assert stopped.text == "one two six"
    assert check_body(seen.last()[2]).candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]
    one = gemini.models.generate_content(model=MODEL, contents="hello")
    two = gemini.models.generate_content(
        model=MODEL, contents="hello", config=types.GenerateContentConfig(candidate_count=2)
    )
    assert [c.index for c in two.candidates or []] == [0, 1] and two.text == one.text
    usage, single = check_body(seen.last()[2]).usage_metadata, one.usage_metadata
    assert usage and single and usage.candidates_token_count == 2 * (single.candidates_token_count or 0)


# -- tokens, embeddings, models ----------------------------------------------------------------


def test_count_tokens_matches_the_prompt_count(gem: Live) -> None:
    seen = Seen()
    gemini = client(gem, seen)
    contents = "How many tokens are in this sentence?"
    counted = gemini.models.count_tokens(model=MODEL, contents=contents)
    raw = seen.last()[2]
    assert types.CountTokensResponse.model_validate_json(raw, strict=True).total_tokens == counted.total_tokens
    reply = gemini.models.generate_content(model=MODEL, contents=contents)
    assert reply.usage_metadata and counted.total_tokens == reply.usage_metadata.prompt_token_count
    assert gem.store.journal()[-2].transcript() == [("user", contents)]


async def test_count_tokens_of_a_whole_request(agem: Live) -> None:
    body = {
        "generateContentRequest": {
            "model": f"models/{MODEL}",
            **user("hi"),
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
        }
    }
    counted = await post(agem, f"/v1beta/models/{MODEL}:countTokens", body)
    generated = await post(agem, f"/v1beta/models/{MODEL}:generateContent", body["generateContentRequest"])
    total = types.CountTokensResponse.model_validate_json(counted.content, strict=True).total_tokens
    assert total == check_body(generated.content).usage_metadata.prompt_token_count  # type: ignore[union-attr]
    assert (
        total
        > types.CountTokensResponse.model_validate_json(
            (await post(agem, f"/v1beta/models/{MODEL}:countTokens", user("hi"))).content, strict=True
        ).total_tokens
    )  # type: ignore[operator]


def test_embed_content_posts_batch_embed_contents(gem: Live) -> None:
    seen = Seen()
    gemini = client(gem, seen)
    result = gemini.models.embed_content(
        model="gemini-embedding-001", contents=["red apple", "green apple"], config={"output_dimensionality": 64}
    )
    path, status, raw = seen.last()
    assert (path, status) == ("/v1/models/gemini-embedding-001:batchEmbedContents", 200)
    parsed = types.EmbedContentResponse.model_validate_json(raw, strict=True)
    assert parsed.embeddings and [len(e.values or []) for e in parsed.embeddings] == [64, 64]
    assert result.embeddings and result.embeddings[0].values == parsed.embeddings[0].values
    again = gemini.models.embed_content(model="gemini-embedding-001", contents="red apple")
    [vector] = again.embeddings or []
    assert len(vector.values or []) == 3072
    norm = sum(x * x for x in vector.values or [])
    assert abs(norm - 1.0) < 1e-4


def test_embedding_with_a_chat_model_is_googles_404(gem: Live) -> None:
    seen = Seen()
    gemini = client(gem, seen)
    with pytest.raises(errors.ClientError) as caught:
        gemini.models.embed_content(model=MODEL, contents="red apple")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")
    assert caught.value.message == (
        f"models/{MODEL} is not found for API version v1, or is not supported for batchEmbedContents. "
        "Call ListModels to see the list of available models and their supported methods."
    )
    check_error(seen.last()[2], 404, "NOT_FOUND")
    body = orjson.dumps({"content": {"parts": [{"text": "red apple"}]}})
    with httpx.Client(base_url=gem.root, headers={"x-goog-api-key": "gm-key"}) as http:
        single = http.post(f"/v1beta/models/{MODEL}:embedContent", content=body)
        embedder = http.post("/v1beta/models/text-embedding-004:embedContent", content=body)
    message = check_error(single.content, 404, "NOT_FOUND")["message"]
    assert message.startswith(f"models/{MODEL} is not found for API version v1beta, or is not supported for embed")
    vector = types.ContentEmbedding.model_validate_json(orjson.dumps(embedder.json()["embedding"]), strict=True)
    assert len(vector.values or []) == 768
    for embedding_model in ("gemini-embedding-001", "text-embedding-004", "my-own-embedder"):
        result = gemini.models.embed_content(model=embedding_model, contents="red apple")
        assert result.embeddings and result.embeddings[0].values


async def test_single_embed_content(agem: Live) -> None:
    body = {"content": {"parts": [{"text": "red apple"}]}, "outputDimensionality": 16, "taskType": "RETRIEVAL_QUERY"}
    response = await post(agem, "/v1beta/models/text-embedding-004:embedContent", body)
    assert response.status_code == 200 and set(response.json()) == {"embedding"}
    embedding = types.ContentEmbedding.model_validate_json(orjson.dumps(response.json()["embedding"]), strict=True)
    batch = await post(
        agem,
        "/v1beta/models/text-embedding-004:batchEmbedContents",
        {"requests": [{"model": "models/text-embedding-004", **body}]},
    )
    parsed = types.EmbedContentResponse.model_validate_json(batch.content, strict=True)
    assert parsed.embeddings and parsed.embeddings[0].values == embedding.values
    mismatch = await post(
        agem, "/v1beta/models/text-embedding-004:batchEmbedContents", {"requests": [{"model": "models/other", **body}]}
    )
    assert (
        mismatch.status_code == 400
        and "does not match" in check_error(mismatch.content, 400, "INVALID_ARGUMENT")["message"]
    )


def check_models_page(raw: bytes) -> types.ListModelsResponse:
    """A models.list page through the SDK's own field mapping, losing no field, then strictly."""
    body = orjson.loads(raw)
    for item in body["models"]:
        check_model(item)
    converted = _ListModelsResponse_from_mldev(body)
    assert ("next_page_token" in converted) == ("nextPageToken" in body)
    for item in converted["models"]:
        item.pop("tuned_model_info")
    return types.ListModelsResponse.model_validate_json(orjson.dumps(converted), strict=True)


def check_model(item: dict[str, Any]) -> types.Model:
    """One raw Model through the SDK's own mapping: every field the API sends is one the SDK reads."""
    converted = _Model_from_mldev(item)
    # The mapping copies the whole resource into `tuned_model_info` (its `_self` path); the API's
    # own fields are the rest.
    converted.pop("tuned_model_info")
    assert len(converted) == len(item), item
    return types.Model.model_validate_json(orjson.dumps(converted), strict=True)


def test_list_and_get_models(gem: Live) -> None:
    seen = Seen()
    gemini = client(gem, seen)
    names = [m.name for m in gemini.models.list(config={"page_size": 4})]
    pages = [check_models_page(raw) for path, _, raw in seen.responses if path == "/v1/models"]
    assert len(pages) == 4 and [m.name for p in pages for m in p.models or []] == names
    assert f"models/{MODEL}" in names and "models/gemini-embedding-001" in names
    assert all(n and n.startswith("models/") for n in names) and not any("gpt" in (n or "") for n in names)
    model = gemini.models.get(model=MODEL)
    assert model.name == f"models/{MODEL}" and model.supported_actions and "generateContent" in model.supported_actions
    raw = seen.last()[2]
    assert check_model(orjson.loads(raw)).name == f"models/{MODEL}"
    with pytest.raises(errors.ClientError) as caught:
        gemini.models.get(model="no-such-model")
    assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"
    check_error(seen.last()[2], 404, "NOT_FOUND")


async def test_v1_models_answers_each_client_in_its_own_shape(agem: Live) -> None:
    from anthropic.types import ModelInfo
    from openai.types import Model

    async with httpx.AsyncClient(base_url=agem.root) as http:
        gemini = await http.get("/v1/models", headers={"x-goog-api-key": "k"})
        by_query = await http.get("/v1beta/models?key=k&pageSize=2&pageToken=2")
        openai = await http.get("/v1/models", headers={"authorization": "Bearer k"})
        anthropic = await http.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
        one_openai = await http.get(f"/v1/models/{MODEL}")
        one_gemini = await http.get(f"/v1/models/{MODEL}", headers={"x-goog-api-client": "google-genai-sdk/3"})
        bad_token = await http.get("/v1beta/models?pageToken=zz")
    assert [m.name for m in check_models_page(gemini.content).models or []][:1] == ["models/gemini-3-pro-preview"]
    assert check_models_page(by_query.content).next_page_token == "4"
    for item in openai.json()["data"]:
        Model.model_validate(item, strict=True)
    assert MODEL in [m["id"] for m in openai.json()["data"]]
    for item in anthropic.json()["data"]:
        ModelInfo.model_validate_json(orjson.dumps(item), strict=True)
    assert Model.model_validate_json(one_openai.content, strict=True).owned_by == "google"
    assert one_gemini.json()["name"] == f"models/{MODEL}"
    check_error(bad_token.content, 400, "INVALID_ARGUMENT")


# -- errors ------------------------------------------------------------------------------------


def test_rule_error_raises_the_sdks_server_error(gem: Live) -> None:
    seen = Seen()
    with pytest.raises(errors.ServerError) as caught:
        client(gem, seen).models.generate_content(model=MODEL, contents="explode now")
    assert (caught.value.code, caught.value.status) == (503, "UNAVAILABLE")
    assert caught.value.message == "The model is overloaded. Please try again later."
    check_error(seen.last()[2], 503, "UNAVAILABLE")
    assert len(seen.responses) == 1  # google-genai retries nothing unless retry_options are set


def test_injected_429_and_529_raise_and_retry_only_when_asked(gem: Live) -> None:
    seen = Seen()
    gem.store.set_fail_next(1, 429)
    with pytest.raises(errors.ClientError) as caught:
        client(gem, seen).models.generate_content(model=MODEL, contents="hello")
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    check_error(seen.last()[2], 429, "RESOURCE_EXHAUSTED")
    assert [s for _, s, _ in seen.responses] == [429]
    with pytest.raises(errors.ServerError) as overloaded:
        client(gem, seen, headers={"x-mock-error": "529"}).models.generate_content(model=MODEL, contents="hello")
    assert (overloaded.value.code, overloaded.value.status) == (529, "UNAVAILABLE")
    check_error(seen.last()[2], 529, "UNAVAILABLE")

    retrying = types.HttpRetryOptions(attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0.0)
    seen = Seen()
    gem.store.set_fail_next(1, 429)
    reply = client(gem, seen, retry_options=retrying).models.generate_content(model=MODEL, contents="hello")
    assert reply.text == DEFAULT and [s for _, s, _ in seen.responses] == [429, 200]
    seen = Seen()
    gem.store.set_fail_next(1, 529)
    with pytest.raises(errors.ServerError):  # 529 is not among the statuses google-genai retries
        client(gem, seen, retry_options=retrying).models.generate_content(model=MODEL, contents="hello")
    assert [s for _, s, _ in seen.responses] == [529]
    assert gem.store.journal()[-1].fault == "529 before (fail_next)"


def test_mid_stream_error_raises_after_valid_chunks(gem: Live) -> None:
    seen = Seen()
    headers = {"x-mock-error": "529", "x-mock-error-mode": "mid_stream"}
    gem.store.set_knobs("live", {"stream_chunk": "word"})
    got: list[str] = []
    with pytest.raises(errors.ServerError) as caught:
        for chunk in client(gem, seen, headers=headers).models.generate_content_stream(model=MODEL, contents="long"):
            got.append(chunk.text or "")
    assert caught.value.code == 529 and caught.value.status == "UNAVAILABLE"
    wait_until(lambda: gem.store.journal()[-1].status != 0)
    raw = seen.last()[2]
    *chunks, error = sse_chunks(raw)
    check_error(error, 529, "UNAVAILABLE")
    parsed = [types.GenerateContentResponse.model_validate_json(c, strict=True) for c in chunks]
    assert parsed and all(p.candidates and p.candidates[0].finish_reason is None for p in parsed)
    assert len({p.response_id for p in parsed}) == 1 and "".join(got) == streamed_text(parsed)
    assert gem.store.journal()[-1].status == 529


BAD_INPUT: list[tuple[Any, str]] = [
    (b'{"contents": [', "not valid JSON"),
    ({}, "contents: field required"),
    ({"contents": []}, "contents: must not be empty"),
    ({"contents": "hi"}, "contents: expected an array"),
    ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "contents[0].role: Please use a valid role"),
    ({"contents": [{"role": "user"}]}, "contents[0].parts: field required"),
    ({"contents": [{"parts": [{"text": 5}]}]}, "contents[0].parts[0].text: expected a string"),
    (
        {"contents": [{"parts": [{"functionCall": {"args": {}}}]}]},
        "contents[0].parts[0].functionCall.name: field required",
    ),
    ({**user("x"), "generationConfig": {"maxOutputTokens": 0}}, "generationConfig.maxOutputTokens: must be at least 1"),
    (
        {**user("x"), "generationConfig": {"candidateCount": 9}},
        "generationConfig.candidateCount: must be between 1 and 8",
    ),
    ({**user("x"), "generationConfig": {"stopSequences": [1]}}, "generationConfig.stopSequences[0]: expected a string"),
    (
        {**user("x"), "generationConfig": {"responseSchema": {"type": "OBJECT"}}},
        "generationConfig.responseMimeType: a response schema needs responseMimeType application/json",
    ),
    (
        {**user("x"), "generationConfig": {"responseMimeType": "application/json", "responseSchema": {"type": "BLOB"}}},
        "generationConfig.responseSchema.type: unknown type 'BLOB'",
    ),
    (
        {**user("x"), "tools": [{"functionDeclarations": [{"description": "d"}]}]},
        "tools[0].functionDeclarations[0].name",
    ),
    (
        {**user("x"), "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
        "toolConfig.functionCallingConfig.mode",
    ),
    ({**user("x"), "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}}, "ANY needs at least one function"),
    ({**user("x"), "systemInstruction": "be brief"}, "systemInstruction: expected an object"),
]


async def test_bad_input_gets_a_400_in_googles_shape(agem: Live) -> None:
    for payload, wanted in BAD_INPUT:
        for method in ("generateContent", "streamGenerateContent"):
            response = await post(agem, f"/v1beta/models/{MODEL}:{method}", payload)
            assert response.status_code == 400, (payload, response.text)
            assert wanted in check_error(response.content, 400, "INVALID_ARGUMENT")["message"], response.text
    wrong_type = await post(agem, f"/v1beta/models/{MODEL}:generateContent", b"{}", {"content-type": "text/plain"})
    check_error(wrong_type.content, 400, "INVALID_ARGUMENT")
    seen = Seen()
    with pytest.raises(errors.ClientError) as caught:
        await client(agem, seen).aio.models.generate_content(
            model=MODEL, contents=[types.Content(role="robot", parts=[types.Part(text="x")])]
        )
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")


async def test_unknown_paths_methods_and_models_answer_in_googles_shape(agem: Live) -> None:
    async with httpx.AsyncClient(base_url=agem.root) as http:
        unknown = await http.post(f"/v1beta/models/{MODEL}:predictLongRunning", json=user("x"))
        nowhere = await http.get("/v1beta/cachedContents")
        wrong_method = await http.put(f"/v1beta/models/{MODEL}:generateContent", json=user("x"))
    # `models/{id}:method` is a method of the model, not the model: one Google lacks is a 404.
    check_error(unknown.content, 404, "NOT_FOUND")
    check_error(nowhere.content, 404, "NOT_FOUND")
    assert wrong_method.status_code == 405
    check_error(wrong_method.content, 405, "INVALID_ARGUMENT")
    seen = Seen()
    with pytest.raises(errors.ClientError) as caught:
        await client(agem, seen).aio._api_client.async_request("post", f"models/{MODEL}:noSuchMethod", {})
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")
    assert seen.last()[:2] == (f"/v1/models/{MODEL}:noSuchMethod", 404)
    check_error(seen.last()[2], 404, "NOT_FOUND")
    got = await client(agem, seen).aio._api_client.async_request("get", f"models/{MODEL}", {})
    assert check_model(orjson.loads(got.body or "")).name == f"models/{MODEL}"
    agem.store.set_models(ModelRegistry(strict=True))
    missing = await post(agem, "/v1beta/models/gemini-0-nope:generateContent", user("x"))
    check_error(missing.content, 404, "NOT_FOUND")
    assert (await post(agem, "/v1beta/models/gemini-flash-latest:generateContent", user("x"))).status_code == 200


# -- auth, rate limits, Vertex AI --------------------------------------------------------------


async def test_api_key_from_the_header_or_the_query(agem: Live) -> None:
    agem.store.set_knobs("live", {"api_key": "gm-right"})
    seen = Seen()
    reply = await client(agem, seen, api_key="gm-right").aio.models.generate_content(model=MODEL, contents="hi")
    assert reply.text == DEFAULT
    with pytest.raises(errors.ClientError) as caught:
        await client(agem, seen, api_key="gm-wrong").aio.models.generate_content(model=MODEL, contents="hi")
    assert (caught.value.code, caught.value.status) == (401, "UNAUTHENTICATED")
    assert caught.value.message == "API key not valid. Please pass a valid API key."
    async with httpx.AsyncClient(base_url=agem.root) as http:
        by_query = await http.post(f"/v1beta/models/{MODEL}:generateContent?key=gm-right", json=user("hi"))
        wrong_query = await http.post(f"/v1beta/models/{MODEL}:generateContent?key=nope", json=user("hi"))
        missing = await http.post(f"/v1beta/models/{MODEL}:generateContent", json=user("hi"))
    assert check_body(by_query.content).text == DEFAULT
    check_error(wrong_query.content, 401, "UNAUTHENTICATED")
    assert "unregistered callers" in check_error(missing.content, 401, "UNAUTHENTICATED")["message"]
    assert all("gm-right" not in str(e.public()) for e in agem.store.journal())


async def test_rate_limit_is_resource_exhausted(agem: Live) -> None:
    agem.store.set_knobs("live", {"rate_limit_rpm": 1})
    assert (await post(agem, f"/v1beta/models/{MODEL}:generateContent", user("hi"))).status_code == 200
    limited = await post(agem, f"/v1beta/models/{MODEL}:generateContent", user("hi"))
    assert "Rate limit reached" in check_error(limited.content, 429, "RESOURCE_EXHAUSTED")["message"]
    assert int(limited.headers["retry-after"]) >= 1


def test_vertex_ai_paths_with_the_sdk(gem: Live) -> None:
    seen = Seen()
    http_options = transports(gem.root, seen)
    vertex = genai.Client(
        vertexai=True,
        project="proj",
        location="us-central1",
        credentials=Credentials(token="tok"),  # type: ignore[no-untyped-call]
        http_options=http_options,  # type: ignore[arg-type]
    )
    assert vertex.models.generate_content(model=MODEL, contents="hello").text == DEFAULT
    path = seen.last()[0]
    assert path == f"/v1beta1/projects/proj/locations/us-central1/publishers/google/models/{MODEL}:generateContent"
    check_body(seen.last()[2])
    chunks = list(vertex.models.generate_content_stream(model=MODEL, contents="hello"))
    assert "".join(c.text or "" for c in chunks) == DEFAULT
    check_stream(seen.last()[2])
    assert vertex.models.count_tokens(model=MODEL, contents="hello").total_tokens
    express = genai.Client(vertexai=True, api_key="k", http_options=http_options)  # type: ignore[arg-type]
    assert express.models.generate_content(model=MODEL, contents="hello").text == DEFAULT
    assert seen.last()[0] == f"/v1beta1/publishers/google/models/{MODEL}:generateContent"
    entries = gem.store.journal()
    assert {e.provider for e in entries} == {"gemini"} and entries[0].request_headers["authorization"] == "[redacted]"


def test_the_dispatcher_matches_templates_after_exact_paths(gem: Live) -> None:
    app = gem.app
    generate = app.endpoint_for("POST", f"/v1/models/{MODEL}:generateContent")
    assert generate is not None and generate.provider.name == "gemini" and generate.name == "generateContent"
    assert generate.path_params(f"/v1/models/{MODEL}:generateContent") == {"model": MODEL}
    vertex = "/v1/projects/p/locations/l/publishers/google/models/m:streamGenerateContent"
    assert app.endpoint_for("POST", vertex).name == "streamGenerateContent"  # type: ignore[union-attr]
    assert app.endpoint_for("POST", "/v1/models/a/b:generateContent") is None  # a template part is one segment
    assert app.endpoint_for("POST", "/v1/models/:generateContent") is None  # and never empty
    chat = app.endpoint_for("POST", "/v1/chat/completions")
    assert chat is not None and chat.provider.name != "gemini"
    gemini_get = app.endpoint_for("GET", f"/v1/models/{MODEL}", [(b"x-goog-api-key", b"k")])
    assert gemini_get is not None and gemini_get.provider.name == "gemini"
    openai_get = app.endpoint_for("GET", f"/v1/models/{MODEL}")
    assert openai_get is not None and openai_get.provider.name != "gemini"


def test_headless_cli_serves_google_genai(tmp_path: Path) -> None:
    proc, port, _ = start_headless("--api-key", "gm-cli", cwd=tmp_path)
    try:
        seen = Seen()
        live_url = f"http://127.0.0.1:{port}"
        http_options = transports(live_url, seen)
        gemini = genai.Client(api_key="gm-cli", http_options=http_options)  # type: ignore[arg-type]
        assert gemini.models.generate_content(model=MODEL, contents="hello").text
        check_body(seen.last()[2])
        assert "".join(c.text or "" for c in gemini.models.generate_content_stream(model=MODEL, contents="hello"))
        check_stream(seen.last()[2])
        assert f"models/{MODEL}" in [m.name for m in gemini.models.list()]
        with pytest.raises(errors.ClientError) as caught:
            wrong = genai.Client(api_key="wrong", http_options=transports(live_url, seen))  # type: ignore[arg-type]
            wrong.models.count_tokens(model=MODEL, contents="x")
        assert caught.value.status == "UNAUTHENTICATED"
    finally:
        proc.kill()
        proc.communicate(timeout=5)
