"""Journal entries as plain data and back: what the event stream sends and an attached panel rebuilds.

Times cross processes as offsets: `age_ms` is how long ago the request started when the data was
made, and chunk times are offsets (ms) from that start, so the receiver places them on its own clock.
"""

from __future__ import annotations

import base64
from operator import attrgetter, itemgetter
from time import perf_counter
from typing import Any

from mockllm_tui.core.conversation import Conversation, Message, ToolCall, ToolSpec
from mockllm_tui.core.redaction import redacted_bytes
from mockllm_tui.core.store import JournalEntry

#: The fields copied as they are, both ways.
PLAIN_FIELDS: tuple[str, ...] = (
    "id",
    "time",
    "method",
    "path",
    "provider",
    "model",
    "preview",
    "status",
    "duration_ms",
    "bytes_sent",
    "stream",
    "open",
    "rule",
    "rule_id",
    "fault",
    "request_id",
    "reply_text",
    "endpoint",
    "operation",
    "system",
    "response_id",
    "input_tokens",
    "output_tokens",
    "finish_reason",
    "fault_status",
    "fault_mode",
    "prompt_tokens",
    "context_window",
    "limit_breach",
    "refused_for_length",
    "thinking_text",
    "stream_speed",
    "session",
    "scenario",
    "instance",
    "foreign",
)


_plain = attrgetter(*PLAIN_FIELDS)
_plain_items = itemgetter(*PLAIN_FIELDS)


def conversation_data(conversation: Conversation) -> dict[str, Any]:
    """A conversation as plain data."""
    return {
        "provider": conversation.provider,
        "endpoint": conversation.endpoint,
        "model": conversation.model,
        "system": conversation.system,
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "tool_calls": [{"name": c.name, "arguments": c.arguments, "id": c.id} for c in m.tool_calls],
                "tool_call_id": m.tool_call_id,
                "name": m.name,
            }
            for m in conversation.messages
        ],
        "tools": [
            {"name": t.name, "description": t.description, "parameters": t.parameters} for t in conversation.tools
        ],
        "stream": conversation.stream,
    }


def conversation_from_data(data: dict[str, Any]) -> Conversation:
    """A conversation rebuilt from `conversation_data`."""
    return Conversation(
        provider=data.get("provider", ""),
        endpoint=data.get("endpoint", ""),
        model=data.get("model", ""),
        system=data.get("system", ""),
        messages=[
            Message(
                role=m["role"],
                content=m.get("content", ""),
                tool_calls=[
                    ToolCall(c["name"], c.get("arguments") or {}, c.get("id", "")) for c in m.get("tool_calls", ())
                ],
                tool_call_id=m.get("tool_call_id"),
                name=m.get("name"),
            )
            for m in data.get("messages", ())
        ],
        tools=[ToolSpec(t["name"], t.get("description", ""), t.get("parameters")) for t in data.get("tools", ())],
        stream=bool(data.get("stream", False)),
    )


def _bytes_data(raw: bytes) -> dict[str, Any]:
    try:
        return {"text": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}


def _bytes_from(data: dict[str, Any] | None) -> bytes:
    if not data:
        return b""
    if "base64" in data:
        return base64.b64decode(data["base64"])
    return str(data.get("text", "")).encode("utf-8")


def chunk_offsets(entry: JournalEntry, start: int = 0) -> list[float]:
    """The chunks' times from `start` on, as ms after the request started."""
    began = entry.started
    return [round((t - began) * 1000.0, 3) for t in entry.chunk_times[start:]]


