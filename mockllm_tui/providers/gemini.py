"""Google Gemini for the google-genai SDK: `models/{model}:generateContent`, `:streamGenerateContent`
(SSE), `:countTokens`, `:embedContent`, `:batchEmbedContents` and `GET models[/{model}]`, under
`/v1beta` and `/v1`, and Vertex AI's publisher-model paths for generation and token counting.

The request's JSON may use camelCase or snake_case keys (the API accepts both, and the SDK sends
some of each). Schemas in Gemini's OpenAPI subset (`type: OBJECT`, `nullable`) become JSON Schema
for the reply shaping.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any, ClassVar
from urllib.parse import parse_qs

import orjson

from mockllm_tui.core.conversation import Conversation, Message, Reply, RequestError, ToolCall, ToolSpec, preview
from mockllm_tui.core.models import DEFAULT_EMBEDDING_DIMENSIONS, ModelInfo, ModelRegistry
from mockllm_tui.core.tokens import count_json, count_tokens
from mockllm_tui.engine.embedding import MAX_DIMENSIONS
from mockllm_tui.engine.limits import LimitBreach
from mockllm_tui.providers.base import (
    CLAIM_NONE,
    CLAIM_OWN,
    ChatEndpoint,
    EmbeddingEndpoint,
    Endpoint,
    Frame,
    Headers,
    Provider,
    Query,
    RenderContext,
    ReplyReader,
    Request,
    TokenCountEndpoint,
    bearer_token,
)
from mockllm_tui.providers.model_routes import ModelListing, ModelLookup
from mockllm_tui.providers.parsing import check_type
from mockllm_tui.providers.registry import register_provider

PROVIDER = "gemini"
#: The registry's `owned_by` of the models Gemini's `models.list` shows.
OWNER = "google"
API_VERSIONS = ("/v1beta", "/v1")
VERTEX_VERSIONS = ("/v1", "/v1beta1")
#: Vertex AI with a project (`vertexai=True, project=..., location=...`) and in express mode (an API key).
VERTEX_MODELS = ("/projects/{project}/locations/{location}/publishers/google/models/", "/publishers/google/models/")
OWN_PREFIXES = ("/v1beta/", "/v1beta1/", "/v1/projects/", "/v1/publishers/")
KEY_HEADER = "x-goog-api-key"
#: Every google-genai request carries it, with or without a key.
CLIENT_HEADER = "x-goog-api-client"

ROLES = ("user", "model", "function")
MODES = {"AUTO": "auto", "VALIDATED": "auto", "MODE_UNSPECIFIED": "auto", "NONE": "none", "ANY": "required"}
JSON_MIME = "application/json"
SCHEMA_MIMES = (JSON_MIME, "text/x.enum")
MAX_CANDIDATES = 8
MAX_BATCH = 100
SSE_END = b"\r\n\r\n"

FINISH_REASONS = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "stop_sequence": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
}

#: google.rpc status names by HTTP status, as Google's APIs pair them.
GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
STATUS_NAMES = frozenset(GOOGLE_STATUSES.values()) | {"FAILED_PRECONDITION", "OUT_OF_RANGE", "ALREADY_EXISTS"}
#: What google-genai retries once retries are turned on (`HttpOptions.retry_options`); none by default.
SDK_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

GENERATE_METHODS = ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
EMBED_METHODS = ["embedContent", "countTextTokens", "countTokens"]
#: Google's default page size for `models.list`, and its largest.
PAGE_SIZE, MAX_PAGE_SIZE = 50, 1000

SCHEMA_TYPES = ("string", "number", "integer", "boolean", "array", "object", "null")
SCHEMA_VALUES = ("format", "description", "enum", "pattern", "title", "default", "minimum", "maximum")
SCHEMA_COUNTS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")
RESULT_KEYS = ("result", "output", "content")


def google_status(status: int) -> str:
    """The google.rpc status name for an HTTP status."""
    return GOOGLE_STATUSES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")


def gemini_error(status: int, message: str, name: str | None = None) -> dict[str, Any]:
    """`{"error": {"code", "message", "status"}}`."""
    return {"error": {"code": status, "message": message, "status": name or google_status(status)}}


def sse(data: dict[str, Any]) -> bytes:
    """One SSE `data:` event, as Google ends them (CRLF CRLF)."""
    return b"data: " + orjson.dumps(data) + SSE_END


def model_paths(method: str, *, vertex: bool = True) -> tuple[str, ...]:
    """The path templates of a model method, under every API version (and Vertex AI's)."""
    paths = [f"{version}/models/{{model}}:{method}" for version in API_VERSIONS]
    if vertex:
        paths += [f"{version}{prefix}{{model}}:{method}" for version in VERTEX_VERSIONS for prefix in VERTEX_MODELS]
    return tuple(paths)


# -- parsing -----------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def snake(name: str) -> str:
    """`functionCall` -> `function_call` (the API reads both spellings)."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


@lru_cache(maxsize=256)
def camel(name: str) -> str:
    """`min_items` -> `minItems`."""
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "", default: Any = None) -> Any:
    """An optional field in camelCase or snake_case, of the right JSON type (null means absent)."""
    value = obj.get(key)
    if value is None:
        value = obj.get(snake(key))
    if value is None:
        return default
    return check_type(value, kind, where + key)


def needed(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    """A required field in camelCase or snake_case."""
    value = field(obj, key, kind, where)
    if value is None:
        raise RequestError(f"{where}{key}: field required", param=where + key)
    return value


def result_text(response: dict[str, Any]) -> str:
    """A function response as text: its `result` (or `output`, `content`) string, else its JSON."""
    if len(response) == 1:
        value = next(iter(response.values()))
        if next(iter(response)) in RESULT_KEYS and isinstance(value, str):
            return value
    return orjson.dumps(response).decode()


def parse_contents(value: Any, where: str = "contents") -> list[Message]:
    """`contents[]` as messages: a user turn's `functionResponse` parts become role "tool" messages
    before its text; a model turn's `functionCall` parts become its tool calls."""
    if value is None:
        raise RequestError(f"{where}: field required", param=where)
    contents = check_type(value, list, where)
    if not contents:
        raise RequestError(f"{where}: must not be empty", param=where)
    messages: list[Message] = []
    for i, raw in enumerate(contents):
        at = f"{where}[{i}]."
        raw = check_type(raw, dict, at[:-1])
        role = field(raw, "role", str, at, "user")
        if role not in ROLES:
            raise RequestError(f"{at}role: Please use a valid role: user, model.", param=at + "role")
        texts: list[str] = []
        calls: list[ToolCall] = []
        results: list[Message] = []
        for j, part in enumerate(needed(raw, "parts", list, at)):
            p = f"{at}parts[{j}]."
            part = check_type(part, dict, p[:-1])
            text = field(part, "text", str, p)
            if text is not None and not field(part, "thought", bool, p, False):
                texts.append(text)
            call = field(part, "functionCall", dict, p)
            if call is not None:
                q = p + "functionCall."
                calls.append(
                    ToolCall(
                        name=needed(call, "name", str, q),
                        arguments=field(call, "args", dict, q, {}),
                        id=field(call, "id", str, q, ""),
                    )
                )
            response = field(part, "functionResponse", dict, p)
            if response is not None:
                q = p + "functionResponse."
                results.append(
                    Message(
                        role="tool",
                        content=result_text(field(response, "response", dict, q, {})),
                        name=needed(response, "name", str, q),
                        tool_call_id=field(response, "id", str, q),
                    )
                )
        if role == "model":
            messages.append(Message(role="assistant", content="\n".join(texts), tool_calls=calls))
            continue
        messages.extend(results)
        if texts or not results:
            messages.append(Message(role="user", content="\n".join(texts)))
    return messages


def content_text(value: Any, where: str) -> str:
    """The text parts of one `Content` object, joined (an absent one is empty)."""
    if value is None:
        return ""
    content = check_type(value, dict, where)
    texts = []
    for j, part in enumerate(needed(content, "parts", list, where + ".")):
        p = f"{where}.parts[{j}]."
        text = field(check_type(part, dict, p[:-1]), "text", str, p)
        if text is not None:
            texts.append(text)
    return "\n".join(texts)


def json_schema(value: Any, where: str) -> dict[str, Any]:
    """A Gemini `Schema` (OpenAPI subset: upper-case types, `nullable`) as JSON Schema."""
    schema = check_type(value, dict, where)
    out: dict[str, Any] = {}
    for raw_key, item in schema.items():
        key, at = camel(raw_key), f"{where}.{raw_key}"
        if item is None:
            continue
        if key == "type":
            kind = check_type(item, str, at).lower()
            if kind not in SCHEMA_TYPES and kind != "type_unspecified":
                raise RequestError(f"{at}: unknown type {item!r}", param=at)
            if kind != "type_unspecified":
                out["type"] = kind
        elif key == "properties":
            out["properties"] = {k: json_schema(v, f"{at}.{k}") for k, v in check_type(item, dict, at).items()}
        elif key == "items":
            out["items"] = json_schema(item, at)
        elif key == "anyOf":
            out["anyOf"] = [json_schema(v, f"{at}[{i}]") for i, v in enumerate(check_type(item, list, at))]
        elif key == "required":
            out["required"] = [check_type(v, str, f"{at}[{i}]") for i, v in enumerate(check_type(item, list, at))]
        elif key in SCHEMA_COUNTS:
            # int64 fields arrive as JSON strings in the proto3 mapping.
            count = int(item) if isinstance(item, str) and item.isdigit() else check_type(item, int, at)
            out[key] = count
        elif key in SCHEMA_VALUES:
            out[key] = item
    if field(schema, "nullable", bool, where + ".") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def function_schema(declaration: dict[str, Any], where: str) -> dict[str, Any]:
    """A function's parameters as JSON Schema (`parametersJsonSchema` as it is, `parameters` converted)."""
    plain = field(declaration, "parametersJsonSchema", dict, where)
    schema = field(declaration, "parameters", dict, where)
    if plain is not None and schema is not None:
        raise RequestError(f"{where}parameters: set parameters or parametersJsonSchema, not both", param=where)
    if plain is not None:
        return dict(plain)
    return json_schema(schema, where + "parameters") if schema is not None else {"type": "object", "properties": {}}


def parse_tools(value: Any) -> list[ToolSpec]:
    """`tools[].functionDeclarations` (other tools, such as Google Search, are accepted and skipped)."""
    specs = []
    for i, tool in enumerate(check_type(value, list, "tools")):
        at = f"tools[{i}]."
        for j, declaration in enumerate(field(check_type(tool, dict, at[:-1]), "functionDeclarations", list, at, [])):
            d = f"{at}functionDeclarations[{j}]."
            declaration = check_type(declaration, dict, d[:-1])
            specs.append(
                ToolSpec(
                    name=needed(declaration, "name", str, d),
                    description=field(declaration, "description", str, d, ""),
                    parameters=function_schema(declaration, d),
                )
            )
    return specs


def parse_tool_config(value: Any, tools: list[ToolSpec]) -> str:
    """`toolConfig.functionCallingConfig` as Conversation.tool_choice: ANY with one allowed name
    forces that function, ANY otherwise any function, NONE none, AUTO (the default) auto."""
    if value is None:
        return "auto"
    where = "toolConfig.functionCallingConfig."
    config = field(check_type(value, dict, "toolConfig"), "functionCallingConfig", dict, "toolConfig.", {})
    mode = field(config, "mode", str, where, "AUTO")
    if mode not in MODES:
        raise RequestError(f"{where}mode: expected one of {', '.join(MODES)}, got {mode!r}", param=where + "mode")
    allowed = field(config, "allowedFunctionNames", list, where, [])
    for i, name in enumerate(allowed):
        if not any(t.name == check_type(name, str, f"{where}allowedFunctionNames[{i}]") for t in tools):
            raise RequestError(f"{where}allowedFunctionNames[{i}]: no function named {name!r} in tools", param=where)
    if mode == "ANY" and not tools:
        raise RequestError(f"{where}mode: ANY needs at least one function declaration in tools", param=where + "mode")
    if mode == "ANY" and len(allowed) == 1:
        return str(allowed[0])
    return MODES[mode]


def response_format(config: dict[str, Any]) -> dict[str, Any] | None:
    """JSON output: `responseMimeType: application/json` with `responseSchema` or `responseJsonSchema`."""
    where = "generationConfig."
    mime = field(config, "responseMimeType", str, where)
    schema = field(config, "responseSchema", dict, where)
    plain = field(config, "responseJsonSchema", dict, where)
    if schema is not None and plain is not None:
        raise RequestError(
            f"{where}responseSchema: set responseSchema or responseJsonSchema, not both", param=where + "responseSchema"
        )
    if (schema is not None or plain is not None) and mime not in SCHEMA_MIMES:
        raise RequestError(
            f"{where}responseMimeType: a response schema needs responseMimeType {JSON_MIME}, got {mime!r}",
            param=where + "responseMimeType",
        )
    if mime != JSON_MIME:
        return None
    if plain is not None:
        return {"type": "json_schema", "schema": dict(plain)}
    if schema is not None:
        return {"type": "json_schema", "schema": json_schema(schema, where + "responseSchema")}
    return {"type": "json_object"}


def bounded(obj: dict[str, Any], key: str, where: str, lo: int, hi: int | None = None) -> int | None:
    """An optional integer within bounds."""
    value = field(obj, key, int, where)
    if value is not None and (value < lo or (hi is not None and value > hi)):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise RequestError(f"{where}{key}: must be {bound}, got {value}", param=where + key)
    return None if value is None else int(value)


def parse_generate(body: dict[str, Any], model: str, endpoint: str, *, stream: bool) -> Conversation:
    """A GenerateContentRequest as a Conversation."""
    messages = parse_contents(body.get("contents"))
    system = content_text(field(body, "systemInstruction", dict), "systemInstruction")
    tools = parse_tools(field(body, "tools", list, "", []))
    choice = parse_tool_config(field(body, "toolConfig", dict), tools)
    config = field(body, "generationConfig", dict, "", {})
    where = "generationConfig."
    stop = field(config, "stopSequences", list, where, [])
    for i, item in enumerate(stop):
        check_type(item, str, f"{where}stopSequences[{i}]")
    for key in ("temperature", "topP", "topK", "presencePenalty", "frequencyPenalty"):
        field(config, key, float, where)
    field(config, "seed", int, where)
    field(config, "thinkingConfig", dict, where)
    field(config, "responseModalities", list, where)
    field(body, "safetySettings", list)
    field(body, "cachedContent", str)
    return Conversation(
        provider=PROVIDER,
        endpoint=endpoint,
        model=model,
        messages=messages,
        system=system,
        tools=tools,
        tool_choice=choice,
        response_format=response_format(config),
        stream=stream,
        n=bounded(config, "candidateCount", where, 1, MAX_CANDIDATES) or 1,
        max_tokens=bounded(config, "maxOutputTokens", where, 1),
        stop=list(stop),
    )


def path_model(endpoint: Endpoint, request: Request) -> str:
    """The model a path names (`.../models/{model}:method`)."""
    return endpoint.path_params(request.path).get("model", "")


def request_model(value: Any, where: str) -> str:
    """A `models/...` name in a body, without its prefix."""
    return str(check_type(value, str, where)).removeprefix("models/")


# -- rendering ---------------------------------------------------------------------------------


def finish_reason(reply: Reply) -> str:
    """Gemini's finish reason for a reply (a function call stops with STOP)."""
    return FINISH_REASONS.get(reply.finish_reason, "STOP")


def call_parts(reply: Reply) -> list[dict[str, Any]]:
    """The reply's tool calls as `functionCall` parts (the API gives no id unless the rule did)."""
    parts = []
    for call in reply.tool_calls:
        function: dict[str, Any] = {"name": call.name, "args": call.arguments}
        if call.id:
            function["id"] = call.id
        parts.append({"functionCall": function})
    return parts


def usage_metadata(conversation: Conversation, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    """`usageMetadata`: prompt, candidates (over every candidate) and total tokens."""
    candidates = output_tokens * conversation.n
    return {
        "promptTokenCount": input_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": input_tokens + candidates,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": input_tokens}],
    }


