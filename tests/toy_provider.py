"""A toy wire format, built through the public provider seam alone, as a user's plugin would be.

Loaded with `--plugin tests.toy_provider`. Its own paths (`/toy/ask`, `/toy/count`, `/toy/embed`),
its own error shape (`{"toy_error": {...}}`), its own auth header (`x-toy-key`), rate-limit and
retry headers, and streams as newline-delimited JSON. It imports `mockllm_tui.plugin` only.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from mockllm_tui.plugin import (
    CLAIM_NONE,
    CLAIM_OWN,
    ChatEndpoint,
    Conversation,
    EmbeddingEndpoint,
    Frame,
    Headers,
    Message,
    Provider,
    Query,
    RateLimitReport,
    RenderContext,
    Reply,
    ReplyReader,
    Request,
    RequestError,
    TokenCountEndpoint,
    optional,
    preview,
    register_provider,
    require,
)


class Ask(ChatEndpoint):
    """`POST /toy/ask`: `{"model": ..., "prompt": ..., "stream": false}`."""

    paths = ("/toy/ask",)
    name = "ask"
    id_prefix = "toy-"

    def parse(self, body: dict[str, Any]) -> Conversation:
        """The prompt as the one user message."""
        return Conversation(
            provider="toy",
            endpoint=self.name,
            model=require(body, "model", str),
            messages=[Message(role="user", content=require(body, "prompt", str))],
            stream=bool(optional(body, "stream", bool, False)),
        )

    def render(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> dict[str, Any]:
        """`{"id", "answer", "calls"}`."""
        calls = [{"tool": c.name, "args": c.arguments} for c in reply.tool_calls]
        return {"id": ctx.id, "answer": reply.text, "calls": calls}

    def render_stream(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> Iterator[Frame]:
        """One JSON line per piece, then `{"done": true}`."""
        for piece, tokens in zip(ctx.pieces, ctx.piece_tokens, strict=True):
            yield Frame(orjson.dumps({"piece": piece}) + b"\n", piece, tokens)
        yield Frame(b'{"done":true}\n')

    def reply_reader(self, conversation: Conversation) -> ReplyReader:
        """Reads a toy answer (or its lines) back, so the toy records through an upstream too."""
        return ToyReader(conversation.stream)


class Count(TokenCountEndpoint):
    """`POST /toy/count`: `{"model": ..., "prompt": ...}` to `{"tokens": n}`."""

    paths = ("/toy/count",)
    name = "count"

    def parse_conversation(self, request: Request) -> Conversation:
        """The prompt as the one user message."""
        body = request.json()
        return Conversation(
            provider="toy",
            endpoint=self.name,
            model=require(body, "model", str),
            messages=[Message(role="user", content=require(body, "prompt", str))],
        )

    def render_count(self, tokens: int) -> dict[str, Any]:
        """`{"tokens": n}`."""
        return {"tokens": tokens}


class Embed(EmbeddingEndpoint):
    """`POST /toy/embed`: `{"model": ..., "texts": [...], "size": 8}` to `{"vectors": [[...], ...]}`."""

    paths = ("/toy/embed",)
    name = "embed"

    def parse_request(self, request: Request) -> Query:
        """The texts, each embedded with `size` dimensions."""
        body = request.json()
        texts = require(body, "texts", list)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise RequestError("texts: a list of strings, at least one", param="texts")
        size = optional(body, "size", int, 8)
        model = require(body, "model", str)
        return Query(model=model, preview=preview(texts[0]), texts=texts, dimensions=[size] * len(texts))

    def render_embeddings(self, query: Query, vectors: list[array[float]], tokens: int) -> dict[str, Any]:
        """`{"vectors", "tokens"}`."""
        return {"vectors": [v.tolist() for v in vectors], "tokens": tokens}


class ToyReader(ReplyReader):
    """`{"answer", "calls"}`, or `{"piece"}` lines up to `{"done": true}`."""

    ndjson = True

    def read_body(self, body: Any) -> None:
        """The answer and the calls."""
        self.text = body["answer"]
        self.calls = [[c["tool"], orjson.dumps(c["args"]).decode()] for c in body["calls"]]

    def read_event(self, event: str, data: Any) -> str:
        """A piece, or the end."""
        if data.get("done"):
            self.done = True
        piece = str(data.get("piece", ""))
        self.text += piece
        return piece


@register_provider
class Toy(Provider):
    """The toy format."""

    name = "toy"
    endpoint_classes = (Ask, Count, Embed)
    credential_headers = frozenset({"x-toy-key"})
    stream_content_type = b"application/x-ndjson"

    def claims(self, path: str, headers: Mapping[str, str]) -> int:
        """Everything under /toy/."""
        return CLAIM_OWN if path.startswith("/toy/") else CLAIM_NONE

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
        """`{"toy_error": {"status", "text"}}`."""
        return orjson.dumps({"toy_error": {"status": status, "text": message}})

    def stream_error(self, status: int, message: str) -> bytes:
        """An error line in the stream."""
        return orjson.dumps({"toy_error": {"status": status, "text": message}}) + b"\n"

    def presented_keys(self, headers: Mapping[str, str]) -> list[str]:
        """The key is in `x-toy-key`."""
        return [headers["x-toy-key"]] if headers.get("x-toy-key") else []

    def auth_refusal(self, missing: bool) -> str:
        """Toy words."""
        return "toy: no key" if missing else "toy: bad key"

    def rate_limit_headers(self, report: RateLimitReport) -> Headers:
        """`x-toy-limit` and `x-toy-left` for requests."""
        requests = report.requests
        return [(b"x-toy-limit", str(requests.limit).encode()), (b"x-toy-left", str(requests.remaining).encode())]

    def retry_headers(self, status: int, wait_ms: float) -> Headers:
        """`x-toy-retry-in-ms` for anything retryable."""
        return [(b"x-toy-retry-in-ms", str(int(wait_ms)).encode())] if status == 429 or status >= 500 else []
