"""Choosing a reply: the RuleSet the store holds (it implements conversation.ReplySource).

Order: the rich rules in order (first match wins), then the short-form keys (the last user message
trimmed and case-folded, one dict lookup), then llmock's trigger phrases (when `triggers: true`),
then the `default` key, then `defaults.mirror` / `defaults.unknown_response`.
Everything is compiled once when the set is built; `choose` does no I/O.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from mockllm_tui.core.conversation import Conversation, ErrorReply, Reply, ToolCall
from mockllm_tui.rules.identity import FALLBACK_LABELS, rule_identity
from mockllm_tui.rules.model import TEMPLATE, Entry, FileSource, RulesModel, RuleSpec

UNKNOWN_RESPONSE = "I don't know the answer to that."
CALL_TOOL = re.compile(r"""call tool '(?P<name>[^']+)' with '(?P<args>.*)'""")
RAISE_ERROR = re.compile(r"raise error (?P<json>\{.*\})")


def render(template: str, variables: dict[str, str]) -> str:
    """Substitute `{{name}}`; unknown names are left as typed. Nothing is evaluated."""
    if "{{" not in template:
        return template
    return TEMPLATE.sub(lambda m: variables.get(m.group(1), m.group(0)), template)


def render_value(value: Any, variables: dict[str, str]) -> Any:
    """Substitute templates in every string of a JSON-like value."""
    if isinstance(value, str):
        return render(value, variables)
    if isinstance(value, dict):
        return {k: render_value(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, variables) for v in value]
    return value


def _glob(pattern: str | None) -> re.Pattern[str] | None:
    return None if pattern is None else re.compile(fnmatch.translate(pattern.lower()))


def _fold(text: str | None) -> str | None:
    return None if text is None else text.strip().lower()


class CompiledRule:
    """One entry, ready to test: lowered strings, compiled patterns, its hit count and sequence position.

    `id` is the internal id that stays with the rule across edits; `label` is its identity (what
    everything shows: its name, or `#N` for the rule at 1-based listing position N)."""

    __slots__ = (
        "_contains",
        "_exact",
        "_model",
        "_provider",
        "_regex",
        "_system",
        "_tool",
        "entry",
        "hits",
        "id",
        "label",
        "position",
    )

    def __init__(self, rule_id: int, entry: Entry, position: int) -> None:
        m = entry.spec.match
        self.id = rule_id
        self.entry = entry
        self.label = rule_identity(position, entry.spec.name)
        self.hits = 0
        self.position = 0
        self._exact = _fold(m.exact)
        self._contains = None if m.contains is None else m.contains.lower()
        self._regex = None if m.regex is None else re.compile(m.regex)
        self._model = _glob(m.model)
        self._provider = _fold(m.provider)
        self._system = None if m.system is None else m.system.lower()
        self._tool = _glob(m.tool_result)

    @property
    def spec(self) -> RuleSpec:
        """The rule as written."""
        return self.entry.spec

    def test(self, conversation: Conversation, prompt: str, folded: str) -> dict[str, str] | None:
        """The template variables when every condition holds, else None."""
        if self._exact is not None and folded != self._exact:
            return None
        if self._contains is not None and self._contains not in prompt.lower():
            return None
        if self._provider is not None and conversation.provider.lower() != self._provider:
            return None
        if self._model is not None and not self._model.match(conversation.model.lower()):
            return None
        if self._system is not None and self._system not in conversation.system.lower():
            return None
        if self._tool is not None:
            result = conversation.last_tool_result()
            if result is None or not self._tool.match((result.name or "").lower()):
                return None
        variables = {"prompt": prompt, "model": conversation.model}
        if self._regex is not None:
            found = self._regex.search(prompt)
            if found is None:
                return None
            variables.update({k: v for k, v in found.groupdict().items() if v is not None})
        return variables

    def answer(self, variables: dict[str, str]) -> Reply:
        """The reply, with templates filled in; advances a `replies` sequence."""
        spec = self.spec
        self.hits += 1
        reply = Reply(rule=self.label, rule_id=self.id, latency_ms=spec.latency_ms, stream_speed=spec.stream_speed)
        if spec.thinking is not None:
            reply.thinking = render(spec.thinking, variables)
        if spec.error is not None:
            e = spec.error
            reply.error = ErrorReply(status=e.status, message=render(e.message, variables), type=e.type)
            return reply
        if spec.replies is not None:
            index = min(self.position, len(spec.replies) - 1)
            self.position += 1
            reply.text = render(spec.replies[index], variables)
        elif spec.reply is not None:
            reply.text = render(spec.reply, variables)
        reply.tool_calls = [ToolCall(c.name, render_value(c.arguments, variables)) for c in spec.tool_calls]
        return reply


@dataclass(slots=True)
class Choice:
    """Which rule won (None for a fallback) and the reply it made."""

    rule_id: int | None
    label: str
    reply: Reply


