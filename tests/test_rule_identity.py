"""One identity per rule: its name, else `#N`, its 1-based position in listing order. The same word in
the rules table, the request log, the editor, the journal, `/_mock/rules`, `/metrics` and the pytest
report; and the readable default names `a` and `n` give new rules."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from textual.widgets import Input

from mockllm_tui.rules.commands import (
    ConflictError,
    RuleError,
    add_rule,
    delete_rule,
    find_rule,
    list_rules,
    update_rule,
)
from mockllm_tui.rules.identity import default_name, find_identity, rule_identity, slug
from mockllm_tui.tui.screens.rule_editor import RuleEditor
from mockllm_tui.tui.widgets.request_log import RequestLog
from mockllm_tui.tui.widgets.rule_table import RuleTable
from tests.conftest import Live, rules_store, serving_file
from tests.test_metrics import samples
from tests.test_panel import Panel, open_panel, panel

__all__ = ["panel"]  # the fixture, shared with test_panel.py
pytest_plugins = ["pytester"]

# Two named rules come first, so the unnamed `capital` rule is #3 (not #1, the count of unnamed rules).
RULES = """\
rules:
  - name: greeting
    match: {contains: "hi there"}
    reply: "Hello!"
  - name: weather
    match: {contains: "weather"}
    reply: "Sunny"
  - match: {contains: "capital"}
    reply: "Paris"
responses:
  "ping": "pong"
  "default": "fallback"
