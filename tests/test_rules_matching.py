"""Rules through the real SDKs: mockllm's files, every matcher and template, on chat, responses and messages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anthropic
import openai
import pytest
from openai.types.chat import ChatCompletion

from mockllm_tui.rules import check_file, load_initial
from mockllm_tui.rules.commands import list_rules, try_prompt
from tests.conftest import Live

REPO_EXAMPLE = Path(__file__).parent.parent / "responses.yml"

# mockllm's example.responses.yml and its README quick start, as published.
MOCKLLM_EXAMPLE = (Path(__file__).parent / "data" / "mockllm_example.responses.yml").read_text()

MOCKLLM_QUICKSTART = """responses:
  "What is the capital of France?": "Paris is the capital of France."
  "default": "This is a mock response."
"""


def oai(live: Live) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=live.openai_url, api_key="test", max_retries=0)


def claude(live: Live) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=live.anthropic_url, api_key="test", max_retries=0)


async def chat(live: Live, text: str, model: str = "gpt-4o", **kwargs: object) -> ChatCompletion:
    messages = kwargs.pop("messages", None) or [{"role": "user", "content": text}]
    return await oai(live).chat.completions.create(model=model, messages=messages, **kwargs)  # type: ignore[arg-type, call-overload, no-any-return]


async def chat_text(live: Live, text: str, model: str = "gpt-4o", **kwargs: object) -> str:
    return (await chat(live, text, model, **kwargs)).choices[0].message.content or ""


@pytest.fixture
def example(live: Live, tmp_path: Path) -> Live:
    """The live server serving a copy of the repository's example responses.yml."""
    path = tmp_path / "responses.yml"
    shutil.copy(REPO_EXAMPLE, path)
    load_initial(live.store, path)
    assert live.store.file_error is None
    return live


# -- mockllm's files -------------------------------------------------------------------------------


async def test_mockllm_example_answers_as_mockllm(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text(MOCKLLM_EXAMPLE)
    load_initial(live.store, path)
    assert live.store.file_error is None
    assert await chat_text(live, "what colour is the sky?") == (
        "The sky is blue during a clear day due to a phenomenon called Rayleigh scattering."
    )
    assert await chat_text(live, "  Tell me a JOKE \n") == "Why don't programmers like nature? It has too many bugs!"
    assert await chat_text(live, "what is 2+2?") == "I don't know the answer to that. This is a mock response."
    stream = await oai(live).chat.completions.create(
        model="mock-llm", messages=[{"role": "user", "content": "who is the president?"}], stream=True
    )
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces).startswith("This is a mock response. In a production environment")


