"""Agent-grade matching in-process: turn, tools, header and current-turn tool_result matchers,
scenarios, session state, near misses word for word, strict mode's error, and --check warnings."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mockllm_tui.core.conversation import ChoiceContext, Conversation, Message, NoRuleMatched, ToolCall, ToolSpec
from mockllm_tui.core.sessions import Sessions, SessionState, strict_of
from mockllm_tui.rules.document import Document
from mockllm_tui.rules.fileio import check_file
from mockllm_tui.rules.matcher import RuleSet
from mockllm_tui.rules.model import RulesFileError


def ruleset(text: str) -> RuleSet:
    """The rules of a responses file's text."""
    return RuleSet(Document(text).model)


def chat(*messages: Message, model: str = "gpt-4o", provider: str = "openai", **kw: object) -> Conversation:
    return Conversation(provider, "chat", model, list(messages), **kw)  # type: ignore[arg-type]


def user(text: str) -> Message:
    return Message("user", text)


def call(name: str, call_id: str, **args: object) -> Message:
    return Message("assistant", "", [ToolCall(name, dict(args), call_id)])


def result(text: str, call_id: str, name: str | None = None) -> Message:
    return Message("tool", text, tool_call_id=call_id, name=name)


def nearest(rules: RuleSet, conversation: Conversation, headers: dict[str, str] | None = None) -> list[str]:
    """The near misses of a request a fallback answers, as `rule: reason` lines."""
    reply = rules.choose(conversation, ChoiceContext(headers or {}))
    assert reply.rule == "unknown_response"
    return [f"{rule}: {reason}" for rule, reason in reply.near_misses.get()]  # type: ignore[union-attr]


# -- the conversation's turns ---------------------------------------------------------------------


def test_turns_count_user_messages_and_the_current_turn_follows_the_last_assistant_message() -> None:
    loop = chat(
        user("weather in Paris?"),
        call("get_weather", "call_1", city="Paris"),
        result("sunny", "call_1"),  # no name on the wire: the call it answers names it
        Message("assistant", "It is sunny."),
        user("and hotels?"),
    )
    assert loop.turn() == 2
    assert loop.current_tool_results() == []
    assert loop.last_result_turn() == 1
    assert loop.result_name(loop.messages[2]) == "get_weather"
    follow = chat(*loop.messages, call("get_hotels", "call_2"), result("Lutetia", "call_2", "get_hotels"))
    assert follow.turn() == 2
    assert [m.content for m in follow.current_tool_results()] == ["Lutetia"]


# -- the matchers ---------------------------------------------------------------------------------

AGENT = """
rules:
  - name: hotels asked
    match: {tool_result: {name: get_weather, contains: "SUNNY", call_id: call_7}}
    tool_calls: [{name: get_hotels, arguments: {city: Paris}}]
  - name: short form
    match: {tool_result: get_h*}
    reply: "Lutetia it is."
  - name: trip planned
    match:
      contains: "plan a trip"
      turn: ">=2"
      tools: [get_weather, get_hotels]
      header: {X-App-Tag: checkout, x-tenant: "regex:^acme-[0-9]+$"}
    reply: "planned"
  - name: first
    match: {turn: 1}
    reply: "turn one"
"""


def test_tool_result_looks_only_at_the_current_turn() -> None:
    rules = ruleset(AGENT)
    asked = [user("weather?"), call("get_weather", "call_7"), result("Sunny and warm", "call_7")]
    assert rules.choose(chat(*asked)).rule == "hotels asked"
    # The same result a turn ago: the follow-up text turn must not ask for hotels again.
    later = chat(*asked, Message("assistant", "Sunny."), user("thanks"), Message("assistant", "ok"), user("bye"))
    assert rules.choose(later).rule == "unknown_response"
    # Several results in the current turn: one of them must satisfy every key.
    two = chat(
        user("both"),
        Message("assistant", "", [ToolCall("get_weather", {}, "call_6"), ToolCall("get_weather", {}, "call_7")]),
        result("rain", "call_6"),
        result("sunny", "call_7"),
    )
    assert rules.choose(two).rule == "hotels asked"
    assert rules.choose(chat(user("x"), call("get_hotels", "c9"), result("{}", "c9"))).rule == "short form"


