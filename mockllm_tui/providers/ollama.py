"""Ollama's native API: `POST /api/chat`, `/api/generate`, `/api/embed` (and the older
`/api/embeddings`), `POST /api/show` and `/api/pull`, `GET /api/tags`, `/api/ps` and `/api/version`.

Streaming is on unless a request says `"stream": false`, as newline-delimited JSON whose last
object has `done: true`, `done_reason` and the counts and durations (nanoseconds). Every error,
whatever its status, is `{"error": "<text>"}`, and so is an error in the middle of a stream.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from array import array
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson

from mockllm_tui.core.conversation import Conversation, Message, Reply, RequestError, ToolCall, preview
from mockllm_tui.core.models import DEFAULT_EMBEDDING_DIMENSIONS, ModelInfo
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
    bearer_token,
    is_retryable,
    parse_arguments,
)
from mockllm_tui.providers.openai_chat import parse_tools
from mockllm_tui.providers.openai_common import stop_list
from mockllm_tui.providers.parsing import check_type, optional, require
from mockllm_tui.providers.registry import register_provider

OLLAMA_VERSION = "0.13.0"
#: The registry's `owned_by` of the models `/api/tags` lists (Ollama's library namespace).
OWNER = "library"
ROLES = ("system", "user", "assistant", "tool")
#: Durations reported in the final object (nanoseconds): a warm load, prompt and output per token.
LOAD_NS = 1_500_000
PROMPT_NS_PER_TOKEN = 200_000
EVAL_NS_PER_TOKEN = 10_000_000
MAX_CONTEXT_IDS = 4096
_PARAMETERS = re.compile(r"(\d+(?:\.\d+)?)b$")


def timestamp(seconds: float | None = None) -> str:
    """An RFC 3339 time with microseconds and `Z`, as Ollama writes `created_at`."""
    moment = datetime.fromtimestamp(time.time() if seconds is None else seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def not_pulled(name: str) -> RequestError:
    """Ollama's 404 for a model it does not have."""
    return RequestError(f'model "{name}" not found, try pulling it first', status=404, code="model_not_found")


def strict(request: Request) -> bool:
    """Whether unknown models are refused (the registry's flag or `--strict-models`)."""
    return request.models.strict or request.strict_models


def require_pulled(request: Request, name: str) -> None:
    """Refuse, in Ollama's words, a model that is unknown while models are strict."""
    if strict(request) and request.models.resolve(name) is None:
        raise not_pulled(name)


# -- parsing -----------------------------------------------------------------------------------


def parse_format(value: Any) -> dict[str, Any] | None:
    """`format`: "json" (any JSON object) or a JSON schema the reply must be valid against."""
    if value is None or value == "":
        return None
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, dict):
        return {"type": "json_schema", "schema": value}
    raise RequestError('format: expected "json" or a JSON schema object', param="format")


def parse_options(body: dict[str, Any]) -> tuple[int | None, list[str]]:
    """`options.num_predict` (negative: no limit) and `options.stop`."""
    options = optional(body, "options", dict, {})
    for key in ("temperature", "top_p", "top_k", "seed", "num_ctx"):
        optional(options, key, float, None, "options.")
    num_predict = optional(options, "num_predict", int, None, "options.")
    max_tokens = num_predict if num_predict is not None and num_predict >= 0 else None
    return max_tokens, stop_list(options.get("stop"), "options.stop")


def parse_common(body: dict[str, Any]) -> None:
    """Fields every generation request may carry, checked for their types."""
    optional(body, "keep_alive", (str, int, float))
    optional(body, "think", (bool, str))
    optional(body, "logprobs", bool)
    optional(body, "top_logprobs", int)


def parse_tool_calls(value: Any, name: str) -> list[ToolCall]:
    """An assistant turn's `tool_calls`; `arguments` is an object (a JSON string is taken too)."""
    calls = []
    for i, raw in enumerate(check_type(value, list, name)):
        where = f"{name}[{i}]"
        fn = require(check_type(raw, dict, where), "function", dict, f"{where}.")
        args = fn.get("arguments", {})
        if isinstance(args, str):
            args = parse_arguments(args)
        args = check_type(args, dict, f"{where}.function.arguments")
        calls.append(ToolCall(name=require(fn, "name", str, f"{where}.function."), arguments=args))
    return calls