def response(
    conversation: Conversation,
    ctx: RenderContext,
    parts: list[dict[str, Any]],
    usage: dict[str, Any],
    finish: str | None = None,
) -> dict[str, Any]:
    """A GenerateContentResponse with the same parts in each candidate."""
    candidates = []
    for index in range(conversation.n):
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish is not None:
            candidate["finishReason"] = finish
        candidate["index"] = index
        candidates.append(candidate)
    return {
        "candidates": candidates,
        "usageMetadata": usage,
        "modelVersion": conversation.model,
        "responseId": ctx.id,
    }


class GeminiReader(ReplyReader):
    """A GenerateContentResponse (or its SSE chunks, up to the one with `finishReason`) read back into
    a Reply, for recording."""

    def read_body(self, body: Any) -> None:
        """The whole answer."""
        self.read_event("", body)

    def read_event(self, event: str, data: Any) -> str:
        """One chunk: the first candidate's text and function calls (thoughts left out)."""
        candidates = data.get("candidates") if isinstance(data, dict) else None
        if not candidates:
            return ""
        first = candidates[0]
        piece = ""
        for part in (first.get("content") or {}).get("parts") or []:
            if "functionCall" in part:
                call = part["functionCall"]
                self.calls.append([call.get("name", ""), orjson.dumps(call.get("args") or {}).decode()])
            elif not part.get("thought"):
                piece += str(part.get("text") or "")
        self.text += piece
        if first.get("finishReason"):
            self.done = True
            reason = first["finishReason"]
            self.finish_reason = "length" if reason == "MAX_TOKENS" else "tool_calls" if self.calls else "stop"
        return piece


