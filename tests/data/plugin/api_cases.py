"""A user's test file: every method of the `mockllm` fixture, with the real SDKs (run by test_pytest_plugin.py).

The session's base rules are base.yml (the ini option). Two tests here fail on purpose: the strict one
(once, though its call passed), and the last one, to show the report section.
"""

import json
import os
import re
import sys
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

CLAUDE = "claude-sonnet-4-6"


def ask(client: openai.OpenAI, prompt: str, model: str = "gpt-4o", **kw: object) -> str:
    out = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], **kw)
    return out.choices[0].message.content or ""


def ask_claude(client: anthropic.Anthropic, prompt: str) -> str:
    out = client.messages.create(model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": prompt}])
    return "".join(block.text for block in out.content if block.type == "text")


def test_urls(mockllm):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", mockllm.url)
    assert mockllm.openai_base_url == mockllm.url + "/v1"
    assert mockllm.anthropic_base_url == mockllm.url
    assert httpx.get(mockllm.url + "/health").json() == {"status": "ok", "state": "memory"}


def test_the_ini_file_is_the_base(mockllm):
    client = mockllm.openai_client()
    assert ask(client, "hello") == "Hello from the file"
    assert ask(client, "something else") == "file fallback"
    assert [r.rule for r in mockllm.requests] == ["base-hello", None]


def test_rules_come_first_in_the_order_added(mockllm):
    client = mockllm.openai_client()
    mine = mockllm.rule(exact="hello", reply="from the test", name="mine")
    later = mockllm.rule(contains="hel", reply="later rule")
    assert mine.name == "mine"
    assert later.name == "test rule 2 (contains 'hel')"
    assert ask(client, "hello") == "from the test"
    assert ask(client, "help") == "later rule"
    assert (mine.hits, later.hits) == (1, 1)
    mockllm.rule(contains="count", replies=["one", "two"])
    assert [ask(client, "count") for _ in range(3)] == ["one", "two", "two"]
    mockllm.rule(regex=r"my name is (?P<who>\w+)", reply="Hi {{who}}")
    assert ask(client, "my name is Ada") == "Hi Ada"
    mockllm.rule(system="pirate", reply="Arr")
    out = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "system", "content": "You are a pirate"}, {"role": "user", "content": "hi"}],
    )
    assert out.choices[0].message.content == "Arr"
    mockllm.rule(model="gpt-4o-mini", reply="mini model")
    assert ask(client, "anything", model="gpt-4o-mini") == "mini model"
    mockllm.rule(provider="anthropic", reply="anthropic only")
    assert ask_claude(mockllm.anthropic_client(), "anything") == "anthropic only"
    assert ask(client, "anything") == "file fallback"
    with pytest.raises(ValueError, match="give a 'reply'"):
        mockllm.rule(contains="no answer")


def test_tool_calls_and_tool_results(mockllm):
    mockllm.rule(tool_result="get_weather", reply="It is 18C in Paris", name="after tool")
    mockllm.rule(contains="weather", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}], name="call")
    client = mockllm.openai_client()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages: list[dict[str, object]] = [{"role": "user", "content": "weather in Paris?"}]
    first = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
        }
    )
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18C"})
    second = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    assert second.choices[0].message.content == "It is 18C in Paris"
    assert [r.rule for r in mockllm.requests] == ["call", "after tool"]


def test_error_latency_and_speed_rules(mockllm):
    mockllm.rule(contains="boom", error={"status": 529, "message": "Overloaded"})
    with pytest.raises(anthropic.APIStatusError) as info:
        ask_claude(mockllm.anthropic_client(max_retries=0), "boom")
    assert info.value.status_code == 529
    assert "Overloaded" in str(info.value)
    mockllm.rule(contains="slow", reply="eventually", latency_ms=150)
    started = time.perf_counter()
    assert ask(mockllm.openai_client(), "slow") == "eventually"
    assert time.perf_counter() - started >= 0.15
    mockllm.rule(contains="paced", reply="one two three four five six seven eight nine ten", stream_speed=50)
    started = time.perf_counter()
    stream = mockllm.openai_client().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "paced"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "one two three four five six seven eight nine ten"
    assert time.perf_counter() - started >= 0.15


def test_load_a_path_or_yaml_text(mockllm, monkeypatch, tmp_path):
    client = mockllm.openai_client()
    monkeypatch.chdir(tmp_path)  # relative paths are the rootdir's, not the working folder's
    mockllm.rule(exact="ping", reply="the test's rule first")
    mockllm.load("other.yml")
    assert [ask(client, p) for p in ("ping", "pang", "hello")] == [
        "the test's rule first",
        "peng",
        "This is a mock response.",
    ]
    mockllm.load(Path("other.yml"))
    assert ask(client, "pang") == "peng"
    mockllm.load("responses:\n  hi: there\n")
    assert [ask(client, p) for p in ("hi", "pang")] == ["there", "This is a mock response."]
    custom = tmp_path / "custom.yml"
    custom.write_text("defaults:\n  unknown_response: custom fallback\n")
    mockllm.load(custom)
    assert ask(client, "zzz") == "custom fallback"


