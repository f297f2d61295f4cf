"""Property: random rule files and random edit sequences round-trip through the file.

load -> edit (the commands the panel and the admin API use) -> write -> load gives the edited model,
and every entry the edit did not touch stays as it was.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from mockllm_tui.rules.commands import (
    RuleError,
    add_rule,
    delete_rule,
    list_rules,
    move_rule,
    update_rule,
)
from mockllm_tui.rules.fileio import read_document
from mockllm_tui.rules.matcher import RuleSet
from mockllm_tui.rules.model import RuleSpec
from mockllm_tui.rules.validate import parse_rule
from tests.conftest import make_store

ALPHABET = st.characters(codec="utf-8", categories=("L", "N", "Zs"), include_characters="'\":#-?!.,é")
TEXT = st.text(ALPHABET, min_size=1, max_size=16).filter(lambda s: s.strip() and s.strip().lower() != "default")

MATCHES = st.one_of(
    st.builds(lambda t: {"exact": t}, TEXT),
    st.builds(lambda t: {"contains": t}, TEXT),
    st.builds(lambda t, m: {"contains": t, "model": m}, TEXT, st.sampled_from(["gpt-4o*", "claude-*"])),
    st.sampled_from([{"regex": "^say (?P<w>\\w+)"}, {"regex": "[0-9]+"}, {"system": "pirate"}]),
    st.builds(lambda t: {"tool_result": t}, st.sampled_from(["get_weather", "lookup"])),
    st.just({}),
)
ANSWERS = st.one_of(
    st.builds(lambda r: {"reply": r}, TEXT),
    st.builds(lambda rs: {"replies": rs}, st.lists(TEXT, min_size=1, max_size=3)),
    st.builds(lambda n, a: {"tool_calls": [{"name": n, "arguments": {"q": a}}]}, st.sampled_from(["f", "g"]), TEXT),
    st.builds(lambda s, m: {"error": {"status": s, "message": m}}, st.sampled_from([429, 500, 529]), TEXT),
)


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {"match": draw(MATCHES), **draw(ANSWERS)}
    if draw(st.booleans()):
        data["name"] = draw(TEXT)
    if draw(st.integers(0, 4)) == 0:
        data["latency_ms"] = draw(st.integers(0, 500))
    return data


SHORT = st.builds(lambda k, r: {"match": {"exact": k}, "reply": r}, TEXT, TEXT)
ANY_RULE = st.one_of(rules(), SHORT)
EDITS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), ANY_RULE, st.one_of(st.none(), st.integers(0, 12))),
        st.tuples(st.just("update"), st.integers(0, 50), ANY_RULE),
        st.tuples(st.just("delete"), st.integers(0, 50)),
        st.tuples(st.just("move"), st.integers(0, 50), st.integers(0, 12)),
    ),
    min_size=1,
    max_size=5,
)


def initial_text(rich: list[dict[str, Any]], short: dict[str, str]) -> str:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    out.write("# a random responses file\n")
    data: dict[str, Any] = {}
    if rich:
        data["rules"] = rich
    if short:
        data["responses"] = short
    data["defaults"] = {"unknown_response": "nope"}
    yaml.dump(data, out)
    return out.getvalue()


def snapshot(store: Any) -> list[tuple[int, RuleSpec]]:
    return [(v.id, v.spec) for v in list_rules(store)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rich=st.lists(rules(), max_size=4),
    short=st.dictionaries(TEXT, TEXT, max_size=4),
    edits=EDITS,
)
def test_random_edits_round_trip(rich: list[dict[str, Any]], short: dict[str, str], edits: list[Any]) -> None:
    folded = {k.strip().lower() for k in short}
    if len(folded) != len(short):
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "responses.yml"
        path.write_text(initial_text(rich, short))
        store = make_store(path)
        assert store.file_error is None, store.file_error
        for edit in edits:
            before = snapshot(store)
            text_before = path.read_text()
            ids = [rid for rid, _ in before]
            kind = edit[0]
            try:
                if kind == "add":
                    result = add_rule(store, edit[1], index=edit[2])
                    assert result.rule is not None
                    touched = result.rule.id
                    assert result.rule.spec == parse_rule(edit[1])
                elif not ids:
                    continue
                elif kind == "update":
                    touched = ids[edit[1] % len(ids)]
                    result = update_rule(store, touched, edit[2])
                    assert result.rule is not None and result.rule.spec == parse_rule(edit[2])
                elif kind == "delete":
                    touched = ids[edit[1] % len(ids)]
                    delete_rule(store, touched)
                    assert touched not in [rid for rid, _ in snapshot(store)]
                else:
                    touched = ids[edit[1] % len(ids)]
                    result = move_rule(store, touched, edit[2])
                    assert result.rule is not None
                    if result.persisted:
                        assert result.rule.index == min(edit[2], len(ids) - 1)
            except RuleError:
                assert snapshot(store) == before and path.read_text() == text_before
                continue
            # the file, loaded fresh, holds exactly what is served
            doc, _ = read_document(path)
            ruleset = store.rules
            assert isinstance(ruleset, RuleSet)
            assert doc.model.entries == ruleset.model.entries
            assert doc.model.defaults == ruleset.model.defaults
            # nothing else changed: the other rules keep their content and relative order
            after = snapshot(store)
            others_before = [(rid, spec) for rid, spec in before if rid != touched]
            others_after = [(rid, spec) for rid, spec in after if rid != touched]
            if kind == "move":
                assert sorted(others_after, key=lambda p: p[0]) == sorted(others_before, key=lambda p: p[0])
            else:
                assert others_after == others_before
        assert path.read_text().startswith("# a random responses file\n")
