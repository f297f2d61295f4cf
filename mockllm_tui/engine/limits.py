"""Model limits per request: the limits in force, the first one a request breaks, and whether the
reply thinks first.

Tokens are counted with the same estimate that `usage` and `count_tokens` report
(`core/tokens.py`), so the numbers in a refusal agree with what the app can count. This module
only finds the breach; each provider words its own refusal (`Provider.limit_error`).

The window in force: the `x-mock-context-window` header (this request only), else the model's own
(built-in, or `models:` in the responses file), else the `context_window` knob (`--context-window`),
else none. Checked in this order, the first breach wins: the output limit (`max_tokens` above the
model's most output tokens), a separate input limit (gpt-5's), the prompt alone over the window,
then the prompt plus `max_tokens` over the window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from mockllm_tui.core.conversation import Conversation, RequestError
from mockllm_tui.core.models import ModelInfo

WINDOW_HEADER = "x-mock-context-window"

BreachKind = Literal["output_limit", "input_limit", "context", "context_with_output"]


@dataclass(slots=True)
class RequestLimits:
    """The limits in force for one request (None: no limit)."""

    window: int | None = None
    max_output: int | None = None
    max_input: int | None = None


@dataclass(frozen=True, slots=True)
class LimitBreach:
    """A limit a request breaks, for its provider to word the refusal.

    `kind` is one of:
    - "output_limit": `requested` (the max tokens asked for) is above the model's `max_output`;
    - "input_limit": `input_tokens` is above the model's separate input limit `max_input`;
    - "context": `input_tokens` alone is above the context `window`;
    - "context_with_output": `input_tokens + requested` is above the `window`.
    `model` is the model's registry id (the name asked for when it is unknown); `param` is the
    request field that carried `requested` (`max_tokens`, `max_completion_tokens`, ...).
    """

    kind: BreachKind
    model: str
    window: int | None
    input_tokens: int
    max_output: int | None
    requested: int | None
    param: str = "max_tokens"
    max_input: int | None = None

    @property
    def limit(self) -> int:
        """The number the request went over."""
        if self.kind == "output_limit":
            return self.max_output or 0
        if self.kind == "input_limit":
            return self.max_input or 0
        return self.window or 0

    @property
    def total(self) -> int:
        """Input plus the output asked for."""
        return self.input_tokens + (self.requested or 0)

    def describe(self) -> str:
        """A short line for the journal and the panel: "prompt 1,234 > window 1,000"."""
        if self.kind == "output_limit":
            return f"{self.param} {self.requested:,} > output limit {self.limit:,}"
        if self.kind == "input_limit":
            return f"prompt {self.input_tokens:,} > input limit {self.limit:,}"
        if self.kind == "context":
            return f"prompt {self.input_tokens:,} > window {self.limit:,}"
        return f"prompt {self.input_tokens:,} + {self.param} {self.requested:,} > window {self.limit:,}"

    def message(self) -> str:
        """A plain sentence for providers without their own wording."""
        if self.kind == "output_limit":
            return f"{self.param} is too large: {self.requested}; {self.model} allows {self.limit} output tokens"
        if self.kind == "context_with_output":
            return (
                f"the request needs {self.total} tokens ({self.input_tokens} input, {self.requested} output), "
                f"more than the context window of {self.limit} tokens of {self.model}"
            )
        return f"the input has {self.input_tokens} tokens, more than the limit of {self.limit} tokens of {self.model}"


def header_window(headers: Mapping[str, str]) -> int | None:
    """The `x-mock-context-window` header's window, or None without it (a bad value is a 400)."""
    raw = headers.get(WINDOW_HEADER)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise RequestError(f"{WINDOW_HEADER}: expected a positive number of tokens, got {raw!r}", param=WINDOW_HEADER)
    return value


def limits_for(model: ModelInfo | None, default_window: int = 0, header: int | None = None) -> RequestLimits:
    """The limits in force: the header's window, else the model's, else `default_window` (0: none)."""
    window = header or (model.context_window if model is not None else None) or default_window or None
    if model is None:
        return RequestLimits(window=window)
    return RequestLimits(window=window, max_output=model.max_output_tokens, max_input=model.max_input_tokens)


def find_breach(conversation: Conversation, input_tokens: int, limits: RequestLimits, model: str) -> LimitBreach | None:
    """The first limit the request breaks (see the module docstring for the order), or None."""
    requested = conversation.max_tokens
    kind: BreachKind | None = None
    if requested is not None and limits.max_output is not None and requested > limits.max_output:
        kind = "output_limit"
    elif (
        limits.max_input is not None
        and input_tokens > limits.max_input
        and (limits.window is None or limits.max_input < limits.window)
    ):
        kind = "input_limit"
    elif limits.window is not None and input_tokens > limits.window:
        kind = "context"
    elif limits.window is not None and requested is not None and input_tokens + requested > limits.window:
        kind = "context_with_output"
    if kind is None:
        return None
    return LimitBreach(
        kind=kind,
        model=model,
        window=limits.window,
        input_tokens=input_tokens,
        max_output=limits.max_output,
        requested=requested,
        param=conversation.max_tokens_param,
        max_input=limits.max_input,
    )


def resolve_thinking(conversation: Conversation, model: ModelInfo | None) -> bool:
    """Settle whether the reply thinks first: as the request says, else as the model does by default."""
    if conversation.thinking == "auto":
        conversation.thinking = "on" if model is not None and model.reasoning else "off"
    return conversation.thinking == "on"
