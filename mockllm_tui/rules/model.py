"""The responses file's data model: rules, their matchers and replies, defaults, and the file they
came from. Plain frozen values; validation is in validate.py, warnings in lint.py.

Templates (`{{prompt}}`, `{{model}}`, regex groups) are substituted when a reply is made, and
nothing in the file is ever executed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson

#: The conditions, in the order they are checked and the first failure is named.
MATCH_KEYS: tuple[str, ...] = (
    "exact",
    "contains",
    "regex",
    "model",
    "provider",
    "system",
    "tool_result",
    "turn",
    "tools",
    "header",
    "endpoint",
    "file",
    "duration",
)
TOOL_RESULT_KEYS: tuple[str, ...] = ("name", "contains", "call_id")
SCENARIO_KEYS: tuple[str, ...] = ("name", "steps")
#: A `header:` value that is a regular expression (searched), not an exact value.
REGEX_PREFIX = "regex:"
RULE_KEYS: tuple[str, ...] = (
    "name",
    "match",
    "reply",
    "replies",
    "tool_calls",
    "error",
    "latency_ms",
    "stream_speed",
    "thinking",
    "image",
    "audio",
    "moderation",
)
TOP_KEYS: tuple[str, ...] = ("rules", "scenarios", "responses", "defaults", "models", "settings")
DEFAULTS_KEYS: tuple[str, ...] = ("unknown_response", "mirror", "triggers")
ERROR_KEYS: tuple[str, ...] = ("status", "message", "type")
TOOL_CALL_KEYS: tuple[str, ...] = ("name", "arguments")
DURATION_KEYS: tuple[str, ...] = ("min", "max")
MODERATION_KEYS: tuple[str, ...] = ("flagged", "scores")
DEFAULT_KEY = "default"
# mockllm's own settings: accepted so its files load unchanged, but they do nothing here.
MOCKLLM_SETTINGS: tuple[str, ...] = ("lag_enabled", "lag_factor")
BASE_VARIABLES: tuple[str, ...] = ("prompt", "model")
TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

EntryKind = Literal["rule", "short", "default"]


class RuleError(ValueError):
    """A problem with a rule or the file. `where` names the part ("rule 3"), `line` is 1-based.

    str() gives `file:line: where: message`, as much of it as is known.
    """

    def __init__(self, message: str, *, where: str = "", line: int | None = None, filename: str = "") -> None:
        self.message = message
        self.where = where
        self.line = line
        self.filename = filename
        super().__init__(self.describe())

    def describe(self) -> str:
        """The message with its location."""
        parts = []
        if self.filename:
            parts.append(f"{self.filename}:{self.line}" if self.line else self.filename)
        if self.where:
            parts.append(self.where)
        parts.append(self.message)
        return ": ".join(parts)

    def located(self, filename: str) -> RuleError:
        """The same error, naming the file."""
        return RuleError(self.message, where=self.where, line=self.line, filename=filename)

    def __str__(self) -> str:
        return self.describe()


class RulesFileError(ValueError):
    """A file with one or more problems; `errors` lists them all, str() is the first (and a count)."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{errors[0]}{more}")


class RuleWarning(NamedTuple):
    """Something `--check` and the log point out in a valid file: the 1-based line (if known) and what."""

    line: int | None
    message: str


@dataclass(frozen=True, slots=True)
class DurationRange:
    """The `duration` matcher: bounds in seconds on an uploaded audio's length, both inclusive."""

    min: float | None = None
    max: float | None = None

    def holds(self, seconds: float) -> bool:
        """Whether a duration lies within the bounds."""
        return (self.min is None or seconds >= self.min) and (self.max is None or seconds <= self.max)

    def to_data(self) -> dict[str, float]:
        """The bounds that are set."""
        return {k: v for k, v in (("min", self.min), ("max", self.max)) if v is not None}

    def __str__(self) -> str:
        low = "" if self.min is None else f"{self.min:g}"
        high = "" if self.max is None else f"{self.max:g}"
        return f"{low}..{high} s"