def parse_messages(value: Any) -> tuple[list[Message], str]:
    """Chat messages and the system prompt. A tool turn without `tool_name` answers the earlier
    assistant turn's calls in order."""
    messages: list[Message] = []
    system: list[str] = []
    pending: list[str] = []
    for i, raw in enumerate(check_type(value, list, "messages")):
        prefix = f"messages[{i}]."
        raw = check_type(raw, dict, f"messages[{i}]")
        role = require(raw, "role", str, prefix)
        if role not in ROLES:
            raise RequestError(f"{prefix}role: unknown role {role!r} (expected one of {', '.join(ROLES)})")
        content = optional(raw, "content", str, "", prefix)
        optional(raw, "images", list, None, prefix)
        optional(raw, "thinking", str, None, prefix)
        if role == "system":
            system.append(content)
        elif role == "assistant":
            calls = parse_tool_calls(raw["tool_calls"], f"{prefix}tool_calls") if raw.get("tool_calls") else []
            pending = [call.name for call in calls]
            messages.append(Message(role="assistant", content=content, tool_calls=calls))
        elif role == "tool":
            name = optional(raw, "tool_name", str, None, prefix) or optional(raw, "name", str, None, prefix)
            if name is None and pending:
                name = pending.pop(0)
            call_id = optional(raw, "tool_call_id", str, None, prefix)
            messages.append(Message(role="tool", content=content, tool_call_id=call_id, name=name))
        else:
            messages.append(Message(role="user", content=content))
    return messages, "\n".join(system)


# -- rendering ---------------------------------------------------------------------------------


def done_reason(reply: Reply) -> str:
    """Ollama's `done_reason`: "length" when cut by `num_predict`, else "stop" (tool calls too)."""
    return "length" if reply.finish_reason == "length" else "stop"


def metrics(reply: Reply) -> dict[str, int]:
    """The counts and durations (nanoseconds) of a finished reply."""
    prompt, output = reply.usage.input_tokens, reply.usage.output_tokens
    prompt_ns, eval_ns = prompt * PROMPT_NS_PER_TOKEN, output * EVAL_NS_PER_TOKEN
    return {
        "total_duration": LOAD_NS + prompt_ns + eval_ns,
        "load_duration": LOAD_NS,
        "prompt_eval_count": prompt,
        "prompt_eval_duration": prompt_ns,
        "eval_count": output,
        "eval_duration": eval_ns,
    }


def line(obj: dict[str, Any]) -> bytes:
    """One NDJSON line."""
    return orjson.dumps(obj) + b"\n"


def tool_call_objects(reply: Reply) -> list[dict[str, Any]]:
    """`tool_calls` with their arguments as objects."""
    return [{"function": {"name": c.name, "arguments": c.arguments}} for c in reply.tool_calls]


class OllamaReader(ReplyReader):
    """An Ollama answer (or its JSON lines, up to `done`) read back into a Reply, for recording."""

    ndjson = True

    def read_body(self, body: Any) -> None:
        """The whole answer."""
        self.read_event("", body)

    def read_event(self, event: str, data: Any) -> str:
        """One line: chat's `message` (content, tool calls) or generate's `response`; `done` ends it."""
        if not isinstance(data, dict):
            return ""
        message = data.get("message") or {}
        piece = str(message.get("content") or data.get("response") or "")
        self.text += piece
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            self.calls.append([function.get("name", ""), orjson.dumps(function.get("arguments") or {}).decode()])
        if data.get("done"):
            self.done = True
            stopped_long = data.get("done_reason") == "length"
            self.finish_reason = "length" if stopped_long else "tool_calls" if self.calls else "stop"
        return piece


