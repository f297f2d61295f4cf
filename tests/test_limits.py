"""Context windows and output limits with the real SDKs: each provider's exact refusal just over a
limit, a reply just under it, and numbers that agree with usage and count_tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest
from anthropic.types import ErrorResponse, MessageTokensCount
from openai.types import Completion
from openai.types.chat import ChatCompletion

from mockllm_tui.cli import build_parser, knob_values
from mockllm_tui.core.conversation import Conversation
from mockllm_tui.core.models import ModelRegistry, default_registry
from mockllm_tui.engine.limits import LimitBreach, RequestLimits, find_breach, header_window, limits_for
from mockllm_tui.providers.openai_chat import OpenAIChat
from tests.conftest import Live, serving_file
from tests.openai_testkit import post_raw
from tests.test_anthropic import TLS
from tests.test_anthropic import post as anthropic_post

LIMITS_YML = """\
models:
  - {id: tiny-chat, context_window: 64, max_output_tokens: 16}
  - {id: tiny-claude, owned_by: anthropic, context_window: 64, max_output_tokens: 16}
  - {id: tiny-gpt5, context_window: 200, max_input_tokens: 40, max_output_tokens: 50, reasoning: true}
  - {id: gpt-4o, context_window: 1000}
responses:
  default: "Hello there, friend."
