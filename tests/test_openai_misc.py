"""Legacy completions, embeddings, models and the model registry against the real server."""

from __future__ import annotations

import math
from typing import Any, Literal

import openai
import orjson
import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types import Completion, CompletionChoice, CreateEmbeddingResponse, Model

from mockllm_tui.core.models import ModelRegistry, check_model, default_registry
from mockllm_tui.core.store import Store
from tests.conftest import Live
from tests.openai_testkit import assert_openai_error, get_raw, post_raw, sse_data
from tests.support import DEFAULT_TEXT, FixedReplies

LONG_TEXT = " ".join(f"word{i}" for i in range(40))


class StreamedChoice(CompletionChoice):
    """The SDK types stream chunks as `Completion`, whose `finish_reason` may not be null; the API
    sends null until a choice's last chunk (and the SDK builds chunks without validating)."""

    finish_reason: Literal["stop", "length", "content_filter"] | None  # type: ignore[assignment]


class StreamedCompletion(Completion):
    """A legacy completion stream chunk: `Completion`, with `StreamedChoice` choices."""

    choices: list[StreamedChoice]  # type: ignore[assignment]


def client(live: Live) -> AsyncOpenAI:
    """The real async SDK pointed at the live server."""
    return AsyncOpenAI(base_url=live.openai_url, api_key="sk-test", max_retries=0)


async def complete(live: Live, **body: Any) -> Completion:
    """A legacy completion, validated strictly."""
    payload = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", **body}
    response = await post_raw(live, "/v1/completions", payload)
    assert response.status_code == 200, response.text
    return Completion.model_validate_json(response.content, strict=True)


async def embed(live: Live, **body: Any) -> CreateEmbeddingResponse:
    """Embeddings as floats, validated strictly."""
    response = await post_raw(live, "/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi", **body})
    assert response.status_code == 200, response.text
    return CreateEmbeddingResponse.model_validate_json(response.content, strict=True)