def test_turn_tools_and_header_must_all_hold() -> None:
    rules = ruleset(AGENT)
    tools = [ToolSpec("get_weather"), ToolSpec("get_hotels"), ToolSpec("other")]
    turn2 = chat(user("hi"), Message("assistant", "hello"), user("Plan a trip to Rome"), tools=tools)
    headers = {"x-app-tag": "checkout", "x-tenant": "acme-42"}
    assert rules.choose(turn2, ChoiceContext(headers)).rule == "trip planned"
    assert rules.choose(turn2, ChoiceContext({**headers, "x-app-tag": "Checkout"})).rule != "trip planned"
    assert rules.choose(turn2, ChoiceContext({**headers, "x-tenant": "acme-x"})).rule != "trip planned"
    assert rules.choose(chat(user("plan a trip"), tools=tools), ChoiceContext(headers)).rule == "first"


@pytest.mark.parametrize(
    ("form", "inside", "outside"),
    [
        (3, [3], [2, 4]),
        ("3", [3], [2]),
        ("2-3", [2, 3], [1, 4]),
        (">=2", [2, 9], [1]),
        (">2", [3], [2]),
        ("<=3", [1, 3], [4]),
        ("<3", [1, 2], [3]),
    ],
)
def test_turn_forms(form: object, inside: list[int], outside: list[int]) -> None:
    rules = ruleset(f"rules:\n  - match: {{turn: {form!r}}}\n    reply: hit\n".replace("'", '"'))
    for turn in inside + outside:
        messages: list[Message] = []
        for i in range(turn):
            messages += [user(f"u{i}"), Message("assistant", "a")]
        reply = rules.choose(chat(*messages[:-1]))
        assert (reply.text == "hit") is (turn in inside), (form, turn)


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ('{turn: "two"}', '\'turn\' must be a number or a range such as "2-3", ">=2" or "<3", not \'two\''),
        ("{turn: -1}", "'turn' must be a turn number of at least 0, not -1"),
        ("{tool_result: {name: x, id: y}}", "tool_result: unknown key 'id'"),
        ("{tools: []}", "'tools' must be a tool name or a list of names"),
        ('{header: {x-a: "regex:("}}', "'header.x-a' is not a valid regular expression"),
    ],
)
def test_bad_forms_are_file_errors(match: str, message: str) -> None:
    with pytest.raises(RulesFileError) as caught:
        Document(f"rules:\n  - match: {match}\n    reply: x\n")
    assert message in str(caught.value)


# -- near misses, word for word -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "asked", "reason"),
    [
        (
            "{exact: 'I want France please'}",
            "i want Spain please",
            "exact: differs at character 8: …'Spain please' vs …'France please'",
        ),
        ("{exact: hello}", "goodbye", "exact: differs at character 1: 'goodbye' vs 'hello'"),
        ("{contains: weather}", "forecast for tomorrow", "contains: 'weather' is not in 'forecast for tomorrow'"),
        (r"{regex: '^order #\d+$'}", "order #abc", r"regex: '^order #\d+$' does not match 'order #abc'"),
        ("{model: gpt-4o}", "hi", "model: 'gpt-4o-mini' is not 'gpt-4o'"),
        ("{provider: anthropic}", "hi", "provider: 'openai' is not 'anthropic'"),
        ("{system: pirate}", "hi", "system: 'pirate' is not in the system prompt"),
        ("{tool_result: get_weather}", "hi", "tool_result: no tool result in the conversation"),
        ("{turn: 2-3}", "hi", "turn: this is turn 1, not 2-3"),
        ("{tools: [get_time]}", "hi", "tools: 'get_time' is not offered"),
        ("{header: {X-App-Tag: checkout}}", "hi", "header: 'x-app-tag' is missing"),
    ],
)
def test_near_miss_reasons(match: str, asked: str, reason: str) -> None:
    rules = ruleset(f"rules:\n  - name: the rule\n    match: {match}\n    reply: x\n")
    assert nearest(rules, chat(user(asked), model="gpt-4o-mini", system="be brief")) == [f"the rule: {reason}"]


