"""Validation of the responses file: mockllm's short form (`responses:`), the rich `rules:` list,
`defaults:`, `models:` and `settings:`, with messages that name the part and the line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from mockllm_tui.core.knobs import KnobError, validate_knob_values
from mockllm_tui.core.media import FLAG_THRESHOLD, MODERATION_CATEGORIES
from mockllm_tui.core.models import ModelEntryError, ModelRegistry
from mockllm_tui.rules.lint import never_warnings, shadow_warnings, short_warnings
from mockllm_tui.rules.model import (
    BASE_VARIABLES,
    DEFAULT_KEY,
    DEFAULTS_KEYS,
    DURATION_KEYS,
    ERROR_KEYS,
    MATCH_KEYS,
    MOCKLLM_SETTINGS,
    MODERATION_KEYS,
    REGEX_PREFIX,
    RULE_KEYS,
    SCENARIO_KEYS,
    TOOL_CALL_KEYS,
    TOOL_RESULT_KEYS,
    TOP_KEYS,
    Defaults,
    DurationRange,
    Entry,
    ErrorSpec,
    Match,
    ModerationSpec,
    RuleError,
    RulesFileError,
    RulesModel,
    RuleSpec,
    RuleWarning,
    ScenarioSpec,
    ToolCallSpec,
    ToolResultMatch,
    TurnRange,
    strings_in,
    template_names,
)
from mockllm_tui.rules.yamlnodes import LineOf, find_unsupported, line_finder, no_line, plain, type_name, unknown_key


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
            raise self.fail(f"{name!r} must be a string, not {type_name(value)}", key)
        if not allow_empty and not value.strip():
            raise self.fail(f"{name!r} must not be empty", key)
        return value

    def number(self, value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self.fail(f"{name!r} must be a number of at least 0, not {value!r}", name)
        return value


def parse_rule(
    data: Any, where: str = "rule", line_of: LineOf = no_line, match_lines: LineOf | None = None
) -> RuleSpec:
    """Validate one rule in the rich form (plain data) and build its RuleSpec.

    Raises RuleError naming `where` and, when known, the line of the offending key.
    """
    check = _Checker(where, line_of)
    if not isinstance(data, dict):
        raise check.fail(f"expected a mapping with 'match' and a reply, not {type_name(data)}", None)
    for key in data:
        if key not in RULE_KEYS:
            raise check.fail(unknown_key(key, RULE_KEYS, "key"), key)
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
    thinking = data.get("thinking")
    image, audio = (_parse_file(data.get(key), key, check) for key in ("image", "audio"))
    moderation = _parse_moderation(data.get("moderation"), check)
    spec = RuleSpec(
        match=match,
        name=name,
        reply=reply,
        replies=replies,
        tool_calls=tool_calls,
        error=error,
        latency_ms=None if latency is None else check.number(latency, "latency_ms"),
        stream_speed=None if speed is None else check.number(speed, "stream_speed"),
        thinking=None if thinking is None else check.string(thinking, "thinking", "thinking"),
        image=image,
        audio=audio,
        moderation=moderation,
    )
    answers = (reply, replies, tool_calls or None, image, audio, moderation)
    if reply is not None and replies is not None:
        raise check.fail("use either 'reply' or 'replies', not both", "replies")
    if error is not None and (thinking is not None or any(a is not None for a in answers)):
        raise check.fail(
            "'error' cannot be combined with 'reply', 'replies', 'tool_calls', 'thinking', 'image', 'audio' "
            "or 'moderation'",
            "error",
        )
    if error is None and all(a is None for a in answers):
        raise check.fail("give a 'reply', 'replies', 'tool_calls', 'image', 'audio', 'moderation' or 'error'", None)
    _check_templates(spec, variables, check)
    return spec


def _parse_match(value: Any, check: _Checker, line_of: LineOf) -> tuple[Match, tuple[str, ...]]:
    if value is None:
        return Match(), BASE_VARIABLES
    if isinstance(value, str):
        raise check.fail("'match' must be a mapping such as {contains: \"weather\"}, not a string", "match")
    if not isinstance(value, dict):
        raise check.fail(f"'match' must be a mapping, not {type_name(value)}", "match")
    sub = _Checker(check.where, line_of)
    values: dict[str, Any] = {}
    for key, raw in value.items():
        if key not in MATCH_KEYS:
            raise sub.fail(unknown_key(key, MATCH_KEYS, "matcher"), key)
        if key == "tool_result":
            values[key] = _parse_tool_result(raw, sub)
        elif key == "turn":
            values[key] = parse_turn(raw, sub)
        elif key == "tools":
            values[key] = _parse_tools(raw, sub)
        elif key == "header":
            values[key] = _parse_header(raw, sub)
        elif key == "duration":
            values[key] = _parse_duration(raw, sub)
        else:
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


TURN_FORM = re.compile(r"^\s*(?:(?P<low>\d+)\s*-\s*(?P<high>\d+)|(?P<op>>=|<=|>|<)?\s*(?P<n>\d+))\s*$")


def parse_turn(value: Any, check: _Checker) -> TurnRange:
    """`turn`: an integer, or `"3"`, `"2-3"`, `">=2"`, `">2"`, `"<=3"`, `"<3"`."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise check.fail(f"'turn' must be a turn number of at least 0, not {value}", "turn")
        return TurnRange(value, value, value)
    found = TURN_FORM.match(value) if isinstance(value, str) else None
    if found is None:
        raise check.fail(
            f"'turn' must be a number or a range such as \"2-3\", \">=2\" or \"<3\", not {value!r}", "turn"
        )
    if found["low"] is not None:
        return TurnRange(value, int(found["low"]), int(found["high"]))
    n, op = int(found["n"]), found["op"]
    if op is None:
        return TurnRange(value, n, n)
    bounds = {">=": (n, None), ">": (n + 1, None), "<=": (None, n), "<": (None, n - 1)}[op]
    return TurnRange(value, *bounds)