@dataclass(frozen=True, slots=True)
class ToolResultMatch:
    """`tool_result`: a result of the current turn whose tool matches `name` (a glob), whose text
    contains `contains` (any case) and that answers the call `call_id`; only the keys given count."""

    name: str | None = None
    contains: str | None = None
    call_id: str | None = None

    def to_data(self) -> str | dict[str, str]:
        """The short form (the name alone) when only the name is given, else the mapping."""
        data: dict[str, str] = {k: getattr(self, k) for k in TOOL_RESULT_KEYS if getattr(self, k) is not None}
        if list(data) == ["name"]:
            return data["name"]
        return data

    def summary(self) -> str:
        """`get_weather`, or `get_weather contains 'sunny'`."""
        parts = [self.name or "*"]
        if self.contains is not None:
            parts.append(f"contains {clip(self.contains, 30)!r}")
        if self.call_id is not None:
            parts.append(f"call {self.call_id}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class TurnRange:
    """`turn`: user turns so far, from `low` to `high` (inclusive; None: no bound). `raw` is as written."""

    raw: int | str
    low: int | None = None
    high: int | None = None

    def holds(self, turn: int) -> bool:
        """Whether this turn is in the range."""
        return (self.low is None or turn >= self.low) and (self.high is None or turn <= self.high)

    @property
    def empty(self) -> bool:
        """Whether no turn can ever be in the range (`"5-3"`, `"<1"`)."""
        if self.high is not None and self.high < 1:
            return True
        return self.low is not None and self.high is not None and self.low > self.high

    def __str__(self) -> str:
        return str(self.raw)


@dataclass(frozen=True, slots=True)
class Match:
    """What a rule looks for; every condition given must hold. No condition: matches everything.

    `tools` are names the request must offer (all of them); `header` pairs a header name (lower
    case) with a value, exact or `regex:PATTERN`."""

    exact: str | None = None
    contains: str | None = None
    regex: str | None = None
    model: str | None = None
    provider: str | None = None
    system: str | None = None
    tool_result: ToolResultMatch | None = None
    turn: TurnRange | None = None
    tools: tuple[str, ...] | None = None
    header: tuple[tuple[str, str], ...] | None = None
    endpoint: str | None = None
    file: str | None = None
    duration: DurationRange | None = None

    def to_data(self) -> dict[str, Any]:
        """The conditions that are set, in the canonical order, as the file writes them."""
        out: dict[str, Any] = {}
        for key in MATCH_KEYS:
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, ToolResultMatch | DurationRange):
                out[key] = value.to_data()
            elif isinstance(value, TurnRange):
                out[key] = value.raw
            elif key == "tools":
                out[key] = list(value)
            elif key == "header":
                out[key] = dict(value)
            else:
                out[key] = value
        return out

    def summary(self) -> str:
        """A short description for tables and labels: `contains 'weather' · model gpt-4o*`."""
        parts = []
        for key in MATCH_KEYS:
            value = getattr(self, key)
            if value is None:
                continue
            if key in ("exact", "contains", "regex", "system"):
                parts.append(f"{key} {clip(value, 40)!r}")
            elif isinstance(value, ToolResultMatch):
                parts.append(f"{key} {value.summary()}")
            elif key == "tools":
                parts.append(f"tools {', '.join(value)}")
            elif key == "header":
                parts.append("header " + ", ".join(f"{k}={v}" for k, v in value))
            else:
                parts.append(f"{key} {value}")
        return " · ".join(parts) if parts else "anything"

    def condition_count(self) -> int:
        """How many conditions the match names."""
        return sum(1 for key in MATCH_KEYS if getattr(self, key) is not None)


@dataclass(frozen=True, slots=True)
class ToolCallSpec:
    """A tool call a rule answers with. String values in `arguments` are templates."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        """As plain data."""
        return {"name": self.name, "arguments": self.arguments}


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """An error a rule answers with, rendered in each provider's own shape."""

    status: int
    message: str
    type: str | None = None

    def to_data(self) -> dict[str, Any]:
        """As plain data."""
        out: dict[str, Any] = {"status": self.status, "message": self.message}
        if self.type is not None:
            out["type"] = self.type
        return out


