"""Choosing a reply: the RuleSet the store holds (it implements conversation.ReplySource).

Order: the session's own rules (in the order added), the scenarios' current steps (in file order),
the rich rules in order (first match wins), then the short-form keys (the last user message
trimmed and case-folded, one dict lookup), then llmock's trigger phrases (when `triggers: true`),
then the `default` key, then `defaults.mirror` / `defaults.unknown_response`. A request a fallback
answers carries its near misses (the nearest rules and why each missed); in strict mode it is
refused (NoRuleMatched) instead. Everything is compiled once when the set is built; `choose` does no I/O.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from mockllm_tui.core.conversation import (
    ChoiceContext,
    Conversation,
    ErrorReply,
    NearMiss,
    NearMisses,
    NoRuleMatched,
    Reply,
    ToolCall,
)
from mockllm_tui.core.sessions import SessionState
from mockllm_tui.rules.identity import FALLBACK_LABELS, rule_identity
from mockllm_tui.rules.model import (
    REGEX_PREFIX,
    TEMPLATE,
    Entry,
    FileSource,
    RulesModel,
    RuleSpec,
    ScenarioSpec,
    clip,
)

UNKNOWN_RESPONSE = "I don't know the answer to that."
CALL_TOOL = re.compile(r"""call tool '(?P<name>[^']+)' with '(?P<args>.*)'""")
RAISE_ERROR = re.compile(r"raise error (?P<json>\{.*\})")
#: How many of the nearest rules a fallback's journal entry names.
NEAR_MISSES = 3
QUOTE_CHARS = 60
#: `tool_result` given without a name: any tool.
ANY_NAME = re.compile(".*", re.DOTALL)


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


def quoted(text: str, size: int = QUOTE_CHARS) -> str:
    """A value as near-miss reasons show it: in single quotes, on one line, clipped."""
    return "'" + clip(" ".join(text.split()) if "\n" in text else text, size) + "'"


def exact_difference(request: str, rule: str) -> str:
    """`differs at character 12: …'Spain please' vs …'France please'` (1-based, in the trimmed
    texts, case ignored as `exact` ignores it)."""
    a, b = request.strip(), rule.strip()
    i, n = 0, min(len(a), len(b))
    while i < n and a[i].lower() == b[i].lower():
        i += 1
    lead = "…" if i > 0 else ""
    return f"differs at character {i + 1}: {lead}{quoted(a[i:])} vs {lead}{quoted(b[i:])}"


#: A dynamic answer (the pytest plugin's callables): given the request, the text or the tool calls.
Dynamic = Callable[[Any], Any]