def _parse_tool_result(value: Any, check: _Checker) -> ToolResultMatch:
    if not isinstance(value, dict):
        return ToolResultMatch(name=check.string(value, "tool_result", "tool_result", allow_empty=False))
    if not value:
        raise check.fail("'tool_result' needs one of name, contains, call_id", "tool_result")
    for key in value:
        if key not in TOOL_RESULT_KEYS:
            raise check.fail("tool_result: " + unknown_key(key, TOOL_RESULT_KEYS, "key"), "tool_result")
    parts = {
        k: check.string(v, f"tool_result.{k}", "tool_result", allow_empty=k == "contains") for k, v in value.items()
    }
    return ToolResultMatch(**parts)


def _parse_tools(value: Any, check: _Checker) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise check.fail("'tools' must be a tool name or a list of names", "tools")
    return tuple(check.string(v, "tools", "tools", allow_empty=False) for v in value)


def _parse_header(value: Any, check: _Checker) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not value:
        raise check.fail("'header' must be a mapping of header name to value, such as {x-app-tag: checkout}", "header")
    out = []
    for name, raw in value.items():
        name = check.string(name, "header", "header", allow_empty=False).strip().lower()
        text = check.string(raw, f"header.{name}", "header")
        if text.startswith(REGEX_PREFIX):
            try:
                re.compile(text[len(REGEX_PREFIX) :])
            except re.error as exc:
                raise check.fail(f"'header.{name}' is not a valid regular expression: {exc}", "header") from None
        out.append((name, text))
    return tuple(out)


def _parse_duration(value: Any, check: _Checker) -> DurationRange:
    if not isinstance(value, dict) or not value:
        raise check.fail("'duration' must be a mapping such as {min: 3, max: 60} (seconds)", "duration")
    bounds: dict[str, float] = {}
    for key, raw in value.items():
        if key not in DURATION_KEYS:
            raise check.fail("duration: " + unknown_key(key, DURATION_KEYS, "key"), "duration")
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
            raise check.fail(f"'duration.{key}' must be a number of seconds (at least 0), not {raw!r}", "duration")
        bounds[str(key)] = float(raw)
    low, high = bounds.get("min"), bounds.get("max")
    if low is not None and high is not None and low > high:
        raise check.fail(f"'duration.min' ({low:g}) is more than 'duration.max' ({high:g})", "duration")
    return DurationRange(min=low, max=high)


def _parse_file(value: Any, key: str, check: _Checker) -> str | None:
    if value is None:
        return None
    return check.string(value, key, key, allow_empty=False)


def _parse_moderation(value: Any, check: _Checker) -> ModerationSpec | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise check.fail("'moderation' must be a mapping such as {flagged: [violence]}", "moderation")
    for key in value:
        if key not in MODERATION_KEYS:
            raise check.fail("moderation: " + unknown_key(key, MODERATION_KEYS, "key"), "moderation")
    flagged = value.get("flagged", [])
    if isinstance(flagged, str):
        flagged = [flagged]
    if not isinstance(flagged, list):
        raise check.fail("'moderation.flagged' must be a list of category names", "moderation")
    for name in flagged:
        if name not in MODERATION_CATEGORIES:
            raise check.fail(
                "moderation.flagged: " + unknown_key(name, MODERATION_CATEGORIES, "category"), "moderation"
            )
    scores = value.get("scores") or {}
    if not isinstance(scores, dict):
        raise check.fail("'moderation.scores' must be a mapping of category: score", "moderation")
    for name, score in scores.items():
        if name not in flagged:
            raise check.fail(f"moderation.scores: {name!r} is not in 'flagged'", "moderation")
        if isinstance(score, bool) or not isinstance(score, int | float) or not FLAG_THRESHOLD <= score <= 1:
            raise check.fail(
                f"moderation.scores: the score of a flagged category is between {FLAG_THRESHOLD} and 1, "
                f"not {score!r}",
                "moderation",
            )
    return ModerationSpec(
        flagged=tuple(dict.fromkeys(flagged)), scores=tuple((str(k), float(v)) for k, v in scores.items())
    )


