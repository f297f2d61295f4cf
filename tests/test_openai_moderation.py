"""Moderations through the openai SDK: every category scored, rules flagging, each input on its own."""

from __future__ import annotations

import time
from typing import Any

import openai
import orjson
import pytest
from openai.types import ModerationCreateResponse

from mockllm_tui.core.media import IMAGE_CATEGORIES, MODERATION_CATEGORIES
from tests.conftest import Live
from tests.openai_testkit import assert_openai_error, post_raw
from tests.test_metrics import scrape, total

RULES = """
rules:
  - name: knife
    match: {contains: knife}
    moderation: {flagged: [violence, "harassment/threatening"], scores: {violence: 0.97}}
  - name: picky
    match: {contains: "self", model: "omni-*"}
    moderation: {flagged: [self-harm/intent]}
  - name: down
    match: {contains: "outage"}
    error: {status: 503, message: "moderation is down"}
  - name: chat-knife
    match: {contains: knife}
    reply: "Put the knife down."
"""


def client(live: Live) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=live.openai_url, api_key="sk-test", max_retries=0)


async def moderate(live: Live, body: dict[str, Any]) -> ModerationCreateResponse:
    response = await post_raw(live, "/v1/moderations", body)
    assert response.status_code == 200, response.text
    return ModerationCreateResponse.model_validate(orjson.loads(response.content), strict=True)


async def test_a_text_gets_every_category_and_nothing_flagged_without_a_rule(rules_live: Live) -> None:
    result = await moderate(rules_live, {"input": "a quiet afternoon"})
    assert result.id.startswith("modr-") and result.model == "omni-moderation-latest"
    raw = (await post_raw(rules_live, "/v1/moderations", {"input": "a quiet afternoon"})).json()["results"][0]
    assert list(raw["categories"]) == list(MODERATION_CATEGORIES) == list(raw["category_scores"])
    assert not raw["flagged"] and not any(raw["categories"].values())
    assert all(0 <= score < 0.1 for score in raw["category_scores"].values())
    assert all(kinds == ["text"] for kinds in raw["category_applied_input_types"].values())
    again = (await post_raw(rules_live, "/v1/moderations", {"input": "a quiet afternoon"})).json()["results"][0]
    assert again["category_scores"] == raw["category_scores"]


async def test_a_rule_flags_its_categories_with_its_scores(rules_live: Live) -> None:
    result = await client(rules_live).moderations.create(input="he pulled a knife", model="omni-moderation-latest")
    verdict = result.results[0]
    assert verdict.flagged and verdict.categories.violence and verdict.categories.harassment_threatening
    assert not verdict.categories.hate and not verdict.categories.self_harm
    assert verdict.category_scores.violence == 0.97 and verdict.category_scores.harassment_threatening == 0.9
    assert verdict.category_scores.hate < 0.1
    assert rules_live.store.journal()[-1].rule == "knife"


async def test_each_string_of_a_list_is_judged_on_its_own(rules_live: Live) -> None:
    result = await moderate(
        rules_live, {"input": ["hello", "a knife", "myself and I"], "model": "omni-moderation-2024-09-26"}
    )
    assert [r.flagged for r in result.results] == [False, True, True]
    assert result.results[2].categories.self_harm_intent and not result.results[2].categories.violence
    assert result.model == "omni-moderation-2024-09-26"
    assert rules_live.store.journal()[-1].rule == "knife, picky"


async def test_multi_modal_parts_are_one_input_and_images_add_image_types(rules_live: Live) -> None:
    parts = [
        {"type": "text", "text": "look at"},
        {"type": "text", "text": "this knife"},
        {"type": "image_url", "image_url": {"url": "https://example.com/knife.png"}},
    ]
    result = await moderate(rules_live, {"input": parts})
    assert len(result.results) == 1 and result.results[0].flagged
    applied = (await post_raw(rules_live, "/v1/moderations", {"input": parts})).json()["results"][0][
        "category_applied_input_types"
    ]
    for category, kinds in applied.items():
        assert kinds == (["text", "image"] if category in IMAGE_CATEGORIES else ["text"])
    only_image = await post_raw(rules_live, "/v1/moderations", {"input": [parts[2]]})
    only = only_image.json()["results"][0]["category_applied_input_types"]
    assert only["violence"] == ["image"] and only["hate"] == []


async def test_moderation_errors_and_knobs(rules_live: Live) -> None:
    assert_openai_error(await post_raw(rules_live, "/v1/moderations", {"input": "an outage"}), 503, mentions="down")
    rules_live.store.set_fail_next(1, 502)
    assert_openai_error(await post_raw(rules_live, "/v1/moderations", {"input": "x"}), 502)
    with pytest.raises(openai.BadRequestError):
        await client(rules_live).moderations.create(input=[])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": 5}, "input"),
        ({"input": [{"type": "audio"}]}, "input[0]"),
        ({"input": [{"type": "image_url", "image_url": {"url": "x"}}], "model": "text-moderation-latest"}, "input"),
        ({"input": ["x"] * 33}, "input"),
    ],
)
async def test_bad_moderation_requests_name_the_field(rules_live: Live, body: dict[str, Any], param: str) -> None:
    assert_openai_error(await post_raw(rules_live, "/v1/moderations", body), 400, param=param)


async def test_media_requests_are_counted_by_endpoint_in_metrics(rules_live: Live) -> None:
    await moderate(rules_live, {"input": "a knife"})
    await moderate(rules_live, {"input": "a lake"})
    await post_raw(rules_live, "/v1/moderations", {"input": "an outage"})
    found = await scrape(rules_live)
    assert total(found, "mockllm_requests_total", endpoint="moderations", provider="openai", status="200") == 2
    assert total(found, "mockllm_requests_total", endpoint="moderations", status="503", rule="down") == 1


async def test_the_media_endpoints_answer_without_the_v1_prefix_too(rules_live: Live) -> None:
    assert (await post_raw(rules_live, "/moderations", {"input": "a knife"})).json()["results"][0]["flagged"]
    image = await post_raw(rules_live, "/images/generations", {"model": "dall-e-2", "prompt": "x", "size": "256x256"})
    assert image.status_code == 200 and image.json()["data"][0]["url"]
    speech = await post_raw(rules_live, "/audio/speech", {"model": "tts-1", "voice": "echo", "input": "hi"})
    assert speech.status_code == 200 and speech.headers["content-type"] == "audio/mpeg"


async def test_the_latency_knob_holds_a_media_answer(rules_live: Live) -> None:
    rules_live.store.set_knobs("live", {"latency_ms": 300})
    started = time.perf_counter()
    assert (await post_raw(rules_live, "/v1/moderations", {"input": "x"})).status_code == 200
    assert time.perf_counter() - started >= 0.3  # a lower bound only: the machine may be slower