"""
WIDE = {"x-mock-context-window": str(10**9)}


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[Live]:
    """The real server with small made-up models in `models:`."""
    async with serving_file(tmp_path, LIMITS_YML) as running:
        yield running


def words(count: int) -> str:
    """A prompt of `count` short words."""
    return " ".join(["a"] * count)


def chat_body(model: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}


async def chat_prompt_tokens(live: Live, prompt: str) -> int:
    """What usage reports as the prompt tokens of a chat request (no window in the way)."""
    response = await post_raw(live, "/v1/chat/completions", chat_body("tiny-chat", prompt), headers=WIDE)
    return ChatCompletion.model_validate_json(response.content, strict=True).usage.prompt_tokens  # type: ignore[union-attr]


async def chat_prompt_of(live: Live, tokens: int) -> str:
    """A chat prompt whose usage reports exactly `tokens` prompt tokens."""
    base = await chat_prompt_tokens(live, words(1))
    prompt = words(tokens - base + 1)
    assert await chat_prompt_tokens(live, prompt) == tokens
    return prompt


def openai_error(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = orjson.loads(response.content)
    assert set(body) == {"error"}
    return dict(body["error"])


# -- the registry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "window", "output"),
    [
        ("gpt-4o", 128_000, 16_384),
        ("gpt-4o-mini", 128_000, 16_384),
        ("gpt-4.1", 1_047_576, 32_768),
        ("o3", 200_000, 100_000),
        ("o4-mini", 200_000, 100_000),
        ("gpt-5", 400_000, 128_000),
        ("claude-sonnet-4-0", 200_000, 64_000),
        ("claude-sonnet-4-5", 200_000, 64_000),
        ("claude-haiku-4-5", 200_000, 64_000),
        ("claude-opus-4-0", 200_000, 32_000),
        ("claude-opus-4-1", 200_000, 32_000),
    ],
)
def test_built_in_models_have_their_published_limits(name: str, window: int, output: int) -> None:
    model = default_registry().resolve(name)
    assert model is not None and (model.context_window, model.max_output_tokens) == (window, output)


def test_gpt5_has_an_input_limit_and_reasoning_models_reason() -> None:
    registry = default_registry()
    gpt5 = registry.resolve("gpt-5")
    assert gpt5 is not None and gpt5.max_input_tokens == 272_000 and gpt5.reasoning
    assert all(registry.resolve(n).reasoning for n in ("o3", "o4-mini", "gpt-5-mini"))  # type: ignore[union-attr]
    assert not any(registry.resolve(n).reasoning for n in ("gpt-4o", "claude-sonnet-4-5"))  # type: ignore[union-attr]
    every = [m for m in registry.models() if m.dimensions is None and not m.id.startswith("text-embedding")]
    assert all(m.context_window and m.max_output_tokens for m in every)


def test_models_entries_set_limits_and_keep_the_ones_they_do_not_set() -> None:
    registry = ModelRegistry.from_config(
        [{"id": "gpt-4o", "context_window": 1000}, {"id": "made-up", "max_output_tokens": 5}, "plain"]
    )
    gpt4o = registry.resolve("gpt-4o")
    assert gpt4o is not None and (gpt4o.context_window, gpt4o.max_output_tokens) == (1000, 16_384)
    assert registry.resolve("made-up").max_output_tokens == 5  # type: ignore[union-attr]
    assert limits_for(registry.resolve("plain")) == RequestLimits()
    assert limits_for(None) == RequestLimits()  # unknown models have no limit
    assert limits_for(None, 300) == RequestLimits(window=300)
    assert limits_for(registry.resolve("gpt-4o"), 300).window == 1000  # the default is for models with none
    assert limits_for(registry.resolve("gpt-4o"), 300, header=77).window == 77


def test_the_header_must_be_a_positive_number() -> None:
    assert header_window({}) is None and header_window({"x-mock-context-window": " 42 "}) == 42
    for bad in ("0", "-3", "lots"):
        with pytest.raises(Exception, match="x-mock-context-window: expected a positive number"):
            header_window({"x-mock-context-window": bad})


def test_breaches_are_found_in_order() -> None:
    limits = RequestLimits(window=100, max_output=10, max_input=50)

    def kind(input_tokens: int, max_tokens: int | None) -> str | None:
        conv = Conversation(provider="p", endpoint="e", model="m", max_tokens=max_tokens)
        breach = find_breach(conv, input_tokens, limits, "m")
        return breach.kind if breach else None

    assert kind(500, 11) == "output_limit"  # the output limit first, even with a prompt far over
    assert kind(51, 1) == "input_limit"
    assert kind(50, 10) is None
    assert kind(101, None) == "input_limit"
    plain = RequestLimits(window=100, max_output=10)
    conv = Conversation(provider="p", endpoint="e", model="m", max_tokens=10)
    assert find_breach(conv, 101, plain, "m").kind == "context"  # type: ignore[union-attr]
    assert find_breach(conv, 91, plain, "m").kind == "context_with_output"  # type: ignore[union-attr]
    assert find_breach(conv, 90, plain, "m") is None


def test_gpt5_input_limit_wording_uses_the_built_in_figure() -> None:
    gpt5 = default_registry().resolve("gpt-5")
    conv = Conversation(provider="openai", endpoint="chat.completions", model="gpt-5")
    breach = find_breach(conv, 272_001, limits_for(gpt5), "gpt-5-2025-08-07")
    assert breach is not None and breach.kind == "input_limit"
    error = OpenAIChat().limit_error(breach)
    assert (error.status, error.param, error.code) == (400, "messages", "context_length_exceeded")
    assert error.message == (
        "Input tokens exceed the configured limit of 272000 tokens. Your messages resulted in 272001 tokens. "
        "Please reduce the length of the messages."
    )


def test_the_seam_default_is_a_plain_400() -> None:
    from mockllm_tui.providers.base import Provider

    breach = LimitBreach("context", "m", 10, 11, None, None)
    error = Provider().limit_error(breach)
    assert error is not None and error.status == 400 and error.param == "messages" and "10" in error.message
    output = Provider().limit_error(LimitBreach("output_limit", "m", None, 5, 8, 9, param="max_tokens"))
    assert output is not None and output.param == "max_tokens" and "9" in output.message


async def test_a_provider_may_serve_over_the_window_or_give_its_own_type(
    limited: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mockllm_tui.core.conversation import RequestError

    monkeypatch.setattr(OpenAIChat, "limit_error", lambda self, breach: None)
    served = await post_raw(limited, "/v1/chat/completions", chat_body("tiny-chat", words(100)))
    assert served.status_code == 200
    entry = limited.store.journal()[-1]
    assert entry.limit_breach is not None and entry.limit_breach.startswith("prompt ") and not entry.refused_for_length
    monkeypatch.setattr(OpenAIChat, "limit_error", lambda self, breach: RequestError("no", type="ValidationException"))
    refused = openai_error(await post_raw(limited, "/v1/chat/completions", chat_body("tiny-chat", words(100))))
    assert refused["type"] == "ValidationException"


def test_context_window_option_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from mockllm_tui.cli import make_store as cli_store

    assert knob_values(build_parser().parse_args(["--context-window", "512"])) == {"context_window": 512}
    assert cli_store(build_parser().parse_args(["--context-window", "512"])).knobs.context_window == 512
    monkeypatch.setenv("MOCKLLM_CONTEXT_WINDOW", "256")
    assert knob_values(build_parser().parse_args([]))["context_window"] == 256


# -- OpenAI chat -------------------------------------------------------------------------------


async def test_chat_just_under_and_just_over_the_window(limited: Live) -> None:
    fits = await chat_prompt_of(limited, 64)
    over = fits + " a"
    ok = await post_raw(limited, "/v1/chat/completions", chat_body("tiny-chat", fits))
    usage = ChatCompletion.model_validate_json(ok.content, strict=True).usage
    assert ok.status_code == 200 and usage is not None and usage.prompt_tokens == 64
    error = openai_error(await post_raw(limited, "/v1/chat/completions", chat_body("tiny-chat", over)))
    assert error == {
        "message": "This model's maximum context length is 64 tokens. However, your messages resulted in 65 tokens. "
        "Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    sdk = openai.AsyncOpenAI(base_url=limited.openai_url, api_key="sk-test", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": over}])
    assert caught.value.status_code == 400 and caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages" and caught.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):  # a stream is refused before it starts
        await sdk.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": over}], stream=True)
    entry = limited.store.journal()[-1]
    assert entry.refused_for_length and entry.prompt_tokens == 65 and entry.context_window == 64
    assert entry.status == 400


async def test_legacy_completions_over_the_window_in_the_legacy_words(limited: Live) -> None:
    sdk = openai.AsyncOpenAI(base_url=limited.openai_url, api_key="sk-test", max_retries=0)
    prompt = words(50)
    counted = await sdk.completions.create(model="tiny-chat", prompt=prompt, max_tokens=1, extra_headers=WIDE)
    tokens = counted.usage.prompt_tokens  # type: ignore[union-attr]
    assert 14 < tokens < 64
    fits = await post_raw(
        limited, "/v1/completions", {"model": "tiny-chat", "prompt": prompt, "max_tokens": 64 - tokens}
    )
    assert Completion.model_validate_json(fits.content, strict=True).choices
    over = 65 - tokens
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.completions.create(model="tiny-chat", prompt=prompt, max_tokens=over)
    assert caught.value.body == {
        "message": f"This model's maximum context length is 64 tokens, however you requested 65 tokens "
        f"({tokens} in your prompt; {over} for the completion). Please reduce your prompt; or completion length.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    long_prompt = words(80)  # over on its own, with the legacy default of 16 completion tokens
    error = openai_error(await post_raw(limited, "/v1/completions", {"model": "tiny-chat", "prompt": long_prompt}))
    assert error["message"].endswith("for the completion). Please reduce your prompt; or completion length.")
    assert "; 16 for the completion)" in error["message"] and (error["param"], error["code"]) == (None, None)


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
async def test_chat_messages_plus_completion_over_the_window(limited: Live, param: str) -> None:
    prompt = await chat_prompt_of(limited, 60)
    ok = await post_raw(limited, "/v1/chat/completions", chat_body("tiny-chat", prompt, **{param: 4}))
    assert ok.status_code == 200
    error = openai_error(await post_raw(limited, "/v1/chat/completions", chat_body("tiny-chat", prompt, **{param: 5})))
    assert error == {
        "message": "This model's maximum context length is 64 tokens. However, you requested 65 tokens "
        "(60 in the messages, 5 in the completion). Please reduce the length of the messages or completion.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
async def test_chat_max_tokens_above_the_output_limit(limited: Live, param: str) -> None:
    ok = await post_raw(limited, "/v1/chat/completions", chat_body("tiny-chat", "hi", **{param: 16}))
    assert ok.status_code == 200
    error = openai_error(await post_raw(limited, "/v1/chat/completions", chat_body("tiny-chat", "hi", **{param: 17})))
    assert error == {
        "message": f"{param} is too large: 17. "
        "This model supports at most 16 completion tokens, whereas you provided 17.",
        "type": "invalid_request_error",
        "param": param,
        "code": "invalid_value",
    }
    sdk = openai.AsyncOpenAI(base_url=limited.openai_url, api_key="sk-test", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(  # type: ignore[call-overload]
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], **{param: 16_385}
        )
    assert caught.value.param == param and "at most 16384 completion tokens" in caught.value.message


async def test_chat_separate_input_limit(limited: Live) -> None:
    base = await chat_prompt_tokens(limited, words(1))
    fits, over = words(40 - base + 1), words(41 - base + 1)
    ok = await post_raw(limited, "/v1/chat/completions", chat_body("tiny-gpt5", fits))
    assert ok.status_code == 200
    error = openai_error(await post_raw(limited, "/v1/chat/completions", chat_body("tiny-gpt5", over)))
    assert error["message"] == (
        "Input tokens exceed the configured limit of 40 tokens. Your messages resulted in 41 tokens. "
        "Please reduce the length of the messages."
    )
    assert (error["param"], error["code"]) == ("messages", "context_length_exceeded")


async def test_header_overrides_the_window_for_one_request(limited: Live) -> None:
    prompt = words(30)
    tokens = await chat_prompt_tokens(limited, prompt)
    path = "/v1/chat/completions"
    body = chat_body("gpt-4o", prompt)
    assert (await post_raw(limited, path, body, headers={"x-mock-context-window": str(tokens)})).status_code == 200
    error = openai_error(await post_raw(limited, path, body, headers={"x-mock-context-window": str(tokens - 1)}))
    assert f"maximum context length is {tokens - 1} tokens" in error["message"]
    assert f"your messages resulted in {tokens} tokens" in error["message"]
    assert (await post_raw(limited, path, body)).status_code == 200  # models: gives gpt-4o 1000
    bad = await post_raw(limited, path, body, headers={"x-mock-context-window": "many"})
    assert bad.status_code == 400 and "x-mock-context-window" in bad.text


async def test_context_window_knob_is_the_default_for_models_with_none(limited: Live) -> None:
    prompt = words(30)
    tokens = await chat_prompt_tokens(limited, prompt)
    body = chat_body("no-such-model", prompt)
    assert (await post_raw(limited, "/v1/chat/completions", body)).status_code == 200  # unknown: no limit
    limited.store.set_knobs("cli", {"context_window": tokens - 1})
    error = openai_error(await post_raw(limited, "/v1/chat/completions", body))
    assert f"maximum context length is {tokens - 1} tokens" in error["message"]
    known = await post_raw(limited, "/v1/chat/completions", chat_body("gpt-4o", prompt))
    assert known.status_code == 200  # a model with its own window keeps it


async def test_a_refused_request_uses_no_rule_step(limited: Live) -> None:
    limited.store.set_fail_next(1, 503)
    error = openai_error(await post_raw(limited, "/v1/chat/completions", chat_body("tiny-chat", words(100))))
    assert error["code"] == "context_length_exceeded"
    assert limited.store.fail_next == (1, 503)


# -- OpenAI Responses --------------------------------------------------------------------------


async def test_responses_window_and_output_limit(limited: Live) -> None:
    base = await post_raw(limited, "/v1/responses", {"model": "tiny-chat", "input": words(1)}, headers=WIDE)
    m1 = orjson.loads(base.content)["usage"]["input_tokens"]
    fits = {"model": "tiny-chat", "input": words(64 - m1 + 1)}
    ok = await post_raw(limited, "/v1/responses", fits)
    assert ok.status_code == 200 and orjson.loads(ok.content)["usage"]["input_tokens"] == 64
    over = {"model": "tiny-chat", "input": words(65 - m1 + 1)}
    assert openai_error(await post_raw(limited, "/v1/responses", over)) == {
        "message": "Your input exceeds the context window of this model. Please adjust your input and try again.",
        "type": "invalid_request_error",
        "param": "input",
        "code": "context_length_exceeded",
    }
    sdk = openai.AsyncOpenAI(base_url=limited.openai_url, api_key="sk-test", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.responses.create(model="tiny-chat", input=over["input"])
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "input"
    streamed = await post_raw(limited, "/v1/responses", {**over, "stream": True})
    assert openai_error(streamed)["code"] == "context_length_exceeded"
    too_many = {"model": "tiny-chat", "input": "hi", "max_output_tokens": 17}
    assert openai_error(await post_raw(limited, "/v1/responses", too_many)) == {
        "message": "Invalid 'max_output_tokens': integer above maximum value. "
        "Expected a value <= 16, but got 17 instead.",
        "type": "invalid_request_error",
        "param": "max_output_tokens",
        "code": "integer_above_max_value",
    }


# -- Anthropic ---------------------------------------------------------------------------------


async def count_claude(live: Live, prompt: str) -> int:
    response = await anthropic_post(
        live, "/v1/messages/count_tokens", {"model": "tiny-claude", "messages": [{"role": "user", "content": prompt}]}
    )
    assert response.status_code == 200, response.text
    return MessageTokensCount.model_validate_json(response.content, strict=True).input_tokens


def claude_sdk(live: Live) -> anthropic.AsyncAnthropic:
    http = anthropic.DefaultAsyncHttpxClient(verify=TLS)
    return anthropic.AsyncAnthropic(base_url=live.anthropic_url, api_key="k", max_retries=0, http_client=http)


def claude_body(prompt: str, max_tokens: int) -> dict[str, Any]:
    return {"model": "tiny-claude", "max_tokens": max_tokens, "messages": [{"role": "user", "content": prompt}]}


async def claude_error(live: Live, payload: dict[str, Any]) -> str:
    response = await anthropic_post(live, "/v1/messages", payload)
    assert response.status_code == 400, response.text
    error = ErrorResponse.model_validate_json(response.content, strict=True)
    assert error.error.type == "invalid_request_error" and error.request_id == response.headers["request-id"]
    return error.error.message


async def test_anthropic_three_errors_in_order(limited: Live) -> None:
    base = await count_claude(limited, words(1))
    at60 = words(60 - base + 1)
    assert await count_claude(limited, at60) == 60
    ok = await anthropic_post(limited, "/v1/messages", claude_body(at60, 4))
    assert ok.status_code == 200 and orjson.loads(ok.content)["usage"]["input_tokens"] == 60
    assert await claude_error(limited, claude_body(at60, 5)) == (
        "input length and `max_tokens` exceed context limit: 60 + 5 > 64, decrease input length or `max_tokens` "
        "and try again"
    )
    over = words(65 - base + 1)
    assert await count_claude(limited, over) == 65  # count_tokens still counts a prompt over the window
    assert await claude_error(limited, claude_body(over, 1)) == "prompt is too long: 65 tokens > 64 maximum"
    output = "max_tokens: 17 > 16, which is the maximum allowed number of output tokens for tiny-claude"
    assert await claude_error(limited, claude_body(over, 17)) == output  # the output limit comes first
    sdk = claude_sdk(limited)
    with pytest.raises(anthropic.BadRequestError) as caught:
        await sdk.messages.create(model="tiny-claude", max_tokens=1, messages=[{"role": "user", "content": over}])
    assert caught.value.status_code == 400 and "prompt is too long: 65 tokens" in caught.value.message
    with pytest.raises(anthropic.BadRequestError):  # a stream is refused before it starts
        async with sdk.messages.stream(
            model="tiny-claude", max_tokens=1, messages=[{"role": "user", "content": over}]
        ) as stream:
            await stream.get_final_message()


async def test_anthropic_names_the_model_by_its_id(limited: Live) -> None:
    message = await claude_error(
        limited, {"model": "claude-opus-4-1", "max_tokens": 32_001, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert message == (
        "max_tokens: 32001 > 32000, which is the maximum allowed number of output tokens for claude-opus-4-1-20250805"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "models:\n  - id: tiny\n    context_window: 0\n",
            "responses.yml:3: models: models[0].context_window: expected a positive integer, not 0",
        ),
        (
            "models:\n  - gpt-4o\n  - id: mine\n    aliases: [m]\n    max_output_tokens: lots\n",
            "responses.yml:5: models: models[1].max_output_tokens: expected a positive integer, not 'lots'",
        ),
        (
            "models:\n  - {id: r, reasoning: maybe}\n",
            "responses.yml:2: models: models[0].reasoning: expected true or false, not 'maybe'",
        ),
        (
            "models:\n  - id: x\n    context_windw: 5\n",
            "responses.yml:3: models: models[0]: unknown key 'context_windw'",
        ),
    ],
)
def test_models_limits_are_checked_with_their_line(tmp_path: Path, text: str, problem: str) -> None:
    import io

    from mockllm_tui.rules import check_file

    path = tmp_path / "responses.yml"
    path.write_text(text)
    out = io.StringIO()
    assert check_file(path, out) == 1
    assert problem in out.getvalue(), out.getvalue()


async def test_anthropic_models_report_their_limits(limited: Live) -> None:
    sdk = claude_sdk(limited)
    tiny = await sdk.models.retrieve("tiny-claude")
    assert (tiny.max_input_tokens, tiny.max_tokens) == (64, 16)
    opus = await sdk.models.retrieve("claude-opus-4-1")
    assert (opus.max_input_tokens, opus.max_tokens) == (200_000, 32_000)


def test_the_log_marks_requests_refused_for_length() -> None:
    from mockllm_tui.core.store import Store
    from mockllm_tui.tui.widgets.request_log import row_cells

    store = Store()
    refused, served = store.begin_request("POST", "/v1/chat/completions"), store.begin_request("POST", "/v1/x")
    refused.refused_for_length = True
    for entry in (refused, served):
        store.end_request(entry, 400)
    assert ("too long", "bold red") in row_cells(refused, 0)
    assert ("too long", "bold red") not in row_cells(served, 0)