def media_file_errors(model: RulesModel, folder: Path) -> list[RuleError]:
    """The `image:` and `audio:` files the rules name that are not in `folder` (the responses file's)."""
    errors = []
    for index, entry in enumerate(model.rules):
        for key, name in entry.spec.media_files():
            if not (folder / name).is_file():
                where = f"rule {index + 1}"
                errors.append(RuleError(f"{key} file {name!r} not found in {folder}", where=where, line=entry.line))
    return errors


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
                raise check.fail(f"tool_calls[{i}]: " + unknown_key(key, TOOL_CALL_KEYS, "key"), "tool_calls")
        name = check.string(raw.get("name"), f"tool_calls[{i}].name", "tool_calls", allow_empty=False)
        args = raw.get("arguments", {})
        if isinstance(args, str):
            try:
                args = orjson.loads(args) if args.strip() else {}
            except orjson.JSONDecodeError as exc:
                raise check.fail(f"tool_calls[{i}].arguments is not valid JSON: {exc}", "tool_calls") from None
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
            raise check.fail("error: " + unknown_key(key, ERROR_KEYS, "key"), "error")
    status = value.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise check.fail(f"'error.status' must be an HTTP error status (400-599), not {status!r}", "error")
    message = check.string(value.get("message", f"Mock error {status}"), "error.message", "error")
    kind = value.get("type")
    if kind is not None:
        kind = check.string(kind, "error.type", "error")
    return ErrorSpec(status=status, message=message, type=kind)


def _check_templates(spec: RuleSpec, variables: tuple[str, ...], check: _Checker) -> None:
    texts = strings_in([spec.reply, list(spec.replies or ()), [c.arguments for c in spec.tool_calls], spec.thinking])
    if spec.error is not None:
        texts.append(spec.error.message)
    for text in texts:
        for name in template_names(text):
            if name not in variables:
                raise check.fail(f"unknown template variable {{{{{name}}}}} (known here: {', '.join(variables)})", None)


def parse_short(key: Any, value: Any, line: int | None) -> Entry:
    """One `responses:` entry (mockllm's form): the key matches the prompt, the value is the reply."""
    where = f"response {str(key)!r}"
    if isinstance(key, bool) or not isinstance(key, str | int | float):
        raise RuleError(f"the prompt must be a string, not {type_name(key)}", where=where, line=line)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RuleError(f"the reply must be a string, not {type_name(value)}", where=where, line=line)
    key, reply = str(key), str(value)
    exact = None if key.strip().lower() == DEFAULT_KEY else key
    return Entry(spec=RuleSpec(match=Match(exact=exact), reply=reply), key=key, line=line)


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
        raise RulesFileError([RuleError(f"the file must be a mapping of sections ({', '.join(TOP_KEYS)})", line=1)])
    errors: list[RuleError] = []
    warnings: list[RuleWarning] = []
    top_line = line_finder(data, 1)
    for key in data:
        if key not in TOP_KEYS:
            errors.append(RuleError(unknown_key(key, TOP_KEYS, "section"), line=top_line(key)))
    rules = _parse_rules_section(data.get("rules"), top_line("rules"), errors)
    scenarios = _parse_scenarios(data.get("scenarios"), top_line("scenarios"), errors)
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
        scenarios=tuple(scenarios),
        models=models,
        settings=settings,
        warnings=tuple(warnings) + tuple(shadow_warnings(rules)) + tuple(never_warnings(rules, scenarios)),
    )


def _parse_rules_section(section: Any, line: int | None, errors: list[RuleError]) -> list[Entry]:
    if section is None:
        return []
    if not isinstance(section, list):
        errors.append(RuleError(f"must be a list of rules, not {type_name(section)}", where="rules", line=line))
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


