"""Warnings about a valid responses file: template variables nothing provides, tool_result rules
that an earlier rule pre-empts, and rules that can never match (shadowed, impossible turn ranges)."""

from __future__ import annotations

from collections.abc import Sequence

from mockllm_tui.rules.model import BASE_VARIABLES, Entry, Match, RuleWarning, ScenarioSpec, template_names


def short_warnings(entry: Entry) -> list[str]:
    """Template variables a short-form reply uses that no short rule provides (left as typed)."""
    reply = entry.spec.reply or ""
    unknown = [n for n in template_names(reply) if n not in BASE_VARIABLES]
    return [f"unknown template variable {{{{{n}}}}} is left as typed" for n in unknown]


def shadow_warnings(rules: list[Entry]) -> list[RuleWarning]:
    """Warnings for tool_result rules that an earlier rule can pre-empt (the follow-up turn still
    carries the last user message, so a text rule above would answer it and ask for the tool again)."""
    out = []
    for j, later in enumerate(rules):
        tool = later.spec.match.tool_result
        if tool is None or any(covers(e.spec.match, later.spec.match) for e in rules[:j]):
            continue
        for i, earlier in enumerate(rules[:j]):
            if earlier.spec.match.tool_result is None and _compatible(earlier.spec.match, later.spec.match):
                message = (
                    f"rule {j + 1} (tool_result {tool.summary()!r}) is shadowed by rule {i + 1} "
                    f"({earlier.spec.match.summary()}) on line {earlier.line}, which can match the same "
                    "conversation: put the tool_result rule above it"
                )
                out.append(RuleWarning(later.line, message))
                break
    return out


def _compatible(a: Match, b: Match) -> bool:
    for key in ("provider", "model"):
        x, y = getattr(a, key), getattr(b, key)
        if x is not None and y is not None and x != y and not any(c in x + y for c in "*?["):
            return False
    return True


def never_warnings(rules: list[Entry], scenarios: Sequence[ScenarioSpec] = ()) -> list[RuleWarning]:
    """Rules and scenario steps that can never match: an empty turn range, or an earlier rule that
    matches every conversation this one does."""
    out = []
    for j, later in enumerate(rules):
        match = later.spec.match
        if match.turn is not None and match.turn.empty:
            out.append(RuleWarning(later.line, f"rule {j + 1} can never match: turn {match.turn} is an empty range"))
            continue
        for i, earlier in enumerate(rules[:j]):
            if covers(earlier.spec.match, match):
                message = (
                    f"rule {j + 1} can never match: rule {i + 1} ({earlier.spec.match.summary()}) on line "
                    f"{earlier.line} matches everything it does and stands above it"
                )
                out.append(RuleWarning(later.line, message))
                break
    for scenario in scenarios:
        for k, step in enumerate(scenario.steps):
            turn = step.match.turn
            if turn is not None and turn.empty:
                message = f"scenario {scenario.name!r} step {k + 1} can never match: turn {turn} is an empty range"
                out.append(RuleWarning(scenario.line, message))
    return out


def covers(a: Match, b: Match) -> bool:
    """Whether every conversation that `b` matches is matched by `a` too (checked conservatively:
    each of `a`'s conditions is one of `b`'s, or a `contains` that `b`'s text holds)."""
    for key, value in a.to_data().items():
        if key == "contains":
            text = b.exact if b.exact is not None else b.contains
            if text is None or value.lower() not in text.lower():
                return False
        elif key == "exact":
            if b.exact is None or value.strip().lower() != b.exact.strip().lower():
                return False
        elif getattr(b, key) is None or getattr(a, key) != getattr(b, key):
            return False
    return True
