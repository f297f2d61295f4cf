"""The media rules: the `endpoint`, `file` and `duration` matchers, the `image:`, `audio:` and
`moderation:` answers, their validation, and which rules answer which endpoint."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from mockllm_tui.core.conversation import Conversation, Message
from mockllm_tui.core.media import MODERATION_CATEGORIES, MediaRequest, media_request
from mockllm_tui.rules import check_file
from mockllm_tui.rules.matcher import RuleSet
from mockllm_tui.rules.model import FileSource, RulesFileError
from mockllm_tui.rules.validate import parse_document
from mockllm_tui.testing.rules import PerTestRules, rule_entry


def ruleset(text: str, folder: Path | None = None) -> RuleSet:
    model = parse_document(yaml.safe_load(text))
    source = FileSource(folder / "responses.yml", text, "") if folder is not None else None
    return RuleSet(model, source=source)


def media(endpoint: str, text: str = "", kind: str = "text", **kwargs: Any) -> MediaRequest:
    return media_request("openai", endpoint, kwargs.pop("model", "whisper-1"), text, kind, **kwargs)  # type: ignore[arg-type]


def chat(text: str) -> Conversation:
    return Conversation("openai", "chat.completions", "gpt-4o", [Message("user", text)])


RULES = """
rules:
  - name: cat-chat
    match: {contains: cat}
    reply: "Meow."
  - name: cat-picture
    match: {contains: cat, endpoint: "images.*"}
    image: pictures/cat.png
  - name: meeting
    match: {file: "MEETING-*.wav", endpoint: "audio.transcriptions"}
    reply: "Minutes: {{prompt}}"
  - name: long-audio
    match: {duration: {min: 30}}
    reply: "A long recording."
  - name: short-audio
    match: {duration: {max: 2.5}, endpoint: "audio.*"}
    reply: "A short one."
  - name: knife
    match: {contains: knife}
    moderation: {flagged: [violence, "harassment/threatening"], scores: {violence: 0.97}}
  - name: welcome
    match: {contains: welcome}
    audio: sounds/welcome.mp3
  - name: boom
    match: {contains: explode}
    error: {status: 503, message: "down"}
responses:
  default: "fallback text"
