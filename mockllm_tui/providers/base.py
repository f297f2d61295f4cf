"""The provider seam: what a wire format is, for built-in providers and plugins alike.

A provider is the only code that knows its wire format. It lists its endpoints (method and paths),
says which requests it claims (path and headers), and supplies its own error body for any status,
its auth refusal, its refusal of a request over a model limit (`limit_error`), its rate-limit
and retry headers and its standard response headers. The dispatcher (`mockllm_tui.http`) asks;
it never names a provider.

A provider is a pure translator: it never touches the network, the event loop or the store. The
flows in `mockllm_tui.http` read the request, hand it over as a neutral `Request` (method, path,
query, headers, body bytes, the model registry), and send what the endpoint renders. Three kinds of
endpoint:
- a `ChatEndpoint` parses a `Request` into a neutral `Conversation` and renders a `Reply` as JSON or
  as stream frames; the chat flow runs it (rules, faults, latency, pacing, journal);
- an `EmbeddingEndpoint` parses a `Request` into a `Query` with texts to embed and renders the
  vectors; the flow adds faults, latency and the journal;
- a plain `Endpoint` (model lists, token counts, ...) parses a `Request` into a `Query` and renders
  an answer from it.
Any of them refuses a request by raising `RequestError` (status, message, param, ...), which the
flow renders with the provider's `error_body`.

A plugin subclasses `Provider`, decorates it with `register_provider` (or exposes it under the
`mockllm_tui.providers` entry point group) and is loaded with `--plugin MODULE`.
"""

from __future__ import annotations

import math
import random
import re
import time
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

import orjson

from mockllm_tui.core.conversation import Conversation, FinishReason, Reply, RequestError, ToolCall
from mockllm_tui.core.models import ModelInfo, ModelRegistry, check_model, default_registry, model_not_found
from mockllm_tui.core.tokens import count_conversation
from mockllm_tui.engine.limits import LimitBreach

Headers = list[tuple[bytes, bytes]]

#: `Provider.claims` strengths: not at all, as the shape for a family of paths, as its own.
CLAIM_NONE = 0
CLAIM_SHAPE = 1
CLAIM_OWN = 2

#: Statuses the Stainless-built SDKs (openai, anthropic) retry by default.
RETRYABLE_4XX = frozenset({408, 409, 429})


@dataclass(slots=True)
class Frame:
    """One piece of a stream: its bytes, the reply text it carries and its output tokens.

    Pacing is by tokens: a frame is due when its tokens are due; frames without tokens go at once.
    """

    data: bytes
    text: str = ""
    tokens: int = 0
    #: What the frame is, for the chunk timeline (a realtime event's type); "" for plain text chunks.
    label: str = ""


@dataclass(slots=True)
class RenderContext:
    """Per-request values a renderer needs: one id and one creation time for the whole reply,
    and the reply text and its thinking cut into stream chunks (by the live chunking knob)."""

    id: str
    created: int
    pieces: list[str] = field(default_factory=list)
    piece_tokens: list[int] = field(default_factory=list)
    request_id: str = ""
    #: When the request arrived (`time.perf_counter()`), for wire formats that report their latency.
    t0: float = 0.0
    #: The reply's thinking cut into stream chunks, like `pieces`.
    thinking_pieces: list[str] = field(default_factory=list)
    thinking_piece_tokens: list[int] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class Allowance:
    """One rate limit as the headers report it: the limit, what is left, and seconds to a full reset."""

    limit: int
    remaining: int
    reset_s: float


@dataclass(slots=True, frozen=True)
class RateLimitReport:
    """The rate limits in force for a response's headers; `now` is Unix time."""

    requests: Allowance
    tokens: Allowance
    now: float


_ids = random.SystemRandom().getrandbits(64)
_id_random = random.Random(_ids)


def new_id(prefix: str, nbytes: int = 12) -> str:
    """A fresh id with a provider's prefix, e.g. `chatcmpl-...`, `msg_...` (unique, not secret)."""
    return prefix + _id_random.getrandbits(nbytes * 8).to_bytes(nbytes, "big").hex()


def now_s() -> int:
    """Unix seconds."""
    return int(time.time())


def is_retryable(status: int) -> bool:
    """Whether the Stainless-built SDKs retry this status by default (408, 409, 429 and 5xx)."""
    return status in RETRYABLE_4XX or status >= 500