def _parse_scenarios(section: Any, line: int | None, errors: list[RuleError]) -> list[ScenarioSpec]:
    if section is None:
        return []
    if not isinstance(section, list):
        errors.append(
            RuleError(f"must be a list of {{name, steps}}, not {type_name(section)}", where="scenarios", line=line)
        )
        return []
    item_line = line_finder(section, line)
    out: list[ScenarioSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(section):
        start = item_line(i)
        where = f"scenario {i + 1}"
        if not isinstance(raw, dict):
            errors.append(RuleError("expected a mapping with 'name' and 'steps'", where=where, line=start))
            continue
        line_of = line_finder(raw, start)
        unknown = [k for k in raw if k not in SCENARIO_KEYS]
        if unknown:
            message = unknown_key(unknown[0], SCENARIO_KEYS, "key")
            errors.append(RuleError(message, where=where, line=line_of(unknown[0])))
            continue
        name = plain(raw.get("name"))
        if not isinstance(name, str) or not name.strip():
            errors.append(RuleError("'name' must be a non-empty string", where=where, line=line_of("name")))
            continue
        where = f"scenario {name!r}"
        if name in seen:
            errors.append(RuleError("another scenario has this name", where=where, line=line_of("name")))
            continue
        seen.add(name)
        steps_node = raw.get("steps")
        if not isinstance(steps_node, list) or not steps_node:
            errors.append(RuleError("'steps' must be a non-empty list of rules", where=where, line=line_of("steps")))
            continue
        step_line = line_finder(steps_node, line_of("steps"))
        steps: list[RuleSpec] = []
        for j, step in enumerate(steps_node):
            at = step_line(j)
            try:
                steps.append(
                    parse_rule(
                        plain(step),
                        f"{where} step {j + 1}",
                        line_finder(step, at),
                        line_finder(step.get("match") if isinstance(step, dict) else None, at),
                    )
                )
            except RuleError as exc:
                errors.append(exc if exc.line else replace_line(exc, at))
        if len(steps) == len(steps_node):
            out.append(ScenarioSpec(name=name, steps=tuple(steps), line=start))
    return out


def replace_line(error: RuleError, line: int | None) -> RuleError:
    """The error at another line."""
    return RuleError(error.message, where=error.where, line=line, filename=error.filename)


def _parse_responses_section(
    section: Any, line: int | None, errors: list[RuleError], warnings: list[RuleWarning]
) -> list[Entry]:
    if section is None:
        return []
    if not isinstance(section, dict):
        errors.append(
            RuleError(f"must be a mapping of prompt: reply, not {type_name(section)}", where="responses", line=line)
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
        warnings.extend(RuleWarning(entry.line, f"response {entry.key!r}: {w}") for w in short_warnings(entry))
        out.append(entry)
    return out


def _parse_defaults(section: Any, line: int | None, errors: list[RuleError]) -> Defaults:
    if section is None:
        return Defaults()
    if not isinstance(section, dict):
        errors.append(RuleError(f"must be a mapping, not {type_name(section)}", where="defaults", line=line))
        return Defaults()
    line_of = line_finder(section, line)
    values: dict[str, Any] = {}
    for key, raw in section.items():
        value = plain(raw)
        if key not in DEFAULTS_KEYS:
            errors.append(RuleError(unknown_key(key, DEFAULTS_KEYS, "key"), where="defaults", line=line_of(key)))
        elif key == "unknown_response":
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                errors.append(RuleError("'unknown_response' must be a string", where="defaults", line=line_of(key)))
            else:
                values[key] = str(value)
        elif not isinstance(value, bool):
            errors.append(
                RuleError(f"{key!r} must be true or false, not {value!r}", where="defaults", line=line_of(key))
            )
        else:
            values[key] = value
    return Defaults(**values)


def _parse_models(section: Any, line: int | None, errors: list[RuleError]) -> list[Any] | None:
    if section is None:
        return None
    value = plain(section)
    try:
        ModelRegistry.from_config(value)
    except ModelEntryError as exc:
        message = str(exc).removeprefix("models: ")
        if exc.index is not None and isinstance(section, list):
            item = section[exc.index]
            line = line_finder(item, line_finder(section, line)(exc.index))(exc.key)
        errors.append(RuleError(message, where="models", line=line))
        return None
    return list(value)


def _parse_settings(
    section: Any, line: int | None, errors: list[RuleError], warnings: list[RuleWarning]
) -> dict[str, Any]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        errors.append(
            RuleError(f"must be a mapping of knob: value, not {type_name(section)}", where="settings", line=line)
        )
        return {}
    line_of = line_finder(section, line)
    out: dict[str, Any] = {}
    for key, raw in section.items():
        value = plain(raw)
        if key in MOCKLLM_SETTINGS:
            message = f"settings: mockllm's {key!r} is ignored (use latency_ms and stream_speed)"
            warnings.append(RuleWarning(line_of(key), message))
        else:
            try:
                validate_knob_values({key: value})
            except KnobError as exc:
                errors.append(RuleError(str(exc), where="settings", line=line_of(key)))
                continue
        out[str(key)] = value
    return out