class GenerateContent(ChatEndpoint):
    """`POST .../models/{model}:generateContent`."""

    paths = model_paths("generateContent")
    name = "generateContent"
    streams = False

    def reply_reader(self, conversation: Conversation) -> ReplyReader:
        """Reads an upstream Gemini's answer back into a Reply."""
        return GeminiReader(conversation.stream)

    def named_model(self, request: Request) -> str:
        """The model in the path."""
        return path_model(self, request)

    def parse_conversation(self, request: Request) -> Conversation:
        """The model from the path, the rest from the body."""
        return parse_generate(request.json(), path_model(self, request), self.name, stream=self.streams)

    def parse(self, body: dict[str, Any]) -> Conversation:
        """A body without its path names no model."""
        return parse_generate(body, "", self.name, stream=self.streams)

    def render(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> dict[str, Any]:
        """A GenerateContentResponse."""
        parts = ([{"text": reply.text}] if reply.text or not reply.tool_calls else []) + call_parts(reply)
        usage = usage_metadata(conversation, reply.usage.input_tokens, reply.usage.output_tokens)
        return response(conversation, ctx, parts, usage, finish_reason(reply))

    def render_stream(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> Iterator[Frame]:
        """One full GenerateContentResponse per text piece, then the function calls; one
        `responseId` throughout, `finishReason` and the final usage on the last chunk only."""
        usage = reply.usage
        calls = call_parts(reply)
        pieces = list(zip(ctx.pieces, ctx.piece_tokens, strict=True))
        if not pieces and not calls:
            pieces = [("", 0)]
        final = usage_metadata(conversation, usage.input_tokens, usage.output_tokens)
        sent = 0
        for i, (piece, tokens) in enumerate(pieces):
            last = i == len(pieces) - 1 and not calls
            sent = min(sent + tokens, usage.output_tokens)
            so_far = final if last else usage_metadata(conversation, usage.input_tokens, sent)
            body = response(conversation, ctx, [{"text": piece}], so_far, finish_reason(reply) if last else None)
            yield Frame(sse(body), piece, tokens)
        if calls:
            body = response(conversation, ctx, calls, final, finish_reason(reply))
            label = " ".join(f"[tool {c.name}]" for c in reply.tool_calls)
            tokens = sum(count_tokens(c.name) + count_json(c.arguments) for c in reply.tool_calls)
            yield Frame(sse(body), label, tokens)


class StreamGenerateContent(GenerateContent):
    """`POST .../models/{model}:streamGenerateContent?alt=sse`: SSE, no `[DONE]`."""

    paths = model_paths("streamGenerateContent")
    name = "streamGenerateContent"
    streams = True


class CountTokens(TokenCountEndpoint):
    """`POST .../models/{model}:countTokens`: the prompt tokens generateContent would report."""

    paths = model_paths("countTokens")
    name = "countTokens"

    def named_model(self, request: Request) -> str:
        """The model in the path."""
        return path_model(self, request)

    def parse_conversation(self, request: Request) -> Conversation:
        """`contents` or a whole `generateContentRequest`."""
        body = request.json()
        model = path_model(self, request)
        inner = field(body, "generateContentRequest", dict)
        if inner is None:
            return Conversation(
                provider=PROVIDER, endpoint=self.name, model=model, messages=parse_contents(body.get("contents"))
            )
        if body.get("contents") is not None:
            raise RequestError("contents: set contents or generateContentRequest, not both", param="contents")
        return parse_generate(inner, model, self.name, stream=False)

    def render_count(self, tokens: int) -> dict[str, Any]:
        """`{"totalTokens": n}`."""
        return {"totalTokens": tokens}


def embedding_request(models: ModelRegistry, request: dict[str, Any], model: str, where: str) -> tuple[str, int]:
    """One EmbedContentRequest: its text and the dimensions to answer with."""
    named = field(request, "model", str, where)
    if named is not None and request_model(named, where + "model") != model:
        raise RequestError(
            f"{where}model: {named!r} does not match the model in the path (models/{model})", param=where + "model"
        )
    text = content_text(needed(request, "content", dict, where), where + "content")
    if not text:
        raise RequestError(f"{where}content: needs a non-empty text part", param=where + "content")
    field(request, "taskType", str, where)
    field(request, "title", str, where)
    dimensions = bounded(request, "outputDimensionality", where, 1, MAX_DIMENSIONS)
    if dimensions is None:
        known = models.resolve(model)
        dimensions = (known.dimensions if known else None) or DEFAULT_EMBEDDING_DIMENSIONS
    return text, dimensions


def require_embedding_model(request: Request, model: str, method: str) -> None:
    """Refuse, as Google does (404), to embed with a known model that is not an embedding model."""
    known = request.models.resolve(model)
    if known is not None and known.dimensions is None:
        version = request.path.split("/", 2)[1]
        raise RequestError(
            f"models/{model} is not found for API version {version}, or is not supported for {method}. "
            "Call ListModels to see the list of available models and their supported methods.",
            status=404,
        )


class EmbedContent(EmbeddingEndpoint):
    """`POST .../models/{model}:embedContent`: `{"embedding": {"values": [...]}}`, a deterministic unit vector."""

    paths = model_paths("embedContent", vertex=False)
    name = "embedContent"
    operation = ""

    def requests(self, models: ModelRegistry, body: dict[str, Any], model: str) -> list[tuple[str, int]]:
        """The texts to embed and their dimensions."""
        return [embedding_request(models, body, model, "")]

    def answer(self, vectors: list[dict[str, Any]]) -> dict[str, Any]:
        """The response body around the vectors."""
        return {"embedding": vectors[0]}

    def named_model(self, request: Request) -> str:
        """The model in the path."""
        return path_model(self, request)

    def parse_request(self, request: Request) -> Query:
        """The texts and, for each, its dimensions."""
        model = path_model(self, request)
        require_embedding_model(request, model, self.name)
        requests = self.requests(request.models, request.json(), model)
        texts = [text for text, _ in requests]
        return Query(model=model, preview=preview(texts[0]), texts=texts, dimensions=[d for _, d in requests])

    def render_embeddings(self, query: Query, vectors: list[array[float]], tokens: int) -> dict[str, Any]:
        """`{"values": [...]}` per vector."""
        return self.answer([{"values": vector.tolist()} for vector in vectors])


class BatchEmbedContents(EmbedContent):
    """`POST .../models/{model}:batchEmbedContents` (what google-genai's `embed_content` calls):
    `{"embeddings": [{"values": [...]}, ...]}`, one per request."""

    paths = model_paths("batchEmbedContents", vertex=False)
    name = "batchEmbedContents"

    def requests(self, models: ModelRegistry, body: dict[str, Any], model: str) -> list[tuple[str, int]]:
        """Each of `requests[]`."""
        raw = needed(body, "requests", list)
        if not raw or len(raw) > MAX_BATCH:
            raise RequestError(f"requests: expected 1 to {MAX_BATCH} requests, got {len(raw)}", param="requests")
        return [
            embedding_request(models, check_type(r, dict, f"requests[{i}]"), model, f"requests[{i}].")
            for i, r in enumerate(raw)
        ]

    def answer(self, vectors: list[dict[str, Any]]) -> dict[str, Any]:
        """`embeddings`."""
        return {"embeddings": vectors}


def model_object(model: ModelInfo, name: str | None = None) -> dict[str, Any]:
    """A Gemini `Model` resource, under `name` (an alias) or the id."""
    model_id = name or model.id
    title = model_id.replace("-", " ").title()
    if model.dimensions is not None:
        return {
            "name": f"models/{model_id}",
            "version": "001",
            "displayName": title,
            "description": f"{title} (mockllm-tui)",
            "inputTokenLimit": 2048,
            "outputTokenLimit": 1,
            "supportedGenerationMethods": EMBED_METHODS,
        }
    return {
        "name": f"models/{model_id}",
        "version": "001",
        "displayName": title,
        "description": f"{title} (mockllm-tui)",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": GENERATE_METHODS,
        "temperature": 1.0,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2.0,
        "thinking": True,
    }


def page_bounds(query: str, total: int) -> tuple[int, int]:
    """The slice a `pageSize` and `pageToken` ask for (the token is the offset, as text)."""
    params = parse_qs(query)
    size_text = params.get("pageSize", params.get("page_size", [str(PAGE_SIZE)]))[0]
    token = params.get("pageToken", params.get("page_token", ["0"]))[0] or "0"
    if not size_text.isdigit():
        raise RequestError(f"pageSize: expected an integer, got {size_text!r}", param="pageSize")
    if not token.isdigit() or int(token) > total:
        raise RequestError(f"pageToken: invalid page token {token!r}", param="pageToken")
    size = min(int(size_text) or PAGE_SIZE, MAX_PAGE_SIZE)
    return int(token), int(token) + size


class ListModels(ModelListing):
    """`GET /v1beta/models` (and `/v1/models` for a Gemini client): the Google models, paged."""

    paths = tuple(f"{version}/models" for version in API_VERSIONS)

    def render_query(self, query: Query, request: Request) -> dict[str, Any]:
        """`{"models": [...], "nextPageToken"?}`."""
        google = [m for m in request.models.models() if m.owned_by == OWNER]
        models = [model_object(m, name) for m in google for name in m.names()]
        start, end = page_bounds(request.query, len(models))
        body: dict[str, Any] = {"models": models[start:end]}
        if end < len(models):
            body["nextPageToken"] = str(end)
        return body


class RetrieveModel(ModelLookup):
    """`GET /v1beta/models/{model}` (and `/v1/models/{model}` for a Gemini client)."""

    paths = tuple(f"{version}/models/{{id:resource}}" for version in API_VERSIONS)
    name = "models.get"

    def describe(self, model: ModelInfo, name: str) -> dict[str, Any]:
        """A Gemini `Model` resource."""
        return model_object(model, name)


class Gemini(Provider):
    """Google's Gemini API (and Vertex AI's generateContent paths)."""

    name = PROVIDER
    endpoint_classes: ClassVar[tuple[type[Endpoint], ...]] = (
        GenerateContent,
        StreamGenerateContent,
        CountTokens,
        EmbedContent,
        BatchEmbedContents,
        ListModels,
        RetrieveModel,
    )
    credential_headers = frozenset({"authorization", KEY_HEADER})

    def limit_error(self, breach: LimitBreach) -> RequestError:
        """Gemini's wording: the input token count over the window, or maxOutputTokens out of range."""
        if breach.kind == "output_limit":
            return RequestError(
                f"Unable to submit request because it has a maxOutputTokens value of {breach.requested} but the "
                f"supported range is from 1 (inclusive) to {(breach.limit or 0) + 1} (exclusive). "
                "Update the value and try again."
            )
        count = breach.total if breach.kind == "context_with_output" else breach.input_tokens
        return RequestError(
            f"The input token count ({count}) exceeds the maximum number of tokens allowed ({breach.limit})."
        )

    def claims(self, path: str, headers: Mapping[str, str]) -> int:
        """Its own paths, and any request from google-genai (it sends `x-goog-api-client` and its key)."""
        if path.startswith(OWN_PREFIXES) or KEY_HEADER in headers or CLIENT_HEADER in headers:
            return CLAIM_OWN
        return CLAIM_NONE

    def upstream_auth(self, key: str, *, method: str, url: str, body: bytes) -> Headers:
        """The key in `x-goog-api-key`, as google-genai sends it."""
        return [(b"x-goog-api-key", key.encode("latin-1"))]

    def presented_keys(self, headers: Mapping[str, str]) -> list[str]:
        """`x-goog-api-key`, or a bearer token (Vertex AI)."""
        keys = [headers[KEY_HEADER]] if headers.get(KEY_HEADER) else []
        token = bearer_token(headers)
        return [*keys, token] if token else keys

    def request_keys(self, request: Request) -> list[str]:
        """The header keys, and `?key=` in the query string."""
        keys = self.presented_keys(request.headers)
        if "key=" in request.query:
            keys += [key for key in parse_qs(request.query).get("key", []) if key]
        return keys

    def auth_refusal(self, missing: bool) -> str:
        """Google's wording for a missing or wrong key."""
        if missing:
            return (
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API."
            )
        return "API key not valid. Please pass a valid API key."

    def error_body(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        request_id: str = "",
    ) -> bytes:
        """`{"error": {"code", "message", "status"}}` (a rule's `type` may name the status, e.g. UNAVAILABLE)."""
        return orjson.dumps(gemini_error(status, message, type if type in STATUS_NAMES else None))

    def stream_error(self, status: int, message: str) -> bytes:
        """A `data: {"error": ...}` event: google-genai raises it as an APIError mid-stream."""
        return sse(gemini_error(status, message))

    def retry_headers(self, status: int, wait_ms: float) -> Headers:
        """`retry-after` (whole seconds) on what google-genai retries when retries are on."""
        if status not in SDK_RETRY_STATUSES:
            return []
        return [(b"retry-after", str(max(1, math.ceil(wait_ms / 1000.0))).encode())]


register_provider(Gemini)