class RuleSet:
    """The active rules. Built once per load or edit; the store holds one at a time.

    `ids` gives each entry of `model.entries` its stable id. `previous` carries hit counts and
    sequence positions over for ids whose rule did not change. `volatile` holds the ids of
    changes made in memory only (`persist=False`). `source` is the file the set was read from.
    `positions` gives the 1-based position each entry's `#N` identity uses (default: listing order).
    """

    def __init__(
        self,
        model: RulesModel,
        ids: list[int] | None = None,
        *,
        source: FileSource | None = None,
        previous: RuleSet | None = None,
        volatile: Iterable[int] = (),
        positions: Iterable[int] | None = None,
    ) -> None:
        entries = model.entries
        ids = list(ids) if ids is not None else list(range(1, len(entries) + 1))
        if len(ids) != len(entries) or len(set(ids)) != len(ids):
            raise ValueError("one distinct id per entry is needed")
        self.model = model
        self.source = source
        self.volatile = frozenset(volatile) & set(ids)
        numbers = range(1, len(entries) + 1) if positions is None else positions
        self.rules = [CompiledRule(i, e, n) for i, e, n in zip(ids, entries, numbers, strict=True)]
        self.fallback_hits = dict.fromkeys(FALLBACK_LABELS, 0)
        if previous is not None:
            self._carry_over(previous)
        n_rich = len(model.rules)
        self._rich = self.rules[:n_rich]
        self._short: dict[str, CompiledRule] = {}
        self._default: CompiledRule | None = None
        for rule in self.rules[n_rich:]:
            if rule.entry.kind == "default":
                self._default = rule
            else:
                self._short.setdefault((rule.entry.key or "").strip().lower(), rule)
        defaults = model.defaults
        self._mirror = defaults.mirror
        self._triggers = defaults.triggers
        self._unknown = UNKNOWN_RESPONSE if defaults.unknown_response is None else defaults.unknown_response

    def _carry_over(self, previous: RuleSet) -> None:
        old = {r.id: r for r in previous.rules}
        for rule in self.rules:
            before = old.get(rule.id)
            if before is not None:
                rule.hits = before.hits
                if before.spec == rule.spec:
                    rule.position = before.position
        self.fallback_hits.update(previous.fallback_hits)

    # -- lookup --------------------------------------------------------------------------------

    @property
    def ids(self) -> list[int]:
        """The ids in listing order."""
        return [r.id for r in self.rules]

    def __iter__(self) -> Iterator[CompiledRule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def find(self, rule_id: int) -> CompiledRule | None:
        """The rule with this id, if any."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        return None

    def index_of(self, rule_id: int) -> int:
        """The listing index of a rule id (ValueError when absent)."""
        return self.ids.index(rule_id)

    def next_id(self) -> int:
        """An id no rule of this set uses."""
        return max(self.ids, default=0) + 1

    # -- choosing ------------------------------------------------------------------------------

    def choose(self, conversation: Conversation) -> Reply:
        """The reply for this conversation (first match wins)."""
        return self.explain(conversation).reply

    def explain(self, conversation: Conversation) -> Choice:
        """Which rule answers this conversation, and its reply (counts the hit)."""
        matched = self.match(conversation)
        if matched is not None:
            return matched
        prompt = conversation.last_user_text()
        if self._triggers:
            triggered = trigger_reply(conversation, prompt)
            if triggered is not None:
                return self._fallback(triggered)
        if self._default is not None:
            rule = self._default
            return Choice(rule.id, rule.label, rule.answer({"prompt": prompt, "model": conversation.model}))
        if self._mirror and prompt:
            return self._fallback(Reply(text=prompt, rule="mirror"))
        return self._fallback(Reply(text=self._unknown, rule="unknown_response"))

    def match(self, conversation: Conversation, skip: Collection[int] = ()) -> Choice | None:
        """The rule that matches this conversation and its reply (counts the hit), leaving out the
        fallbacks (triggers, the `default` key, mirror, unknown_response) and the rules in `skip`.
        None when no rule matches."""
        prompt = conversation.last_user_text()
        folded = prompt.strip().lower()
        for rule in self._rich:
            if rule.id in skip:
                continue
            variables = rule.test(conversation, prompt, folded)
            if variables is not None:
                return Choice(rule.id, rule.label, rule.answer(variables))
        short = self._short.get(folded)
        if short is not None and short.id not in skip:
            variables = short.test(conversation, prompt, folded)
            if variables is not None:
                return Choice(short.id, short.label, short.answer(variables))
        return None

    def _fallback(self, reply: Reply) -> Choice:
        label = reply.rule or ""
        self.fallback_hits[label] = self.fallback_hits.get(label, 0) + 1
        return Choice(None, label, reply)


def trigger_reply(conversation: Conversation, prompt: str) -> Reply | None:
    """llmock's phrases in the last user message: `raise error {json}` (first line that parses wins),
    then `call tool '<name>' with '<json>'` (one call per matching line, when the request offers tools)."""
    for line in prompt.splitlines():
        found = RAISE_ERROR.search(line)
        if found is None:
            continue
        try:
            payload = orjson.loads(found.group("json"))
        except orjson.JSONDecodeError:
            continue
        code = payload.get("code") if isinstance(payload, dict) else None
        if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
            message = str(payload.get("message", f"Mock error {code}"))
            kind = payload.get("type")
            error = ErrorReply(status=code, message=message, type=kind if isinstance(kind, str) else None)
            return Reply(rule="trigger: raise error", error=error)
    if not conversation.tools:
        return None
    calls = []
    for line in prompt.splitlines():
        found = CALL_TOOL.search(line)
        if found is None:
            continue
        try:
            args = orjson.loads(found.group("args") or "{}")
        except orjson.JSONDecodeError:
            args = {"raw": found.group("args")}
        calls.append(ToolCall(found.group("name"), args if isinstance(args, dict) else {"value": args}))
    if not calls:
        return None
    return Reply(tool_calls=calls, finish_reason="tool_calls", rule="trigger: call tool")
