"""A user's tests against a shared mock (MOCKLLM_URL), run under -n 2 by test_pytest_plugin.py: each
test works in a session of its own, so sequences, fail_next, knobs, rules and scenarios never mix."""

import httpx
import openai
import pytest


def ask(client, text):
    return (
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])
        .choices[0]
        .message.content
    )


@pytest.mark.parametrize("n", range(6))
def test_each_test_has_its_own_session(mockllm, n):
    assert mockllm.session and mockllm.headers["x-mock-session"] == mockllm.session
    client = mockllm.openai_client(max_retries=0)
    mockllm.rule(contains="mine", reply=f"test {n}")
    mockllm.fail_next(503)
    with pytest.raises(openai.InternalServerError):
        ask(client, "count")
    # The server's file: a sequence and a scenario, both at their start in this session.
    assert [ask(client, "count") for _ in range(2)] == ["two", "three"]
    assert [ask(client, t) for t in ("start", "next")] == ["step one", "step two"]
    assert ask(client, "mine") == f"test {n}"
    mockllm.set(stream_chunk="char")
    requests = mockllm.requests
    assert [r.status for r in requests] == [503, 200, 200, 200, 200, 200]
    assert {r.session for r in requests} == {mockllm.session}
    assert requests[-1].prompt == "mine"
    settings = httpx.get(mockllm.url + "/_mock/settings").json()
    assert settings["effective"]["stream_chunk"] != "char"  # the shared knobs are untouched


def test_a_function_reply_needs_the_plugins_own_server(mockllm):
    with pytest.raises(RuntimeError, match="needs the plugin's own server"):
        mockllm.rule(contains="x", reply=lambda request: "no")
