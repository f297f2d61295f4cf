"""Model limits in the second wave's wire formats: Gemini's and Bedrock's own errors, Ollama's
silent truncation, and Azure answering as OpenAI does, each through its own SDK."""

from __future__ import annotations

from typing import Any

import ollama
import pytest
from botocore.exceptions import ClientError
from google.genai import errors as genai_errors
from openai import AzureOpenAI, BadRequestError

from mockllm_tui.core.tokens import count_tokens
from tests.conftest import Live, ServerThread, make_store
from tests.test_bedrock import bedrock
from tests.test_gemini import Seen, client, wait_until

LONG = "tell me a long story about the sea " * 20
WINDOW = 32


@pytest.fixture
def tiny() -> Any:
    """A server whose models without published limits get a 32-token window."""
    store = make_store()
    store.set_knobs("live", {"context_window": WINDOW})
    with ServerThread(store) as running:
        yield running


def test_gemini_says_the_input_token_count_is_over_the_limit(tiny: Live) -> None:
    gemini = client(tiny, Seen())
    with pytest.raises(genai_errors.ClientError) as info:
        gemini.models.generate_content(model="tiny-gemini", contents=LONG)
    prompt = gemini.models.count_tokens(model="tiny-gemini", contents=LONG).total_tokens
    assert info.value.code == 400 and info.value.status == "INVALID_ARGUMENT"
    assert info.value.message == (
        f"The input token count ({prompt}) exceeds the maximum number of tokens allowed ({WINDOW})."
    )
    assert tiny.store.journal()[-2].refused_for_length


def test_bedrock_raises_a_validation_exception_in_the_models_words(tiny: Live) -> None:
    runtime = bedrock(tiny)
    messages = [{"role": "user", "content": [{"text": LONG}]}]
    with pytest.raises(ClientError) as info:
        runtime.converse(modelId="anthropic.tiny-claude-v1:0", messages=messages)
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert info.value.response["Error"]["Message"].startswith("prompt is too long: ")
    with pytest.raises(runtime.exceptions.ValidationException, match="Input is too long for requested model"):
        runtime.converse(modelId="amazon.tiny-v1:0", messages=messages)


def test_ollama_truncates_silently_and_the_journal_says_so(tiny: Live) -> None:
    reply = ollama.Client(host=tiny.root).chat(
        model="tiny-llama", messages=[{"role": "user", "content": LONG}], stream=False
    )
    assert reply.done and reply.message.content
    entry = tiny.store.journal()[-1]
    wait_until(lambda: not entry.open)  # the server records the end just after the last byte
    assert entry.status == 200 and entry.limit_breach and not entry.refused_for_length
    assert (entry.prompt_tokens or 0) > WINDOW >= count_tokens("tell me")


def test_azure_answers_like_openai(tiny: Live) -> None:
    azure = AzureOpenAI(azure_endpoint=tiny.root, api_version="2024-10-21", api_key="k", max_retries=0)
    with pytest.raises(BadRequestError) as info:
        azure.chat.completions.create(model="tiny-deployment", messages=[{"role": "user", "content": LONG}])
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages"
    assert f"maximum context length is {WINDOW} tokens" in info.value.message