class CompiledRule:
    """One entry, ready to test: lowered strings, compiled patterns, its hit count and sequence position.

    `id` is the internal id that stays with the rule across edits; `label` is its identity (what
    everything shows: its name, or `#N` for the rule at 1-based listing position N; a scenario's
    step and a session's rule get theirs from their owner). `key` names the rule in a session's
    `replies:` positions (the id for the file's rules)."""

    __slots__ = (
        "_call_id",
        "_contains",
        "_exact",
        "_header",
        "_model",
        "_provider",
        "_regex",
        "_result_contains",
        "_system",
        "_tool",
        "_tools",
        "_turn",
        "dynamic_reply",
        "dynamic_tool_calls",
        "entry",
        "hits",
        "id",
        "key",
        "label",
        "position",
    )

    def __init__(self, rule_id: int, entry: Entry, position: int, label: str | None = None, key: Any = None) -> None:
        m = entry.spec.match
        self.id = rule_id
        self.key: Any = rule_id if key is None else key
        self.entry = entry
        self.label = rule_identity(position, entry.spec.name) if label is None else label
        self.hits = 0
        self.position = 0
        self.dynamic_reply: Dynamic | None = None
        self.dynamic_tool_calls: Dynamic | None = None
        self._exact = _fold(m.exact)
        self._contains = None if m.contains is None else m.contains.lower()
        self._regex = None if m.regex is None else re.compile(m.regex)
        self._model = _glob(m.model)
        self._provider = _fold(m.provider)
        self._system = None if m.system is None else m.system.lower()
        result = m.tool_result
        self._tool = None if result is None else (_glob(result.name) or ANY_NAME)
        self._result_contains = None if result is None or result.contains is None else result.contains.lower()
        self._call_id = None if result is None else result.call_id
        self._turn = m.turn
        self._tools = m.tools
        self._header = (
            None
            if m.header is None
            else tuple(
                (name, re.compile(v[len(REGEX_PREFIX) :]) if v.startswith(REGEX_PREFIX) else v)
                for name, v in m.header
            )
        )

    @property
    def spec(self) -> RuleSpec:
        """The rule as written."""
        return self.entry.spec

    def test(
        self, conversation: Conversation, prompt: str, folded: str, headers: dict[str, str] | None = None
    ) -> dict[str, str] | None:
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
        if self._tool is not None and self._result_miss(conversation) is not None:
            return None
        if self._turn is not None and not self._turn.holds(conversation.turn()):
            return None
        if self._tools is not None and self._tools_miss(conversation) is not None:
            return None
        if self._header is not None and self._header_miss(headers or {}) is not None:
            return None
        variables = {"prompt": prompt, "model": conversation.model}
        if self._regex is not None:
            found = self._regex.search(prompt)
            if found is None:
                return None
            variables.update({k: v for k, v in found.groupdict().items() if v is not None})
        return variables

    def miss(
        self, conversation: Conversation, prompt: str, folded: str, headers: dict[str, str]
    ) -> tuple[int, str | None]:
        """How many of the rule's conditions hold, and the first that fails in words (None: none fails),
        checked in the order exact, contains, regex, model, provider, system, tool_result, turn, tools, header."""
        m = self.spec.match
        reasons: list[str | None] = []
        if self._exact is not None:
            ok = folded == self._exact
            reasons.append(None if ok else "exact: " + exact_difference(prompt, m.exact or ""))
        if self._contains is not None:
            ok = self._contains in prompt.lower()
            reasons.append(None if ok else f"contains: {quoted(m.contains or '')} is not in {quoted(prompt)}")
        if self._regex is not None:
            ok = self._regex.search(prompt) is not None
            reasons.append(None if ok else f"regex: {quoted(m.regex or '')} does not match {quoted(prompt)}")
        if self._model is not None:
            ok = self._model.match(conversation.model.lower()) is not None
            reasons.append(None if ok else f"model: {quoted(conversation.model)} is not {quoted(m.model or '')}")
        if self._provider is not None:
            ok = conversation.provider.lower() == self._provider
            wanted = quoted(m.provider or "")
            reasons.append(None if ok else f"provider: {quoted(conversation.provider)} is not {wanted}")
        if self._system is not None:
            ok = self._system in conversation.system.lower()
            reasons.append(None if ok else f"system: {quoted(m.system or '')} is not in the system prompt")
        if self._tool is not None:
            result = self._result_miss(conversation)
            reasons.append(None if result is None else "tool_result: " + result)
        if self._turn is not None:
            turn = conversation.turn()
            reasons.append(None if self._turn.holds(turn) else f"turn: this is turn {turn}, not {self._turn}")
        if self._tools is not None:
            tools = self._tools_miss(conversation)
            reasons.append(None if tools is None else "tools: " + tools)
        if self._header is not None:
            header = self._header_miss(headers)
            reasons.append(None if header is None else "header: " + header)
        holding = sum(1 for r in reasons if r is None)
        return holding, next((r for r in reasons if r is not None), None)

    def _result_miss(self, conversation: Conversation) -> str | None:
        """Why no tool result of the current turn satisfies `tool_result` (None: one does)."""
        results = conversation.current_tool_results()
        if not results:
            turn = conversation.last_result_turn()
            if turn is None:
                return "no tool result in the conversation"
            return f"the last tool result is from turn {turn}, not this turn"
        tool = self._tool
        wanted = self.spec.match.tool_result
        named = [(r, conversation.result_name(r)) for r in results]
        if tool is not None and tool is not ANY_NAME:
            fitting = [(r, n) for r, n in named if tool.match(n.lower())]
            if not fitting:
                return f"the result is from {quoted(named[-1][1])}, not {quoted(wanted.name or '' if wanted else '')}"
            named = fitting
        if self._result_contains is not None:
            fitting = [(r, n) for r, n in named if self._result_contains in r.content.lower()]
            if not fitting:
                text = quoted(wanted.contains or "" if wanted else "")
                return f"{text} is not in the result of {quoted(named[-1][1])}"
            named = fitting
        if self._call_id is not None and not any(r.tool_call_id == self._call_id for r, _ in named):
            return f"no result answers call {quoted(self._call_id)}"
        return None

    def _tools_miss(self, conversation: Conversation) -> str | None:
        offered = {tool.name for tool in conversation.tools}
        for name in self._tools or ():
            if name not in offered:
                return f"{quoted(name)} is not offered"
        return None

    def _header_miss(self, headers: dict[str, str]) -> str | None:
        for name, wanted in self._header or ():
            value = headers.get(name)
            if value is None:
                return f"{quoted(name)} is missing"
            ok = wanted.search(value) is not None if isinstance(wanted, re.Pattern) else value == wanted
            if not ok:
                shown = wanted.pattern if isinstance(wanted, re.Pattern) else wanted
                prefix = REGEX_PREFIX if isinstance(wanted, re.Pattern) else ""
                return f"{quoted(name)} is {quoted(value)}, not {quoted(prefix + shown)}"
        return None

    def answer(
        self, variables: dict[str, str], positions: dict[Any, int] | None = None, request: Any = None
    ) -> Reply:
        """The reply, with templates filled in; advances a `replies` sequence (in `positions` for a
        named session, else the rule's own). A dynamic answer is called with `request`."""
        spec = self.spec
        self.hits += 1
        # Only the file's rules have an id the panel can find (a step's or a session rule's is not one).
        rule_id = self.id if self.key is self.id else None
        reply = Reply(rule=self.label, rule_id=rule_id, latency_ms=spec.latency_ms, stream_speed=spec.stream_speed)
        if spec.thinking is not None:
            reply.thinking = render(spec.thinking, variables)
        if spec.error is not None:
            e = spec.error
            reply.error = ErrorReply(status=e.status, message=render(e.message, variables), type=e.type)
            return reply
        if spec.replies is not None:
            position = self.position if positions is None else positions.get(self.key, 0)
            index = min(position, len(spec.replies) - 1)
            if positions is None:
                self.position += 1
            else:
                positions[self.key] = position + 1
            reply.text = render(spec.replies[index], variables)
        elif spec.reply is not None:
            reply.text = render(spec.reply, variables)
        reply.tool_calls = [ToolCall(c.name, render_value(c.arguments, variables)) for c in spec.tool_calls]
        if self.dynamic_reply is not None:
            reply.text = str(self.dynamic_reply(request))
        if self.dynamic_tool_calls is not None:
            calls = self.dynamic_tool_calls(request) or []
            reply.tool_calls = [ToolCall(str(c["name"]), dict(c.get("arguments") or {})) for c in calls]
        return reply


