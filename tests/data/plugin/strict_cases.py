"""A user's strict-mode tests (run by test_pytest_plugin.py): each failing test must be reported once."""

import openai
import pytest


def ask(client: openai.OpenAI, prompt: str) -> str:
    out = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
    return out.choices[0].message.content or ""


@pytest.mark.mockllm(strict=True)
def test_the_sdk_raises_on_the_404(mockllm):
    mockllm.rule(contains="weather", reply="Sunny", name="weather-rule")
    assert ask(mockllm.openai_client(), "weather?") == "Sunny"
    ask(mockllm.openai_client(), "tell me a joke")


@pytest.mark.mockllm(strict=True)
def test_the_404_is_caught(mockllm):
    with pytest.raises(openai.NotFoundError):
        ask(mockllm.openai_client(), "a caught joke")


@pytest.mark.mockllm(strict=True)
def test_strict_and_every_request_matches(mockllm):
    mockllm.rule(contains="weather", reply="Sunny")
    assert ask(mockllm.openai_client(), "weather?") == "Sunny"
