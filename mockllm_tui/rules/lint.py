"""Warnings about a valid responses file: template variables nothing provides, and tool_result
rules that an earlier rule pre-empts."""

from __future__ import annotations

from mockllm_tui.rules.model import BASE_VARIABLES, Entry, Match, RuleWarning, template_names


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
        if tool is None:
            continue
        for i, earlier in enumerate(rules[:j]):
            if earlier.spec.match.tool_result is None and _compatible(earlier.spec.match, later.spec.match):
                message = (
                    f"rule {j + 1} (tool_result {tool!r}) is shadowed by rule {i + 1} "
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
