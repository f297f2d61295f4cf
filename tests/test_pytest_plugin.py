"""The pytest plugin, driven as users drive it: pytester runs small test files in a fresh pytest process
(the plugin loads from its entry point) with the real SDKs, and we check their outcomes and output."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CASES = Path(__file__).parent / "data" / "plugin"
INI = """
[pytest]
addopts = --strict-markers -p no:cacheprovider -p no:randomly -p no:textual-snapshot -p no:syrupy -p no:hypothesispytest
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""
PROBE = re.compile(r"probe: listens=(?P<listens>\[.*\]) loaded=(?P<loaded>\[.*\])")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A user's project folder, in an environment with no mock settings of its own."""
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER"):
        monkeypatch.delenv(name, raising=False)
    return pytester


def copy(project: pytest.Pytester, source: str, target: str) -> None:
    """One of the case files, into the project."""
    (project.path / target).write_text((CASES / source).read_text())


def probe(result: pytest.RunResult) -> tuple[list[tuple[str, int]], list[str]]:
    """What listen_probe.py saw: the sockets that listened, and which server modules were loaded."""
    found = PROBE.search(result.stdout.str())
    assert found is not None, result.stdout.str()
    return ast.literal_eval(found["listens"]), ast.literal_eval(found["loaded"])


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_every_method_with_the_real_sdks(project: pytest.Pytester, workers: list[str]) -> None:
    project.makeini(INI + "mockllm_responses = base.yml\n")
    for name in ("base.yml", "other.yml"):
        copy(project, name, name)
    copy(project, "api_cases.py", "test_api.py")
    result = project.runpytest_subprocess(*workers, "-rA", timeout=120)
    result.assert_outcomes(passed=19, failed=2, errors=0)
    if workers:
        result.stdout.fnmatch_lines(["*2 workers*"])
    result.stdout.fnmatch_lines(
        [
            "*_ test_strict_fails_the_test_once _*",
            "mockllm strict mode: 2 request(s) matched no rule:",
            "  - openai gpt-4o: last user message 'tell me a joke'; nearest: weather-rule (contains: 'weather' is not "
            "in 'tell me a joke'); base-hello (exact: differs at character 1: 'tell me a joke' vs 'hello')",
            "  - anthropic claude-sonnet-4-6: last user message 'another joke'; *",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_zz_a_failing_test_lists_its_requests _*",
            "*AssertionError: failing on purpose*",
            "*- mockllm requests -*",
            "POST /v1/chat/completions 200 rule=base-hello prompt='hello'",
            "POST /v1/chat/completions 200 rule=- prompt='what is in the report?'",
            "    nearest: base-hello (exact: differs at character 1: 'what is in the report?' vs 'hello')",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*- mockllm requests -*",
            "POST /v1/chat/completions 404 rule=- prompt='tell me a joke'",
            "POST /v1/messages 404 rule=- prompt='another joke'",
        ]
    )
    # Passing tests get no section: one for each failed test.
    assert result.stdout.str().count("- mockllm requests -") == 2


def test_a_strict_failure_is_reported_once_as_the_tests_own(project: pytest.Pytester) -> None:
    project.makeini(INI + "mockllm_responses = base.yml\n")
    copy(project, "base.yml", "base.yml")
    copy(project, "strict_cases.py", "test_strict.py")
    result = project.runpytest_subprocess("-rA", timeout=120)
    result.assert_outcomes(passed=1, failed=2, errors=0)
    out = result.stdout.str()
    assert "at teardown" not in out and "ERROR" not in out
    # the SDK's own error, then which request matched no rule
    result.stdout.fnmatch_lines(
        [
            "*_ test_the_sdk_raises_on_the_404 _*",
            "*openai.NotFoundError*no rule matched*",
            "*- mockllm strict mode -*",
            "mockllm strict mode: 1 request(s) matched no rule:",
            "  - openai gpt-4o: last user message 'tell me a joke'; nearest: weather-rule (contains: 'weather' is not "
            "in 'tell me a joke'); base-hello (exact: differs at character 1: 'tell me a joke' vs 'hello')",
            "*- mockllm requests -*",
            "POST /v1/chat/completions 200 rule=weather-rule prompt='weather?'",
            "POST /v1/chat/completions 404 rule=- prompt='tell me a joke'",
        ]
    )
    # a test whose call passed (it caught the 404) fails with the message as its reason
    result.stdout.fnmatch_lines(
        [
            "*_ test_the_404_is_caught _*",
            "mockllm strict mode: 1 request(s) matched no rule:",
            "  - openai gpt-4o: last user message 'a caught joke'; nearest: base-hello (exact: differs at character 1: "
            "'a caught joke' vs 'hello')",
        ]
    )
    result.stdout.fnmatch_lines(["FAILED test_strict.py::test_the_404_is_caught - Failed: mockllm strict mode*"])
    summary = [line for line in result.outlines if line.startswith(("FAILED", "ERROR", "PASSED"))]
    assert sorted(line.split(" ")[0] + " " + line.split(" ")[1] for line in summary) == [
        "FAILED test_strict.py::test_the_404_is_caught",
        "FAILED test_strict.py::test_the_sdk_raises_on_the_404",
        "PASSED test_strict.py::test_strict_and_every_request_matches",
    ]


