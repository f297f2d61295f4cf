"""Neutral types shared by every provider: what was asked (Conversation) and what to answer (Reply)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from mockllm_tui.core.sessions import SessionState

Role = Literal["system", "user", "assistant", "tool"]
#: Whether the reply thinks first: as the model does by default ("auto"), or as the request says.
Thinking = Literal["auto", "on", "off"]
FinishReason = Literal["stop", "length", "tool_calls", "stop_sequence", "content_filter"]


@dataclass(slots=True)
class ToolCall:
    """A call the assistant makes: `arguments` is a JSON object; `id` has the provider's prefix."""

    name: str
    arguments: dict[str, Any]
    id: str = ""


@dataclass(slots=True)
class Message:
    """One turn. For role "tool", `name` is the tool's name and `tool_call_id` the call it answers."""

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(slots=True)
class ToolSpec:
    """A function tool offered by the client, with its JSON Schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Conversation:
    """A request, parsed from any wire format into one neutral shape.

    `tool_choice` is "auto", "none", "required" (any tool) or the name of one tool.
    `response_format` is None, {"type": "json_object"} or {"type": "json_schema", "schema": {...}}.
    `max_tokens_param` is the request field that set `max_tokens` (errors name it). `thinking` and
    `thinking_budget` say whether the reply thinks first and how many tokens it may spend on it.
    """

    provider: str
    endpoint: str
    model: str
    messages: list[Message] = field(default_factory=list)
    system: str = ""
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: str = "auto"
    response_format: dict[str, Any] | None = None
    stream: bool = False
    include_usage: bool = False
    n: int = 1
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    max_tokens_param: str = "max_tokens"
    thinking: Thinking = "auto"
    thinking_budget: int | None = None

    def last_user_text(self) -> str:
        """The text of the last user message, or "" when there is none."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""

    def last_tool_result(self) -> Message | None:
        """The tool result that ends the conversation, if the last turn is one."""
        if self.messages and self.messages[-1].role == "tool":
            return self.messages[-1]
        return None

    def turn(self) -> int:
        """The number of user turns so far, this request's included (tool results alone are no turn)."""
        return sum(1 for m in self.messages if m.role == "user")

    def current_start(self) -> int:
        """Where the current turn starts: the index after the last assistant message."""
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].role == "assistant":
                return index + 1
        return 0

    def current_tool_results(self) -> list[Message]:
        """The tool results of the current turn (after the last assistant message), in order."""
        return [m for m in self.messages[self.current_start() :] if m.role == "tool"]

    def last_result_turn(self) -> int | None:
        """The turn the conversation's last tool result belongs to (None: there is none)."""
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].role == "tool":
                return max(1, sum(1 for m in self.messages[:index] if m.role == "user"))
        return None

    def result_name(self, result: Message) -> str:
        """The tool a result answers: its own name, else that of the call it answers ("" when unknown)."""
        if result.name:
            return result.name
        if result.tool_call_id:
            for message in self.messages:
                for call in message.tool_calls:
                    if call.id == result.tool_call_id:
                        return call.name
        return ""

    def transcript(self) -> list[tuple[str, str]]:
        """The request as neutral (role, text) lines for people to read: system, turns, tools."""
        out: list[tuple[str, str]] = []
        if self.system:
            out.append(("system", self.system))
        for message in self.messages:
            text = message.content
            if message.tool_calls:
                names = ", ".join(call.name for call in message.tool_calls)
                text = (text + "\n" if text else "") + f"[tool call {names}]"
            if message.role == "tool":
                text = f"[tool result{' ' + message.name if message.name else ''}] {text}"
            out.append((message.role, text))
        if self.tools:
            out.append(("tools", ", ".join(tool.name for tool in self.tools)))
        return out

    def tool_named(self, name: str) -> ToolSpec | None:
        """The offered tool with this name, if any."""
        for tool in self.tools:
            if tool.name == name:
                return tool
        return None


#: A rule that nearly answered, and the first of its conditions that failed, in words.
NearMiss = tuple[str, str]