"""


def test_a_chat_rule_never_answers_a_picture_and_a_picture_rule_never_a_chat(tmp_path: Path) -> None:
    rules = ruleset(RULES, tmp_path)
    assert rules.choose(chat("a cat")).text == "Meow."
    picture = rules.explain(media("images.generations", "a cat on a mat", "image", model="gpt-image-1"))
    assert picture.label == "cat-picture"
    assert picture.reply.file == str(tmp_path / "pictures" / "cat.png")
    # No image rule for a dog: the endpoint draws its own picture (no fallback text, no rule).
    dog = rules.explain(media("images.generations", "a dog", "image"))
    assert dog.rule_id is None and dog.reply.file is None and dog.reply.text == "" and dog.reply.rule is None


def test_the_file_matcher_is_a_case_insensitive_glob_and_needs_an_upload() -> None:
    rules = ruleset(RULES)
    named = media("audio.transcriptions", "budget", file_name="meeting-2024.WAV", duration_s=10.0)
    assert rules.choose(named).text == "Minutes: budget"
    assert rules.choose(media("audio.transcriptions", "budget", file_name="call.wav", duration_s=10.0)).text == (
        "fallback text"
    )
    # The same words on a chat endpoint (no upload) never match a `file` rule.
    assert rules.choose(chat("budget")).text == "fallback text"


@pytest.mark.parametrize(
    ("seconds", "expected"), [(30.0, "A long recording."), (2.5, "A short one."), (10.0, "fallback text")]
)
def test_the_duration_matcher_bounds_are_inclusive(seconds: float, expected: str) -> None:
    request = media("audio.translations", "", file_name="x.mp3", duration_s=seconds)
    assert ruleset(RULES).choose(request).text == expected


def test_a_request_without_audio_never_matches_a_duration_rule() -> None:
    assert ruleset("rules:\n  - match: {duration: {min: 0}}\n    reply: x\n").choose(chat("hi")).text != "x"


def test_moderation_rules_flag_their_categories_with_their_scores() -> None:
    rules = ruleset(RULES)
    reply = rules.choose(media("moderations", "a knife", "moderation", model="omni-moderation-latest"))
    assert reply.flagged == {"violence": 0.97, "harassment/threatening": 0.9}
    assert rules.choose(media("moderations", "a cat", "moderation")).flagged is None


def test_an_error_rule_answers_every_endpoint() -> None:
    rules = ruleset(RULES)
    for kind, endpoint in [("image", "images.edits"), ("audio", "audio.speech"), ("moderation", "moderations")]:
        reply = rules.choose(media(endpoint, "explode", kind))
        assert reply.error is not None and reply.error.status == 503


def test_speech_rules_name_their_audio_file_and_short_keys_never_answer_speech() -> None:
    rules = ruleset(RULES)
    assert rules.choose(media("audio.speech", "welcome aboard", "audio")).file == "sounds/welcome.mp3"
    spoken = rules.explain(media("audio.speech", "fallback", "audio"))
    assert spoken.rule_id is None and spoken.reply.text == ""


def test_the_endpoint_matcher_also_names_chat_endpoints() -> None:
    rules = ruleset("rules:\n  - match: {endpoint: 'chat.*'}\n    reply: chat only\n")
    assert rules.choose(chat("x")).text == "chat only"
    assert rules.choose(media("audio.transcriptions", "x", file_name="a.wav")).text != "chat only"


def test_media_rules_round_trip_as_data() -> None:
    spec = parse_document(yaml.safe_load(RULES)).rules[3].spec
    assert spec.to_data() == {"name": "long-audio", "match": {"duration": {"min": 30.0}}, "reply": "A long recording."}
    knife = parse_document(yaml.safe_load(RULES)).rules[5].spec
    assert knife.to_data()["moderation"] == {
        "flagged": ["violence", "harassment/threatening"],
        "scores": {"violence": 0.97},
    }
    assert knife.match.summary() == "contains 'knife'"
    assert parse_document(yaml.safe_load(RULES)).rules[4].spec.match.summary() == "endpoint audio.* · duration ..2.5 s"
    assert "flag violence" in knife.preview()


@pytest.mark.parametrize(
    ("rule", "mentions"),
    [
        ({"match": {"duration": 5}, "reply": "x"}, "'duration' must be a mapping"),
        ({"match": {"duration": {"min": "a"}}, "reply": "x"}, "duration.min"),
        ({"match": {"duration": {"min": 9, "max": 3}}, "reply": "x"}, "more than"),
        ({"match": {"duration": {"least": 9}}, "reply": "x"}, "unknown key 'least'"),
        ({"match": {"files": "x"}, "reply": "x"}, "did you mean 'file'"),
        ({"moderation": {"flagged": ["violent"]}}, "unknown category 'violent'"),
        ({"moderation": {"flagged": ["violence"], "scores": {"violence": 0.2}}}, "between 0.5 and 1"),
        ({"moderation": {"flagged": ["violence"], "scores": {"hate": 0.7}}}, "'hate' is not in 'flagged'"),
        ({"moderation": {"flag": ["violence"]}}, "unknown key 'flag'"),
        ({"image": ""}, "'image' must not be empty"),
        ({"image": "a.png", "error": {"status": 500}}, "cannot be combined"),
        ({"match": {"contains": "x"}}, "'image', 'audio', 'moderation'"),
    ],
)
def test_check_rejects_bad_media_rules(rule: dict[str, Any], mentions: str) -> None:
    with pytest.raises(RulesFileError) as caught:
        parse_document({"rules": [rule]})
    assert mentions in str(caught.value)


def test_every_moderation_category_is_accepted() -> None:
    model = parse_document({"rules": [{"moderation": {"flagged": list(MODERATION_CATEGORIES)}}]})
    assert model.rules[0].spec.moderation is not None
    assert model.rules[0].spec.moderation.flagged == MODERATION_CATEGORIES


def test_check_reports_a_missing_media_file_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text(
        "rules:\n  - match: {contains: logo}\n    reply: x\n  - match: {contains: logo}\n    image: logo.png\n"
    )
    out = io.StringIO()
    assert check_file(path, out) == 1
    assert "responses.yml:4: rule 2: image file 'logo.png' not found" in out.getvalue()
    (tmp_path / "logo.png").write_bytes(b"png")
    out = io.StringIO()
    assert check_file(path, out) == 0, out.getvalue()


def test_the_pytest_plugins_rules_take_the_media_keywords(tmp_path: Path) -> None:
    knife = rule_entry(1, {"contains": "knife", "endpoint": "moderations", "moderation": {"flagged": ["violence"]}})
    long_call = rule_entry(2, {"duration": {"min": 20}, "reply": "long"})
    logo = rule_entry(3, {"contains": "logo", "image": str(tmp_path / "logo.png")})
    rules = PerTestRules(parse_document({}), [knife, long_call, logo], strict=False, unmatched=[])
    assert rules.choose(media("moderations", "a knife", "moderation")).flagged == {"violence": 0.9}
    assert rules.choose(media("audio.transcriptions", "", duration_s=30.0, file_name="a.wav")).text == "long"
    assert rules.choose(media("images.generations", "our logo", "image")).file == str(tmp_path / "logo.png")
    drawn = rules.choose(media("images.generations", "a dog", "image"))
    assert drawn.file is None and drawn.rule is None and drawn.error is None