async def test_mockllm_quickstart_default_key(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text(MOCKLLM_QUICKSTART)
    load_initial(live.store, path)
    assert await chat_text(live, "What is the capital of France?") == "Paris is the capital of France."
    assert await chat_text(live, "what is the capital of france?") == "Paris is the capital of France."
    assert await chat_text(live, "anything else") == "This is a mock response."
    rows = list_rules(live.store)
    assert [r.kind for r in rows] == ["short", "default"]


def test_check_accepts_mockllm_files(tmp_path: Path) -> None:
    import io

    path = tmp_path / "example.responses.yml"
    path.write_text(MOCKLLM_EXAMPLE)
    out = io.StringIO()
    assert check_file(path, out) == 0
    assert "lag_enabled" in out.getvalue() and "ignored" in out.getvalue()


# -- every matcher and template through chat ----------------------------------------------------------


async def test_exact_contains_sequence_and_short_form(example: Live) -> None:
    assert await chat_text(example, "HELLO ") == "Hello! This is mockllm-tui."
    assert [await chat_text(example, "count") for _ in range(4)] == ["one", "two", "three", "three"]
    assert await chat_text(example, "no rule for this") == "This is a mock response."


async def test_regex_groups_system_and_model_templates(example: Live) -> None:
    assert await chat_text(example, "translate good morning") == "Traduction: good morning"
    text = await chat_text(
        example,
        "",
        model="my-model",
        messages=[{"role": "system", "content": "You are a PIRATE."}, {"role": "user", "content": "ahoy"}],
    )
    assert text == "Arr, ahoy (said my-model)"


async def test_model_glob_and_provider_and_tool_result(example: Live) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    first = await chat(example, "what's the weather?", model="gpt-4o-mini", tools=tools)
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert first.choices[0].finish_reason == "tool_calls"
    follow = await chat(
        example,
        "",
        model="gpt-4o-mini",
        tools=tools,
        messages=[
            {"role": "user", "content": "what's the weather?"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear"}'},
        ],
    )
    assert follow.choices[0].message.content == "It is sunny in Paris, 22 °C."
    # the model glob does not match another model: the catch-all answers
    assert await chat_text(example, "what's the weather?", model="claude-x") == "This is a mock response."


async def test_rule_error_and_triggers(example: Live) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await chat(example, "please explode now")
    assert caught.value.status_code == 529
    assert "Overloaded" in str(caught.value.body)
    with pytest.raises(openai.RateLimitError) as limited:
        await chat(example, 'raise error {"code": 429, "message": "Slow down", "type": "rate_limit_error"}')
    assert "Slow down" in str(limited.value.body)
    tools = [{"type": "function", "function": {"name": "calculate", "parameters": {"type": "object"}}}]
    done = await chat(example, "call tool 'calculate' with '{\"expression\": \"6*7\"}'", tools=tools)
    call = done.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "calculate"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"expression": "6*7"}  # type: ignore[union-attr]


async def test_mirror_and_unknown_response(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text('responses:\n  "hi": "hello"\ndefaults:\n  mirror: true\n')
    load_initial(live.store, path)
    assert await chat_text(live, "echo me please") == "echo me please"
    path.write_text('responses:\n  "hi": "hello"\ndefaults:\n  unknown_response: "no idea"\n')
    load_initial(live.store, path)
    assert await chat_text(live, "echo me please") == "no idea"


async def test_journal_names_the_rule_and_hits_count(example: Live) -> None:
    import httpx

    await chat_text(example, "translate x")
    await chat_text(example, "translate y")
    async with httpx.AsyncClient(base_url=example.root) as client:
        journal = (await client.get("/_mock/journal?limit=2")).json()["data"]
        rules = (await client.get("/_mock/rules")).json()["data"]
    assert [e["rule"] for e in journal] == ["translate", "translate"]
    translate = next(r for r in rules if r["name"] == "translate")
    assert translate["hits"] == 2
    assert try_prompt(example.store, "translate z").label == "translate"
    assert next(r for r in list_rules(example.store) if r.name == "translate").hits == 2


# -- the same rules through the Responses API and Anthropic's Messages ------------------------------


async def test_responses_api(example: Live) -> None:
    client = oai(example)
    reply = await client.responses.create(model="gpt-4o", input="translate bonjour")
    assert reply.output_text == "Traduction: bonjour"
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    asked = await client.responses.create(model="gpt-4o", input="weather please", tools=tools)  # type: ignore[arg-type]
    call = next(item for item in asked.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    follow = await client.responses.create(
        model="gpt-4o",
        tools=tools,  # type: ignore[arg-type]
        input=[
            {"role": "user", "content": "weather please"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "clear"},
        ],
    )
    assert follow.output_text == "It is sunny in Paris, 22 °C."
    with pytest.raises(openai.APIStatusError) as caught:
        await client.responses.create(model="gpt-4o", input="explode")
    assert caught.value.status_code == 529


async def test_anthropic_messages(example: Live) -> None:
    client = claude(example)
    msg = await client.messages.create(
        model="claude-test", max_tokens=100, messages=[{"role": "user", "content": "translate hola"}]
    )
    assert msg.content[0].text == "Traduction: hola"  # type: ignore[union-attr]
    pirate = await client.messages.create(
        model="claude-x", max_tokens=100, system="a pirate", messages=[{"role": "user", "content": "hi"}]
    )
    assert pirate.content[0].text == "Arr, hi (said claude-x)"  # type: ignore[union-attr]
    with pytest.raises(anthropic.APIStatusError) as caught:
        await client.messages.create(
            model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "explode"}]
        )
    assert caught.value.status_code == 529
    assert "Overloaded" in str(caught.value.body)
    # provider matcher: the anthropic-only rule answers here, not on the OpenAI side
    poem = await client.messages.create(
        model="claude-x", max_tokens=200, messages=[{"role": "user", "content": "a poem please"}]
    )
    assert poem.content[0].text.startswith("Roses are red")  # type: ignore[union-attr]
    assert await chat_text(example, "a poem please") == "This is a mock response."


async def test_anthropic_tool_result_turn(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text(
        "rules:\n"
        "  - match: {tool_result: lookup}\n    reply: 'found it'\n"
        "  - match: {contains: find}\n    tool_calls: [{name: lookup, arguments: {q: '{{prompt}}'}}]\n"
    )
    load_initial(live.store, path)
    client = claude(live)
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    first = await client.messages.create(
        model="claude-x",
        max_tokens=50,
        tools=tools,
        messages=[{"role": "user", "content": "find cats"}],  # type: ignore[arg-type]
    )
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "lookup" and use.input == {"q": "find cats"}
    second = await client.messages.create(
        model="claude-x",
        max_tokens=50,
        tools=tools,  # type: ignore[arg-type]
        messages=[
            {"role": "user", "content": "find cats"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},  # type: ignore[misc]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "3 cats"}]},
        ],
    )
    assert second.content[0].text == "found it"  # type: ignore[union-attr]