def test_near_miss_reasons_of_tool_results_and_headers() -> None:
    rules = ruleset(
        """
rules:
  - {name: by name, match: {tool_result: get_weather}, reply: x}
  - {name: by text, match: {tool_result: {name: get_time, contains: sunny}}, reply: x}
  - {name: by call, match: {tool_result: {call_id: call_7}}, reply: x}
  - {name: by header, match: {header: {x-app-tag: checkout}}, reply: x}
"""
    )
    current = chat(user("time?"), call("get_time", "call_1"), result("noon", "call_1"))
    assert nearest(rules, current, {"x-app-tag": "search"}) == [
        "by name: tool_result: the result is from 'get_time', not 'get_weather'",
        "by text: tool_result: 'sunny' is not in the result of 'get_time'",
        "by call: tool_result: no result answers call 'call_7'",
    ]
    old = chat(*current.messages, Message("assistant", "noon"), user("thanks"))
    rules = ruleset(
        "rules:\n  - {name: old, match: {tool_result: get_time}, reply: x}\n"
        "  - {name: tagged, match: {header: {x-app-tag: checkout}}, reply: x}\n"
    )
    assert nearest(rules, old, {"x-app-tag": "search"}) == [
        "old: tool_result: the last tool result is from turn 1, not this turn",
        "tagged: header: 'x-app-tag' is 'search', not 'checkout'",
    ]


def test_near_misses_are_the_three_nearest_and_name_the_first_failed_condition() -> None:
    rules = ruleset(
        """
rules:
  - {name: far, match: {contains: nothing, model: other}, reply: x}
  - {name: two of three, match: {contains: weather, model: gpt-4o, provider: anthropic}, reply: x}
  - {name: one of two, match: {contains: weather, model: claude*}, reply: x}
  - {name: none of one, match: {exact: bye}, reply: x}
  - {name: also none, match: {exact: ciao}, reply: x}
responses:
  default: the catch-all
"""
    )
    reply = rules.choose(chat(user("weather today?")))
    assert reply.rule is not None and reply.text == "the catch-all"  # the default key is a fallback too
    assert reply.near_misses is not None
    near = reply.near_misses.get()
    assert [rule for rule, _ in near] == ["two of three", "one of two", "far"]
    assert near[0][1] == "provider: 'openai' is not 'anthropic'"
    assert near[2][1] == "contains: 'nothing' is not in 'weather today?'"


def test_strict_mode_refuses_with_the_nearest_rules() -> None:
    rules = ruleset("rules:\n  - {name: greet, match: {contains: hello}, reply: hi}\nresponses:\n  default: fallback\n")
    with pytest.raises(NoRuleMatched) as caught:
        rules.choose(chat(user("bye")), ChoiceContext(strict=True))
    error = caught.value
    assert (error.status, error.code) == (404, "no_rule_matched")
    assert error.message == "no rule matched this request; nearest: greet (contains: 'hello' is not in 'bye')"
    assert rules.choose(chat(user("hello")), ChoiceContext(strict=True)).text == "hi"
    assert strict_of({"x-mock-strict": "true"}, False) and not strict_of({"x-mock-strict": "false"}, True)


# -- scenarios and sessions ---------------------------------------------------------------------

BOOKING = """
scenarios:
  - name: booking
    steps:
      - name: ask city
        match: {contains: "book a room"}
        reply: "Which city?"
      - match: {contains: "paris"}
        tool_calls: [{name: search_hotels, arguments: {city: Paris}}]
      - match: {tool_result: search_hotels}
        reply: "Hotel Lutetia has a room."
      - match: {contains: "yes"}
        reply: "Booked."
rules:
  - {name: anything else, match: {contains: "book a room"}, reply: "A fresh start."}
"""


