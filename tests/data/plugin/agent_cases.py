"""A user's agent tests (run by test_pytest_plugin.py): dynamic replies made by functions of the
request, called in the test's process, the new matchers, strict mode's nearest rules, and scenarios
reset between tests (the ini's base file has one)."""

import json

import anthropic
import openai
import pytest

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
seen = []


def ask(client, messages, model="gpt-4o", **kw):
    return client.chat.completions.create(model=model, messages=messages, **kw).choices[0].message


def test_a_dynamic_reply_sees_the_request(mockllm):
    def echo(request):
        seen.append(request)
        return f"{request.provider} {request.model} heard {request.prompt!r} via {request.path}"

    mockllm.rule(contains="hello", reply=echo)
    client = mockllm.openai_client()
    assert ask(client, [{"role": "user", "content": "hello there"}]).content == (
        "openai gpt-4o heard 'hello there' via /v1/chat/completions"
    )
    claude = mockllm.anthropic_client()
    out = claude.messages.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "hello"}]
    )
    assert out.content[0].text == "anthropic claude-sonnet-4-6 heard 'hello' via /v1/messages"
    assert seen[0].body["messages"][0]["content"] == "hello there" and "user-agent" in seen[0].headers


def test_dynamic_tool_calls_drive_a_loop_to_its_end(mockllm):
    def weather_call(request):
        city = request.prompt.rsplit(" ", 1)[-1]
        return [{"name": "get_weather", "arguments": {"city": city}}]

    mockllm.rule(tool_result={"name": "get_weather", "contains": "sunny"}, reply=lambda r: "Pack sunglasses.")
    mockllm.rule(contains="weather in", turn=1, tools="get_weather", tool_calls=weather_call)
    client = mockllm.openai_client()
    messages = [{"role": "user", "content": "weather in Lyon"}]
    for _ in range(4):
        message = ask(client, messages, tools=TOOLS)
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            break
        for call in message.tool_calls:
            assert json.loads(call.function.arguments) == {"city": "Lyon"}
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    assert messages[-1]["content"] == "Pack sunglasses."
    assert [r.rule for r in mockllm.requests] == [
        "test rule 2 (contains 'weather in' · turn 1 · tools get_weather)",
        "test rule 1 (tool_result get_weather contains 'sunny')",
    ]


def test_header_matcher_and_the_session_headers(mockllm):
    mockllm.rule(header={"x-app-tag": "checkout"}, reply="tagged")
    client = mockllm.openai_client(default_headers={"x-app-tag": "checkout"})
    assert ask(client, [{"role": "user", "content": "anything"}]).content == "tagged"
    assert mockllm.session is None and mockllm.headers == {}


@pytest.mark.mockllm(strict=True)
def test_strict_names_the_nearest_rule(mockllm):
    mockllm.rule(contains="weather", model="gpt-4o", reply="Sunny")
    with pytest.raises(openai.NotFoundError) as info:
        ask(mockllm.openai_client(), [{"role": "user", "content": "weather?"}], model="gpt-4o-mini")
    assert info.value.code == "no_rule_matched"
    assert "(model: 'gpt-4o-mini' is not 'gpt-4o')" in info.value.message
    with pytest.raises(anthropic.NotFoundError):
        mockllm.anthropic_client().messages.create(
            model="claude-sonnet-4-6", max_tokens=9, messages=[{"role": "user", "content": "x"}]
        )
    lifted = ask(mockllm.openai_client(), [{"role": "user", "content": "x"}], extra_headers={"x-mock-strict": "false"})
    assert lifted.content == "This is a mock response."  # the header lifts strict mode for one request
    # Strict mode then fails the test, naming the nearest rules.


@pytest.mark.parametrize("run", [1, 2])
def test_scenarios_start_at_step_one_in_every_test(mockllm, run):
    client = mockllm.openai_client()
    said = [ask(client, [{"role": "user", "content": t}]).content for t in ("start", "next", "next")]
    assert said == ["step one", "step two", "This is a mock response."]


def test_zz_a_function_that_raises_fails_the_test(mockllm):
    def broken(request):
        raise KeyError("city")

    mockllm.rule(contains="boom", reply=broken)
    with pytest.raises(openai.InternalServerError, match="the rule's function raised KeyError"):
        ask(mockllm.openai_client(max_retries=0), [{"role": "user", "content": "boom"}])
