"""The journal recorder: one request's journal entry, written by the flows one phase at a time.

Every write to a request's entry goes through these methods, in the order a request lives:
opened, served_by, body, parsed, limited, matched, faulted, first_byte, chunk(s), ended or failed.
A realtime socket is one entry that stays open while the socket is: each response starts with
`next_response` and ends with `response_ended` (counted on its own), the row with `session_ended`.
The entry's shape (what `GET /_mock/journal`, the panel and the pytest plugin read) is the store's.
"""

from __future__ import annotations

from dataclasses import replace
from time import perf_counter
from typing import Any

from mockllm_tui.core.conversation import Conversation, NearMiss, NearMisses, Reply, preview
from mockllm_tui.core.store import JournalEntry, Store


class JournalRecorder:
    """Records one request into the store's journal (the entry is opened on construction)."""

    __slots__ = ("entry", "store")

    def __init__(self, store: Store, method: str, path: str, headers: dict[str, str] | None = None) -> None:
        self.store = store
        self.entry: JournalEntry = store.begin_request(method, path)
        if headers is not None:
            self.entry.request_headers = headers

    def served_by(self, provider: str, system: str, request_id: str, endpoint: str = "", operation: str = "") -> None:
        """The provider (and endpoint) that answers the request, and the request id it gave."""
        entry = self.entry
        entry.provider, entry.system, entry.request_id = provider, system, request_id
        entry.endpoint, entry.operation = endpoint, operation

    def body(self, body: bytes) -> None:
        """The request body as read (kept up to the configured bound)."""
        self.entry.request_body = body[: self.store.config.max_stored_body]

    def parsed(self, conversation: Conversation | None = None, *, model: str = "", what: str = "") -> None:
        """The request as its provider read it: a conversation (its model, preview and stream flag),
        or a model and a preview line for the other endpoints."""
        entry = self.entry
        if conversation is not None:
            entry.model = conversation.model
            entry.conversation = conversation
            entry.preview = preview(conversation.last_user_text() or conversation.system)
            entry.stream = conversation.stream
        if model:
            entry.model = model
        if what:
            entry.preview = what

    def limited(self, prompt_tokens: int, window: int | None, breach: str | None, refused: bool) -> None:
        """The input tokens counted, the window in force, and the limit broken (if any)."""
        entry = self.entry
        entry.prompt_tokens, entry.context_window = prompt_tokens, window
        if breach is not None:
            entry.limit_breach = breach
            entry.refused_for_length = refused

    def in_session(self, session: str | None) -> None:
        """The session the request works in (`x-mock-session`; None: the default one)."""
        self.entry.session = session

    def matched(
        self,
        rule: str | None,
        rule_id: int | None = None,
        *,
        scenario: dict[str, Any] | None = None,
        near_misses: NearMisses | None = None,
    ) -> None:
        """The rule that chose the reply: its identity (or `upstream` for a proxied request) and its
        internal id (for the panel); the scenario step that answered, or a fallback's near misses."""
        entry = self.entry
        entry.rule, entry.rule_id = rule, rule_id
        entry.scenario, entry.near_misses = scenario, near_misses

    def missed(self, near_misses: list[NearMiss]) -> None:
        """Strict mode refused the request: the nearest rules and why each missed."""
        self.entry.near_misses = NearMisses(value=near_misses)

    def replied(self, reply: Reply, response_id: str) -> None:
        """The shaped reply: its id, finish reason, token counts and thinking."""
        entry = self.entry
        entry.response_id, entry.finish_reason = response_id, reply.finish_reason
        entry.input_tokens, entry.output_tokens = reply.usage.input_tokens, reply.usage.output_tokens
        entry.thinking_text = reply.thinking

    def made(self, text: str, input_tokens: int, output_tokens: int, thumbnail: tuple[int, int, bytes] | None) -> None:
        """A media answer was made: what it is in words, its token counts and a small picture of it."""
        entry = self.entry
        entry.reply_text, entry.thumbnail = text, thumbnail
        entry.input_tokens, entry.output_tokens = input_tokens, output_tokens

    def faulted(self, description: str, status: int | None = None, mode: str | None = None) -> None:
        """An injected fault, or a refusal by a guard (auth, rate limit)."""
        entry = self.entry
        entry.fault = description
        if status is not None:
            entry.fault_status, entry.fault_mode = status, mode

    def first_byte(self) -> None:
        """The head of a stream went out."""
        self.store.open_stream(self.entry)

    def chunk(self, text: str, size: int, label: str = "") -> None:
        """One stream chunk went out (`label`: what it is, where its wire format names chunks)."""
        self.store.add_chunk(self.entry, text, size, label)

    def chunks(self, texts: list[str], size: int) -> None:
        """Several stream chunks went out in one write."""
        self.store.add_chunks(self.entry, texts, size)

    def paced(self, speed: float) -> None:
        """The speed a stream is paced at (tokens/s, 0: unlimited): as it starts, and as it ends."""
        self.entry.stream_speed = speed

    def reply_text(self, text: str) -> None:
        """The reply's whole text (before the end, so the end event carries it)."""
        self.entry.reply_text = text

    def ended(self, status: int, size: int = 0, body: bytes = b"") -> None:
        """The answer is complete (`body`: a whole reply as sent)."""
        self.store.end_request(self.entry, status, size, body)

    def failed(self, status: int) -> None:
        """The request ended without a complete answer (client gone, cut on purpose, shutdown)."""
        self.store.end_request(self.entry, status)

    def next_response(self, conversation: Conversation, response_id: str, model: str = "") -> None:
        """A session's next response begins: its turn's conversation becomes the row's (so the row
        shows every turn so far) and the last response's rule, reply and fault are cleared."""
        entry = self.entry
        entry.conversation, entry.model = conversation, model or conversation.model or entry.model
        entry.preview = preview(conversation.last_user_text() or conversation.system)
        entry.request_id = response_id
        entry.rule = entry.fault = entry.fault_mode = None
        entry.rule_id = entry.fault_status = None
        entry.scenario, entry.near_misses = None, None
        entry.reply_text = entry.thinking_text = entry.response_id = entry.finish_reason = ""
        entry.input_tokens = entry.output_tokens = 0

    def response_ended(self, status: int, started: float, mark: int) -> None:
        """A session's response is over (`started`: when it began, perf_counter; `mark`: the row's
        chunk count as its frames began). It is counted as a request of its own, as a snapshot of
        the row that the journal does not hold."""
        entry = self.entry
        times = entry.chunk_times[mark:]
        response = replace(
            entry,
            time=entry.time + (started - entry.started),
            status=status,
            open=False,
            started=started,
            duration_ms=(perf_counter() - started) * 1000.0,
            first_chunk_at=times[0] if times else None,
            chunks=entry.chunks[mark:],
            chunk_times=times,
            chunk_labels=[],
            stream=True,
        )
        self.store.count_response(response)

    def session_ended(self, status: int) -> None:
        """The session's socket closed: 101, or the status of the fault that closed it."""
        self.store.end_session(self.entry, status)