def entry_data(
    entry: JournalEntry, *, chunks_from: int | None = 0, now: float | None = None, api_key: str | None = None
) -> dict[str, Any]:
    """An entry as plain data, credentials redacted from its body; its chunks (and their labels)
    from `chunks_from` on (None: no chunks). `near_misses` says only whether a fallback answered
    (the near misses are worked out when asked for: `GET /_mock/journal/ID`)."""
    now = perf_counter() if now is None else now
    out: dict[str, Any] = dict(zip(PLAIN_FIELDS, _plain(entry), strict=True))
    out["age_ms"] = round((now - entry.started) * 1000.0, 3)
    out["first_chunk_ms"] = (
        None if entry.first_chunk_at is None else round((entry.first_chunk_at - entry.started) * 1000.0, 3)
    )
    out["stream_started"] = entry.stream_started
    out["headers"] = entry.request_headers
    out["body"] = _bytes_data(redacted_bytes(entry.request_body, api_key)) if entry.request_body else None
    out["response_body"] = _bytes_data(entry.response_body) if entry.response_body else None
    out["conversation"] = conversation_data(entry.conversation) if entry.conversation is not None else None
    out["near_misses"] = entry.near_misses is not None
    if entry.thumbnail is not None:
        width, height, rgb = entry.thumbnail
        out["thumbnail"] = {"width": width, "height": height, "rgb": base64.b64encode(rgb).decode("ascii")}
    if chunks_from is not None:
        out["chunks_from"] = chunks_from
        out["chunks"] = entry.chunks[chunks_from:]
        out["chunk_ms"] = chunk_offsets(entry, chunks_from)
        if entry.chunk_labels:
            out["chunk_labels"] = entry.chunk_labels[chunks_from:]
    return out


def entry_from_data(data: dict[str, Any], *, now: float | None = None) -> JournalEntry:
    """A new entry from `entry_data` (its times placed on this process's clock)."""
    now = perf_counter() if now is None else now
    try:
        entry = JournalEntry(**dict(zip(PLAIN_FIELDS, _plain_items(data), strict=True)))
    except KeyError:  # not every field (an older server): the ones there are
        entry = JournalEntry(
            id=int(data["id"]), time=float(data.get("time", 0.0)), method=data["method"], path=data["path"]
        )
        _set_plain(entry, data)
    if "age_ms" in data:
        entry.started = now - float(data["age_ms"]) / 1000.0
    _set_rest(entry, data)
    return entry


def update_entry(entry: JournalEntry, data: dict[str, Any]) -> None:
    """Bring an entry up to date with newer data about it (its chunks merged by position). Its
    start stays where it was placed: the chunks already held were placed from it, and newer data
    may come later after it was made than the first did (a busy receiver)."""
    _set_plain(entry, data)
    _set_rest(entry, data)


def _set_plain(entry: JournalEntry, data: dict[str, Any]) -> None:
    for name in PLAIN_FIELDS:
        if name in data:
            setattr(entry, name, data[name])


def _set_rest(entry: JournalEntry, data: dict[str, Any]) -> None:
    if data.get("first_chunk_ms") is not None:
        entry.first_chunk_at = entry.started + float(data["first_chunk_ms"]) / 1000.0
    entry.stream_started = bool(data.get("stream_started", entry.stream_started))
    if "headers" in data:
        entry.request_headers = dict(data["headers"] or {})
    if data.get("body"):
        entry.request_body = _bytes_from(data["body"])
    if data.get("response_body"):
        entry.response_body = _bytes_from(data["response_body"])
    if data.get("conversation"):
        entry.conversation = conversation_from_data(data["conversation"])
    thumbnail = data.get("thumbnail")
    if thumbnail:
        rgb = base64.b64decode(thumbnail["rgb"])
        entry.thumbnail = (int(thumbnail["width"]), int(thumbnail["height"]), rgb)
    if "chunks" in data:
        start = int(data.get("chunks_from", 0))
        add_chunks(entry, start, data["chunks"], data.get("chunk_ms") or [], data.get("chunk_labels") or [])


def add_chunks(
    entry: JournalEntry, start: int, chunks: list[str], offsets_ms: list[float], labels: list[str] | None = None
) -> None:
    """Put chunks `start`, `start + 1`, … in place (with their labels, where they have some): those
    already held are skipped (a replay)."""
    have = len(entry.chunks)
    skip = max(0, have - start)
    if skip >= len(chunks):
        return
    times = [entry.started + ms / 1000.0 for ms in offsets_ms]
    times += [perf_counter()] * (len(chunks) - len(times))
    entry.chunks.extend(chunks[skip:])
    entry.chunk_times.extend(times[skip : len(chunks)])
    named = (labels or [])[skip : len(chunks)]
    if named:
        entry.chunk_labels += [""] * (have - len(entry.chunk_labels)) + named
    if entry.first_chunk_at is None and entry.chunk_times:
        entry.first_chunk_at = entry.chunk_times[0]