"""
RULE_COLUMN = 5  # in the request log


async def ask(live: Live, prompt: str) -> str:
    async with openai.AsyncOpenAI(base_url=live.openai_url, api_key="k", max_retries=0) as client:
        done = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
    return done.choices[0].message.content or ""


def rule_labels(metrics_text: str) -> set[str]:
    """The `rule` label values of mockllm_requests_total."""
    return {
        dict(labels)["rule"] for (name, labels), _ in samples(metrics_text).items() if name == "mockllm_requests_total"
    }


# -- the rules layer ---------------------------------------------------------------------------------


def test_identity_is_the_name_else_the_position() -> None:
    assert rule_identity(3, None) == "#3"
    assert rule_identity(3, "") == "#3"
    assert rule_identity(3, "weather") == "weather"
    names = ["greeting", None, "twin", "twin", "7"]
    assert find_identity("greeting", names) == [0]
    assert find_identity("#2", names) == find_identity("2", names) == [1]
    assert find_identity("twin", names) == [2, 3]
    assert find_identity("7", names) == [4]  # a name wins over a position
    assert find_identity("#6", names) == find_identity("0", names) == find_identity("nope", names) == []


def test_default_names_are_readable_and_unique() -> None:
    assert default_name("hello", []) == "hello"
    assert default_name("What's the Capital of  France?", []) == "whats-the-capital-of-france"
    assert default_name("capital of france", ["capital-of-france"]) == "capital-of-france-2"
    assert default_name("capital of france", ["capital-of-france", "capital-of-france-2"]) == "capital-of-france-3"
    assert default_name("mirror", []) == "mirror-2"  # never a fallback's label
    assert default_name("42", []) == "rule-42"  # a bare number would read as a position
    assert default_name("?!", []) is None
    long = "please summarise the following very long document about the history of rome"
    assert slug(long) == "please-summarise-the-following-very-long"  # cut at a word boundary
    assert len(slug(long)) <= 40 and len(slug("x" * 60)) == 40


def test_messages_name_rules_by_their_identity(tmp_path: Path) -> None:
    store = rules_store(tmp_path, RULES)
    delete_rule(store, find_rule(store, "greeting").id)  # internal ids and positions now differ
    with pytest.raises(RuleError, match=r"a response for 'ping' already exists \(rule #3\)"):
        add_rule(store, {"match": {"exact": "ping"}, "reply": "again"})
    path = tmp_path / "responses.yml"
    path.write_text(path.read_text().replace('"pong"', '"pong by hand"'))
    with pytest.raises(ConflictError, match=r"^rule #3 was changed in responses.yml"):
        update_rule(store, find_rule(store, "#3").id, {"match": {"exact": "ping"}, "reply": "from the panel"})


# -- the journal, /_mock/rules and /metrics --------------------------------------------------------------


async def test_journal_admin_api_and_metrics_use_the_identity(tmp_path: Path) -> None:
    async with serving_file(tmp_path, RULES) as live, httpx.AsyncClient(base_url=live.root) as client:
        assert await ask(live, "what is the capital of France?") == "Paris"
        assert await ask(live, "weather today?") == "Sunny"
        assert await ask(live, "ping") == "pong"
        assert await ask(live, "something else") == "fallback"
        journal = (await client.get("/_mock/journal")).json()["data"]
        assert [e["rule"] for e in journal] == ["#3", "weather", "#4", "#5"]
        listing = (await client.get("/_mock/rules")).json()["data"]
        assert [r["id"] for r in listing] == ["greeting", "weather", "#3", "#4", "#5"]
        assert [r["name"] for r in listing] == ["greeting", "weather", None, None, None]
        metrics = (await client.get("/metrics")).text
        assert rule_labels(metrics) == {"#3", "weather", "#4", "#5"}
        assert "capital" not in metrics and "ping" not in metrics

        # Deleting the first rule moves the others up: the identities follow the positions.
        assert (await client.delete("/_mock/rules/greeting")).status_code == 200
        assert await ask(live, "capital of Peru?") == "Paris"
        assert (await client.get("/_mock/journal?limit=1")).json()["data"][0]["rule"] == "#2"
        listing = (await client.get("/_mock/rules")).json()["data"]
        assert [r["id"] for r in listing] == ["weather", "#2", "#3", "#4"]
        assert "#2" in rule_labels((await client.get("/metrics")).text)

        # One rule by name, `#N` (`%23N` in a path) or `N`.
        by_number = (await client.get("/_mock/rules/2")).json()
        assert by_number["id"] == "#2" and by_number["match"] == "contains 'capital'"
        assert (await client.get("/_mock/rules/%232")).json() == by_number
        assert (await client.get("/_mock/rules/weather")).json()["reply"] == "Sunny"
        put = await client.put("/_mock/rules/%232", json={"match": {"contains": "capital"}, "reply": "Lima"})
        assert put.status_code == 200 and put.json()["rule"]["id"] == "#2"
        assert await ask(live, "capital of Peru?") == "Lima"
        moved = await client.post("/_mock/rules/reorder", json={"order": ["#2", "weather"]})
        assert [r["id"] for r in moved.json()["data"]] == ["#1", "weather", "#3", "#4"]
        missing = await client.get("/_mock/rules/nope")
        assert missing.status_code == 404 and missing.json()["error"]["message"] == "no rule nope"
        for _ in range(2):
            await client.post("/_mock/rules", json={"name": "twin", "match": {"contains": "twin"}, "reply": "x"})
        twins = await client.delete("/_mock/rules/twin")
        assert twins.status_code == 400 and "2 rules are named 'twin' (#3, #4)" in twins.json()["error"]["message"]


async def test_fallback_labels_are_bounded_and_say_nothing_of_the_request(tmp_path: Path) -> None:
    text = 'responses:\n  "ping": "pong"\ndefaults:\n  triggers: true\n'
    async with serving_file(tmp_path, text) as live, httpx.AsyncClient(base_url=live.root) as client:
        await ask(live, "unmatched secret words")
        with pytest.raises(openai.APIStatusError):
            await ask(live, 'raise error {"code": 503, "message": "private detail"}')
        live.store.set_knobs("live", {"api_key": "right"})
        refused = await client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": []})
        assert refused.status_code == 401
        live.store.set_knobs("live", {"api_key": None})
        metrics = (await client.get("/metrics")).text
    assert rule_labels(metrics) <= {"", "unknown_response", "trigger: raise error", "trigger: call tool", "mirror"}
    assert {"unknown_response", "trigger: raise error"} <= rule_labels(metrics)
    assert "secret" not in metrics and "private" not in metrics


# -- the panel ---------------------------------------------------------------------------------------------


def table_labels(table: RuleTable) -> list[str]:
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


async def test_the_table_log_and_editor_show_the_identity(tmp_path: Path) -> None:
    async with open_panel(tmp_path, text=RULES) as panel:
        table = panel.app.query_one(RuleTable)
        log = panel.app.query_one(RequestLog)
        assert table_labels(table) == ["greeting", "weather", "#3", "#4", "#5"]
        assert [str(c.label) for c in table.columns.values()] == ["rule", "match", "reply", "hits"]  # no row number
        assert await panel.chat("what is the capital of France?") == "Paris"
        assert await panel.chat("weather?") == "Sunny"
        await panel.until(lambda: log.row_count == 2 and not panel.store.journal()[-1].open)
        assert [str(log.get_row_at(i)[RULE_COLUMN]) for i in range(2)] == ["#3", "weather"]

        delete_rule(panel.store, find_rule(panel.store, "greeting").id)
        table.refresh_hits()  # the hit-count timer, firing before the panel has seen the change
        assert table_labels(table) == ["weather", "#2", "#3", "#4"]
        assert await panel.chat("capital of Spain?") == "Paris"
        await panel.until(lambda: log.row_count == 3 and not panel.store.journal()[-1].open)
        assert str(log.get_row_at(2)[RULE_COLUMN]) == "#2"
        # `e` on the first request (logged as #3 before the delete) still opens the rule that answered it
        panel.app.set_focus(log)
        await panel.pilot.press("up", "up")
        await panel.until(lambda: panel.app.selected is not None and panel.app.selected.preview.startswith("what"))
        await panel.pilot.press("e")
        editor = panel.app.screen
        assert isinstance(editor, RuleEditor) and editor.title_text == "Edit rule #2"
        assert editor.query_one("#pattern", Input).value == "capital"
        assert editor.query_one("#rule-name", Input).value == ""  # an existing rule is not renamed


async def test_a_names_a_new_rule_from_its_prompt(tmp_path: Path) -> None:
    async with open_panel(tmp_path, text=RULES) as panel:
        await panel.pilot.press("a")
        editor = panel.app.screen
        assert isinstance(editor, RuleEditor)
        name = editor.query_one("#rule-name", Input)
        await panel.pilot.press(*"Capital of France?")
        assert name.value == "capital-of-france"
        await panel.pilot.press("tab", *"Paris", "ctrl+s")
        assert not isinstance(panel.app.screen, RuleEditor)
        assert "  - name: capital-of-france\n" in (tmp_path / "responses.yml").read_text()
        assert find_rule(panel.store, "capital-of-france").spec.match.exact == "Capital of France?"

        await panel.pilot.press("a")
        editor = panel.app.screen
        name = editor.query_one("#rule-name", Input)
        await panel.pilot.press(*"capital of france")
        assert name.value == "capital-of-france-2"  # unique
        name.focus()
        await panel.pilot.press("end", *"-mine")
        editor.query_one("#pattern", Input).focus()
        await panel.pilot.press(*" again")
        assert name.value == "capital-of-france-2-mine"  # once edited by hand, the name stays
        await panel.pilot.press("escape")


async def test_n_names_a_rule_from_the_request(panel: Panel) -> None:
    assert await panel.chat("What is mockllm?") == "This is a mock response from mockllm-tui."
    await panel.until(lambda: panel.app.selected is not None and not panel.app.selected.open)
    await panel.pilot.press("n")
    editor = panel.app.screen
    assert isinstance(editor, RuleEditor)
    assert editor.query_one("#rule-name", Input).value == "what-is-mockllm"
    await panel.pilot.press(*"A mock.", "ctrl+s")
    assert await panel.chat("What is mockllm?") == "A mock."
    assert panel.store.journal()[-1].rule == "what-is-mockllm"
    # a second rule from the same prompt gets a unique name
    await panel.until(lambda: panel.app.selected is not None and panel.app.selected.rule == "what-is-mockllm")
    await panel.pilot.press("n")
    assert panel.app.screen.query_one("#rule-name", Input).value == "what-is-mockllm-2"
    await panel.pilot.press("escape")
    assert [v.label for v in list_rules(panel.store)] == ["what-is-mockllm", "#2", "#3"]


# -- the pytest plugin --------------------------------------------------------------------------------------

BASE = """\
rules:
  - name: base-hello
    match: {exact: hello}
    reply: Hello from the file
  - match: {contains: capital}
    reply: Paris
"""
CASE = """\
def test_identity(mockllm):
    mockllm.rule(exact="mine", reply="from the test", name="my-rule")
    client = mockllm.openai_client()
    for prompt in ("hello", "what is the capital?", "mine"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
    assert [r.rule for r in mockllm.requests] == ["base-hello", "#2", "my-rule"]
    assert False, "failing on purpose"
"""


def test_the_pytest_report_and_rule_use_the_identity(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:randomly\nmockllm_responses = base.yml\n")
    (pytester.path / "base.yml").write_text(BASE)
    pytester.makepyfile(test_case=CASE)
    result = pytester.runpytest_subprocess(timeout=120)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: failing on purpose*",
            "*- mockllm requests -*",
            "POST /v1/chat/completions 200 rule=base-hello prompt='hello'",
            "POST /v1/chat/completions 200 rule=#2 prompt='what is the capital?'",
            "POST /v1/chat/completions 200 rule=my-rule prompt='mine'",
        ]
    )