def test_fail_next(mockllm):
    client = mockllm.openai_client(max_retries=0)
    mockllm.fail_next(status=503, count=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            ask(client, "hello")
    assert ask(client, "hello") == "Hello from the file"
    assert [r.status for r in mockllm.requests] == [503, 503, 200]
    mockllm.fail_next()  # one 429, which the SDK retries on its own
    assert ask(mockllm.openai_client(), "hello") == "Hello from the file"
    assert [r.status for r in mockllm.requests][-2:] == [429, 200]
    mockllm.fail_next(status=500, mode="mid_stream")
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello"}], stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    assert mockllm.last_request.fault == "500 mid_stream (fail_next)"


def test_set_knobs_for_this_test(mockllm):
    mockllm.set(api_key="sk-right", latency_ms=100)
    with pytest.raises(openai.AuthenticationError):
        ask(mockllm.openai_client(max_retries=0), "hello")
    started = time.perf_counter()
    assert ask(mockllm.openai_client(api_key="sk-right"), "hello") == "Hello from the file"
    assert time.perf_counter() - started >= 0.1
    with pytest.raises(ValueError, match="latency_ms"):
        mockllm.set(latency_ms=-1)


def test_knobs_are_undone_after_the_test(mockllm):
    assert ask(mockllm.openai_client(max_retries=0), "hello") == "Hello from the file"


def test_what_the_app_sent(mockllm):
    assert mockllm.requests == [] and mockllm.last_request is None
    client = mockllm.openai_client(api_key="sk-visible")
    ask(client, "hello", temperature=0.5)
    sent = mockllm.last_request
    assert (sent.method, sent.path, sent.provider, sent.model) == ("POST", "/v1/chat/completions", "openai", "gpt-4o")
    assert (sent.status, sent.stream, sent.rule, sent.reply) == (200, False, "base-hello", "Hello from the file")
    assert sent.body["messages"] == [{"role": "user", "content": "hello"}]
    assert sent.body["temperature"] == 0.5
    assert sent.headers["authorization"] == "[redacted]"
    assert "sk-visible" not in str(sent.headers)
    with mockllm.anthropic_client().messages.stream(
        model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "hello"}]
    ) as stream:
        assert stream.get_final_text() == "Hello from the file"
    streamed = mockllm.last_request
    assert (streamed.provider, streamed.path) == ("anthropic", "/v1/messages")
    assert (streamed.stream, streamed.status) == (True, 200)
    assert streamed.reply == "Hello from the file"
    assert "[redacted]" in (streamed.headers.get("x-api-key"), streamed.headers.get("authorization"))
    assert "mockllm-test" not in str(streamed.headers)  # the SDK's (dummy) key
    assert [r.provider for r in mockllm.requests] == ["openai", "anthropic"]


def test_isolation_first(mockllm):
    mockllm.rule(exact="secret", reply="only in the first test")
    assert ask(mockllm.openai_client(), "secret") == "only in the first test"


def test_isolation_second_sees_neither_rules_nor_requests(mockllm):
    assert mockllm.requests == []
    assert ask(mockllm.openai_client(), "secret") == "file fallback"
    assert [r.rule for r in mockllm.requests] == [None]


def test_assert_all_rules_used(mockllm):
    client = mockllm.openai_client()
    mockllm.rule(exact="hello", reply="hi", name="used one")
    mockllm.rule(exact="never", reply="x", name="unused one")
    ask(client, "hello")
    with pytest.raises(AssertionError, match="'unused one'") as info:
        mockllm.assert_all_rules_used()
    assert "'used one'" not in str(info.value)
    ask(client, "never")
    mockllm.assert_all_rules_used()


def test_a_missing_sdk_is_a_one_line_error(mockllm, monkeypatch):
    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(ImportError) as info:
        mockllm.anthropic_client()
    assert "pip install anthropic" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.fixture
def no_keys(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


@pytest.fixture
def preset_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-preset")


def test_env_points_clients_built_from_the_environment(no_keys, mockllm_env):
    assert os.environ["OPENAI_BASE_URL"] == mockllm_env.openai_base_url
    assert os.environ["ANTHROPIC_BASE_URL"] == mockllm_env.anthropic_base_url
    assert ask(openai.OpenAI(), "hello") == "Hello from the file"
    assert ask_claude(anthropic.Anthropic(), "hello") == "Hello from the file"
    assert len(mockllm_env.requests) == 2


def test_env_keeps_a_key_that_is_set(preset_key, mockllm_env):
    assert os.environ["OPENAI_API_KEY"] == "sk-preset"
    assert os.environ["ANTHROPIC_API_KEY"]


def test_env_is_undone_after_the_test():
    assert "OPENAI_BASE_URL" not in os.environ
    assert "ANTHROPIC_BASE_URL" not in os.environ


@pytest.mark.mockllm(responses="other.yml")
def test_the_marker_replaces_the_base(mockllm):
    client = mockllm.openai_client()
    assert [ask(client, p) for p in ("ping", "hello")] == ["pong", "This is a mock response."]


@pytest.mark.mockllm(strict=True)
def test_strict_passes_when_every_request_matches_a_rule(mockllm):
    mockllm.rule(contains="weather", reply="Sunny")
    client = mockllm.openai_client()
    assert [ask(client, p) for p in ("weather?", "hello")] == ["Sunny", "Hello from the file"]


@pytest.mark.mockllm(strict=True)
def test_strict_fails_the_test_once(mockllm):
    mockllm.rule(contains="weather", reply="Sunny", name="weather-rule")
    with pytest.raises(openai.NotFoundError, match="no rule matched"):
        ask(mockllm.openai_client(), "tell me a joke")
    with pytest.raises(anthropic.NotFoundError) as info:
        ask_claude(mockllm.anthropic_client(), "another joke")
    assert info.value.body["error"]["type"] == "not_found_error"


def test_zz_a_failing_test_lists_its_requests(mockllm):
    ask(mockllm.openai_client(), "hello")
    ask(mockllm.openai_client(), "what is in the report?")
    raise AssertionError("failing on purpose")
