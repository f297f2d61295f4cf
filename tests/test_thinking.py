"""Thinking and reasoning with the real SDKs: Anthropic thinking blocks (signed, streamed as
thinking_delta and signature_delta), OpenAI reasoning items and reasoning token counts, the rules'
`thinking:` key, and the panel's detail pane."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response
from rich.console import Console

from mockllm_tui.core.tokens import count_tokens
from mockllm_tui.rules.commands import add_rule
from mockllm_tui.rules.model import RulesFileError
from mockllm_tui.rules.validate import parse_document
from mockllm_tui.tui.widgets.detail import describe_entry
from tests.conftest import Live, make_store, serving_file
from tests.openai_testkit import post_raw, sse_data
from tests.test_anthropic import MODEL, check_stream, stream_raw
from tests.test_anthropic import post as anthropic_post
from tests.test_limits import claude_sdk as sdk
from tests.test_openai_responses import EVENTS as RESPONSE_EVENTS
from tests.test_openai_responses import collapse

LONG = " ".join(["step"] * 3000)
THINKING_YML = f"""\
rules:
  - match: {{contains: "think hard"}}
    reply: "The answer is 42."
    thinking: "Six times seven is 42, so {{{{model}}}} says 42."
  - match: {{contains: "long thought"}}
    reply: "Done after a long thought."
    thinking: "{LONG}"
responses:
  default: "Plain answer."
