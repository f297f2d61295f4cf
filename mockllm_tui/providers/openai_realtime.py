"""OpenAI Realtime (GA) over a WebSocket: `GET /v1/realtime?model=…`, and `POST /v1/realtime/client_secrets`.

The session is a pure translator (see providers/realtime.py): client events in, server events out,
in the API's order, each valid as the `openai` SDK's `RealtimeServerEvent`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import itertools
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from mockllm_tui.core.conversation import Conversation, Message, Reply, RequestError, Role, ToolCall, ToolSpec
from mockllm_tui.core.tokens import count_conversation, count_tokens
from mockllm_tui.engine.speech import OUTPUT_RATE, duration_ms, speech_spans, synthesize
from mockllm_tui.providers.base import CLAIM_NONE, Endpoint, Frame, Query, Request, new_id, now_s
from mockllm_tui.providers.openai_common import OpenAIBase
from mockllm_tui.providers.realtime import (
    Answer,
    Cancel,
    Emit,
    RealtimeEndpoint,
    RealtimeSession,
    Step,
    Turn,
    audio_tokens,
    encoded,
)
from mockllm_tui.providers.registry import register_provider

DEFAULT_MODEL = "gpt-realtime"
CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
)
MIN_COMMIT_MS = 100.0
EPHEMERAL_PREFIX = "ek_"
EPHEMERAL_TTL_S = 600
#: Where an audio item keeps the transcript the rules see (never sent).
TRANSCRIPT_KEY = "_mock_transcript"


class RealtimeRequestError(Exception):
    """A client event the API refuses: an `error` event, and the session goes on."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def default_session(model: str) -> dict[str, Any]:
    """The session as `session.created` announces it."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess_"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": now_s() + 3600,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": OUTPUT_RATE},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": {"type": "audio/pcm", "rate": OUTPUT_RATE}, "voice": "alloy", "speed": 1.0},
        },
        "include": None,
    }


def merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Merge a partial session update into the session: objects field by field, the rest replaced."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _event_ids() -> itertools.count[int]:
    return itertools.count(1)


class OpenAIRealtimeSession(RealtimeSession):
    """One Realtime session: its configuration, its conversation items and its input audio buffer."""

    def __init__(self, model: str, audio_transcript: str) -> None:
        self.model = model
        self.session = default_session(model)
        self.items: list[dict[str, Any]] = []
        self.audio = bytearray()
        self.audio_offset_ms = 0.0
        self.audio_transcript = audio_transcript
        self.active: Turn | None = None
        self.last_response_id = ""
        self._ids = _event_ids()
        self._prefix = new_id("event_", 6)
        self._speech_item = ""

    # -- framing ---------------------------------------------------------------------------------
    def event(self, kind: str, **fields: Any) -> bytes:
        """One server event, with a unique `event_id`."""
        return encoded({"type": kind, "event_id": f"{self._prefix}{next(self._ids)}", **fields})

    def _frame(self, kind: str, *, piece: str = "", piece_tokens: int = 0, **fields: Any) -> Frame:
        """A server event as a stream frame carrying `piece` of the reply, labelled with its type."""
        return Frame(self.event(kind, **fields), piece, piece_tokens, kind)

    def error(self, message: str, code: str, *, param: str | None = None, event_id: str | None = None) -> bytes:
        """An `error` event for a client event the API refuses."""
        return self.event(
            "error",
            error={
                "type": "invalid_request_error",
                "code": code,
                "message": message,
                "param": param,
                "event_id": event_id,
            },
        )

    # -- client events ---------------------------------------------------------------------------
    def opened(self) -> list[Step]:
        """`session.created` with the default session."""
        return [Emit((self.event("session.created", session=self.session),))]

    def receive(self, message: str | bytes) -> list[Step]:
        """Translate one client event."""
        try:
            data = orjson.loads(message)
        except orjson.JSONDecodeError as bad_json:
            return [Emit((self.error(f"Invalid JSON in the client event: {bad_json}", "invalid_json"),))]
        if not isinstance(data, dict):
            return [Emit((self.error("A client event must be a JSON object.", "invalid_json"),))]
        event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
        kind = data.get("type")
        try:
            if not isinstance(kind, str):
                raise RealtimeRequestError("Missing required parameter: 'type'.", "missing_required_parameter", "type")
            handler = getattr(self, "on_" + kind.replace(".", "_"), None) if kind in CLIENT_EVENTS else None
            if handler is None:
                supported = ", ".join(f"'{k}'" for k in CLIENT_EVENTS)
                raise RealtimeRequestError(
                    f"Invalid value: '{kind}'. Supported values are: {supported}.", "invalid_value", "type"
                )
            steps: list[Step] = handler(data)
            return steps
        except RealtimeRequestError as refused:
            return [Emit((self.error(refused.message, refused.code, param=refused.param, event_id=event_id),))]

    def too_large(self, size: int, limit: int) -> list[Step]:
        """An `error` event; the session goes on."""
        message = f"Client event of {size} bytes exceeds the maximum size of {limit} bytes."
        return [Emit((self.error(message, "message_too_large"),))]

    def on_session_update(self, data: dict[str, Any]) -> list[Step]:
        session = _object(data, "session")
        if session.get("type") not in ("realtime", None) or "type" not in session:
            if "type" not in session:
                raise RealtimeRequestError(
                    "Missing required parameter: 'session.type'.", "missing_required_parameter", "session.type"
                )
            raise RealtimeRequestError(
                f"Invalid value: '{session.get('type')}'. Supported values are: 'realtime'.",
                "invalid_value",
                "session.type",
            )
        modalities = session.get("output_modalities")
        if modalities is not None and (
            not isinstance(modalities, list) or not modalities or any(m not in ("text", "audio") for m in modalities)
        ):
            raise RealtimeRequestError(
                "Invalid value for 'session.output_modalities': use ['text'] or ['audio'].",
                "invalid_value",
                "session.output_modalities",
            )
        merge(self.session, session)
        return [Emit((self.event("session.updated", session=self.session),))]

    def on_conversation_item_create(self, data: dict[str, Any]) -> list[Step]:
        item = self._checked_item(_object(data, "item"))
        previous = data.get("previous_item_id")
        return [Emit(self._add_item(item, previous if isinstance(previous, str) else None))]

    def on_conversation_item_retrieve(self, data: dict[str, Any]) -> list[Step]:
        item = self._item(_text(data, "item_id"))
        return [Emit((self.event("conversation.item.retrieved", item=item),))]

    def on_conversation_item_delete(self, data: dict[str, Any]) -> list[Step]:
        item = self._item(_text(data, "item_id"))
        self.items.remove(item)
        return [Emit((self.event("conversation.item.deleted", item_id=item["id"]),))]

    def on_conversation_item_truncate(self, data: dict[str, Any]) -> list[Step]:
        item = self._item(_text(data, "item_id"))
        if item.get("role") != "assistant":
            raise RealtimeRequestError("Only assistant messages can be truncated.", "invalid_value", "item_id")
        end_ms = data.get("audio_end_ms")
        index = data.get("content_index", 0)
        if not isinstance(end_ms, int) or end_ms < 0 or not isinstance(index, int):
            raise RealtimeRequestError(
                "Missing required parameter: 'audio_end_ms'.", "missing_required_parameter", "audio_end_ms"
            )
        return [
            Emit(
                (
                    self.event(
                        "conversation.item.truncated", item_id=item["id"], content_index=index, audio_end_ms=end_ms
                    ),
                )
            )
        ]

    def on_input_audio_buffer_append(self, data: dict[str, Any]) -> list[Step]:
        try:
            chunk = base64.b64decode(_text(data, "audio"), validate=True)
        except binascii.Error:
            raise RealtimeRequestError(
                "Invalid 'audio': expected base64-encoded PCM16 audio.", "invalid_value", "audio"
            ) from None
        self.audio += chunk
        detection = self.session["audio"]["input"].get("turn_detection")
        if not isinstance(detection, dict) or detection.get("type") not in ("server_vad", "semantic_vad"):
            return []
        return self._detect_speech(detection)

    def on_input_audio_buffer_commit(self, data: dict[str, Any]) -> list[Step]:
        length = duration_ms(len(self.audio), self._input_rate())
        if length < MIN_COMMIT_MS:
            raise RealtimeRequestError(
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {length:.2f}ms of audio.",
                "input_audio_buffer_commit_empty",
            )
        return [Emit(self._commit_audio(new_id("item_")))]

    def on_input_audio_buffer_clear(self, data: dict[str, Any]) -> list[Step]:
        self.audio_offset_ms += duration_ms(len(self.audio), self._input_rate())
        self.audio.clear()
        self._speech_item = ""
        return [Emit((self.event("input_audio_buffer.cleared"),))]

    def on_response_create(self, data: dict[str, Any]) -> list[Step]:
        if self.active is not None:
            raise RealtimeRequestError(
                f"Conversation already has an active response in progress: {self.active.response_id}. "
                "Wait until the response is finished before creating a new one.",
                "conversation_already_has_active_response",
            )
        options = data.get("response") or {}
        if not isinstance(options, dict):
            raise RealtimeRequestError("Invalid type for 'response': expected an object.", "invalid_type", "response")
        return [Answer(self._turn(options))]

    def on_response_cancel(self, data: dict[str, Any]) -> list[Step]:
        if self.active is None:
            raise RealtimeRequestError("Cancellation failed: no active response found", "response_cancel_not_active")
        return [Cancel()]

    def on_output_audio_buffer_clear(self, data: dict[str, Any]) -> list[Step]:
        return [
            Emit((self.event("output_audio_buffer.cleared", response_id=self.last_response_id or new_id("resp_")),))
        ]

    # -- items -----------------------------------------------------------------------------------
    def _checked_item(self, item: dict[str, Any]) -> dict[str, Any]:
        kind = item.get("type")
        item = copy.deepcopy(item)
        item.setdefault("id", new_id("item_"))
        item["object"], item["status"] = "realtime.item", "completed"
        if kind == "message":
            if item.get("role") not in ("user", "assistant", "system"):
                raise RealtimeRequestError(
                    f"Invalid value: '{item.get('role')}'. Supported values are: 'user', 'assistant' and 'system'.",
                    "invalid_value",
                    "item.role",
                )
            content = item.get("content")
            if not isinstance(content, list) or not all(isinstance(c, dict) for c in content):
                raise RealtimeRequestError(
                    "Missing required parameter: 'item.content'.", "missing_required_parameter", "item.content"
                )
            return item
        if kind == "function_call_output":
            _text(item, "call_id", "item.call_id")
            _text(item, "output", "item.output")
            return item
        if kind == "function_call":
            _text(item, "name", "item.name")
            item.setdefault("call_id", new_id("call_"))
            item.setdefault("arguments", "{}")
            return item
        raise RealtimeRequestError(
            f"Invalid value: '{kind}'. Supported values are: 'message', 'function_call' and 'function_call_output'.",
            "invalid_value",
            "item.type",
        )

    def _add_item(self, item: dict[str, Any], previous: str | None = None) -> tuple[bytes, ...]:
        """Add an item to the conversation, announced as added and done (without mock-only fields)."""
        if previous is not None and previous != "root":
            self._item(previous, "previous_item_id")
        prior = self._last_id()
        self.items.append(item)
        public = {k: v for k, v in item.items() if k != TRANSCRIPT_KEY}
        return (
            self.event("conversation.item.added", previous_item_id=prior, item=public),
            self.event("conversation.item.done", previous_item_id=prior, item=public),
        )

    def _item(self, item_id: str, param: str = "item_id") -> dict[str, Any]:
        for item in self.items:
            if item["id"] == item_id:
                return item
        raise RealtimeRequestError(f"Item with item_id not found: {item_id}", "item_not_found", param)

    # -- input audio -----------------------------------------------------------------------------
    def _input_rate(self) -> int:
        fmt = self.session["audio"]["input"].get("format") or {}
        return int(fmt.get("rate", OUTPUT_RATE)) if fmt.get("type", "audio/pcm") == "audio/pcm" else 8000

    def _detect_speech(self, detection: dict[str, Any]) -> list[Step]:
        rate = self._input_rate()
        silence = int(detection.get("silence_duration_ms") or 500)
        threshold = float(detection.get("threshold") or 0.5)
        spans = speech_spans(bytes(self.audio), rate, threshold=threshold, silence_ms=silence)
        if not spans:
            return []
        start, end = spans[0]
        out: list[bytes] = []
        if not self._speech_item:
            self._speech_item = new_id("item_")
            padding = int(detection.get("prefix_padding_ms") or 300)
            at = int(self.audio_offset_ms) + max(0, start - padding)
            out.append(self.event("input_audio_buffer.speech_started", audio_start_ms=at, item_id=self._speech_item))
        if end < 0:
            return [Emit(tuple(out))] if out else []
        item_id = self._speech_item
        out.append(
            self.event(
                "input_audio_buffer.speech_stopped", audio_end_ms=int(self.audio_offset_ms) + end, item_id=item_id
            )
        )
        out += self._commit_audio(item_id)
        steps: list[Step] = [Emit(tuple(out))]
        if detection.get("create_response", True) and self.active is None:
            steps.append(Answer(self._turn({})))
        return steps

    def _commit_audio(self, item_id: str) -> tuple[bytes, ...]:
        rate = self._input_rate()
        length = duration_ms(len(self.audio), rate)
        transcript = self.audio_transcript
        transcribe = self.session["audio"]["input"].get("transcription")
        item = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": transcript if transcribe else None}],
            TRANSCRIPT_KEY: transcript,
        }
        out = [self.event("input_audio_buffer.committed", previous_item_id=self._last_id(), item_id=item_id)]
        out += self._add_item(item)
        if transcribe:
            out.append(
                self.event(
                    "conversation.item.input_audio_transcription.completed",
                    item_id=item_id,
                    content_index=0,
                    transcript=transcript,
                    usage={"type": "duration", "seconds": round(length / 1000.0, 3)},
                )
            )
        self.audio_offset_ms += length
        self.audio.clear()
        self._speech_item = ""
        return tuple(out)

    # -- responses -------------------------------------------------------------------------------
    def _turn(self, options: dict[str, Any]) -> Turn:
        session = self.session
        modalities = options.get("output_modalities") or session.get("output_modalities") or ["audio"]
        instructions = options.get("instructions", session.get("instructions")) or ""
        tools = options.get("tools", session.get("tools")) or []
        items = self.items if options.get("conversation", "auto") != "none" else []
        extra = options.get("input")
        if isinstance(extra, list):
            items = [*items, *(i for i in extra if isinstance(i, dict))]
        conversation = Conversation(
            provider="openai",
            endpoint="realtime",
            model=self.model,
            messages=_messages(items),
            system=instructions if isinstance(instructions, str) else "",
            tools=[
                ToolSpec(t["name"], t.get("description", ""), t.get("parameters") or {})
                for t in tools
                if isinstance(t, dict) and isinstance(t.get("name"), str)
            ],
            stream=True,
        )
        output = session["audio"]["output"]
        turn = Turn(
            conversation=conversation,
            response_id=new_id("resp_"),
            modalities=tuple(modalities),
            details={
                "voice": output.get("voice") or "alloy",
                "speed": float(output.get("speed") or 1.0),
                "format": output.get("format") or {"type": "audio/pcm", "rate": OUTPUT_RATE},
                "max_output_tokens": options.get("max_output_tokens", session.get("max_output_tokens", "inf")),
                "metadata": options.get("metadata"),
                "into_conversation": options.get("conversation", "auto") != "none",
            },
        )
        self.active = turn
        return turn

    def _response(
        self, turn: Turn, status: str, output: list[dict[str, Any]], usage: Any = None, details: Any = None
    ) -> dict[str, Any]:
        return {
            "id": turn.response_id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "output": output,
            "conversation_id": "conv_" + turn.response_id[5:] if turn.details["into_conversation"] else None,
            "output_modalities": list(turn.modalities),
            "max_output_tokens": turn.details["max_output_tokens"],
            "audio": {"output": {"format": turn.details["format"], "voice": turn.details["voice"]}},
            "usage": usage,
            "metadata": turn.details["metadata"],
        }

    def render(self, turn: Turn, reply: Reply, pieces: list[str], piece_tokens: list[int]) -> list[Frame]:
        """The response's events: created, its items (a message, or function calls), done, rate limits."""
        rid = turn.response_id
        frames = [self._frame("response.created", response=self._response(turn, "in_progress", []))]
        output: list[dict[str, Any]] = []
        audio_ms = 0.0
        if reply.tool_calls:
            for index, call in enumerate(reply.tool_calls):
                frames += self._render_call(rid, index, call, output)
        else:
            audio = "audio" in turn.modalities
            item: dict[str, Any] = {
                "id": new_id("item_"),
                "type": "message",
                "object": "realtime.item",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            part_type = "audio" if audio else "text"
            frames.append(self._frame("response.output_item.added", response_id=rid, output_index=0, item=item))
            frames.append(self._frame("conversation.item.added", previous_item_id=self._last_id(), item=item))
            where: dict[str, Any] = {"response_id": rid, "item_id": item["id"], "output_index": 0, "content_index": 0}
            empty_part = {"type": part_type, "transcript": ""} if audio else {"type": "text", "text": ""}
            frames.append(self._frame("response.content_part.added", part=empty_part, **where))
            for piece, tokens in zip(pieces, piece_tokens, strict=True):
                if audio:
                    pcm = synthesize(piece, turn.details["voice"], speed=turn.details["speed"])
                    audio_ms += duration_ms(pcm, OUTPUT_RATE)
                    frames.append(
                        self._frame(
                            "response.output_audio_transcript.delta",
                            delta=piece,
                            **where,
                            piece=piece,
                            piece_tokens=tokens,
                        )
                    )
                    frames.append(
                        self._frame("response.output_audio.delta", delta=base64.b64encode(pcm).decode(), **where)
                    )
                else:
                    frames.append(
                        self._frame(
                            "response.output_text.delta", delta=piece, **where, piece=piece, piece_tokens=tokens
                        )
                    )
            if audio:
                frames.append(self._frame("response.output_audio.done", **where))
                frames.append(self._frame("response.output_audio_transcript.done", transcript=reply.text, **where))
                part = {"type": "audio", "transcript": reply.text}
                item["content"] = [{"type": "output_audio", "transcript": reply.text}]
            else:
                frames.append(self._frame("response.output_text.done", text=reply.text, **where))
                part = {"type": "text", "text": reply.text}
                item["content"] = [{"type": "output_text", "text": reply.text}]
            item = {**item, "status": "completed"}
            frames.append(self._frame("response.content_part.done", part=part, **where))
            frames.append(self._frame("response.output_item.done", response_id=rid, output_index=0, item=item))
            frames.append(self._frame("conversation.item.done", previous_item_id=self._last_id(), item=item))
            output.append(item)
        turn.details["output"] = output
        usage = self._usage(turn, reply, audio_ms)
        frames.append(self._frame("response.done", response=self._response(turn, "completed", output, usage)))
        frames.append(Frame(self._rate_limits(usage["total_tokens"]), label="rate_limits.updated"))
        return frames

    def _render_call(self, rid: str, index: int, call: ToolCall, output: list[dict[str, Any]]) -> list[Frame]:
        call_id = call.id or new_id("call_")
        arguments = orjson.dumps(call.arguments).decode()
        item = {
            "id": new_id("item_"),
            "type": "function_call",
            "object": "realtime.item",
            "status": "in_progress",
            "name": call.name,
            "call_id": call_id,
            "arguments": "",
        }
        where: dict[str, Any] = {"response_id": rid, "item_id": item["id"], "output_index": index, "call_id": call_id}
        done = {**item, "status": "completed", "arguments": arguments}
        output.append(done)
        return [
            self._frame("response.output_item.added", response_id=rid, output_index=index, item=item),
            self._frame("conversation.item.added", previous_item_id=self._last_id(), item=item),
            self._frame(
                "response.function_call_arguments.delta", delta=arguments, piece_tokens=count_tokens(arguments), **where
            ),
            self._frame("response.function_call_arguments.done", arguments=arguments, name=call.name, **where),
            self._frame("response.output_item.done", response_id=rid, output_index=index, item=done),
            self._frame("conversation.item.done", previous_item_id=self._last_id(), item=done),
        ]

    def _usage(self, turn: Turn, reply: Reply, audio_ms: float) -> dict[str, Any]:
        text_in = count_conversation(turn.conversation)
        text_out = reply.usage.output_tokens or count_tokens(reply.text)
        audio_out = audio_tokens(audio_ms)
        return {
            "total_tokens": text_in + text_out + audio_out,
            "input_tokens": text_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {"text_tokens": text_in, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    def _rate_limits(self, tokens: int) -> bytes:
        return self.event(
            "rate_limits.updated",
            rate_limits=[
                {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                {"name": "tokens", "limit": 40000, "remaining": max(0, 40000 - tokens), "reset_seconds": 0.5},
            ],
        )

    def _last_id(self) -> str | None:
        return self.items[-1]["id"] if self.items else None

    def finished(self, turn: Turn, reply: Reply) -> None:
        """The response went out whole: its items join the conversation."""
        if turn.details.get("into_conversation", True):
            self.items.extend(turn.details.get("output", []))
        self.last_response_id = turn.response_id
        self.active = None

    def cancelled(self, turn: Turn) -> list[bytes]:
        """`response.done` with status cancelled."""
        self.active = None
        self.last_response_id = turn.response_id
        details = {"type": "cancelled", "reason": "client_cancelled"}
        return [self.event("response.done", response=self._response(turn, "cancelled", [], None, details))]

    def rule_error(self, turn: Turn, status: int, message: str) -> list[Step]:
        """A failed response: an `error` event, then `response.done` with status failed."""
        self.active = None
        details = {
            "type": "failed",
            "error": {"type": "server_error" if status >= 500 else "invalid_request_error", "code": str(status)},
        }
        return [
            Emit(
                (
                    self.event("response.created", response=self._response(turn, "in_progress", [])),
                    self.event(
                        "error",
                        error={
                            "type": "server_error" if status >= 500 else "invalid_request_error",
                            "code": str(status),
                            "message": message,
                            "param": None,
                            "event_id": None,
                        },
                    ),
                    self.event("response.done", response=self._response(turn, "failed", [], None, details)),
                )
            )
        ]

    def transcript(self) -> list[tuple[str, str]]:
        """The conversation so far as (role, text) lines."""
        return [(m.role, m.content) for m in _messages(self.items)]

    def label(self, message: bytes) -> str:
        """A server event's type."""
        return str(orjson.loads(message).get("type", ""))


def _messages(items: list[dict[str, Any]]) -> list[Message]:
    """Conversation items as neutral messages (audio turns carry their configured transcript)."""
    out: list[Message] = []
    names: dict[str, str] = {}
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role: Role = item.get("role", "user")
            texts = []
            for part in item.get("content") or []:
                text = part.get("text") or part.get("transcript")
                if part.get("type") == "input_audio" and item.get(TRANSCRIPT_KEY) is not None:
                    text = item[TRANSCRIPT_KEY]
                if isinstance(text, str):
                    texts.append(text)
            out.append(Message(role=role, content="\n".join(texts)))
        elif kind == "function_call":
            names[item.get("call_id", "")] = item.get("name", "")
            try:
                arguments = orjson.loads(item.get("arguments") or "{}")
            except orjson.JSONDecodeError:
                arguments = {}
            call = ToolCall(
                item.get("name", ""), arguments if isinstance(arguments, dict) else {}, item.get("call_id", "")
            )
            if out and out[-1].role == "assistant":
                out[-1].tool_calls.append(call)
            else:
                out.append(Message(role="assistant", tool_calls=[call]))
        elif kind == "function_call_output":
            call_id = item.get("call_id", "")
            out.append(
                Message(role="tool", content=item.get("output", ""), tool_call_id=call_id, name=names.get(call_id))
            )
    return out


def _object(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        raise RealtimeRequestError(f"Missing required parameter: '{key}'.", "missing_required_parameter", key)
    if not isinstance(value, dict):
        raise RealtimeRequestError(f"Invalid type for '{key}': expected an object.", "invalid_type", key)
    return value


def _text(data: Mapping[str, Any], key: str, param: str | None = None) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        name = param or key
        raise RealtimeRequestError(f"Missing required parameter: '{name}'.", "missing_required_parameter", name)
    return value


class RealtimeSocket(RealtimeEndpoint):
    """`GET /v1/realtime?model=…`, upgraded to a WebSocket."""

    paths = ("/v1/realtime", "/realtime")
    name = "realtime"
    operation = "chat"

    def open(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], *, audio_transcript: str
    ) -> RealtimeSession:
        """A session for the model the query names."""
        return OpenAIRealtimeSession(query.get("model") or DEFAULT_MODEL, audio_transcript)


class ClientSecrets(Endpoint):
    """`POST /v1/realtime/client_secrets`: an ephemeral key the WebSocket accepts, with its session.

    The key is signed with the key the request carries, which the server's auth check has already
    compared with its own: any process with the same `--api-key` accepts it, and none is kept.
    """

    paths = ("/v1/realtime/client_secrets", "/realtime/client_secrets")
    name = "realtime.client_secrets"

    def parse_request(self, request: Request) -> Query:
        """The session asked for and the key's lifetime."""
        body = request.json() if request.body else {}
        requested = body.get("session", {})
        if not isinstance(requested, dict):
            raise RequestError("Invalid type for 'session': expected an object.", param="session")
        expires = body.get("expires_after", {})
        seconds = expires.get("seconds", EPHEMERAL_TTL_S) if isinstance(expires, dict) else None
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 10 <= seconds <= 7200:
            raise RequestError("expires_after.seconds: must be between 10 and 7200", param="expires_after.seconds")
        session = default_session(str(requested.get("model") or DEFAULT_MODEL))
        merge(session, requested)
        expires_at = int(time.time()) + seconds
        session["expires_at"] = expires_at
        key = ephemeral_key(self.provider.presented_keys(request.headers)[:1], expires_at)
        return Query(model=session["model"], preview="client secret", params={"key": key, "session": session})

    def render_query(self, query: Query, request: Request) -> Any:
        """`{"value", "expires_at", "session"}`."""
        session = query.params["session"]
        return {"value": query.params["key"], "expires_at": session["expires_at"], "session": session}


def ephemeral_key(signing: list[str] | str, expires_at: int) -> str:
    """An ephemeral key: its expiry and a signature by an API key (none: an empty one)."""
    secret = signing if isinstance(signing, str) else (signing[0] if signing else "")
    mac = hmac.new(secret.encode(), str(expires_at).encode(), hashlib.sha256).hexdigest()[:32]
    return f"{EPHEMERAL_PREFIX}{expires_at}_{mac}"


def ephemeral_key_valid(key: str, api_key: str, now: float) -> bool:
    """Whether `key` is an unexpired ephemeral key signed by `api_key`."""
    stamp, _, _ = key.removeprefix(EPHEMERAL_PREFIX).partition("_")
    if not key.startswith(EPHEMERAL_PREFIX) or not stamp.isdigit() or int(stamp) < now:
        return False
    return hmac.compare_digest(key, ephemeral_key(api_key, int(stamp)))


class OpenAIRealtime(OpenAIBase):
    """OpenAI's Realtime API (its errors and headers are OpenAI's)."""

    name: ClassVar[str] = "openai-realtime"
    endpoint_classes = (RealtimeSocket, ClientSecrets)

    def claims(self, path: str, headers: Mapping[str, str]) -> int:
        """Nothing beyond its own routes: the chat provider answers for `/v1/`."""
        return CLAIM_NONE

    def accepts_ephemeral(self, key: str, api_key: str, now: float) -> bool:
        """Whether the handshake's key is an ephemeral key this server issued."""
        return ephemeral_key_valid(key, api_key, now)


register_provider(OpenAIRealtime)
