"""The local token estimate: deterministic, offline, and the same on every endpoint.

A token is a run of up to four word characters (with the spaces before it), or one other
character. That lands near real tokenizers' counts for English (about four characters a token).
"""

from __future__ import annotations

import re
from functools import lru_cache

import orjson

from mockllm_tui.core.conversation import Conversation
from mockllm_tui.core.knobs import ChunkMode

_TOKEN = re.compile(r"\s*(?:\w{1,4}|[^\w\s])|\s+")
_WORD = re.compile(r"\s*\S+|\s+")

MESSAGE_OVERHEAD = 3
REPLY_OVERHEAD = 3


def split_tokens(text: str) -> list[str]:
    """Cut text into estimate tokens; joining them gives the text back."""
    return _TOKEN.findall(text)


CACHED_TEXT_CHARS = 4096


@lru_cache(maxsize=4096)
def _count_cached(text: str) -> int:
    return len(_TOKEN.findall(text))


def count_tokens(text: str) -> int:
    """The number of estimate tokens in text (short texts, such as canned replies, are cached)."""
    if not text:
        return 0
    if len(text) <= CACHED_TEXT_CHARS:
        return _count_cached(text)
    return len(_TOKEN.findall(text))


def truncate_tokens(text: str, limit: int) -> tuple[str, bool]:
    """The first `limit` tokens of text, and whether anything was cut."""
    if count_tokens(text) <= limit:
        return text, False
    pieces = split_tokens(text)
    if len(pieces) <= limit:
        return text, False
    return "".join(pieces[: max(limit, 0)]), True


def split_chunks(text: str, mode: ChunkMode) -> list[str]:
    """Cut text into stream chunks by character, word or token; joining gives the text back."""
    if not text:
        return []
    if mode == "char":
        return list(text)
    if mode == "word":
        return _WORD.findall(text)
    return split_tokens(text)


def count_conversation(conversation: Conversation) -> int:
    """Input tokens of a conversation: system, messages, tool calls and tool definitions."""
    total = count_tokens(conversation.system) + (MESSAGE_OVERHEAD if conversation.system else 0)
    for message in conversation.messages:
        total += MESSAGE_OVERHEAD + count_tokens(message.content)
        for call in message.tool_calls:
            total += count_tokens(call.name) + count_json(call.arguments)
    for tool in conversation.tools:
        total += count_tokens(tool.name) + count_tokens(tool.description) + count_json(tool.parameters)
    return total + REPLY_OVERHEAD


def count_json(value: object) -> int:
    """Tokens of a JSON value, counted over its compact text."""
    return count_tokens(orjson.dumps(value).decode())
