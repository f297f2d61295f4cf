"""Neutral shapes of the media requests (images, speech, transcription, moderation): what a rule
sees of them and which kind of answer they take. No wire format here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mockllm_tui.core.conversation import Conversation, Message

#: What an endpoint can use from a rule: chat text and tool calls, a transcript's text, an image
#: file, an audio file or a moderation verdict.
AnswerKind = Literal["chat", "text", "image", "audio", "moderation"]

#: The moderation categories, spelled as the API spells them, in the order it lists them.
MODERATION_CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
#: The categories that also judge images.
IMAGE_CATEGORIES: frozenset[str] = frozenset(
    {"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence", "violence/graphic"}
)
#: The score of a flagged category unless the rule gives one; a score must be at least the threshold.
FLAGGED_SCORE = 0.9
FLAG_THRESHOLD = 0.5


@dataclass(slots=True)
class MediaRequest(Conversation):
    """A media request as the rules see it: its one text (the prompt, the speech input, a
    transcription's `prompt` field or one moderation input) as the user message, the uploaded
    file's name and the uploaded audio's duration when there are any, and the kind of answer the
    endpoint takes."""

    answer_kind: AnswerKind = "text"
    file_name: str | None = None
    duration_s: float | None = None


def media_request(
    provider: str,
    endpoint: str,
    model: str,
    text: str,
    kind: AnswerKind,
    *,
    file_name: str | None = None,
    duration_s: float | None = None,
    stream: bool = False,
) -> MediaRequest:
    """A media request whose one text is `text`."""
    return MediaRequest(
        provider,
        endpoint,
        model,
        messages=[Message(role="user", content=text)],
        stream=stream,
        answer_kind=kind,
        file_name=file_name,
        duration_s=duration_s,
    )


def answer_kind(conversation: Conversation) -> AnswerKind:
    """The kind of answer a request takes ("chat" for every chat-like endpoint)."""
    return conversation.answer_kind if isinstance(conversation, MediaRequest) else "chat"
