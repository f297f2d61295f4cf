"""OpenAI's other endpoints: legacy `POST /v1/completions`, `POST /v1/embeddings`, `GET /v1/models[/{id}]`."""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from mockllm_tui.core.conversation import Conversation, Message, Reply, RequestError, preview
from mockllm_tui.core.models import DEFAULT_EMBEDDING_DIMENSIONS, ModelInfo
from mockllm_tui.engine.embedding import MAX_DIMENSIONS
from mockllm_tui.engine.limits import LimitBreach
from mockllm_tui.providers.base import (
    ChatEndpoint,
    EmbeddingEndpoint,
    Frame,
    Query,
    RenderContext,
    ReplyReader,
    Request,
)
from mockllm_tui.providers.model_routes import ModelListing, ModelLookup
from mockllm_tui.providers.openai_chat import (
    DONE,
    ChunkExtras,
    FirstChoiceReader,
    chat_limit_error,
    finish_reason,
    neutral_finish,
    usage_object,
)
from mockllm_tui.providers.openai_common import (
    OpenAIBase,
    check_type,
    optional,
    positive_int,
    require,
    stop_list,
)
from mockllm_tui.providers.registry import register_provider

LEGACY_DEFAULT_MAX_TOKENS = 16
COMPLETION_FINISH = ("stop", "length", "content_filter")
MAX_EMBEDDING_INPUTS = 2048
ENCODINGS = ("float", "base64")


# -- legacy completions ------------------------------------------------------------------------