class CompiledScenario:
    """A scenario's steps, ready to test; each session keeps its own position (`SessionState.scenarios`)."""

    __slots__ = ("name", "spec", "steps")

    def __init__(self, spec: ScenarioSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.steps = [
            CompiledRule(0, Entry(spec=step), 0, spec.step_label(i), key=("scenario", spec.name, i))
            for i, step in enumerate(spec.steps)
        ]

    def current(self, session: SessionState) -> tuple[int, CompiledRule] | None:
        """The step this session is at (None: finished)."""
        index = session.scenarios.get(self.name, 0)
        return (index, self.steps[index]) if index < len(self.steps) else None


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
        self.scenarios = [CompiledScenario(spec) for spec in model.scenarios]
        #: The default session's state when a caller gives no context (tries, direct calls).
        self.own_session = SessionState(None)
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
        # Short-form entries hold one condition each, so only the first few can be among the nearest.
        short_first = [r for r in self.rules[n_rich:] if r.entry.kind == "short"][:NEAR_MISSES]
        self._file_candidates = [*self._rich, *short_first]
        defaults = model.defaults
        self._mirror = defaults.mirror
        self._triggers = defaults.triggers
        self._unknown = UNKNOWN_RESPONSE if defaults.unknown_response is None else defaults.unknown_response

    def _carry_over(self, previous: RuleSet) -> None:
        self.own_session = previous.own_session
        old_steps = {s.name: s for s in previous.scenarios}
        for scenario in self.scenarios:
            before_scenario = old_steps.get(scenario.name)
            if before_scenario is not None:
                for step, before_step in zip(scenario.steps, before_scenario.steps, strict=False):
                    step.hits = before_step.hits
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

    def scenario(self, name: str) -> CompiledScenario | None:
        """The scenario with this name, if any."""
        return next((s for s in self.scenarios if s.name == name), None)

    def choose(self, conversation: Conversation, context: ChoiceContext | None = None) -> Reply:
        """The reply for this conversation (first match wins)."""
        return self.explain(conversation, context).reply

    def explain(self, conversation: Conversation, context: ChoiceContext | None = None) -> Choice:
        """Which rule answers this conversation, and its reply (counts the hit). A fallback's reply
        carries the near misses; in strict mode (`context.strict`) NoRuleMatched is raised instead."""
        matched = self.match(conversation, (), context)
        if matched is not None:
            return matched
        session = self._session(context)
        headers = context.headers if context is not None else {}
        if context is not None and context.strict:
            near = self.near_misses(conversation, session, headers)
            raise NoRuleMatched(strict_message(near), near)
        choice = self.fallback(conversation)
        choice.reply.near_misses = self.lazy_near_misses(conversation, session, headers)
        return choice

    def fallback(self, conversation: Conversation) -> Choice:
        """The fallback's answer: trigger phrases, the `default` key, mirror or unknown_response."""
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

    def _session(self, context: ChoiceContext | None) -> SessionState:
        if context is not None and context.session is not None:
            return context.session
        return self.own_session

    def match(
        self, conversation: Conversation, skip: Collection[int] = (), context: ChoiceContext | None = None
    ) -> Choice | None:
        """The rule that matches this conversation and its reply (counts the hit), leaving out the
        fallbacks (triggers, the `default` key, mirror, unknown_response) and the rules in `skip`.
        Tried in order: the session's rules, the scenarios' current steps, the rich rules, the short
        form. None when no rule matches."""
        prompt = conversation.last_user_text()
        folded = prompt.strip().lower()
        session = self._session(context)
        headers = context.headers if context is not None else {}
        request = context.request if context is not None else None
        positions = None if session.id is None else session.positions
        for rule in session.rules:
            variables = rule.test(conversation, prompt, folded, headers)
            if variables is not None:
                return Choice(rule.id, rule.label, rule.answer(variables, session.positions, request))
        for scenario in self.scenarios:
            current = scenario.current(session)
            if current is None:
                continue
            index, step = current
            variables = step.test(conversation, prompt, folded, headers)
            if variables is not None:
                session.scenarios[scenario.name] = index + 1
                reply = step.answer(variables, session.positions, request)
                total = len(scenario.steps)
                finished = index + 1 == total
                reply.scenario = {"name": scenario.name, "step": index + 1, "steps": total, "finished": finished}
                return Choice(None, step.label, reply)
        for rule in self._rich:
            if rule.id in skip:
                continue
            variables = rule.test(conversation, prompt, folded, headers)
            if variables is not None:
                return Choice(rule.id, rule.label, rule.answer(variables, positions, request))
        short = self._short.get(folded)
        if short is not None and short.id not in skip:
            variables = short.test(conversation, prompt, folded, headers)
            if variables is not None:
                return Choice(short.id, short.label, short.answer(variables, positions, request))
        return None

    def near_misses(
        self, conversation: Conversation, session: SessionState | None = None, headers: dict[str, str] | None = None
    ) -> list[NearMiss]:
        """Up to NEAR_MISSES `(rule, reason)` pairs: the rules that came nearest (most conditions
        holding, then in the order tried) and the first condition each failed."""
        return nearest(self._candidates(session), conversation, headers or {})

    def lazy_near_misses(
        self, conversation: Conversation, session: SessionState | None, headers: dict[str, str]
    ) -> NearMisses:
        """The near misses, worked out when first read (the rules that were candidates are fixed now)."""
        candidates = self._candidates(session)
        return NearMisses(lambda: nearest(candidates, conversation, headers))

    def _candidates(self, session: SessionState | None) -> list[CompiledRule]:
        state = session if session is not None else self.own_session
        if not state.rules and not self.scenarios:
            return self._file_candidates
        candidates: list[CompiledRule] = list(state.rules)
        for scenario in self.scenarios:
            current = scenario.current(state)
            if current is not None:
                candidates.append(current[1])
        candidates += self._file_candidates
        return candidates

    def _fallback(self, reply: Reply) -> Choice:
        label = reply.rule or ""
        self.fallback_hits[label] = self.fallback_hits.get(label, 0) + 1
        return Choice(None, label, reply)


def nearest(candidates: list[CompiledRule], conversation: Conversation, headers: dict[str, str]) -> list[NearMiss]:
    """The NEAR_MISSES candidates that hold the most conditions (then in the order given), each with
    the first condition it failed."""
    prompt = conversation.last_user_text()
    folded = prompt.strip().lower()
    scored = []
    for order, rule in enumerate(candidates):
        holding, reason = rule.miss(conversation, prompt, folded, headers)
        if reason is not None:
            scored.append((-holding, order, rule.label, reason))
    scored.sort(key=lambda item: (item[0], item[1]))
    return [(label, reason) for _, _, label, reason in scored[:NEAR_MISSES]]


def strict_message(near: list[tuple[str, str]]) -> str:
    """Strict mode's error: `no rule matched this request; nearest: RULE (REASON); ...`."""
    if not near:
        return "no rule matched this request (there are no rules)"
    return "no rule matched this request; nearest: " + "; ".join(f"{rule} ({reason})" for rule, reason in near)


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
