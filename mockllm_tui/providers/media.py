"""The media seam: endpoints that answer with pictures, audio, transcripts or moderation verdicts.

A `MediaEndpoint` is a pure translator, like every endpoint: `parse_media` reads the `Request` into
a `MediaJob` (what the rules see, one `MediaRequest` per judged input, and
the endpoint's own parsed options), and `answer` turns the rules' replies into a `MediaAnswer`
(a whole body, or the frames of a stream). The media flow (`mockllm_tui.http.media`) does the rest:
reading the body, the journal, the rules, the faults and the latency, reading a rule's file, and
running both methods off the event loop (they decode and encode pictures and audio).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from mockllm_tui.core.conversation import Reply
from mockllm_tui.core.media import MediaRequest
from mockllm_tui.providers.base import Endpoint, Frame, Request

#: The largest body a media endpoint reads (uploads), unless the configured limit is larger.
MEDIA_MAX_BODY = 64 * 1024 * 1024
JSON_TYPE = b"application/json"


@dataclass(slots=True)
class MediaJob:
    """A parsed media request: what the rules judge (one request per input; none for a route that
    only serves a file), what the journal shows, and the endpoint's own parsed options (`params`)."""

    requests: list[MediaRequest]
    preview: str = ""
    params: Any = None

    @property
    def model(self) -> str:
        """The model asked for ("" for a job no rule judges)."""
        return self.requests[0].model if self.requests else ""

    @property
    def stream(self) -> bool:
        """Whether the answer streams."""
        return bool(self.requests) and self.requests[0].stream


@dataclass(slots=True)
class MediaAnswer:
    """What to send: a whole body with its content type, or (`frames` set) a stream; and what the
    journal keeps of it (the reply as text, token counts, a small picture)."""

    body: bytes = b""
    content_type: bytes = JSON_TYPE
    frames: list[Frame] | None = None
    reply_text: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    thumbnail: tuple[int, int, bytes] | None = None


@dataclass(slots=True)
class RecordedMedia:
    """A real upstream's answer as a rule can give it again: a transcript's text, a file (picture or
    audio, with its extension) or the moderation categories it flagged with their scores."""

    reply: str | None = None
    file: bytes | None = None
    extension: str = ""
    flagged: dict[str, float] | None = None


@dataclass(slots=True)
class MediaContext:
    """Per-request values an answer needs: the address the request came to (for URLs the mock serves)
    and its creation time."""

    root: str
    created: int
    rule_file: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class MediaEndpoint(Endpoint):
    """A media route: parsed by `parse_media`, answered by `answer` (see the module's docstring)."""

    #: Whether the body is `multipart/form-data` (an upload), not JSON.
    multipart: ClassVar[bool] = False

    def parse_media(self, request: Request) -> MediaJob:
        """Read the request, or raise RequestError naming the field that is wrong. A job without
        requests (a file the mock serves) skips the rules and the faults."""
        raise NotImplementedError

    def answer(self, job: MediaJob, replies: list[Reply], ctx: MediaContext) -> MediaAnswer:
        """The answer to the job, given the rules' reply to each of its requests (and the bytes of
        the first reply's file, if it names one, in `ctx.rule_file`)."""
        raise NotImplementedError

    def read_upstream(self, job: MediaJob, content_type: str, body: bytes) -> RecordedMedia | None:
        """A real upstream's successful answer to the job, read back for recording (None: not
        recorded, the default)."""
        return None