@dataclass(slots=True)
class CompletionConversation(Conversation):
    """A legacy completion request: its prompts, the choices per prompt, and whether to echo them."""

    prompts: list[str] = field(default_factory=list)
    per_prompt: int = 1
    echo: bool = False

    def echoed(self, index: int) -> str:
        """The prompt text that starts choice `index` (empty unless `echo`)."""
        return self.prompts[index // self.per_prompt] if self.echo and self.prompts else ""


def prompt_texts(value: Any, name: str) -> list[str]:
    """A prompt (string, strings, token array or token arrays) as texts; tokens become their numbers."""
    if value is None:
        raise RequestError(f"{name}: field required", param=name)
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise RequestError(f"{name}: expected a string, an array of strings or an array of tokens", param=name)
    if all(_is_token(v) for v in value):
        return [_token_text(value)]
    texts = []
    for i, item in enumerate(value):
        if isinstance(item, list) and item and all(_is_token(v) for v in item):
            texts.append(_token_text(item))
        else:
            texts.append(check_type(item, str, f"{name}[{i}]"))
    return texts


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _token_text(tokens: list[int]) -> str:
    return " ".join(map(str, tokens))


def _completion_finish(reply: Reply) -> str:
    reason = finish_reason(reply)
    return reason if reason in COMPLETION_FINISH else "stop"


def completion_limit_error(breach: LimitBreach) -> RequestError:
    """The legacy API's wording of a prompt (plus `max_tokens`) over the window, with no `param` or
    `code`, as it sends them; `max_tokens` over the output limit is worded as chat words it."""
    if breach.kind == "output_limit":
        return chat_limit_error(breach)
    prompt, completion = breach.input_tokens, breach.requested or 0
    return RequestError(
        f"This model's maximum context length is {breach.limit} tokens, however you requested "
        f"{prompt + completion} tokens ({prompt} in your prompt; {completion} for the completion). "
        "Please reduce your prompt; or completion length."
    )


class Completions(ChatEndpoint, ChunkExtras):
    """`POST /v1/completions` (legacy), through the chat pipeline (rules, faults, pacing)."""

    paths = ("/v1/completions", "/completions")
    name = "completions"
    operation = "text_completion"
    id_prefix = "cmpl-"

    def parse(self, body: dict[str, Any]) -> Conversation:
        """Parse a legacy completion request."""
        model = require(body, "model", str)
        prompts = prompt_texts(body.get("prompt"), "prompt")
        per_prompt = positive_int(body, "n", 1, 128) or 1
        max_tokens = positive_int(body, "max_tokens", 0)
        stream_options = optional(body, "stream_options", dict, {})
        optional(body, "suffix", str)
        positive_int(body, "logprobs", 0, 5)
        positive_int(body, "best_of", 1, 20)
        optional(body, "temperature", float)
        return CompletionConversation(
            provider="openai",
            endpoint=self.name,
            model=model,
            messages=[Message(role="user", content="\n".join(prompts))],
            stream=bool(optional(body, "stream", bool, False)),
            include_usage=bool(optional(stream_options, "include_usage", bool, False, "stream_options.")),
            n=per_prompt * len(prompts),
            max_tokens=LEGACY_DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
            stop=stop_list(body.get("stop")),
            prompts=prompts,
            per_prompt=per_prompt,
            echo=bool(optional(body, "echo", bool, False)),
        )

    def limit_error(self, breach: LimitBreach) -> RequestError:
        """The legacy wording (see `completion_limit_error`)."""
        return completion_limit_error(breach)

    def render(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> dict[str, Any]:
        """A `text_completion` object."""
        conv = _as_completion(conversation)
        finish = _completion_finish(reply)
        choices = [
            {"text": conv.echoed(i) + reply.text, "index": i, "logprobs": None, "finish_reason": finish}
            for i in range(conv.n)
        ]
        return {
            **_head(conv, ctx),
            "choices": choices,
            "usage": usage_object(reply, conv.n),
            "system_fingerprint": "fp_mockllm",
        }

    def render_stream(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> Iterator[Frame]:
        """`text_completion` chunks per choice, the optional usage chunk, then `[DONE]`."""
        conv = _as_completion(conversation)
        preface = self.stream_preface(conversation, _head(conv, ctx))
        if preface:
            yield from preface
        head = {**_head(conv, ctx), "system_fingerprint": "fp_mockllm"}
        if conv.include_usage:
            head["usage"] = None
        choice_extra = self.choice_extra

        def chunk(index: int, text: str, finish: str | None = None) -> bytes:
            choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
            if choice_extra:
                choice.update(choice_extra)
            return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"

        for i in range(conv.n):
            if conv.echoed(i):
                yield Frame(chunk(i, conv.echoed(i)))
            for piece, tokens in zip(ctx.pieces, ctx.piece_tokens, strict=True):
                yield Frame(chunk(i, piece), piece, tokens)
            yield Frame(chunk(i, "", _completion_finish(reply)))
        if conv.include_usage:
            usage = {**head, "choices": [], "usage": usage_object(reply, conv.n)}
            yield Frame(b"data: " + orjson.dumps(usage) + b"\n\n")
        yield Frame(DONE)

    def reply_reader(self, conversation: Conversation) -> ReplyReader:
        """Reads an upstream's text completion (or its chunks) back into a Reply."""
        return CompletionReader(conversation.stream)


class CompletionReader(FirstChoiceReader):
    """A `text_completion` (or its chunks) read back into a Reply: the first choice only."""

    def read_body(self, body: Any) -> None:
        """The first choice's text."""
        choice = body["choices"][0]
        self.text = choice.get("text") or ""
        self.finish_reason = neutral_finish(choice.get("finish_reason"))

    def read_choice(self, choice: dict[str, Any]) -> str:
        """A chunk's text."""
        piece = str(choice.get("text") or "")
        self.text += piece
        return piece


def _head(conv: Conversation, ctx: RenderContext) -> dict[str, Any]:
    return {"id": ctx.id, "object": "text_completion", "created": ctx.created, "model": conv.model}


def _as_completion(conversation: Conversation) -> CompletionConversation:
    if isinstance(conversation, CompletionConversation):
        return conversation
    return CompletionConversation(
        provider=conversation.provider, endpoint=conversation.endpoint, model=conversation.model
    )


# -- embeddings --------------------------------------------------------------------------------


def embedding_inputs(value: Any) -> list[str]:
    """`input` as texts: a string, strings, a token array or token arrays; none may be empty."""
    if value is None:
        raise RequestError("input: field required", param="input")
    texts = prompt_texts(value, "input")
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise RequestError(f"input: at most {MAX_EMBEDDING_INPUTS} inputs, got {len(texts)}", param="input")
    for i, text in enumerate(texts):
        if not text:
            where = "input" if isinstance(value, str) else f"input[{i}]"
            raise RequestError(f"{where}: must not be an empty string", param=where)
    return texts


def encode_vector(vector: array[float], encoding: str) -> list[float] | str:
    """Floats, or OpenAI's base64 of little-endian float32."""
    if encoding == "float":
        return vector.tolist()
    if sys.byteorder == "big":
        vector = array("f", vector)
        vector.byteswap()
    return base64.b64encode(vector.tobytes()).decode("ascii")


class Embeddings(EmbeddingEndpoint):
    """`POST /v1/embeddings`."""

    paths = ("/v1/embeddings", "/embeddings")
    name = "embeddings"

    def parse_request(self, request: Request) -> Query:
        """The model, the inputs, the dimensions (the model's own by default) and the encoding."""
        body = request.json()
        model = self.request_model(request, body)
        texts = embedding_inputs(body.get("input"))
        encoding = optional(body, "encoding_format", str, "float")
        if encoding not in ENCODINGS:
            raise RequestError(f"encoding_format: expected float or base64, got {encoding!r}", param="encoding_format")
        dimensions = positive_int(body, "dimensions", 1, MAX_DIMENSIONS)
        if dimensions is None:
            known = request.models.resolve(model)
            dimensions = (known.dimensions if known else None) or DEFAULT_EMBEDDING_DIMENSIONS
        optional(body, "user", str)
        return Query(
            model=model,
            preview=preview(texts[0]),
            texts=texts,
            dimensions=[dimensions] * len(texts),
            params={"encoding": encoding},
        )

    def render_embeddings(self, query: Query, vectors: list[array[float]], tokens: int) -> dict[str, Any]:
        """A list of `embedding` objects, floats or base64."""
        encoding = query.params["encoding"]
        data = [
            {"object": "embedding", "index": i, "embedding": encode_vector(vector, encoding)}
            for i, vector in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": query.model, "usage": usage}

    def request_model(self, request: Request, body: dict[str, Any]) -> str:
        """The model the request names (in its body here; a subclass may read the path)."""
        return str(require(body, "model", str))


# -- models ------------------------------------------------------------------------------------


def model_object(model: ModelInfo, name: str | None = None) -> dict[str, Any]:
    """An OpenAI `Model` object, under `name` (an alias) or the id."""
    return {"id": name or model.id, "object": "model", "created": model.created, "owned_by": model.owned_by}


class ListModels(ModelListing):
    """`GET /v1/models`: every model id and alias of the registry in force."""

    paths = ("/v1/models", "/models")

    def listing(self, models: list[ModelInfo]) -> dict[str, Any]:
        """A list of Model objects, aliases included."""
        return {"object": "list", "data": [model_object(m, name) for m in models for name in m.names()]}


class RetrieveModel(ModelLookup):
    """`GET /v1/models/{id}`."""

    paths = ("/v1/models/{id}", "/models/{id}")

    def describe(self, model: ModelInfo, name: str) -> dict[str, Any]:
        """A Model object."""
        return model_object(model, name)


class OpenAIMisc(OpenAIBase):
    """OpenAI's legacy completions, embeddings and models endpoints."""

    name = "openai-misc"
    endpoint_classes = (Completions, Embeddings, ListModels, RetrieveModel)


register_provider(OpenAIMisc)