def retry_headers(status: int, wait_ms: float = 100.0) -> Headers:
    """The Stainless SDKs' retry contract: `retry-after` (whole seconds, rounded up), `retry-after-ms`
    and `x-should-retry`. A status the SDKs would not retry gets none."""
    if not is_retryable(status):
        return []
    wait_ms = max(wait_ms, 1.0)
    return [
        (b"retry-after", str(max(1, math.ceil(wait_ms / 1000.0))).encode()),
        (b"retry-after-ms", str(math.ceil(wait_ms)).encode()),
        (b"x-should-retry", b"true"),
    ]


def short_duration(seconds: float) -> str:
    """A wait as OpenAI writes it in headers and messages: "12ms", "1s", "1.5s", "6m0s"."""
    if seconds < 1.0:
        return f"{math.ceil(seconds * 1000.0)}ms"
    if seconds < 60.0:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer ...` header, if any."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


_PLACEHOLDER = re.compile(r"\{(\w+(?::path|:resource)?)\}")
#: What each kind of placeholder matches.
_PLACEHOLDER_REGEX = {"": "[^/]+", "path": ".+", "resource": "[^/:]+"}


@lru_cache(maxsize=256)
def path_pattern(template: str) -> re.Pattern[str] | None:
    """The regex of a path template whose `{name}` parts each match one non-empty segment,
    `{name:path}` parts any non-empty text and `{name:resource}` parts one segment without a `:`
    (a Google resource name, where `:` starts a method). None for a path without placeholders."""
    parts = _PLACEHOLDER.split(template)
    if len(parts) == 1:
        return None

    def group(placeholder: str) -> str:
        name, _, kind = placeholder.partition(":")
        return f"(?P<{name}>{_PLACEHOLDER_REGEX[kind]})"

    return re.compile("".join(re.escape(p) if i % 2 == 0 else group(p) for i, p in enumerate(parts)))


_EVENT_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\n")


class ReplyReader:
    """Rebuilds a `Reply` from a real upstream's answer, for recording (see http/upstream.py).

    The proxy feeds the upstream's body as it arrives: `feed` returns the reply text (and tool-call
    argument text) that the complete events in `data` carried, for the journal and the timing; `done`
    turns true at the stream's terminal event; `reply()` is the answer (None when it was incomplete).

    This base class does the framing: a whole JSON body goes to `read_body`; a stream is cut into
    server-sent events, each given to `read_event(event_name, parsed_data)` (a `data:` that is not
    JSON, such as `[DONE]`, comes as a string), or with `ndjson = True` into lines, each given as
    `read_event("", parsed_line)`. A provider with another framing (binary event frames) overrides
    `feed`. Subclasses fill `text`, `calls` (name, arguments-JSON text pairs), `finish_reason` and
    `done`.
    """

    #: The stream is newline-delimited JSON (one event a line), not server-sent events.
    ndjson: ClassVar[bool] = False

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.done = False
        #: Reading went wrong: the answer is passed through but not recorded.
        self.failed = False
        self.text = ""
        #: Tool calls as [name, arguments JSON text] (the text grows while a stream sends it).
        self.calls: list[list[str]] = []
        self.finish_reason: FinishReason = "stop"
        self._buffer = b""

    def feed(self, data: bytes) -> str:
        """Take the next bytes of the upstream's body; return the reply text their complete events carry."""
        if not self.stream:
            self._buffer += data
            return ""
        self._buffer += data.replace(b"\r\n", b"\n")
        out: list[str] = []
        if self.ndjson:
            *lines, self._buffer = self._buffer.split(b"\n")
            return "".join(self.read_event("", _json_or_text(line)) for line in lines if line.strip())
        while b"\n\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n\n", 1)
            event, payload = "", []
            for line in raw.split(b"\n"):
                name, _, value = line.partition(b":")
                value = value[1:] if value.startswith(b" ") else value
                if name == b"event":
                    event = value.decode("utf-8", "replace")
                elif name == b"data":
                    payload.append(value)
            if payload:
                out.append(self.read_event(event, _json_or_text(b"\n".join(payload))))
        return "".join(out)

    def pieces(self, data: bytes) -> list[bytes]:
        """`data` cut after the end of each event in it (a blank line; a line for NDJSON), so that a
        stream whose chunk boundaries were lost (a body without chunked framing, read several events
        at a time) passes on one event a write, as the upstream sent it."""
        if not self.stream:
            return [data]
        ends = [m.end() for m in (_LINE_END if self.ndjson else _EVENT_END).finditer(data)]
        return [data[a:b] for a, b in zip([0, *ends], [*ends, len(data)], strict=True) if b > a]

    def reply(self) -> Reply | None:
        """The answer the upstream gave (None: the body could not be read as a complete reply)."""
        if not self.stream:
            try:
                self.read_body(orjson.loads(self._buffer))
            except (orjson.JSONDecodeError, TypeError, KeyError, IndexError, AttributeError):
                return None
            self._buffer = b""
        elif not self.done:
            return None
        calls = [ToolCall(name, parse_arguments(args)) for name, args in self.calls]
        return Reply(text=self.text, tool_calls=calls, finish_reason=self.finish_reason)

    def read_body(self, body: Any) -> None:
        """Read a whole (non-streamed) JSON answer into `text`, `calls` and `finish_reason`."""
        raise NotImplementedError

    def read_event(self, event: str, data: Any) -> str:
        """Read one stream event; return the reply text it carries. Set `done` at the terminal event."""
        raise NotImplementedError


def _json_or_text(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace").strip()


def parse_arguments(text: str) -> dict[str, Any]:
    """Tool-call arguments (a JSON string) as an object; text that is not a JSON object is wrapped."""
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {"raw": text}
    return value if isinstance(value, dict) else {"value": value}


MAX_JSON_DEPTH = 200


@dataclass(slots=True)
class Request:
    """A request as every provider sees it: no connection, no event loop, no store.

    `headers` are lower-case names; `query` is the raw query string; `body` the whole body (empty
    until the flow has read it). `models` is the model registry in force and `strict_models` says
    whether an unknown model is refused (`--strict-models`).
    """

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    models: ModelRegistry = field(default_factory=default_registry)
    strict_models: bool = False

    def json(self, *, any_type: bool = False) -> dict[str, Any]:
        """The body as a JSON object, or a RequestError saying why it is not one (`any_type`:
        whatever the content type says, as a server that ignores it does)."""
        ctype = self.headers.get("content-type", "application/json")
        if not any_type and "json" not in ctype.lower():
            raise RequestError(f"unsupported content type {ctype!r}: send application/json")
        body = self.body
        if not body:
            raise RequestError("the request body is empty: send a JSON object")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RequestError("the request body must be a JSON object")
        # Only a body with enough brackets can nest that deep, so most requests skip the walk.
        if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and too_deep(data, MAX_JSON_DEPTH):
            raise RequestError(f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels")
        return data

    def check_model(self, name: str) -> None:
        """Refuse (404 `model_not_found`) a model that is unknown while models are strict."""
        check_model(self.models, name, strict=self.strict_models)

    def known_model(self, name: str) -> ModelInfo:
        """The model `name` resolves to, or a 404 `model_not_found`."""
        model = self.models.resolve(name)
        if model is None:
            raise model_not_found(name)
        return model


def too_deep(data: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((v, depth + 1) for v in children if isinstance(v, (dict, list)))
    return False


@dataclass(slots=True)
class Query:
    """A request to an endpoint that is not a chat, as its provider read it: what the journal shows
    (model, preview, the conversation of a token count), the texts an embedding endpoint embeds and
    the dimensions of each, whether the answer streams, and what else the provider needs to render it."""

    model: str = ""
    preview: str = ""
    conversation: Conversation | None = None
    texts: list[str] = field(default_factory=list)
    dimensions: list[int] = field(default_factory=list)
    stream: bool = False
    params: dict[str, Any] = field(default_factory=dict)


class Endpoint:
    """One route of a provider. The simple flow parses the request with `parse_request`, records the
    query in the journal, refuses an unknown model (`checks_model`), then sends `render_query`'s
    JSON body (or `render_query_stream`'s frames when the query streams)."""

    method: ClassVar[str] = "POST"
    #: Exact paths, or templates: `{name}` matches one non-empty segment, `{name:path}` any non-empty
    #: text, slashes included (paths arrive percent-decoded). `path_params` reads them back.
    paths: ClassVar[tuple[str, ...]] = ()
    name: ClassVar[str] = ""
    #: The operation in OpenTelemetry's GenAI terms ("chat", "embeddings", ...; "" for none).
    operation: ClassVar[str] = ""
    #: The flow refuses a query for a model that is unknown while models are strict (`check_model`).
    checks_model: ClassVar[bool] = False
    #: What the journal shows for a request with nothing to read ("list models").
    summary: ClassVar[str] = ""
    #: Whether the dispatcher's guards (auth, rate limits) apply; False for a route that must answer
    #: a plain GET, such as a picture served at a URL the mock handed out.
    guarded: ClassVar[bool] = True

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def path_params(self, path: str) -> dict[str, str]:
        """The `{name}` segments of the first of this endpoint's path templates that `path` matches."""
        for template in self.paths:
            pattern = path_pattern(template)
            found = pattern.fullmatch(path) if pattern is not None else None
            if found is not None:
                return found.groupdict()
        return {}

    def named_model(self, request: Request) -> str:
        """The model a request names before its body is parsed (in its path), for the journal of a
        request that fails to parse; "" by default."""
        return ""

    def check_model(self, name: str, request: Request) -> None:
        """Refuse a model that is unknown while models are strict (by default the registry's 404)."""
        request.check_model(name)

    def parse_request(self, request: Request) -> Query:
        """Read the request (raise RequestError to refuse it); by default there is nothing to read,
        and the journal shows the `summary`."""
        return Query(preview=self.summary)

    def render_query(self, query: Query, request: Request) -> Any:
        """The JSON body of the answer (raise RequestError to refuse it, e.g. an unknown model)."""
        raise NotImplementedError

    def render_query_stream(self, query: Query, request: Request) -> Iterator[Frame]:
        """The frames of a streamed answer (for a query with `stream` set)."""
        raise NotImplementedError


class EmbeddingEndpoint(Endpoint):
    """An embeddings route: `parse_request` gives the texts and dimensions; the flow applies the
    faults and latency, makes one deterministic vector per text and asks `render_embeddings`."""

    operation = "embeddings"
    checks_model = True

    def render_embeddings(self, query: Query, vectors: list[array[float]], tokens: int) -> Any:
        """The JSON body around the vectors (`tokens`: the input's tokens)."""
        raise NotImplementedError


class TokenCountEndpoint(Endpoint):
    """A route that counts a conversation's input tokens as the chat endpoint would report them."""

    checks_model = True

    def parse_conversation(self, request: Request) -> Conversation:
        """The conversation whose input is counted (raise RequestError naming the field)."""
        raise NotImplementedError

    def render_count(self, tokens: int) -> Any:
        """The JSON body for the count."""
        raise NotImplementedError

    def parse_request(self, request: Request) -> Query:
        """The conversation (for the journal) and its token count."""
        conversation = self.parse_conversation(request)
        tokens = count_conversation(conversation)
        return Query(model=conversation.model, conversation=conversation, params={"tokens": tokens})

    def render_query(self, query: Query, request: Request) -> Any:
        """The count in the provider's shape."""
        return self.render_count(query.params["tokens"])


class ChatEndpoint(Endpoint):
    """A chat-like route: the chat flow parses, picks a reply by the rules, applies the faults and
    renders it through these methods."""

    id_prefix: ClassVar[str] = ""
    checks_model = True
    #: Headers this endpoint's answers to parsed requests carry besides the provider's.
    answer_headers: ClassVar[Headers] = []

    def parse(self, body: dict[str, Any]) -> Conversation:
        """Turn a request body into a Conversation, or raise RequestError naming the field."""
        raise NotImplementedError

    def parse_conversation(self, request: Request) -> Conversation:
        """Turn the request into a Conversation: by default its JSON body through `parse`; override to
        use the path or the query as well."""
        return self.parse(request.json())

    def render(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> Any:
        """The JSON body of a complete reply."""
        raise NotImplementedError

    def render_stream(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> Iterator[Frame]:
        """The frames of a streamed reply, in the provider's real event order."""
        raise NotImplementedError

    def stream_error(self, status: int, message: str, ctx: RenderContext) -> bytes:
        """The bytes of an error in the middle of a stream."""
        return self.provider.stream_error(status, message)

    def limit_error(self, breach: LimitBreach) -> RequestError | None:
        """The refusal of a request to this endpoint that breaks a model limit: the provider's, unless
        the endpoint words it its own way (see `Provider.limit_error`)."""
        return self.provider.limit_error(breach)

    def remember(self, conversation: Conversation, reply: Reply, ctx: RenderContext, body: Any) -> None:
        """Hook called after a reply was made (the Responses API keeps them for GET)."""

    def reply_reader(self, conversation: Conversation) -> ReplyReader | None:
        """A reader that rebuilds the Reply from a real upstream's answer to this request, so it can be
        recorded as a rule (None: this endpoint's answers are passed through but not recorded)."""
        return None

    def remember_upstream(self, conversation: Conversation, reader: ReplyReader) -> None:
        """Hook called with the reader of an upstream's complete answer (the Responses API keeps it,
        so that a later request naming it in `previous_response_id` can be read here too)."""

    @property
    def stream_content_type(self) -> bytes:
        """The content type of this endpoint's streams."""
        return self.provider.stream_content_type


class Provider:
    """A wire format: its endpoints, which requests it claims, its error shape and its headers."""

    name: ClassVar[str] = ""
    #: The provider as OpenTelemetry's GenAI conventions name it (`gen_ai.provider.name`).
    system: ClassVar[str] = ""
    endpoint_classes: ClassVar[tuple[type[Endpoint], ...]] = ()
    #: A header carrying the milliseconds spent on the request, added as the response head goes out.
    timing_header: ClassVar[bytes | None] = None
    #: Request headers that carry credentials (lower case): never shown, never logged.
    credential_headers: ClassVar[frozenset[str]] = frozenset({"authorization", "x-api-key"})
    #: This provider's shape also answers requests no provider claims (the admin API's errors).
    default_shape: ClassVar[bool] = False
    stream_content_type: ClassVar[bytes] = b"text/event-stream; charset=utf-8"

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = [cls(self) for cls in self.endpoint_classes]

    def claims(self, path: str, headers: Mapping[str, str]) -> int:
        """How strongly a request is this provider's: CLAIM_NONE, CLAIM_SHAPE or CLAIM_OWN.

        Asked when several providers serve the same path (the strongest wins) and for paths no
        endpoint serves (a claimed one gets this provider's 404 or 405).
        """
        return CLAIM_NONE

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
        """The bytes of an error response in this provider's shape."""
        raise NotImplementedError

    def stream_error(self, status: int, message: str) -> bytes:
        """The bytes of an error after a stream has started."""
        raise NotImplementedError

    def error_status(self, status: int) -> int:
        """The status this wire format answers for an error the mock raises with `status` (a
        provider without 401s or 529s answers those with its own); by default the same."""
        return status

    def error_headers(self, status: int, *, type: str | None = None, code: str | None = None) -> Headers:
        """Headers an error response carries besides the standard ones (e.g. the error's code)."""
        return []

    def accepts_unchecked(self, headers: Mapping[str, str]) -> bool:
        """Whether the request carries credentials the mock cannot check (a request signature,
        whose secret it never has) and takes in place of the API key; by default never."""
        return False

    def limit_error(self, breach: LimitBreach) -> RequestError | None:
        """The refusal of a request that breaks a model limit (context window, output or input limit),
        worded as this provider's API words it (status, `type`, `param`, `code` and message); the
        dispatcher renders it with `error_body`.

        Return None to serve the request anyway (a server that truncates silently); the journal
        still records the breach. The default is a plain 400 naming the limit.
        """
        return RequestError(breach.message(), param="messages" if breach.kind != "output_limit" else breach.param)

    def response_headers(self, request_id: str) -> Headers:
        """Headers every response of this provider carries (request id and the like)."""
        return [(b"x-request-id", request_id.encode())]

    def request_id(self) -> str:
        """A fresh request id in this provider's style."""
        return new_id("req_")

    def presented_keys(self, headers: Mapping[str, str]) -> list[str]:
        """The API keys a request carries in this provider's auth headers."""
        keys = [headers["x-api-key"]] if headers.get("x-api-key") else []
        token = bearer_token(headers)
        return [*keys, token] if token else keys

    def request_keys(self, request: Request) -> list[str]:
        """The API keys a request carries: by default those `presented_keys` finds in its headers;
        a provider whose clients may send the key in the query string reads `request.query` too."""
        return self.presented_keys(request.headers)

    def auth_refusal(self, missing: bool) -> str:
        """The message of a 401: no key sent (`missing`) or a wrong one. Never quotes the key."""
        return "no API key provided" if missing else "invalid API key"

    def rate_limit_headers(self, report: RateLimitReport) -> Headers:
        """The rate-limit headers every model response carries."""
        return []

    def retry_headers(self, status: int, wait_ms: float) -> Headers:
        """The headers that tell this provider's SDK whether and when to retry an error."""
        return retry_headers(status, wait_ms)

    def upstream_auth(self, key: str, *, method: str, url: str, body: bytes) -> Headers:
        """The headers that carry `key` (`MOCKLLM_UPSTREAM_KEY_<NAME>`) to the real upstream, in place of
        the caller's credentials. The request is given for providers that sign it (SigV4)."""
        return [(b"authorization", b"Bearer " + key.encode("latin-1"))]