class Chat(ChatEndpoint):
    """`POST /api/chat`."""

    paths = ("/api/chat",)
    name = "chat"

    def reply_reader(self, conversation: Conversation) -> ReplyReader:
        """Reads an upstream Ollama's answer back into a Reply."""
        return OllamaReader(conversation.stream)

    def parse(self, body: dict[str, Any]) -> Conversation:
        """Parse a chat request (streaming unless `stream` is false)."""
        model = require(body, "model", str)
        messages, system = parse_messages(body.get("messages") or [])
        max_tokens, stop = parse_options(body)
        parse_common(body)
        return Conversation(
            provider=self.provider.name,
            endpoint=self.name,
            model=model,
            messages=messages,
            system=system,
            tools=parse_tools(body),
            response_format=parse_format(body.get("format")),
            stream=bool(optional(body, "stream", bool, True)),
            max_tokens=max_tokens,
            stop=stop,
        )

    def parse_conversation(self, request: Request) -> Conversation:
        """The body, as JSON whatever the content type says."""
        return self.parse(request.json(any_type=True))

    def check_model(self, name: str, request: Request) -> None:
        """Refuse an unknown model in Ollama's words while models are strict."""
        require_pulled(request, name)

    def loads_only(self, conversation: Conversation) -> bool:
        """A request with no messages only loads the model (`done_reason: "load"`)."""
        return not conversation.messages

    def load_answer(self, conversation: Conversation) -> dict[str, Any]:
        """What a request that only loads the model gets."""
        message = {"role": "assistant", "content": ""}
        return {
            "model": conversation.model,
            "created_at": timestamp(),
            "message": message,
            "done": True,
            "done_reason": "load",
        }

    def render(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> dict[str, Any]:
        """A finished `ChatResponse`."""
        if self.loads_only(conversation):
            return self.load_answer(conversation)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = tool_call_objects(reply)
        return {
            "model": conversation.model,
            "created_at": timestamp(),
            "message": message,
            "done": True,
            "done_reason": done_reason(reply),
            **metrics(reply),
        }

    def render_stream(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> Iterator[Frame]:
        """A line per piece, the tool calls whole in one line, then the final `done` line."""
        if self.loads_only(conversation):
            yield Frame(line(self.load_answer(conversation)))
            return
        created = timestamp()

        def part(message: dict[str, Any]) -> bytes:
            return line({"model": conversation.model, "created_at": created, "message": message, "done": False})

        for piece, tokens in zip(ctx.pieces, ctx.piece_tokens, strict=True):
            yield Frame(part({"role": "assistant", "content": piece}), piece, tokens)
        if reply.tool_calls:
            names = ", ".join(c.name for c in reply.tool_calls)
            message = {"role": "assistant", "content": "", "tool_calls": tool_call_objects(reply)}
            yield Frame(part(message), f"[tool {names}]", max(1, reply.usage.output_tokens - sum(ctx.piece_tokens)))
        final = self.render(conversation, Reply(usage=reply.usage, finish_reason=reply.finish_reason), ctx)
        final["created_at"] = created
        yield Frame(line(final))


class Generate(Chat):
    """`POST /api/generate`: a prompt (and a system prompt) to a completion."""

    paths = ("/api/generate",)
    name = "generate"

    def parse(self, body: dict[str, Any]) -> Conversation:
        """Parse a generate request (streaming unless `stream` is false)."""
        model = require(body, "model", str)
        prompt = optional(body, "prompt", str, "")
        optional(body, "suffix", str)
        optional(body, "template", str)
        optional(body, "raw", bool)
        optional(body, "images", list)
        context = optional(body, "context", list, [])
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in context):
            raise RequestError("context: expected an array of integers", param="context")
        max_tokens, stop = parse_options(body)
        parse_common(body)
        return Conversation(
            provider=self.provider.name,
            endpoint=self.name,
            model=model,
            messages=[Message(role="user", content=prompt)] if prompt else [],
            system=optional(body, "system", str, ""),
            response_format=parse_format(body.get("format")),
            stream=bool(optional(body, "stream", bool, True)),
            max_tokens=max_tokens,
            stop=stop,
        )

    def loads_only(self, conversation: Conversation) -> bool:
        """A request with neither prompt nor system prompt only loads the model."""
        return not conversation.messages and not conversation.system

    def load_answer(self, conversation: Conversation) -> dict[str, Any]:
        """What a request that only loads the model gets."""
        return {
            "model": conversation.model,
            "created_at": timestamp(),
            "response": "",
            "done": True,
            "done_reason": "load",
        }

    def render(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> dict[str, Any]:
        """A finished `GenerateResponse` (tool calls have no place here)."""
        if self.loads_only(conversation):
            return self.load_answer(conversation)
        return {
            "model": conversation.model,
            "created_at": timestamp(),
            "response": reply.text,
            "done": True,
            "done_reason": done_reason(reply),
            "context": context_ids(reply),
            **metrics(reply),
        }

    def render_stream(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> Iterator[Frame]:
        """A line per piece, then the final `done` line with `context`."""
        if self.loads_only(conversation):
            yield Frame(line(self.load_answer(conversation)))
            return
        created = timestamp()
        head = {"model": conversation.model, "created_at": created}
        for piece, tokens in zip(ctx.pieces, ctx.piece_tokens, strict=True):
            yield Frame(line({**head, "response": piece, "done": False}), piece, tokens)
        final = self.render(conversation, Reply(usage=reply.usage, finish_reason=reply.finish_reason), ctx)
        yield Frame(line({**final, **head}))


def context_ids(reply: Reply) -> list[int]:
    """Stand-in token ids for `context`, one per token of the exchange."""
    count = min(reply.usage.total_tokens, MAX_CONTEXT_IDS)
    return [(i * 7919) % 128000 for i in range(1, count + 1)]


# -- embeddings --------------------------------------------------------------------------------


def embed_inputs(value: Any) -> list[str]:
    """`input`: a string or an array of strings (none, or an empty string: nothing to embed)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    texts = check_type(value, list, "input")
    return [check_type(text, str, f"input[{i}]") for i, text in enumerate(texts)]


class Embed(EmbeddingEndpoint):
    """`POST /api/embed`: one deterministic vector per input."""

    paths = ("/api/embed",)
    name = "embed"
    operation = ""
    #: The body field holding the text(s).
    texts_field: ClassVar[str] = "input"

    def check_model(self, name: str, request: Request) -> None:
        """Refuse an unknown model in Ollama's words while models are strict."""
        require_pulled(request, name)

    def parse_request(self, request: Request) -> Query:
        """The model, the texts and the dimensions (the model's own by default)."""
        body = request.json(any_type=True)
        model = require(body, "model", str)
        field = self.texts_field
        texts = embed_inputs(body.get(field)) if field == "input" else embed_inputs(optional(body, field, str))
        dimensions = optional(body, "dimensions", int)
        if dimensions is not None and not 1 <= dimensions <= MAX_DIMENSIONS:
            raise RequestError(f"dimensions: must be between 1 and {MAX_DIMENSIONS}, got {dimensions}")
        optional(body, "truncate", bool)
        optional(body, "options", dict)
        optional(body, "keep_alive", (str, int, float))
        if dimensions is None:
            known = request.models.resolve(model)
            dimensions = (known.dimensions if known else None) or DEFAULT_EMBEDDING_DIMENSIONS
        return Query(
            model=model,
            preview=preview(texts[0] if texts else ""),
            texts=texts,
            dimensions=[dimensions] * len(texts),
        )

    def render_embeddings(self, query: Query, vectors: list[array[float]], tokens: int) -> dict[str, Any]:
        """`{"model", "embeddings", ...durations}`."""
        return {
            "model": query.model,
            "embeddings": [vector.tolist() for vector in vectors],
            "total_duration": LOAD_NS + tokens * PROMPT_NS_PER_TOKEN,
            "load_duration": LOAD_NS,
            "prompt_eval_count": tokens,
        }


class Embeddings(Embed):
    """`POST /api/embeddings` (the older form): `{"model", "prompt"}` to `{"embedding"}`."""

    paths = ("/api/embeddings",)
    name = "embeddings"
    texts_field = "prompt"

    def render_embeddings(self, query: Query, vectors: list[array[float]], tokens: int) -> dict[str, Any]:
        """`{"embedding"}`: the prompt's vector (empty without a prompt)."""
        return {"embedding": vectors[0].tolist() if vectors else []}


# -- models ------------------------------------------------------------------------------------


def details(model: ModelInfo) -> dict[str, Any]:
    """`ModelDetails` made up from the model's name."""
    base, _, tag = model.id.partition(":")
    family = re.sub(r"[\d.\-]+$", "", base.split("-")[0]) or base
    found = _PARAMETERS.search(tag)
    size = f"{found.group(1)}B" if found else ("137M" if model.dimensions else "8.0B")
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": size,
        "quantization_level": "F16" if model.dimensions else "Q4_K_M",
    }


def digest(model: ModelInfo) -> str:
    """A stable sha256-looking digest for a model."""
    return hashlib.sha256(model.id.encode()).hexdigest()


def tag_object(model: ModelInfo) -> dict[str, Any]:
    """One `/api/tags` entry."""
    return {
        "name": model.id,
        "model": model.id,
        "modified_at": timestamp(model.created),
        "size": 1_000_000_000 + int(digest(model)[:8], 16) % 4_000_000_000,
        "digest": digest(model),
        "details": details(model),
    }


class Tags(Endpoint):
    """`GET /api/tags`: the registry's Ollama models (`owned_by: library`), as local models."""

    method = "GET"
    paths = ("/api/tags",)
    name = "tags"
    summary = "list models"

    def render_query(self, query: Query, request: Request) -> dict[str, Any]:
        """`{"models": [...]}`."""
        return {"models": [tag_object(m) for m in request.models.models() if m.owned_by == OWNER]}


class Version(Endpoint):
    """`GET /api/version`."""

    method = "GET"
    paths = ("/api/version",)
    name = "version"
    summary = "version"

    def render_query(self, query: Query, request: Request) -> dict[str, Any]:
        """`{"version": ...}`."""
        return {"version": OLLAMA_VERSION}


def named_model(body: dict[str, Any]) -> str:
    """The model a show or pull request names (`model`, or the older `name`)."""
    return str(optional(body, "model", str) or require(body, "name", str))


class Show(Endpoint):
    """`POST /api/show`: details, parameters, template and `model_info` of a model."""

    paths = ("/api/show",)
    name = "show"

    def parse_request(self, request: Request) -> Query:
        """The model to show."""
        body = request.json(any_type=True)
        name = named_model(body)
        optional(body, "verbose", bool)
        return Query(model=name, preview=f"show {name}")

    def render_query(self, query: Query, request: Request) -> dict[str, Any]:
        """Any model is shown unless models are strict (then an unknown one is a 404)."""
        model = request.models.resolve(query.model)
        if model is None:
            if strict(request):
                raise RequestError(f"model '{query.model}' not found", status=404, code="model_not_found")
            model = ModelInfo(id=query.model)
        return show_object(model)


class Pull(Endpoint):
    """`POST /api/pull`: every model is already here, so a pull succeeds at once (streamed as
    progress lines unless `stream` is false)."""

    paths = ("/api/pull",)
    name = "pull"
    STEPS = ("pulling manifest", "verifying sha256 digest", "writing manifest", "success")

    def parse_request(self, request: Request) -> Query:
        """The model to pull, and whether to stream the progress."""
        body = request.json(any_type=True)
        name = named_model(body)
        optional(body, "insecure", bool)
        return Query(model=name, preview=f"pull {name}", stream=bool(optional(body, "stream", bool, True)))

    def render_query(self, query: Query, request: Request) -> dict[str, Any]:
        """`{"status": "success"}`."""
        return {"status": "success"}

    def render_query_stream(self, query: Query, request: Request) -> Iterator[Frame]:
        """The progress lines that end with success."""
        for step in self.STEPS:
            yield Frame(line({"status": step}), step)


class Running(Endpoint):
    """`GET /api/ps`: the models in memory (none: a mock model loads for each request)."""

    method = "GET"
    paths = ("/api/ps",)
    name = "ps"
    summary = "running models"

    def render_query(self, query: Query, request: Request) -> dict[str, Any]:
        """`{"models": []}`."""
        return {"models": []}


def show_object(model: ModelInfo) -> dict[str, Any]:
    """A `ShowResponse` for a model."""
    info = details(model)
    arch = info["family"]
    capabilities = ["embedding"] if model.dimensions else ["completion", "tools"]
    return {
        "license": "",
        "modelfile": f"# Modelfile generated by mockllm-tui\nFROM {model.id}\n",
        "parameters": 'stop                           "<|eot_id|>"',
        "template": "{{ .System }}\n{{ .Prompt }}",
        "details": info,
        "model_info": {
            "general.architecture": arch,
            "general.basename": model.id.partition(":")[0],
            "general.parameter_count": int(digest(model)[:6], 16) * 1000,
            "general.file_type": 15,
            f"{arch}.context_length": 131072,
            f"{arch}.embedding_length": model.dimensions or 4096,
        },
        "capabilities": capabilities,
        "modified_at": timestamp(model.created),
    }


class Ollama(Provider):
    """Ollama's native API."""

    name = "ollama"
    endpoint_classes = (Chat, Generate, Embed, Embeddings, Show, Tags, Version, Pull, Running)
    stream_content_type = b"application/x-ndjson"

    def limit_error(self, breach: LimitBreach) -> None:
        """None: Ollama truncates a prompt over its context silently (the journal still says so)."""
        return None

    def claims(self, path: str, headers: Mapping[str, str]) -> int:
        """Everything under `/api/`."""
        return CLAIM_OWN if path.startswith("/api/") else CLAIM_NONE

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
        """`{"error": "<text>"}`, whatever the status."""
        return orjson.dumps({"error": message})

    def stream_error(self, status: int, message: str) -> bytes:
        """The same object as one NDJSON line."""
        return line({"error": message})

    def response_headers(self, request_id: str) -> Headers:
        """Ollama sends no request id."""
        return []

    def presented_keys(self, headers: Mapping[str, str]) -> list[str]:
        """The SDK sends a key (`OLLAMA_API_KEY`) as `Authorization: Bearer`."""
        token = bearer_token(headers)
        return [token] if token else []

    def auth_refusal(self, missing: bool) -> str:
        """Ollama's word for both."""
        return "unauthorized"

    def retry_headers(self, status: int, wait_ms: float) -> Headers:
        """Only `retry-after` in whole seconds (the SDK does not retry by itself)."""
        if not is_retryable(status):
            return []
        return [(b"retry-after", str(max(1, math.ceil(wait_ms / 1000.0))).encode())]


register_provider(Ollama)