def norm(vector: list[float]) -> float:
    """Euclidean length."""
    return math.sqrt(sum(x * x for x in vector))


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two unit vectors."""
    return sum(x * y for x, y in zip(a, b, strict=True))


# -- legacy completions ------------------------------------------------------------------------


async def test_completion_json(live: Live) -> None:
    completion = await complete(live)
    assert completion.id.startswith("cmpl-") and completion.object == "text_completion"
    assert completion.choices[0].text == DEFAULT_TEXT and completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    sdk = await client(live).completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    assert sdk.choices[0].text == DEFAULT_TEXT
    unprefixed = await post_raw(live, "/completions", {"model": "m", "prompt": "x"})
    assert Completion.model_validate_json(unprefixed.content, strict=True).choices[0].text == DEFAULT_TEXT


async def test_completion_stream(live: Live) -> None:
    whole = await complete(live)
    payload = {"model": "m", "prompt": "Say hi", "stream": True, "stream_options": {"include_usage": True}}
    response = await post_raw(live, "/v1/completions", payload)
    chunks = [StreamedCompletion.model_validate_json(d, strict=True) for d in sse_data(response.content)]
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    *text_chunks, usage_chunk = chunks
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert whole.usage is not None and usage_chunk.usage.completion_tokens == whole.usage.completion_tokens
    finishes = [c.choices[0].finish_reason for c in text_chunks if c.choices[0].finish_reason]
    assert finishes == ["stop"] and text_chunks[-1].choices[0].finish_reason == "stop"
    Completion.model_validate_json(sse_data(response.content)[-2], strict=True)
    assert "".join(c.choices[0].text for c in text_chunks) == DEFAULT_TEXT
    stream = await client(live).completions.create(model="m", prompt="Say hi", stream=True)
    assert "".join([c.choices[0].text async for c in stream]) == DEFAULT_TEXT


async def test_completion_options(live: Live) -> None:
    echoed = await complete(live, echo=True)
    assert echoed.choices[0].text == "Say hi" + DEFAULT_TEXT
    many = await complete(live, prompt=["a", "b"], n=2, echo=True)
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    assert [c.text[0] for c in many.choices] == ["a", "a", "b", "b"]
    short = await complete(live, max_tokens=2)
    assert short.choices[0].finish_reason == "length"
    assert short.usage is not None and short.usage.completion_tokens == 2
    stopped = await complete(live, stop="mock")
    assert stopped.choices[0].text == DEFAULT_TEXT[: DEFAULT_TEXT.index("mock")]
    tokens = await complete(live, prompt=[1, 2, 3])
    assert tokens.choices[0].text == DEFAULT_TEXT


async def test_completion_default_max_tokens_is_16(live: Live) -> None:
    live.store.set_rules(FixedReplies(text=LONG_TEXT))
    completion = await complete(live)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 16
    longer = await complete(live, max_tokens=500)
    assert longer.choices[0].text == LONG_TEXT and longer.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("body", "mentions", "param"),
    [
        ({"model": "m"}, "prompt: field required", "prompt"),
        ({"prompt": "x"}, "model: field required", "model"),
        ({"model": "m", "prompt": 5}, "prompt: expected", "prompt"),
        ({"model": "m", "prompt": ["a", 5]}, "prompt[1]: expected a string", "prompt[1]"),
        ({"model": "m", "prompt": "x", "echo": "yes"}, "echo: expected a boolean", "echo"),
        ({"model": "m", "prompt": "x", "max_tokens": -1}, "max_tokens", "max_tokens"),
    ],
)
async def test_completion_bad_bodies(live: Live, body: dict[str, Any], mentions: str, param: str) -> None:
    assert_openai_error(await post_raw(live, "/v1/completions", body), 400, mentions=mentions, param=param)


# -- embeddings --------------------------------------------------------------------------------


async def test_embeddings_are_deterministic_unit_vectors(live: Live) -> None:
    first = await embed(live, input=["the cat sat", "quantum chromodynamics", "the cat sat"])
    assert [d.index for d in first.data] == [0, 1, 2]
    vectors = [d.embedding for d in first.data]
    assert all(len(v) == 1536 and abs(norm(v) - 1.0) < 1e-5 for v in vectors)
    assert vectors[0] == vectors[2] and vectors[0] != vectors[1]
    again = await embed(live, input="the cat sat")
    assert again.data[0].embedding == vectors[0]
    near = (await embed(live, input="the cat sat down")).data[0].embedding
    assert cosine(vectors[0], near) > cosine(vectors[0], vectors[1])
    assert first.usage.prompt_tokens == first.usage.total_tokens > 0
    assert first.model == "text-embedding-3-small"


async def test_embedding_dimensions(live: Live) -> None:
    large = await embed(live, model="text-embedding-3-large")
    assert len(large.data[0].embedding) == 3072
    small = await embed(live, dimensions=256)
    assert len(small.data[0].embedding) == 256 and abs(norm(small.data[0].embedding) - 1.0) < 1e-5
    unknown = await embed(live, model="my-embedder")
    assert len(unknown.data[0].embedding) == 1536
    tokens = await embed(live, input=[[1, 2, 3], [4, 5]])
    assert len(tokens.data) == 2


async def test_sdk_embeddings_default_base64(live: Live) -> None:
    raw = await post_raw(live, "/v1/embeddings", {"model": "m", "input": "hello", "encoding_format": "base64"})
    assert isinstance(orjson.loads(raw.content)["data"][0]["embedding"], str)
    floats = (await embed(live, input="hello", dimensions=64)).data[0].embedding
    sdk = await client(live).embeddings.create(model="text-embedding-3-small", input="hello", dimensions=64)
    vector = sdk.data[0].embedding
    assert len(vector) == 64 and abs(norm(vector) - 1.0) < 1e-5
    assert vector == floats


async def test_embeddings_take_injected_errors(live: Live) -> None:
    body = {"model": "m", "input": "x"}
    failed = await post_raw(live, "/v1/embeddings", body, headers={"x-mock-error": "503"})
    assert_openai_error(failed, 503)
    assert (await post_raw(live, "/v1/embeddings", body)).status_code == 200


@pytest.mark.parametrize(
    ("body", "mentions", "param"),
    [
        ({"model": "m"}, "input: field required", "input"),
        ({"input": "x"}, "model: field required", "model"),
        ({"model": "m", "input": ""}, "input: must not be an empty string", "input"),
        ({"model": "m", "input": ["a", ""]}, "input[1]", "input[1]"),
        ({"model": "m", "input": 5}, "input: expected", "input"),
        ({"model": "m", "input": "x", "encoding_format": "hex"}, "encoding_format", "encoding_format"),
        ({"model": "m", "input": "x", "dimensions": 0}, "dimensions", "dimensions"),
    ],
)
async def test_embedding_bad_bodies(live: Live, body: dict[str, Any], mentions: str, param: str) -> None:
    assert_openai_error(await post_raw(live, "/v1/embeddings", body), 400, mentions=mentions, param=param)


# -- models ------------------------------------------------------------------------------------


async def test_models_list_and_retrieve(live: Live) -> None:
    listing = orjson.loads((await get_raw(live, "/v1/models")).content)
    assert listing["object"] == "list"
    models = [Model.model_validate_json(orjson.dumps(m), strict=True) for m in listing["data"]]
    ids = {m.id for m in models}
    assert {"gpt-4o", "gpt-4o-2024-08-06", "text-embedding-3-small", "claude-sonnet-4-5"} <= ids
    sdk = client(live)
    assert {m.id async for m in sdk.models.list()} == ids
    alias = await get_raw(live, "/v1/models/gpt-4o")
    model = Model.model_validate_json(alias.content, strict=True)
    assert (model.id, model.owned_by) == ("gpt-4o", "system")
    assert (await sdk.models.retrieve("claude-haiku-4-5")).owned_by == "anthropic"
    missing = await get_raw(live, "/v1/models/gpt-nope")
    assert_openai_error(missing, 404, mentions="gpt-nope")
    assert orjson.loads(missing.content)["error"]["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        await sdk.models.retrieve("gpt-nope")


def test_models_with_the_sync_sdk(server: Live) -> None:
    sdk = OpenAI(base_url=server.openai_url, api_key="sk-test", max_retries=0)
    assert sdk.models.retrieve("o3").id == "o3"
    with pytest.raises(openai.NotFoundError) as info:
        sdk.models.retrieve("nope")
    assert info.value.code == "model_not_found"


async def test_strict_models_refuse_unknown_models_everywhere(live: Live) -> None:
    live.store.set_models(ModelRegistry.from_config([{"id": "house-model", "aliases": "house"}], strict=True))
    requests: list[tuple[str, dict[str, Any]]] = [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/responses", {"input": "hi"}),
        ("/v1/completions", {"prompt": "hi"}),
        ("/v1/embeddings", {"input": "hi"}),
    ]
    for path, body in requests:
        refused = await post_raw(live, path, {"model": "gpt-nope", **body})
        assert_openai_error(refused, 404, mentions="gpt-nope", param="model")
        error = orjson.loads(refused.content)["error"]
        assert (error["code"], error["type"]) == ("model_not_found", "invalid_request_error")
        for model in ("house", "house-model", "gpt-4o"):
            assert (await post_raw(live, path, {"model": model, **body})).status_code == 200
    listed = {m.id async for m in client(live).models.list()}
    assert {"house", "house-model", "gpt-4o"} <= listed
    with pytest.raises(openai.NotFoundError):
        await client(live).chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])


async def test_unknown_models_are_served_by_default(live: Live) -> None:
    completion = await client(live).chat.completions.create(
        model="totally-made-up", messages=[{"role": "user", "content": "x"}]
    )
    assert completion.model == "totally-made-up"


# -- the registry ------------------------------------------------------------------------------


def test_registry_resolves_ids_and_aliases() -> None:
    registry = default_registry()
    gpt4o = registry.resolve("gpt-4o")
    assert gpt4o is not None and gpt4o.id == "gpt-4o-2024-08-06"
    assert registry.resolve("gpt-4o-2024-08-06") is gpt4o
    assert registry.resolve("nope") is None and not registry.strict
    store = Store()
    assert store.models.resolve("claude-sonnet-4-0") is not None
    check_model(store.models, "nope")
    store.set_models(registry.with_strict(True))
    with pytest.raises(Exception) as info:
        check_model(store.models, "nope")
    assert getattr(info.value, "status", None) == 404 and getattr(info.value, "code", None) == "model_not_found"


def test_registry_from_config() -> None:
    registry = ModelRegistry.from_config(
        ["plain", {"id": "gpt-4o-2024-08-06", "aliases": ["mine"], "owned_by": "me", "created": 5}],
        include_defaults=True,
    )
    assert registry.resolve("plain") is not None
    mine = registry.resolve("mine")
    assert mine is not None and (mine.id, mine.owned_by, mine.created) == ("gpt-4o-2024-08-06", "me", 5)
    assert registry.resolve("gpt-4o") is None
    assert ModelRegistry.from_config(["only"], include_defaults=False).names() == ["only"]


@pytest.mark.parametrize(
    ("entries", "where"),
    [
        ([5], "models[0]"),
        ([{"aliases": ["x"]}], "models[0].id"),
        (["ok", {"id": "x", "aliases": [1]}], "models[1].aliases"),
        ([{"id": "x", "created": "yesterday"}], "models[0].created"),
        ([{"id": "x", "colour": "red"}], "unknown key 'colour'"),
    ],
)
def test_registry_config_errors_name_the_entry(entries: list[Any], where: str) -> None:
    with pytest.raises(ValueError, match=where.replace("[", r"\[").replace("]", r"\]")):
        ModelRegistry.from_config(entries)
