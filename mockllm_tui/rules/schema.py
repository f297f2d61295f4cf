"""The responses file model: mockllm's short form (`responses:`), the rich `rules:` list, `defaults:`,
`models:` and `settings:`, validated with messages that name the file and the line.

Loading only builds plain values: templates (`{{prompt}}`, `{{model}}`, regex groups) are substituted
when a reply is made, and nothing in the file is ever executed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from ruamel.yaml.scalarbool import ScalarBoolean

from mockllm_tui.core.knobs import KnobError, validate_knob_values

MATCH_KEYS: tuple[str, ...] = ("exact", "contains", "regex", "model", "provider", "system", "tool_result")
RULE_KEYS: tuple[str, ...] = (
    "name",
    "match",
    "reply",
    "replies",
    "tool_calls",
    "error",
    "latency_ms",
    "stream_speed",
)
TOP_KEYS: tuple[str, ...] = ("rules", "responses", "defaults", "models", "settings")
DEFAULTS_KEYS: tuple[str, ...] = ("unknown_response", "mirror", "triggers")
ERROR_KEYS: tuple[str, ...] = ("status", "message", "type")
TOOL_CALL_KEYS: tuple[str, ...] = ("name", "arguments")
DEFAULT_KEY = "default"
# mockllm's own settings: accepted so its files load unchanged, but they do nothing here.
MOCKLLM_SETTINGS: tuple[str, ...] = ("lag_enabled", "lag_factor")
BASE_VARIABLES: tuple[str, ...] = ("prompt", "model")
TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

EntryKind = Literal["rule", "short", "default"]
LineOf = Callable[[str | int | None], int | None]


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


@dataclass(frozen=True, slots=True)
class Match:
    """What a rule looks for; every condition given must hold. No condition: matches everything."""

    exact: str | None = None
    contains: str | None = None
    regex: str | None = None
    model: str | None = None
    provider: str | None = None
    system: str | None = None
    tool_result: str | None = None

    def to_data(self) -> dict[str, str]:
        """The conditions that are set, in the canonical order."""
        return {k: getattr(self, k) for k in MATCH_KEYS if getattr(self, k) is not None}

    def is_empty(self) -> bool:
        """True when no condition is set (a catch-all)."""
        return not self.to_data()

    def summary(self) -> str:
        """A short description for tables and labels: `contains 'weather' · model gpt-4o*`."""
        data = self.to_data()
        if not data:
            return "anything"
        return " · ".join(
            f"{k} {clip(v, 40)!r}" if k in ("exact", "contains", "regex", "system") else f"{k} {v}"
            for k, v in data.items()
        )


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
class RuleSpec:
    """One rule: a match and what to answer (reply, a sequence of replies, tool calls or an error)."""

    match: Match = field(default_factory=Match)
    name: str | None = None
    reply: str | None = None
    replies: tuple[str, ...] | None = None
    tool_calls: tuple[ToolCallSpec, ...] = ()
    error: ErrorSpec | None = None
    latency_ms: float | None = None
    stream_speed: float | None = None

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
        return out

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
            parts.append(
                ", ".join(f"{c.name}({orjson.dumps(c.arguments).decode()})" for c in self.tool_calls)
            )
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
    models: list[Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def entries(self) -> tuple[Entry, ...]:
        """Every entry in listing order: the rules, then the responses in file order."""
        return self.rules + self.responses

    def knob_settings(self) -> dict[str, Any]:
        """The `settings:` values that are knobs (mockllm's lag settings left out)."""
        return {k: v for k, v in self.settings.items() if k not in MOCKLLM_SETTINGS}


# -- helpers -------------------------------------------------------------------------------------


def clip(text: str, size: int) -> str:
    """`text` cut to `size` characters with an ellipsis."""
    return text if len(text) <= size else text[: size - 1] + "…"


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _unknown_key(key: Any, known: tuple[str, ...], what: str) -> str:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (expected {', '.join(known)})"
    return f"unknown {what} {str(key)!r}{hint}"


def _no_line(_: str | int | None) -> int | None:
    return None


def line_finder(node: Any, fallback: int | None) -> LineOf:
    """A function giving the 1-based line of a key (or list index) of a ruamel node, else `fallback`."""
    lc = getattr(node, "lc", None)

    def line_of(key: str | int | None) -> int | None:
        if lc is None or key is None:
            return fallback
        try:
            found = lc.item(key) if isinstance(key, int) else lc.key(key)
            return int(found[0]) + 1
        except (KeyError, IndexError, TypeError, AttributeError):
            return fallback

    return line_of


def plain(value: Any) -> Any:
    """ruamel's round-trip values as plain Python values (str, int, float, bool, None, dict, list)."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None:
        return None
    if isinstance(value, bool | ScalarBoolean):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise RuleError(f"unsupported value {value!r} (only strings, numbers, booleans, lists and mappings)")


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


def find_unsupported(value: Any, line: int | None) -> RuleError | None:
    """The first value that is not plain data (a tagged value such as `!!python/object`), if any."""
    if isinstance(value, dict | list):
        line_of = line_finder(value, line)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            found = find_unsupported(item, line_of(key))
            if found is not None:
                return found
        return None
    if value is None or isinstance(value, str | int | float | bool | ScalarBoolean):
        return None
    tag = getattr(value, "tag", None)
    return RuleError(
        f"unsupported value {str(getattr(tag, 'value', tag) or type(value).__name__)!r}: "
        "only strings, numbers, booleans, lists and mappings are allowed",
        line=line,
    )


# -- parsing -------------------------------------------------------------------------------------


class _Checker:
    """Validation of one rule, raising RuleError with the rule's name and the line of the bad key."""

    def __init__(self, where: str, line_of: LineOf) -> None:
        self.where = where
        self.line_of = line_of

    def fail(self, message: str, key: str | int | None = None) -> RuleError:
        return RuleError(message, where=self.where, line=self.line_of(key))

    def string(self, value: Any, name: str, key: str, *, allow_empty: bool = True) -> str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.fail(f"{name!r} must be a string, not {_type_name(value)}", key)
        if not allow_empty and not value.strip():
            raise self.fail(f"{name!r} must not be empty", key)
        return value

    def number(self, value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self.fail(f"{name!r} must be a number of at least 0, not {value!r}", name)
        return value


def parse_rule(
    data: Any, where: str = "rule", line_of: LineOf = _no_line, match_lines: LineOf | None = None
) -> RuleSpec:
    """Validate one rule in the rich form (plain data) and build its RuleSpec.

    Raises RuleError naming `where` and, when known, the line of the offending key.
    """
    check = _Checker(where, line_of)
    if not isinstance(data, dict):
        raise check.fail(f"expected a mapping with 'match' and a reply, not {_type_name(data)}", None)
    for key in data:
        if key not in RULE_KEYS:
            raise check.fail(_unknown_key(key, RULE_KEYS, "key"), key)
    name = data.get("name")
    if name is not None:
        name = check.string(name, "name", "name", allow_empty=False)
    match, variables = _parse_match(data.get("match"), check, match_lines or line_of)
    reply = data.get("reply")
    if reply is not None:
        reply = check.string(reply, "reply", "reply")
    replies = _parse_replies(data.get("replies"), check)
    tool_calls = _parse_tool_calls(data.get("tool_calls"), check)
    error = _parse_error(data.get("error"), check)
    latency = data.get("latency_ms")
    speed = data.get("stream_speed")
    spec = RuleSpec(
        match=match,
        name=name,
        reply=reply,
        replies=replies,
        tool_calls=tool_calls,
        error=error,
        latency_ms=None if latency is None else check.number(latency, "latency_ms"),
        stream_speed=None if speed is None else check.number(speed, "stream_speed"),
    )
    if reply is not None and replies is not None:
        raise check.fail("use either 'reply' or 'replies', not both", "replies")
    if error is not None and (reply is not None or replies is not None or tool_calls):
        raise check.fail("'error' cannot be combined with 'reply', 'replies' or 'tool_calls'", "error")
    if reply is None and replies is None and not tool_calls and error is None:
        raise check.fail("give a 'reply', 'replies', 'tool_calls' or 'error'", None)
    _check_templates(spec, variables, check)
    return spec


def _parse_match(value: Any, check: _Checker, line_of: LineOf) -> tuple[Match, tuple[str, ...]]:
    if value is None:
        return Match(), BASE_VARIABLES
    if isinstance(value, str):
        raise check.fail("'match' must be a mapping such as {contains: \"weather\"}, not a string", "match")
    if not isinstance(value, dict):
        raise check.fail(f"'match' must be a mapping, not {_type_name(value)}", "match")
    sub = _Checker(check.where, line_of)
    values: dict[str, str] = {}
    for key, raw in value.items():
        if key not in MATCH_KEYS:
            raise sub.fail(_unknown_key(key, MATCH_KEYS, "matcher"), key)
        values[key] = sub.string(raw, key, key, allow_empty=key in ("exact", "contains"))
    variables = BASE_VARIABLES
    regex = values.get("regex")
    if regex is not None:
        try:
            compiled = re.compile(regex)
        except re.error as exc:
            raise sub.fail(f"'regex' is not a valid regular expression: {exc}", "regex") from None
        variables = (*BASE_VARIABLES, *compiled.groupindex)
    return Match(**values), variables


def _parse_replies(value: Any, check: _Checker) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise check.fail("'replies' must be a non-empty list of strings", "replies")
    return tuple(check.string(v, "replies", "replies") for v in value)


def _parse_tool_calls(value: Any, check: _Checker) -> tuple[ToolCallSpec, ...]:
    if value is None:
        return ()
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise check.fail("'tool_calls' must be a list of {name, arguments}", "tool_calls")
    calls = []
    for i, raw in enumerate(value):
        if not isinstance(raw, dict):
            raise check.fail(f"tool_calls[{i}] must be a mapping with 'name' and 'arguments'", "tool_calls")
        for key in raw:
            if key not in TOOL_CALL_KEYS:
                raise check.fail(
                    f"tool_calls[{i}]: " + _unknown_key(key, TOOL_CALL_KEYS, "key"), "tool_calls"
                )
        name = check.string(raw.get("name"), f"tool_calls[{i}].name", "tool_calls", allow_empty=False)
        args = raw.get("arguments", {})
        if isinstance(args, str):
            try:
                args = orjson.loads(args) if args.strip() else {}
            except orjson.JSONDecodeError as exc:
                raise check.fail(
                    f"tool_calls[{i}].arguments is not valid JSON: {exc}", "tool_calls"
                ) from None
        if not isinstance(args, dict):
            raise check.fail(f"tool_calls[{i}].arguments must be a mapping (a JSON object)", "tool_calls")
        calls.append(ToolCallSpec(name=name, arguments=args))
    return tuple(calls)


def _parse_error(value: Any, check: _Checker) -> ErrorSpec | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"status": value}
    if not isinstance(value, dict):
        raise check.fail("'error' must be a mapping such as {status: 529, message: \"Overloaded\"}", "error")
    for key in value:
        if key not in ERROR_KEYS:
            raise check.fail("error: " + _unknown_key(key, ERROR_KEYS, "key"), "error")
    status = value.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise check.fail(f"'error.status' must be an HTTP error status (400-599), not {status!r}", "error")
    message = check.string(value.get("message", f"Mock error {status}"), "error.message", "error")
    kind = value.get("type")
    if kind is not None:
        kind = check.string(kind, "error.type", "error")
    return ErrorSpec(status=status, message=message, type=kind)


def _check_templates(spec: RuleSpec, variables: tuple[str, ...], check: _Checker) -> None:
    texts = strings_in([spec.reply, list(spec.replies or ()), [c.arguments for c in spec.tool_calls]])
    if spec.error is not None:
        texts.append(spec.error.message)
    for text in texts:
        for name in template_names(text):
            if name not in variables:
                raise check.fail(
                    f"unknown template variable {{{{{name}}}}} (known here: {', '.join(variables)})", None
                )


def parse_short(key: Any, value: Any, line: int | None) -> Entry:
    """One `responses:` entry (mockllm's form): the key matches the prompt, the value is the reply."""
    where = f"response {str(key)!r}"
    if isinstance(key, bool) or not isinstance(key, str | int | float):
        raise RuleError(f"the prompt must be a string, not {_type_name(key)}", where=where, line=line)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RuleError(f"the reply must be a string, not {_type_name(value)}", where=where, line=line)
    key, reply = str(key), str(value)
    exact = None if key.strip().lower() == DEFAULT_KEY else key
    return Entry(spec=RuleSpec(match=Match(exact=exact), reply=reply), key=key, line=line)


def short_warnings(entry: Entry) -> list[str]:
    """Template variables a short-form reply uses that no short rule provides (left as typed)."""
    reply = entry.spec.reply or ""
    unknown = [n for n in template_names(reply) if n not in BASE_VARIABLES]
    return [f"unknown template variable {{{{{n}}}}} is left as typed" for n in unknown]


def parse_document(data: Any) -> RulesModel:
    """Validate a loaded document (ruamel round-trip data, or plain data) and build the model.

    Raises RulesFileError listing every problem found (without the file name; see fileio).
    """
    if data is None:
        return RulesModel()
    unsupported = find_unsupported(data, 1)
    if unsupported is not None:
        raise RulesFileError([unsupported])
    if not isinstance(data, dict):
        raise RulesFileError(
            [RuleError(f"the file must be a mapping of sections ({', '.join(TOP_KEYS)})", line=1)]
        )
    errors: list[RuleError] = []
    warnings: list[str] = []
    top_line = line_finder(data, 1)
    for key in data:
        if key not in TOP_KEYS:
            errors.append(RuleError(_unknown_key(key, TOP_KEYS, "section"), line=top_line(key)))
    rules = _parse_rules_section(data.get("rules"), top_line("rules"), errors)
    responses = _parse_responses_section(data.get("responses"), top_line("responses"), errors, warnings)
    defaults = _parse_defaults(data.get("defaults"), top_line("defaults"), errors)
    models = _parse_models(data.get("models"), top_line("models"), errors)
    settings = _parse_settings(data.get("settings"), top_line("settings"), errors, warnings)
    if errors:
        raise RulesFileError(errors)
    return RulesModel(
        rules=tuple(rules),
        responses=tuple(responses),
        defaults=defaults,
        models=models,
        settings=settings,
        warnings=tuple(warnings) + tuple(shadow_warnings(rules)),
    )


def _parse_rules_section(section: Any, line: int | None, errors: list[RuleError]) -> list[Entry]:
    if section is None:
        return []
    if not isinstance(section, list):
        errors.append(
            RuleError(f"must be a list of rules, not {_type_name(section)}", where="rules", line=line)
        )
        return []
    item_line = line_finder(section, line)
    out = []
    for i, raw in enumerate(section):
        start = item_line(i)
        try:
            spec = parse_rule(
                plain(raw),
                f"rule {i + 1}",
                line_finder(raw, start),
                line_finder(raw.get("match") if isinstance(raw, dict) else None, start),
            )
        except RuleError as exc:
            errors.append(exc if exc.line else replace_line(exc, start))
            continue
        out.append(Entry(spec=spec, line=start))
    return out


def replace_line(error: RuleError, line: int | None) -> RuleError:
    """The error at another line."""
    return RuleError(error.message, where=error.where, line=line, filename=error.filename)


def _parse_responses_section(
    section: Any, line: int | None, errors: list[RuleError], warnings: list[str]
) -> list[Entry]:
    if section is None:
        return []
    if not isinstance(section, dict):
        errors.append(
            RuleError(
                f"must be a mapping of prompt: reply, not {_type_name(section)}", where="responses", line=line
            )
        )
        return []
    key_line = line_finder(section, line)
    out = []
    seen: dict[str, str] = {}
    for key, value in section.items():
        try:
            entry = parse_short(plain(key), plain(value), key_line(key))
        except RuleError as exc:
            errors.append(exc)
            continue
        folded = str(entry.key).strip().lower()
        if folded in seen:
            errors.append(
                RuleError(
                    f"the same prompt as {seen[folded]!r} (keys match ignoring case and spaces)",
                    where=f"response {entry.key!r}",
                    line=entry.line,
                )
            )
            continue
        seen[folded] = str(entry.key)
        warnings.extend(f"line {entry.line}: response {entry.key!r}: {w}" for w in short_warnings(entry))
        out.append(entry)
    return out


def _parse_defaults(section: Any, line: int | None, errors: list[RuleError]) -> Defaults:
    if section is None:
        return Defaults()
    if not isinstance(section, dict):
        errors.append(RuleError(f"must be a mapping, not {_type_name(section)}", where="defaults", line=line))
        return Defaults()
    line_of = line_finder(section, line)
    values: dict[str, Any] = {}
    for key, raw in section.items():
        value = plain(raw)
        if key not in DEFAULTS_KEYS:
            errors.append(
                RuleError(_unknown_key(key, DEFAULTS_KEYS, "key"), where="defaults", line=line_of(key))
            )
        elif key == "unknown_response":
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                errors.append(
                    RuleError("'unknown_response' must be a string", where="defaults", line=line_of(key))
                )
            else:
                values[key] = str(value)
        elif not isinstance(value, bool):
            errors.append(
                RuleError(
                    f"{key!r} must be true or false, not {value!r}", where="defaults", line=line_of(key)
                )
            )
        else:
            values[key] = value
    return Defaults(**values)


def _parse_models(section: Any, line: int | None, errors: list[RuleError]) -> list[Any] | None:
    if section is None:
        return None
    value = plain(section)
    try:
        from mockllm_tui.core.models import ModelRegistry
    except ImportError:  # pragma: no cover - the registry module is part of the package
        return value if isinstance(value, list) else None
    try:
        ModelRegistry.from_config(value)
    except ValueError as exc:
        message = str(exc).removeprefix("models: ")
        errors.append(RuleError(message, where="models", line=line))
        return None
    return list(value)


def _parse_settings(
    section: Any, line: int | None, errors: list[RuleError], warnings: list[str]
) -> dict[str, Any]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        errors.append(
            RuleError(
                f"must be a mapping of knob: value, not {_type_name(section)}", where="settings", line=line
            )
        )
        return {}
    line_of = line_finder(section, line)
    out: dict[str, Any] = {}
    for key, raw in section.items():
        value = plain(raw)
        if key in MOCKLLM_SETTINGS:
            warnings.append(
                f"line {line_of(key)}: settings: mockllm's {key!r} is ignored (use latency_ms and stream_speed)"
            )
        else:
            try:
                validate_knob_values({key: value})
            except KnobError as exc:
                errors.append(RuleError(str(exc), where="settings", line=line_of(key)))
                continue
        out[str(key)] = value
    return out


def shadow_warnings(rules: list[Entry]) -> list[str]:
    """Warnings for tool_result rules that an earlier rule can pre-empt (the follow-up turn still
    carries the last user message, so a text rule above would answer it and ask for the tool again)."""
    out = []
    for j, later in enumerate(rules):
        tool = later.spec.match.tool_result
        if tool is None:
            continue
        for i, earlier in enumerate(rules[:j]):
            if earlier.spec.match.tool_result is None and _compatible(earlier.spec.match, later.spec.match):
                out.append(
                    f"line {later.line}: rule {j + 1} (tool_result {tool!r}) is shadowed by rule {i + 1} "
                    f"({earlier.spec.match.summary()}) on line {earlier.line}, which can match the same "
                    "conversation: put the tool_result rule above it"
                )
                break
    return out


def _compatible(a: Match, b: Match) -> bool:
    for key in ("provider", "model"):
        x, y = getattr(a, key), getattr(b, key)
        if x is not None and y is not None and x != y and not any(c in x + y for c in "*?["):
            return False
    return True
