"""What a provider and its endpoints are: the wire format's parse, render and error shape."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mockllm_tui.core.conversation import Conversation, Reply
from mockllm_tui.engine.exchange import Exchange


@dataclass(slots=True)
class Frame:
    """One piece of an SSE stream: its bytes, the reply text it carries and its output tokens.

    Pacing is by tokens: a frame is due when its tokens are due; frames without tokens go at once.
    """

    data: bytes
    text: str = ""
    tokens: int = 0


@dataclass(slots=True)
class RenderContext:
    """Per-request values a renderer needs: one id and one creation time for the whole reply,
    and the reply text cut into stream chunks (by the live chunking knob)."""

    id: str
    created: int
    pieces: list[str] = field(default_factory=list)
    piece_tokens: list[int] = field(default_factory=list)
    request_id: str = ""


_ids = random.SystemRandom().getrandbits(64)
_id_random = random.Random(_ids)


def new_id(prefix: str, nbytes: int = 12) -> str:
    """A fresh id with a provider's prefix, e.g. `chatcmpl-...`, `msg_...` (unique, not secret)."""
    return f"{prefix}{_id_random.getrandbits(nbytes * 8):0{nbytes * 2}x}"


def now_s() -> int:
    """Unix seconds."""
    return int(time.time())


class Endpoint:
    """One route of a provider. Chat-like endpoints implement parse/render/render_stream/stream_error
    and leave `handle` to the shared pipeline; others override `handle`."""

    method: ClassVar[str] = "POST"
    paths: ClassVar[tuple[str, ...]] = ()
    name: ClassVar[str] = ""
    id_prefix: ClassVar[str] = ""
    #: Served for both SDKs (e.g. /v1/models): errors and headers follow the caller's provider.
    shared: ClassVar[bool] = False

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    async def handle(self, ex: Exchange) -> None:
        """Answer the request. The default runs the chat pipeline."""
        from mockllm_tui.http.chat import run_chat

        await run_chat(self, ex)

    def parse(self, body: dict[str, Any]) -> Conversation:
        """Turn a request body into a Conversation, or raise RequestError naming the field."""
        raise NotImplementedError

    def render(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> Any:
        """The JSON body of a complete reply."""
        raise NotImplementedError

    def render_stream(self, conversation: Conversation, reply: Reply, ctx: RenderContext) -> Iterator[Frame]:
        """The SSE frames of a streamed reply, in the provider's real event order."""
        raise NotImplementedError

    def stream_error(self, status: int, message: str, ctx: RenderContext) -> bytes:
        """The SSE bytes of an error in the middle of a stream."""
        return self.provider.stream_error(status, message)

    def remember(self, conversation: Conversation, reply: Reply, ctx: RenderContext, body: Any) -> None:
        """Hook called after a reply was made (the Responses API keeps them for GET)."""


class Provider:
    """A wire format: its endpoints, its error shape and its standard headers."""

    name: ClassVar[str] = ""
    endpoint_classes: ClassVar[tuple[type[Endpoint], ...]] = ()
    #: A header carrying the milliseconds spent on the request, added as the response head goes out.
    timing_header: ClassVar[bytes | None] = None

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = [cls(self) for cls in self.endpoint_classes]

    def owns_path(self, path: str) -> bool:
        """Whether an unknown path under this prefix should get this provider's 404 shape."""
        return False

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
        """The JSON bytes of an error in this provider's shape."""
        raise NotImplementedError

    def stream_error(self, status: int, message: str) -> bytes:
        """The SSE bytes of an error after a stream has started."""
        raise NotImplementedError

    def response_headers(self, ex: Exchange, request_id: str) -> list[tuple[bytes, bytes]]:
        """Headers every response of this provider carries (request id and the like)."""
        return [(b"x-request-id", request_id.encode())]

    def request_id(self) -> str:
        """A fresh request id in this provider's style."""
        return new_id("req_")