def test_a_scenario_steps_in_order_per_session_and_then_falls_through() -> None:
    rules = ruleset(BOOKING)
    sessions = Sessions()
    a, b = ChoiceContext(session=sessions.get("a")), ChoiceContext(session=sessions.get("b"))
    assert rules.choose(chat(user("paris")), a).rule == "unknown_response"  # step 2 waits for step 1
    first = rules.choose(chat(user("Book a room")), a)
    assert (first.rule, first.text, first.scenario) == (
        "ask city",
        "Which city?",
        {"name": "booking", "step": 1, "steps": 4, "finished": False},
    )
    second = rules.choose(chat(user("Paris")), a)
    assert (second.rule, second.tool_calls[0].name) == ("booking step 2", "search_hotels")
    assert rules.choose(chat(user("book a room")), b).rule == "ask city"  # b has its own position
    loop = chat(user("Paris"), call("search_hotels", "c1"), result("[Lutetia]", "c1"))
    assert rules.choose(loop, a).text == "Hotel Lutetia has a room."
    last = rules.choose(chat(user("yes")), a)
    assert last.scenario == {"name": "booking", "step": 4, "steps": 4, "finished": True}
    assert rules.choose(chat(user("book a room")), a).rule == "anything else"  # finished: falls through
    sessions.reset_scenario("booking", "a")
    assert rules.choose(chat(user("book a room")), a).rule == "ask city"


def test_sessions_keep_their_own_sequence_positions_and_are_bounded() -> None:
    rules = ruleset("rules:\n  - {name: seq, match: {contains: next}, replies: [one, two, three]}\n")
    sessions = Sessions(limit=2)
    a, b = sessions.get("a"), sessions.get("b")
    texts = [rules.choose(chat(user("next")), ChoiceContext(session=s)).text for s in (a, a, b, a, b)]
    assert texts == ["one", "two", "one", "three", "two"]
    assert rules.choose(chat(user("next"))).text == "one"  # the default session has its own too
    sessions.get("c")  # the least recently used (a) goes
    assert sessions.peek("a") is None and sessions.peek("b") is b and len(sessions) == 2
    state = SessionState("x", fail_next=(2, 503, "before"))
    assert [state.take_fail_next() for _ in range(3)] == [(1, 503, "before"), (1, 503, "before"), (0, None, None)]


def test_scenario_file_errors_and_check_warnings(tmp_path: Path) -> None:
    with pytest.raises(RulesFileError) as caught:
        Document("scenarios:\n  - {name: a, steps: []}\n  - {name: a, steps: [{reply: x}]}\n")
    assert "scenario 'a': 'steps' must be a non-empty list of rules" in str(caught.value)
    path = tmp_path / "responses.yml"
    path.write_text(
        """rules:
  - name: broad
    match: {contains: weather}
    reply: x
  - name: narrow
    match: {contains: weather, model: gpt-4o}
    reply: never
  - name: backwards
    match: {turn: "5-3"}
    reply: never
scenarios:
  - name: s
    steps:
      - {match: {turn: "<1"}, reply: never}
"""
    )
    out = io.StringIO()
    assert check_file(path, out) == 0
    text = out.getvalue()
    assert "responses.yml:5: warning: rule 2 can never match: rule 1 (contains 'weather') on line 2" in text
    assert "responses.yml:8: warning: rule 3 can never match: turn 5-3 is an empty range" in text
    assert "warning: scenario 's' step 1 can never match: turn <1 is an empty range" in text


def test_trying_a_prompt_moves_no_scenario(tmp_path: Path) -> None:
    from mockllm_tui.rules.commands import list_scenarios, try_prompt
    from tests.conftest import rules_store

    store = rules_store(tmp_path, BOOKING)
    assert try_prompt(store, "book a room").label == "ask city"
    assert try_prompt(store, "book a room").label == "ask city"
    assert [v.position() for v in list_scenarios(store)] == ["step 1/4"]


def test_the_strict_and_max_sessions_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from mockllm_tui.cli import build_parser, make_store

    store = make_store(build_parser().parse_args(["--strict", "--max-sessions", "5"]))
    assert store.config.strict and store.sessions.limit == 5
    monkeypatch.setenv("MOCKLLM_STRICT", "1")
    monkeypatch.setenv("MOCKLLM_MAX_SESSIONS", "7")
    store = make_store(build_parser().parse_args([]))
    assert store.config.strict and store.sessions.limit == 7
    monkeypatch.delenv("MOCKLLM_STRICT")
    assert not make_store(build_parser().parse_args([])).config.strict
