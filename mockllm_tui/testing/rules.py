"""A test's rules: the ones it adds with `mockllm.rule()`, tried first in the order added, then its base
rules (the ini option's file, the marker's, or `mockllm.load()`). In strict mode a request that no rule
matches is refused with a provider-shaped 404 and remembered, so the test can fail at teardown."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mockllm_tui.core.conversation import ChoiceContext, Conversation, NoRuleMatched, Reply
from mockllm_tui.core.sessions import strict_of
from mockllm_tui.rules.document import Document
from mockllm_tui.rules.fileio import located, read_document
from mockllm_tui.rules.matcher import Dynamic, RuleSet, strict_message
from mockllm_tui.rules.model import MATCH_KEYS, RULE_KEYS, Entry, RulesFileError, RulesModel
from mockllm_tui.rules.validate import parse_rule

#: What an unmatched request gets when the base rules have no fallback of their own.
FALLBACK_TEXT = "This is a mock response."
REPLY_KEYS = tuple(key for key in RULE_KEYS if key not in ("name", "match"))


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A request that no rule matched in strict mode."""

    provider: str
    model: str
    prompt: str
    nearest: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        """One line for the teardown failure."""
        nearest = "; ".join(f"{rule} ({reason})" for rule, reason in self.nearest) or "none (the test has no rules)"
        return f"{self.provider} {self.model}: last user message {self.prompt!r}; nearest: {nearest}"


def rule_entry(number: int, fields: dict[str, Any]) -> Entry:
    """Validate the keywords of the test's `number`-th `mockllm.rule()` call (unnamed: named for its match).

    A callable `reply` or `tool_calls` stands as a placeholder here (the caller keeps the callable)."""
    data: dict[str, Any] = {"match": {k: fields[k] for k in MATCH_KEYS if fields.get(k) is not None}}
    for key in (*REPLY_KEYS, "name"):
        value = fields.get(key)
        if callable(value):
            value = "" if key == "reply" else [{"name": "dynamic"}]
        if value is not None:
            data[key] = list(value) if isinstance(value, tuple) else value
    spec = parse_rule(data, where="mockllm.rule()")
    if spec.name is None:
        spec = replace(spec, name=f"test rule {number} ({spec.match.summary()})")
    return Entry(spec=spec)


def looks_like_path(source: str, rootdir: Path) -> bool:
    """Whether a `str` source names a file (one line ending in .yml/.yaml, or an existing file), not YAML text."""
    if "\n" in source or not source.strip():
        return False
    if source.strip().endswith((".yml", ".yaml")):
        return True
    try:
        return (rootdir / source).is_file()
    except OSError:  # a line too long to be a file name
        return False


def read_rules(source: str | Path, rootdir: Path) -> RulesModel:
    """The rules of a responses file (a path; relative ones are relative to `rootdir`) or of YAML text."""
    if isinstance(source, str) and not looks_like_path(source, rootdir):
        try:
            return Document(source).model
        except RulesFileError as exc:
            raise located(exc, "<yaml text>") from None
    path = rootdir / Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"mockllm: no responses file at {path}")
    return read_document(path)[0].model


def combined(base: RulesModel, added: list[Entry]) -> RulesModel:
    """The test's rules before the base's, with the plugin's fallback text when the base has none."""
    defaults = base.defaults
    if defaults.unknown_response is None:
        defaults = replace(defaults, unknown_response=FALLBACK_TEXT)
    return replace(base, rules=(*added, *base.rules), defaults=defaults)


class PerTestRules(RuleSet):
    """The store's reply source during a test. A fallback answer (the `default` key, mirror, triggers or the
    unknown response) is no rule's: its `rule` is None, and strict mode refuses it instead."""

    def __init__(
        self,
        base: RulesModel,
        added: list[Entry],
        *,
        strict: bool,
        unmatched: list[Unmatched],
        dynamic: list[tuple[Dynamic | None, Dynamic | None]] | None = None,
    ) -> None:
        n = len(base.entries)
        # The base keeps its file numbering (#1 is the file's first rule); the test's rules come after.
        ids = [*range(n + 1, n + len(added) + 1), *range(1, n + 1)]
        super().__init__(combined(base, added), ids, positions=ids)
        self.base = base
        self.added = len(added)
        self.strict = strict
        self.unmatched = unmatched
        for rule, (reply, tool_calls) in zip(self.rules, dynamic or (), strict=False):
            rule.dynamic_reply, rule.dynamic_tool_calls = reply, tool_calls

    def choose(self, conversation: Conversation, context: ChoiceContext | None = None) -> Reply:
        """The reply: a rule's or a scenario step's, or the fallback's (with no rule; strict mode, from
        the marker or the request's header: a 404 NoRuleMatched, remembered for the teardown check)."""
        matched = self.match(conversation, (), context)
        if matched is not None:
            return matched.reply
        session = context.session if context is not None else None
        headers = context.headers if context is not None else {}
        # The marker's strictness, unless the request's x-mock-strict says otherwise.
        if strict_of(headers, self.strict or (context is not None and context.strict)):
            near = self.near_misses(conversation, session, headers)
            prompt = conversation.last_user_text()
            self.unmatched.append(Unmatched(conversation.provider, conversation.model, prompt, tuple(near)))
            raise NoRuleMatched(strict_message(near), near)
        reply = self.fallback(conversation).reply
        reply.rule = None
        reply.near_misses = self.lazy_near_misses(conversation, session, headers)
        return reply

    def carry_over_from(self, old: PerTestRules) -> None:
        """Keep hit counts and `replies` positions of the rules `old` shares with this set."""
        pairs = list(zip(old.rules[: old.added], self.rules[: self.added], strict=False))
        if old.base is self.base:
            pairs += zip(old.rules[old.added :], self.rules[self.added :], strict=True)
            self.fallback_hits.update(old.fallback_hits)
        for before, after in pairs:
            after.hits, after.position = before.hits, before.position