@dataclass(frozen=True, slots=True)
class ModerationSpec:
    """A moderation verdict a rule answers with: the categories it flags, and scores for some of them."""

    flagged: tuple[str, ...] = ()
    scores: tuple[tuple[str, float], ...] = ()

    def to_data(self) -> dict[str, Any]:
        """As plain data."""
        out: dict[str, Any] = {"flagged": list(self.flagged)}
        if self.scores:
            out["scores"] = dict(self.scores)
        return out


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One rule: a match and what to answer (reply, a sequence of replies, tool calls or an error;
    for the media endpoints an image file, an audio file or a moderation verdict).

    `thinking` is the text a reasoning reply thinks before it answers (when the request thinks).
    `image` and `audio` are paths relative to the responses file's folder."""

    match: Match = field(default_factory=Match)
    name: str | None = None
    reply: str | None = None
    replies: tuple[str, ...] | None = None
    tool_calls: tuple[ToolCallSpec, ...] = ()
    error: ErrorSpec | None = None
    latency_ms: float | None = None
    stream_speed: float | None = None
    thinking: str | None = None
    image: str | None = None
    audio: str | None = None
    moderation: ModerationSpec | None = None

    def to_data(self) -> dict[str, Any]:
        """The rule as plain data in the file's rich form (only the keys that are set)."""
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        out["match"] = self.match.to_data()
        if self.reply is not None:
            out["reply"] = self.reply
        if self.replies is not None:
            out["replies"] = list(self.replies)
        if self.tool_calls:
            out["tool_calls"] = [c.to_data() for c in self.tool_calls]
        if self.error is not None:
            out["error"] = self.error.to_data()
        if self.latency_ms is not None:
            out["latency_ms"] = self.latency_ms
        if self.stream_speed is not None:
            out["stream_speed"] = self.stream_speed
        if self.thinking is not None:
            out["thinking"] = self.thinking
        if self.image is not None:
            out["image"] = self.image
        if self.audio is not None:
            out["audio"] = self.audio
        if self.moderation is not None:
            out["moderation"] = self.moderation.to_data()
        return out

    def media_files(self) -> list[tuple[str, str]]:
        """The files the rule answers with, as (key, path) pairs."""
        return [(k, v) for k, v in (("image", self.image), ("audio", self.audio)) if v is not None]

    def short_key(self) -> str | None:
        """The `responses:` key this rule would have in the short form, or None when it needs the rich form."""
        plain = RuleSpec(match=self.match, reply=self.reply)
        if self.reply is None or self != plain:
            return None
        data = self.match.to_data()
        if not data:
            return DEFAULT_KEY
        if list(data) == ["exact"] and self.match.exact and self.match.exact.strip().lower() != DEFAULT_KEY:
            return self.match.exact
        return None

    def preview(self) -> str:
        """A one-line preview of the answer."""
        if self.error is not None:
            return f"error {self.error.status}: {self.error.message}"
        parts = []
        if self.reply is not None:
            parts.append(self.reply)
        if self.replies is not None:
            parts.append(" → ".join(self.replies))
        if self.tool_calls:
            parts.append(", ".join(f"{c.name}({orjson.dumps(c.arguments).decode()})" for c in self.tool_calls))
        parts.extend(f"{key} {path}" for key, path in self.media_files())
        if self.moderation is not None:
            parts.append("flag " + (", ".join(self.moderation.flagged) or "nothing"))
        return clip(" ".join(" | ".join(parts).split()), 80)


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of the file. `key` is the `responses:` key for a short-form entry (None for a rich rule).

    The key `default` is mockllm's catch-all: it is tried after every other rule.
    """

    spec: RuleSpec
    key: str | None = None
    line: int | None = field(default=None, compare=False)

    @property
    def kind(self) -> EntryKind:
        """ "rule" (rich form), "short" (a `responses:` key) or "default" (the catch-all key)."""
        if self.key is None:
            return "rule"
        return "default" if self.key.strip().lower() == DEFAULT_KEY else "short"


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """A named, ordered list of steps for one multi-turn flow: only the current step is tried, and
    the step that answers moves the scenario on."""

    name: str
    steps: tuple[RuleSpec, ...]
    line: int | None = field(default=None, compare=False)

    def step_label(self, index: int) -> str:
        """What the journal calls step `index` (0-based): its name, else `booking step 2`."""
        step = self.steps[index]
        return step.name if step.name else f"{self.name} step {index + 1}"

    def to_data(self) -> dict[str, Any]:
        """As plain data."""
        return {"name": self.name, "steps": [s.to_data() for s in self.steps]}


@dataclass(frozen=True, slots=True)
class Defaults:
    """What answers when no rule matches."""

    unknown_response: str | None = None
    mirror: bool = False
    triggers: bool = False


@dataclass(frozen=True, slots=True)
class RulesModel:
    """The whole file: rich rules (tried first, in order), then the short-form responses."""

    rules: tuple[Entry, ...] = ()
    responses: tuple[Entry, ...] = ()
    defaults: Defaults = field(default_factory=Defaults)
    scenarios: tuple[ScenarioSpec, ...] = ()
    models: list[Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[RuleWarning, ...] = field(default=(), compare=False)

    @property
    def entries(self) -> tuple[Entry, ...]:
        """Every entry in listing order: the rules, then the responses in file order."""
        return self.rules + self.responses

    def knob_settings(self) -> dict[str, Any]:
        """The `settings:` values that are knobs (mockllm's lag settings left out)."""
        return {k: v for k, v in self.settings.items() if k not in MOCKLLM_SETTINGS}


@dataclass(frozen=True, slots=True)
class FileSource:
    """The file a rule set was read from (or last written to), with its text and content hash."""

    path: Path
    text: str
    digest: str

    @property
    def name(self) -> str:
        """The file's name, as error messages show it."""
        return self.path.name


def clip(text: str, size: int) -> str:
    """`text` cut to `size` characters with an ellipsis."""
    return text if len(text) <= size else text[: size - 1] + "…"


def template_names(text: str) -> list[str]:
    """The variables a template uses."""
    return TEMPLATE.findall(text)


def strings_in(value: Any) -> list[str]:
    """Every string inside a value (for template checks)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings_in(v)]
    return []