class NearMisses:
    """The nearest rules of a request a fallback answered, and why each missed: worked out when first
    read (most are never read, and the hot path should not pay for them), then kept."""

    __slots__ = ("_compute", "_value")

    def __init__(
        self, compute: Callable[[], list[NearMiss]] | None = None, value: list[NearMiss] | None = None
    ) -> None:
        self._compute = compute
        self._value = value

    def get(self) -> list[NearMiss]:
        """The (rule, reason) pairs, nearest first."""
        if self._value is None:
            self._value = self._compute() if self._compute is not None else []
            self._compute = None
        return self._value


@dataclass(slots=True)
class Usage:
    """Token counts from the local estimate (see tokens.py); output includes the reasoning tokens."""

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output."""
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class ErrorReply:
    """An error a rule asks for, rendered in each provider's own error shape."""

    status: int
    message: str
    type: str | None = None


@dataclass(slots=True)
class ReplySequence:
    """The `replies:` sequence a reply was picked from, so a flow can pick again at a position the
    group of processes shares (`--state redis://…`).

    `key` names the sequence in the group (what the rule is, a hash of its spec), `session` the
    session whose position it is (None: the default session), `length` its items, `index` the item
    picked from this process's own position, `pick(i)` the text of item i (templates filled in), and
    `follow(n)` sets this process's position to n, so local counting carries on from the group's."""

    key: str
    session: str | None
    length: int
    index: int
    pick: Callable[[int], str]
    follow: Callable[[int], None]


@dataclass(slots=True)
class Reply:
    """What to answer. `rule` names the rule that chose it, for the journal and the panel, and
    `rule_id` is that rule's internal id (None for a fallback), so the panel finds it after edits.

    `latency_ms` and `stream_speed` are per-rule overrides of the live knobs (None: not set).
    `thinking` is what the model thinks before the answer (sent only when the request thinks).
    `file` is a media file (image or audio) a rule answers with, as an absolute path or relative to
    the responses file's folder; `flagged` the moderation categories a rule flags, with their scores.
    """

    text: str = ""
    thinking: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: FinishReason = "stop"
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)
    rule: str | None = None
    rule_id: int | None = None
    error: ErrorReply | None = None
    latency_ms: float | None = None
    stream_speed: float | None = None
    near_misses: NearMisses | None = None
    scenario: dict[str, Any] | None = None

    file: str | None = None
    flagged: dict[str, float] | None = None
    #: The `replies:` sequence the text came from (None: not from a sequence).
    sequence: ReplySequence | None = None


@dataclass(slots=True)
class ChoiceContext:
    """What a reply source may look at beyond the conversation: the request's headers, its session,
    whether strict mode holds, and the request's journal entry (for the pytest plugin's callables)."""

    headers: dict[str, str] = field(default_factory=dict)
    session: SessionState | None = None
    strict: bool = False
    request: Any = None


class ReplySource(Protocol):
    """Chooses a reply for a conversation (the rules engine is the real one)."""

    def choose(self, conversation: Conversation) -> Reply:
        """Return the reply for this conversation."""
        ...


class RequestError(Exception):
    """Answer this request with an error, in the provider's own shape: bad input (a 4xx naming the
    field), an injected fault, a rule's error, a rate limit, a refusal for length, the timeout cap.

    `param` names the offending field, as OpenAI's `error.param` does; `type` overrides the
    provider's error type for the status; `retry_after_ms` asks for the provider's retry headers
    (None: no retry advice).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        retry_after_ms: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code
        self.type = type
        self.retry_after_ms = retry_after_ms


PREVIEW_CHARS = 80


def preview(text: str) -> str:
    """A one-line preview of a prompt, for the journal."""
    line = " ".join(text.split())
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1] + "…"


class NoRuleMatched(RequestError):
    """Strict mode: no rule answers the request. A 404 in the provider's shape naming the nearest
    rules and why each missed (`near_misses`: (rule, reason) pairs)."""

    def __init__(self, message: str, near_misses: list[NearMiss]) -> None:
        super().__init__(message, status=404, code="no_rule_matched")
        self.near_misses = near_misses
