"""The public seam for provider plugins: everything a wire format needs, and nothing else.

A provider is a pure translator. It never touches the network, the event loop or the state store:
the server reads the request, hands it over as a neutral `Request` (method, path, query, headers,
body bytes and the model registry in force) and sends what the provider renders. The built-in
providers are written against the same classes.

A provider (subclass `Provider`) says:
- which requests it claims: `claims(path, headers)` (CLAIM_NONE, CLAIM_SHAPE or CLAIM_OWN) and
  its endpoints' `method` and `paths` (`{name}` matches one path segment, `{name:path}` any text);
- its error body for any status (`error_body`, `stream_error`), its auth refusal (`presented_keys`,
  `auth_refusal`), its rate-limit and retry headers (`rate_limit_headers`, `retry_headers`) and the
  headers every answer carries (`response_headers`, `request_id`).

Its endpoints are one of:
- `ChatEndpoint`: `parse(body)` (or `parse_conversation(request)`) turns a request into a neutral
  `Conversation`; `render(conversation, reply, ctx)` gives the JSON body of a `Reply`, and
  `render_stream(...)` its stream as `Frame`s. The server runs the rules, the faults, the latency,
  the pacing and the journal around them.
- `EmbeddingEndpoint`: `parse_request(request)` gives a `Query` with the texts to embed and the
  dimensions of each; `render_embeddings(query, vectors, tokens)` the JSON body.
- `TokenCountEndpoint`: `parse_conversation(request)` and `render_count(tokens)`.
- `Endpoint` (model lists and the like): `parse_request(request)` gives a `Query` (what the journal
  shows, plus anything the answer needs) and `render_query(query, request)` the JSON body.
- `MediaEndpoint` (pictures, audio, transcripts, verdicts): `parse_media(request)` gives a
  `MediaJob` (one `MediaRequest` per input the rules judge, made with `media_request`);
  `answer(job, replies, ctx)` gives a `MediaAnswer` (a body or stream frames), and
  `read_upstream(...)` a `RecordedMedia` for recording. The server runs both off the event loop.

Any of them refuses a request by raising `RequestError(message, status=..., param=...)`; the server
renders it with the provider's `error_body`. Register the provider with `@register_provider` and
load its module with `--plugin MODULE` (or the `mockllm_tui.providers` entry point group).
`tests/toy_provider.py` is a complete example.
"""

from __future__ import annotations

from mockllm_tui.core.conversation import (
    Conversation,
    ErrorReply,
    FinishReason,
    Message,
    Reply,
    RequestError,
    ToolCall,
    ToolSpec,
    Usage,
    preview,
)
from mockllm_tui.core.media import AnswerKind, MediaRequest, media_request
from mockllm_tui.core.models import ModelInfo, ModelRegistry
from mockllm_tui.engine.limits import LimitBreach
from mockllm_tui.providers.base import (
    CLAIM_NONE,
    CLAIM_OWN,
    CLAIM_SHAPE,
    Allowance,
    ChatEndpoint,
    EmbeddingEndpoint,
    Endpoint,
    Frame,
    Headers,
    Provider,
    Query,
    RateLimitReport,
    RenderContext,
    ReplyReader,
    Request,
    TokenCountEndpoint,
    bearer_token,
    new_id,
    now_s,
    parse_arguments,
    retry_headers,
)
from mockllm_tui.providers.media import MediaAnswer, MediaContext, MediaEndpoint, MediaJob, RecordedMedia
from mockllm_tui.providers.parsing import check_type, optional, require
from mockllm_tui.providers.registry import register_provider, unregister_provider

__all__ = [
    "CLAIM_NONE",
    "CLAIM_OWN",
    "CLAIM_SHAPE",
    "Allowance",
    "AnswerKind",
    "ChatEndpoint",
    "Conversation",
    "EmbeddingEndpoint",
    "Endpoint",
    "ErrorReply",
    "FinishReason",
    "Frame",
    "Headers",
    "LimitBreach",
    "MediaAnswer",
    "MediaContext",
    "MediaEndpoint",
    "MediaJob",
    "MediaRequest",
    "Message",
    "ModelInfo",
    "ModelRegistry",
    "Provider",
    "Query",
    "RateLimitReport",
    "RecordedMedia",
    "RenderContext",
    "Reply",
    "ReplyReader",
    "Request",
    "RequestError",
    "TokenCountEndpoint",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "bearer_token",
    "check_type",
    "media_request",
    "new_id",
    "now_s",
    "optional",
    "parse_arguments",
    "preview",
    "register_provider",
    "require",
    "retry_headers",
    "unregister_provider",
]