"""
ENABLED = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture
async def thinking(tmp_path: Path) -> AsyncIterator[Live]:
    """The real server with rules that give thinking."""
    async with serving_file(tmp_path, THINKING_YML) as running:
        yield running


def claude(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 2048, "messages": [{"role": "user", "content": prompt}], **extra}


async def claude_message(live: Live, payload: dict[str, Any]) -> Message:
    response = await anthropic_post(live, "/v1/messages", payload)
    assert response.status_code == 200, response.text
    return Message.model_validate_json(response.content, strict=True)


# -- Anthropic ---------------------------------------------------------------------------------


async def test_anthropic_thinking_block_comes_first_with_a_signature(thinking: Live) -> None:
    message = await claude_message(thinking, claude("please think hard", thinking=ENABLED))
    assert [b.type for b in message.content] == ["thinking", "text"]
    block, text = message.content
    assert block.type == "thinking" and text.type == "text"
    assert block.thinking == f"Six times seven is 42, so {MODEL} says 42." and len(block.signature) > 40
    assert text.text == "The answer is 42."
    assert message.usage.output_tokens == count_tokens(block.thinking) + count_tokens(text.text)
    entry = thinking.store.journal()[-1]
    assert entry.thinking_text == block.thinking and entry.reply_text == text.text


async def test_anthropic_generated_thinking_and_none_unless_asked(thinking: Live) -> None:
    generated = await claude_message(thinking, claude("hello", thinking=ENABLED))
    assert generated.content[0].type == "thinking" and "hello" in generated.content[0].thinking
    for extra in ({}, {"thinking": {"type": "disabled"}}):
        plain = await claude_message(thinking, claude("please think hard", **extra))
        assert [b.type for b in plain.content] == ["text"]
    adaptive = await claude_message(thinking, claude("please think hard", thinking={"type": "adaptive"}))
    assert [b.type for b in adaptive.content] == ["thinking", "text"]


async def test_anthropic_budget_caps_the_thinking(thinking: Live) -> None:
    message = await claude_message(thinking, claude("long thought", max_tokens=1100, thinking=ENABLED))
    block, text = message.content
    assert block.type == "thinking" and count_tokens(block.thinking) == 1024
    assert text.type == "text" and count_tokens(text.text) <= 1100 - 1024
    assert message.usage.output_tokens <= 1100


async def test_anthropic_thinking_stream_events_are_strict(thinking: Live) -> None:
    whole = await claude_message(thinking, claude("please think hard", thinking=ENABLED))
    parsed = check_stream(await stream_raw(thinking, claude("please think hard", thinking=ENABLED)))
    starts = [e for e in parsed if e.type == "content_block_start"]
    assert [s.content_block.type for s in starts] == ["thinking", "text"]
    deltas = [e.delta for e in parsed if e.type == "content_block_delta" and e.index == 0]
    assert [d.type for d in deltas][-1] == "signature_delta"
    assert {d.type for d in deltas[:-1]} == {"thinking_delta"}
    assert "".join(d.thinking for d in deltas[:-1]) == whole.content[0].thinking  # type: ignore[union-attr]
    assert parsed[-2].usage.output_tokens == whole.usage.output_tokens
    async with sdk(thinking).messages.stream(
        model=MODEL, max_tokens=2048, thinking=ENABLED, messages=[{"role": "user", "content": "think hard"}]
    ) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].signature
    assert final.content[0].thinking == whole.content[0].thinking  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("extra", "mentions"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1000}}, "greater than or equal to 1024"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "`max_tokens` must be greater than"),
        ({"thinking": {"type": "enabled"}}, "budget_tokens"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
        (
            {
                "thinking": ENABLED,
                "tools": [{"name": "t", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "any"},
            },
            "tool_choice forces tool use",
        ),
    ],
)
async def test_anthropic_bad_thinking_is_a_400(thinking: Live, extra: dict[str, Any], mentions: str) -> None:
    response = await anthropic_post(thinking, "/v1/messages", claude("hi", **extra))
    assert response.status_code == 400 and mentions in response.json()["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        await sdk(thinking).messages.create(**claude("hi", **extra))


# -- OpenAI ------------------------------------------------------------------------------------


async def create_response(live: Live, **body: Any) -> Response:
    response = await post_raw(live, "/v1/responses", {"input": "please think hard", **body})
    assert response.status_code == 200, response.text
    return Response.model_validate_json(response.content, strict=True)


async def test_responses_reasoning_item_and_tokens(thinking: Live) -> None:
    hidden = await create_response(thinking, model="o3")
    assert [item.type for item in hidden.output] == ["reasoning", "message"]
    reasoning = hidden.output[0]
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_") and reasoning.summary == []
    tokens = count_tokens("Six times seven is 42, so o3 says 42.")
    assert hidden.usage is not None and hidden.usage.output_tokens_details.reasoning_tokens == tokens
    assert hidden.usage.output_tokens == tokens + count_tokens("The answer is 42.")
    assert hidden.reasoning is not None and hidden.reasoning.effort == "medium"
    shown = await create_response(thinking, model="gpt-5", reasoning={"effort": "high", "summary": "auto"})
    assert shown.output[0].type == "reasoning"
    assert [s.text for s in shown.output[0].summary] == ["Six times seven is 42, so gpt-5 says 42."]
    assert shown.reasoning is not None and shown.reasoning.effort == "high"
    for body in ({"model": "gpt-4o"}, {"model": "o3", "reasoning": {"effort": "none"}}):
        plain = await create_response(thinking, **body)
        assert [item.type for item in plain.output] == ["message"]
        assert plain.usage is not None and plain.usage.output_tokens_details.reasoning_tokens == 0


async def test_responses_reasoning_stream_is_strict(thinking: Live) -> None:
    payload = {"model": "o4-mini", "input": "please think hard", "stream": True, "reasoning": {"summary": "auto"}}
    response = await post_raw(thinking, "/v1/responses", payload)
    assert response.status_code == 200
    events = [RESPONSE_EVENTS.validate_json(data, strict=True) for data in sse_data_lines(response.content)]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert collapse([e.type for e in events])[:8] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]
    text = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert text == "Six times seven is 42, so o4-mini says 42."
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output[0].type == "reasoning" and final.output[0].summary[0].text == text
    assert final.usage.output_tokens_details.reasoning_tokens == count_tokens(text)
    sdk_client = openai.AsyncOpenAI(base_url=thinking.openai_url, api_key="sk-test", max_retries=0)
    async with sdk_client.responses.stream(model="o3", input="please think hard") as stream:
        done = await stream.get_final_response()
    assert [item.type for item in done.output] == ["reasoning", "message"]


def sse_data_lines(raw: bytes) -> list[bytes]:
    return [line[len(b"data: ") :] for line in raw.split(b"\n") if line.startswith(b"data: ")]


async def test_chat_reports_reasoning_tokens(thinking: Live) -> None:
    body = {"model": "o3", "messages": [{"role": "user", "content": "please think hard"}]}
    response = await post_raw(thinking, "/v1/chat/completions", body)
    completion = ChatCompletion.model_validate_json(response.content, strict=True)
    usage = completion.usage
    tokens = count_tokens("Six times seven is 42, so o3 says 42.")
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == tokens
    assert usage.completion_tokens == tokens + count_tokens("The answer is 42.")
    assert completion.choices[0].message.content == "The answer is 42."
    streamed = await post_raw(
        thinking, "/v1/chat/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    chunks = [ChatCompletionChunk.model_validate_json(d, strict=True) for d in sse_data(streamed.content)]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens_details is not None
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == tokens
    plain = await post_raw(thinking, "/v1/chat/completions", {**body, "model": "gpt-4o"})
    assert orjson.loads(plain.content)["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


async def test_reasoning_can_use_up_max_completion_tokens(thinking: Live) -> None:
    body = {"model": "o3", "messages": [{"role": "user", "content": "long thought"}], "max_completion_tokens": 5}
    completion = ChatCompletion.model_validate_json(
        (await post_raw(thinking, "/v1/chat/completions", body)).content, strict=True
    )
    assert completion.choices[0].finish_reason == "length" and completion.choices[0].message.content == ""
    assert completion.usage is not None and completion.usage.completion_tokens == 5


# -- rules and panel ---------------------------------------------------------------------------


def test_thinking_must_be_a_string_and_names_its_line() -> None:
    text = "rules:\n  - match: {contains: x}\n    reply: y\n    thinking: [1, 2]\n"
    from ruamel.yaml import YAML

    with pytest.raises(RulesFileError) as caught:
        parse_document(YAML().load(text))
    assert caught.value.errors[0].line == 4 and "'thinking' must be a string" in str(caught.value)
    with pytest.raises(RulesFileError, match="cannot be combined"):
        parse_document({"rules": [{"error": 500, "thinking": "hmm"}]})
    with pytest.raises(RulesFileError, match="unknown template variable"):
        parse_document({"rules": [{"reply": "a", "thinking": "{{nope}}"}]})


def test_thinking_is_written_back_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text("# mine\nresponses:\n  hello: hi\n")
    store = make_store(path)
    add_rule(store, {"match": {"contains": "why"}, "reply": "Because.", "thinking": "Let me see why."})
    assert 'thinking: "Let me see why."' in path.read_text()
    again = make_store(path)
    assert any(r.spec.thinking == "Let me see why." for r in again.rules)  # type: ignore[attr-defined]


async def test_detail_pane_shows_window_refusal_and_thinking(thinking: Live) -> None:
    await claude_message(thinking, claude("please think hard", thinking=ENABLED))
    refused = await post_raw(
        thinking,
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi there"}]},
        headers={"x-mock-context-window": "3"},
    )
    assert refused.status_code == 400
    served, refusal = thinking.store.journal()[-2:]
    console = Console(width=120, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(describe_entry(served))
    shown = console.export_text()
    assert f"prompt {served.prompt_tokens:,} / 200,000 tokens" in shown
    assert "Thinking" in shown and f"Six times seven is 42, so {MODEL} says 42." in shown
    console.print(describe_entry(refusal))
    shown = console.export_text()
    assert f"prompt {refusal.prompt_tokens} / 3 tokens" in shown
    assert f"refused for length: prompt {refusal.prompt_tokens} > window 3" in shown
    public = refusal.public()
    assert public["refused_for_length"] and public["context_window"] == 3


@pytest.mark.parametrize("summary", [None, "auto"])
def test_streams_pace_the_thinking_tokens_too(summary: str | None) -> None:
    from mockllm_tui.core.conversation import Conversation, Reply, Usage
    from mockllm_tui.core.tokens import split_tokens
    from mockllm_tui.providers.anthropic import Anthropic
    from mockllm_tui.providers.base import RenderContext
    from mockllm_tui.providers.openai_chat import OpenAIChat
    from mockllm_tui.providers.openai_responses import OpenAIResponses, ResponsesConversation

    thought, answer = "I think, therefore I answer.", "Yes."
    usage = Usage(input_tokens=5, output_tokens=count_tokens(thought + answer), reasoning_tokens=count_tokens(thought))
    reply = Reply(text=answer, thinking=thought, usage=usage)
    pieces, thinking_pieces = split_tokens(answer), split_tokens(thought)
    conversations = {
        OpenAIChat: Conversation(provider="p", endpoint="e", model="o3", thinking="on"),
        OpenAIResponses: ResponsesConversation(
            provider="p", endpoint="e", model="o3", thinking="on", reasoning_summary=summary
        ),
        Anthropic: Conversation(provider="p", endpoint="e", model="m", thinking="on", thinking_budget=1024),
    }
    for provider, conversation in conversations.items():
        ctx = RenderContext(
            id="x1",
            created=1,
            pieces=pieces,
            piece_tokens=[1] * len(pieces),
            thinking_pieces=thinking_pieces,
            thinking_piece_tokens=[1] * len(thinking_pieces),
        )
        endpoint = provider().endpoints[0]
        frames = list(endpoint.render_stream(conversation, reply, ctx))  # type: ignore[attr-defined]
        assert sum(f.tokens for f in frames) == usage.output_tokens, provider
        assert "".join(f.text for f in frames) == answer


def test_the_rule_editor_keeps_a_rules_thinking() -> None:
    from mockllm_tui.tui.screens.rule_editor import build_rule_data

    original = {"match": {"contains": "why"}, "reply": "Because.", "thinking": "Let me see."}
    fields = {
        "kind": "contains",
        "pattern": "why not",
        "model": "",
        "name": "",
        "reply": "Because!",
        "tool_name": "",
        "tool_args": "",
        "error_status": "",
        "error_message": "",
        "latency_ms": "",
        "stream_speed": "",
        "sequence": False,
    }
    data = build_rule_data(fields, original)
    assert data == {"match": {"contains": "why not"}, "reply": "Because!", "thinking": "Let me see."}
    assert "thinking" not in build_rule_data({**fields, "error_status": "500"}, original)


def test_the_pytest_plugins_rules_take_thinking() -> None:
    import inspect

    from mockllm_tui.testing.mock import MockLLM
    from mockllm_tui.testing.rules import rule_entry

    assert "thinking" in inspect.signature(MockLLM.rule).parameters
    assert rule_entry(1, {"contains": "why", "reply": "Because.", "thinking": "Hmm."}).spec.thinking == "Hmm."
