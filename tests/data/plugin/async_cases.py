"""Async tests (pytest-asyncio) with the async SDK clients; no ini option, and a stray responses.yml."""

import pytest

CLAUDE = "claude-sonnet-4-6"


async def test_async_openai(mockllm):
    mockllm.rule(contains="weather", reply="Sunny and warm")
    client = mockllm.async_openai_client()
    out = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "weather?"}])
    assert out.choices[0].message.content == "Sunny and warm"
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "weather?"}], stream=True
    )
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == "Sunny and warm"
    assert [r.stream for r in mockllm.requests] == [False, True]
    await client.close()


async def test_async_anthropic(mockllm):
    client = mockllm.async_anthropic_client()
    out = await client.messages.create(model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "weather?"}])
    assert out.content[0].text == "This is a mock response."  # neither the last test's rule nor responses.yml
    mockllm.fail_next(status=529)
    async with client.messages.stream(
        model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "hello"}]
    ) as stream:
        assert await stream.get_final_text() == "This is a mock response."
    assert [r.status for r in mockllm.requests] == [200, 529, 200]
    assert {r.provider for r in mockllm.requests} == {"anthropic"}
    await client.close()


def test_sync_after_async(mockllm):
    assert mockllm.requests == []


@pytest.mark.mockllm(strict=True)
async def test_async_strict(mockllm):
    mockllm.rule(contains="hi", reply="hello")
    out = await mockllm.async_openai_client().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert out.choices[0].message.content == "hello"