def test_async_tests_and_one_server_per_session(project: pytest.Pytester) -> None:
    project.makeini(INI)
    (project.path / "responses.yml").write_text("responses:\n  weather?: from a stray responses.yml\n")
    copy(project, "listen_probe.py", "conftest.py")
    copy(project, "async_cases.py", "test_async.py")
    result = project.runpytest_subprocess(timeout=120)
    result.assert_outcomes(passed=4)
    listens, _ = probe(result)
    assert len(set(listens)) == 1  # one server for the session (uvicorn calls listen() again on our socket)
    host, port = listens[0]
    assert host == "127.0.0.1" and port > 0


def test_a_session_that_never_asks_for_the_fixture_opens_no_port(project: pytest.Pytester) -> None:
    project.makeini(INI + "mockllm_responses = base.yml\n")
    copy(project, "base.yml", "base.yml")
    copy(project, "listen_probe.py", "conftest.py")
    copy(project, "idle_cases.py", "test_idle.py")
    result = project.runpytest_subprocess(timeout=120)
    result.assert_outcomes(passed=2)
    assert probe(result) == ([], [])


# -- the pieces, in-process --------------------------------------------------------------------------


def test_load_errors_name_the_source(tmp_path: Path) -> None:
    from mockllm_tui.rules.model import RulesFileError
    from mockllm_tui.testing.rules import read_rules

    with pytest.raises(RulesFileError, match=r"<yaml text>:2: rule 1: give a 'reply'"):
        read_rules("rules:\n  - name: half\n    match: {contains: x}\n", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no responses file at .*missing\.yml"):
        read_rules("missing.yml", tmp_path)
    (tmp_path / "plain").write_text("responses:\n  a: b\n")
    assert len(read_rules("plain", tmp_path).responses) == 1  # an existing file, even without .yml
    assert read_rules("responses: {a: b}", tmp_path).responses[0].spec.reply == "b"


def test_the_default_key_is_a_fallback_that_strict_mode_refuses(tmp_path: Path) -> None:
    from mockllm_tui.core.conversation import Conversation, Message, NoRuleMatched
    from mockllm_tui.testing.rules import PerTestRules, Unmatched, read_rules

    base = read_rules("responses:\n  hi: there\n  default: the file's fallback\n", tmp_path)
    asked = Conversation("openai", "chat", "gpt-4o", [Message("user", "anything")])
    unmatched: list[Unmatched] = []
    loose = PerTestRules(base, [], strict=False, unmatched=unmatched).choose(asked)
    assert (loose.text, loose.rule, unmatched) == ("the file's fallback", None, [])
    with pytest.raises(NoRuleMatched) as refused:
        PerTestRules(base, [], strict=True, unmatched=unmatched).choose(asked)
    assert refused.value.status == 404
    reason = "exact: differs at character 1: 'anything' vs 'hi'"
    assert [(u.prompt, u.nearest) for u in unmatched] == [("anything", (("#1", reason),))]


# -- agent-grade matching: dynamic replies, a shared server --------------------------------------------


def test_dynamic_replies_agent_matchers_and_scenarios(project: pytest.Pytester) -> None:
    project.makeini(INI + "mockllm_responses = agent.yml\n")
    copy(project, "agent.yml", "agent.yml")
    copy(project, "agent_cases.py", "test_agent.py")
    result = project.runpytest_subprocess("-rA", timeout=120)
    result.assert_outcomes(passed=5, failed=2, errors=0)
    result.stdout.fnmatch_lines(
        [
            "*_ test_zz_a_function_that_raises_fails_the_test _*",
            "mockllm: a rule's function raised while answering:",
            "  - broken raised KeyError: 'city'",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_strict_names_the_nearest_rule _*",
            "mockllm strict mode: 2 request(s) matched no rule:",
            "  - openai gpt-4o-mini: last user message 'weather?'; nearest: test rule 1 (contains 'weather' · model "
            "gpt-4o) (model: 'gpt-4o-mini' is not 'gpt-4o'); two steps step 1 (contains: 'start' is not in 'weather?')",
            "*- mockllm requests -*",
            "POST /v1/chat/completions 404 rule=- prompt='weather?'",
            "    nearest: test rule 1 (contains 'weather' · model gpt-4o) (model: 'gpt-4o-mini' is not 'gpt-4o')",
        ]
    )


def test_a_shared_server_under_xdist_gives_each_test_a_session(
    project: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import ServerThread, make_store

    path = tmp_path / "shared.yml"
    path.write_text(
        "rules:\n  - {match: {contains: count}, replies: [one, two, three]}\n"
        + (CASES / "agent.yml").read_text()
    )
    with ServerThread(make_store(path)) as shared:
        monkeypatch.setenv("MOCKLLM_URL", shared.root)
        project.makeini(INI)
        copy(project, "shared_cases.py", "test_shared.py")
        copy(project, "listen_probe.py", "conftest.py")
        result = project.runpytest_subprocess("-n", "2", "-rA", timeout=120)
        result.assert_outcomes(passed=7)
        result.stdout.fnmatch_lines(["*2 workers*"])
        listens, _ = probe(result)
        assert listens == []  # the plugin started no server of its own
        sessions = {e.session for e in shared.store.journal()}
        assert len(sessions) == 6 and None not in sessions
        assert shared.store.knobs.stream_chunk != "char"
