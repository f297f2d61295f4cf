"""The realtime seam: a WebSocket session as a pure translator, for OpenAI Realtime and Gemini Live.

A `RealtimeEndpoint` opens a `RealtimeSession` for each accepted socket. The session knows the wire
format and the conversation so far; it never touches the socket. The realtime flow
(`mockllm_tui.http.realtime`) feeds it each client message and carries out the steps it returns:

- `Emit`: send these messages now;
- `Answer`: a turn the rules must answer: the flow picks a reply for `turn.conversation`, applies
  the knobs (latency, pacing, faults) and sends the frames of `session.render(turn, reply, ...)`;
- `Cancel`: stop the response in progress (its frames not yet sent are dropped) and send
  `session.cancelled(turn)`;
- `Close`: close the socket with this code and reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from mockllm_tui.core.conversation import Conversation, Reply, RequestError
from mockllm_tui.providers.base import Endpoint, Frame, Query, Request

#: Close codes: normal, policy violation (bad key), bad data (a malformed message), server error, too big.
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_BAD_DATA = 1007
CLOSE_SERVER_ERROR = 1011
CLOSE_TOO_BIG = 1009


@dataclass(slots=True)
class Turn:
    """A turn to answer: the conversation the rules see, and what the session needs to render it."""

    conversation: Conversation
    response_id: str = ""
    modalities: tuple[str, ...] = ("text",)
    #: Wire-specific details the session keeps for rendering (item ids, voice, ...).
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Emit:
    """Messages to send at once, in order (text frames)."""

    messages: tuple[bytes, ...]


@dataclass(slots=True, frozen=True)
class Answer:
    """A turn for the rules to answer."""

    turn: Turn


@dataclass(slots=True, frozen=True)
class Cancel:
    """Stop the response in progress."""


@dataclass(slots=True, frozen=True)
class Close:
    """Close the socket."""

    code: int
    reason: str


Step = Emit | Answer | Cancel | Close


class RealtimeSession:
    """One socket's conversation, as a pure translator between its messages and neutral turns."""

    #: The model the session serves (for the journal).
    model: str = ""

    def opened(self) -> list[Step]:
        """What to do when the socket is accepted (OpenAI announces the session; Gemini waits)."""
        return []

    def receive(self, message: str | bytes) -> list[Step]:
        """The steps one client message asks for; a bad message gives an error, never an exception."""
        raise NotImplementedError

    def too_large(self, size: int, limit: int) -> list[Step]:
        """The answer to a client message over the size limit."""
        return [Close(CLOSE_TOO_BIG, f"message of {size} bytes is over the limit of {limit} bytes")]

    def render(self, turn: Turn, reply: Reply, pieces: list[str], piece_tokens: list[int]) -> list[Frame]:
        """The frames of the answer to `turn`, in the API's order; pacing follows their tokens."""
        raise NotImplementedError

    def rule_error(self, turn: Turn, status: int, message: str) -> list[Step]:
        """The answer to a turn that a rule or an injected fault fails before any output."""
        raise NotImplementedError

    def cancelled(self, turn: Turn) -> list[bytes]:
        """The messages that end a response the client cancelled (or that a fault cut)."""
        return []

    def finished(self, turn: Turn, reply: Reply) -> None:
        """The answer went out whole: the session adds it to the conversation."""

    def transcript(self) -> list[tuple[str, str]]:
        """The conversation so far as neutral (role, text) lines, for the panel."""
        return []

    def label(self, message: bytes) -> str:
        """What a message this session sent is (its event type), for the chunk timeline."""
        return ""


class RealtimeEndpoint(Endpoint):
    """A route upgraded to a WebSocket; the realtime flow serves it."""

    method: ClassVar[str] = "GET"

    def open(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], *, audio_transcript: str
    ) -> RealtimeSession:
        """A new session for a socket; `audio_transcript` is what an audio turn says to the rules."""
        raise NotImplementedError

    def parse_request(self, request: Request) -> Query:
        """A plain HTTP request to a WebSocket route: 426, upgrade required."""
        raise RequestError(f"{request.path} only accepts WebSocket connections (send Upgrade: websocket)", status=426)

    def presented_keys(self, query: Mapping[str, str], headers: Mapping[str, str]) -> list[str]:
        """The keys the handshake carries (headers, or the query for APIs that take it there)."""
        return self.provider.presented_keys(headers)


def encoded(data: Any) -> bytes:
    """One message as JSON bytes of their own size. A response's frames are rendered ahead of
    pacing, and orjson's result keeps a 4 KB buffer behind it: copied, a response's ~50 frames
    hold about 13 KB instead of 200 KB while they wait their turn."""
    return memoryview(orjson.dumps(data)).tobytes()


def audio_tokens(duration_ms: float) -> int:
    """Audio tokens as the realtime APIs count them: about one per 50 ms."""
    return math.ceil(duration_ms / 50.0)
