"""Gemini Live over a WebSocket: `BidiGenerateContent`, as google-genai's `client.aio.live.connect` dials it.

The session is a pure translator (see providers/realtime.py). It accepts the client messages in
both spellings the SDK sends (`client_content` or `clientContent`, `mime_type` or `mimeType`) and
always answers in camel case, each message valid as `google.genai.types.LiveServerMessage`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from mockllm_tui.core.conversation import Conversation, Message, Reply, Role, ToolCall, ToolSpec
from mockllm_tui.core.tokens import count_conversation, count_tokens
from mockllm_tui.engine.speech import OUTPUT_RATE, duration_ms, speech_spans, synthesize
from mockllm_tui.providers.base import CLAIM_NONE, Endpoint, Frame, new_id
from mockllm_tui.providers.gemini import Gemini
from mockllm_tui.providers.realtime import (
    CLOSE_BAD_DATA,
    CLOSE_SERVER_ERROR,
    Answer,
    Close,
    Emit,
    RealtimeEndpoint,
    RealtimeSession,
    Step,
    Turn,
    audio_tokens,
    encoded,
)
from mockllm_tui.providers.registry import register_provider

DEFAULT_MODEL = "gemini-live-2.5-flash"
INPUT_RATE = 16_000
SILENCE_MS = 500
OUTPUT_MIME = f"audio/pcm;rate={OUTPUT_RATE}"
#: Keys whose values are the client's own data: never respelled.
_OPAQUE = frozenset({"args", "response", "parameters", "parametersJsonSchema", "responseJsonSchema", "responseSchema"})
_SNAKE = re.compile(r"_([a-z])")
#: WebSocket close reasons are at most 123 bytes.
MAX_REASON = 120


def camel(data: Any) -> Any:
    """The message with snake_case keys respelled in camel case (the client's own data left as is)."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            name = _SNAKE.sub(lambda m: m.group(1).upper(), key) if isinstance(key, str) else key
            out[name] = value if name in _OPAQUE else camel(value)
        return out
    if isinstance(data, list):
        return [camel(v) for v in data]
    return data


class LiveError(Exception):
    """A client message the API refuses: the socket closes with 1007 and this reason."""


def _reason(text: str) -> str:
    encoded = text.encode()
    return text if len(encoded) <= MAX_REASON else encoded[: MAX_REASON - 3].decode(errors="ignore") + "..."


class GeminiLiveSession(RealtimeSession):
    """One Live session: set up by the first message, then turns of text, audio and tool results."""

    def __init__(self, audio_transcript: str) -> None:
        self.model = DEFAULT_MODEL
        self.audio_transcript = audio_transcript
        self.setup: dict[str, Any] | None = None
        self.messages: list[Message] = []
        self.pending: list[Message] = []
        self.audio = bytearray()
        self.audio_rate = INPUT_RATE
        self.active: Turn | None = None

    def receive(self, message: str | bytes) -> list[Step]:
        """Translate one client message; a bad one closes the socket with 1007."""
        try:
            data = orjson.loads(message)
            if not isinstance(data, dict):
                raise LiveError("Invalid JSON payload: a client message must be a JSON object.")
            data = camel(data)
            if self.setup is None:
                if "setup" not in data:
                    raise LiveError("Invalid JSON payload: the first message must be a setup message.")
                return self.on_setup(_object(data, "setup"))
            for key, handler in (
                ("clientContent", self.on_client_content),
                ("realtimeInput", self.on_realtime_input),
                ("toolResponse", self.on_tool_response),
            ):
                if key in data:
                    return handler(_object(data, key))
            if "setup" in data:
                raise LiveError("Invalid JSON payload: setup may only be sent once, as the first message.")
            names = ", ".join(f'"{k}"' for k in data) or "nothing"
            raise LiveError(f"Invalid JSON payload received. Unknown name {names}: cannot find field.")
        except orjson.JSONDecodeError as bad_json:
            return [Close(CLOSE_BAD_DATA, _reason(f"Invalid JSON payload received. {bad_json}"))]
        except LiveError as refused:
            return [Close(CLOSE_BAD_DATA, _reason(str(refused)))]

    # -- messages --------------------------------------------------------------------------------
    def on_setup(self, setup: dict[str, Any]) -> list[Step]:
        model = setup.get("model")
        if not isinstance(model, str) or not model:
            raise LiveError("setup.model: a model is required, e.g. models/gemini-live-2.5-flash.")
        self.model = model.removeprefix("models/")
        self.setup = setup
        return [Emit((encoded({"setupComplete": {}}),))]

    def on_client_content(self, content: dict[str, Any]) -> list[Step]:
        turns = content.get("turns") or []
        if not isinstance(turns, list):
            raise LiveError("clientContent.turns: expected a list of Content.")
        for turn in turns:
            self.pending += _content_messages(turn)
        if content.get("turnComplete") and self.active is None:
            return [Answer(self._turn())]
        return []

    def on_realtime_input(self, data: dict[str, Any]) -> list[Step]:
        text = data.get("text")
        if isinstance(text, str) and text:
            self.pending.append(Message(role="user", content=text))
            return [Answer(self._turn())] if self.active is None else []
        blobs = [data["audio"]] if isinstance(data.get("audio"), dict) else []
        blobs += [b for b in data.get("mediaChunks") or [] if isinstance(b, dict)]
        for blob in blobs:
            mime = str(blob.get("mimeType", ""))
            if not mime.startswith("audio/pcm"):
                continue
            rate = re.search(r"rate=(\d+)", mime)
            self.audio_rate = int(rate.group(1)) if rate else INPUT_RATE
            try:
                self.audio += _b64(str(blob.get("data", "")))
            except binascii.Error:
                raise LiveError("realtimeInput.audio.data: expected base64-encoded PCM16 audio.") from None
        if data.get("activityEnd") is not None or data.get("audioStreamEnd"):
            return self._end_of_speech(force=True)
        if blobs and not self._manual_activity():
            return self._end_of_speech(force=False)
        return []

    def on_tool_response(self, data: dict[str, Any]) -> list[Step]:
        responses = data.get("functionResponses")
        if not isinstance(responses, list) or not responses:
            raise LiveError("toolResponse.functionResponses: at least one function response is required.")
        for response in responses:
            if not isinstance(response, dict) or not isinstance(response.get("name"), str):
                raise LiveError("toolResponse.functionResponses[].name is required.")
            payload = response.get("response", {})
            self.pending.append(
                Message(
                    role="tool",
                    content=payload if isinstance(payload, str) else orjson.dumps(payload).decode(),
                    tool_call_id=str(response.get("id") or ""),
                    name=response["name"],
                )
            )
        return [Answer(self._turn())] if self.active is None else []

    # -- audio -----------------------------------------------------------------------------------
    def _manual_activity(self) -> bool:
        config = (self.setup or {}).get("realtimeInputConfig") or {}
        detection = config.get("automaticActivityDetection") or {}
        return bool(detection.get("disabled"))

    def _end_of_speech(self, *, force: bool) -> list[Step]:
        spans = speech_spans(bytes(self.audio), self.audio_rate, silence_ms=SILENCE_MS)
        if not spans or (spans[-1][1] < 0 and not force) or self.active is not None:
            if force and not spans:
                self.audio.clear()
            return []
        self.audio.clear()
        self.pending.append(Message(role="user", content=self.audio_transcript))
        out: list[Step] = []
        if (self.setup or {}).get("inputAudioTranscription") is not None:
            message = {"serverContent": {"inputTranscription": {"text": self.audio_transcript, "finished": True}}}
            out.append(Emit((encoded(message),)))
        out.append(Answer(self._turn()))
        return out

    # -- responses -------------------------------------------------------------------------------
    def _turn(self) -> Turn:
        setup = self.setup or {}
        self.messages += self.pending
        self.pending = []
        config = setup.get("generationConfig") or {}
        modalities = [str(m).lower() for m in config.get("responseModalities") or ["AUDIO"]]
        voice = (((config.get("speechConfig") or {}).get("voiceConfig") or {}).get("prebuiltVoiceConfig") or {}).get(
            "voiceName", "Puck"
        )
        conversation = Conversation(
            provider="gemini",
            endpoint="live",
            model=self.model,
            messages=list(self.messages),
            system=_text_of(setup.get("systemInstruction")),
            tools=_tools(setup.get("tools")),
            stream=True,
        )
        turn = Turn(conversation, new_id("turn_"), ("audio",) if "audio" in modalities else ("text",), {"voice": voice})
        self.active = turn
        return turn

    def render(self, turn: Turn, reply: Reply, pieces: list[str], piece_tokens: list[int]) -> list[Frame]:
        """The model's turn: its parts (text or inline audio), or a tool call; then complete."""
        if reply.tool_calls:
            calls = [
                {"id": call.id or new_id("call_"), "name": call.name, "args": call.arguments}
                for call in reply.tool_calls
            ]
            turn.details["calls"] = calls
            body = encoded({"toolCall": {"functionCalls": calls}})
            return [Frame(body, "", count_tokens(body.decode()), "toolCall")]
        frames: list[Frame] = []
        audio_ms = 0.0
        transcribe = (self.setup or {}).get("outputAudioTranscription") is not None
        for piece, tokens in zip(pieces, piece_tokens, strict=True):
            if "audio" in turn.modalities:
                pcm = synthesize(piece, str(turn.details.get("voice", "")))
                audio_ms += duration_ms(pcm, OUTPUT_RATE)
                part = {"inlineData": {"mimeType": OUTPUT_MIME, "data": base64.b64encode(pcm).decode()}}
                message = {"serverContent": {"modelTurn": {"parts": [part]}}}
                frames.append(Frame(encoded(message), piece, tokens, "modelTurn audio"))
                if transcribe:
                    transcription = {"serverContent": {"outputTranscription": {"text": piece}}}
                    frames.append(Frame(encoded(transcription), label="outputTranscription"))
            else:
                text = {"serverContent": {"modelTurn": {"parts": [{"text": piece}]}}}
                frames.append(Frame(encoded(text), piece, tokens, "modelTurn text"))
        frames.append(Frame(encoded({"serverContent": {"generationComplete": True}}), label="generationComplete"))
        complete = {"serverContent": {"turnComplete": True}, "usageMetadata": self._usage(turn, reply, audio_ms)}
        frames.append(Frame(encoded(complete), label="turnComplete"))
        return frames

    def _usage(self, turn: Turn, reply: Reply, audio_ms: float) -> dict[str, Any]:
        prompt = count_conversation(turn.conversation)
        audio = "audio" in turn.modalities
        response = audio_tokens(audio_ms) if audio else reply.usage.output_tokens or count_tokens(reply.text)
        return {
            "promptTokenCount": prompt,
            "responseTokenCount": response,
            "totalTokenCount": prompt + response,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
            "responseTokensDetails": [{"modality": "AUDIO" if audio else "TEXT", "tokenCount": response}],
        }

    def finished(self, turn: Turn, reply: Reply) -> None:
        """The model's turn joins the conversation."""
        calls = [ToolCall(c["name"], c["args"], c["id"]) for c in turn.details.get("calls", [])]
        self.messages.append(Message(role="assistant", content=reply.text if not calls else "", tool_calls=calls))
        self.active = None

    def cancelled(self, turn: Turn) -> list[bytes]:
        """An interrupted turn says so."""
        self.active = None
        return [encoded({"serverContent": {"interrupted": True}})]

    def rule_error(self, turn: Turn, status: int, message: str) -> list[Step]:
        """Live has no error message: the socket closes with an error code and the message as reason."""
        self.active = None
        return [Close(CLOSE_SERVER_ERROR, _reason(message))]

    def transcript(self) -> list[tuple[str, str]]:
        """The conversation so far as (role, text) lines."""
        return [(m.role, m.content) for m in self.messages]

    def label(self, message: bytes) -> str:
        """A server message's kind: its field (`serverContent`'s own first field, as the frames say)."""
        data = orjson.loads(message)
        kind = next(iter(data), "")
        content = data.get("serverContent")
        return next(iter(content), kind) if isinstance(content, dict) else kind


def _b64(text: str) -> bytes:
    """Base64 in either alphabet (google-genai sends the URL-safe one), padding optional."""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _object(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise LiveError(f"Invalid JSON payload: {key} must be an object.")
    return value


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return "\n".join(str(p["text"]) for p in content.get("parts") or [] if isinstance(p, dict) and "text" in p)
    return ""


def _content_messages(content: Any) -> list[Message]:
    """One Content (a turn) as neutral messages: text, function calls, function responses."""
    if not isinstance(content, dict):
        raise LiveError("clientContent.turns[]: expected a Content object.")
    role: Role = "assistant" if content.get("role") == "model" else "user"
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for part in content.get("parts") or []:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        call = part.get("functionCall")
        if isinstance(call, dict):
            calls.append(ToolCall(str(call.get("name", "")), dict(call.get("args") or {}), str(call.get("id") or "")))
        result = part.get("functionResponse")
        if isinstance(result, dict):
            payload = result.get("response", {})
            results.append(
                Message(
                    role="tool",
                    content=orjson.dumps(payload).decode(),
                    tool_call_id=str(result.get("id") or ""),
                    name=str(result.get("name", "")),
                )
            )
    out = [Message(role=role, content="\n".join(texts), tool_calls=calls)] if texts or calls else []
    return out + results


def _tools(tools: Any) -> list[ToolSpec]:
    out: list[ToolSpec] = []
    for tool in tools or []:
        for decl in (tool or {}).get("functionDeclarations") or []:
            if isinstance(decl, dict) and isinstance(decl.get("name"), str):
                schema = decl.get("parameters") or decl.get("parametersJsonSchema") or {}
                out.append(ToolSpec(decl["name"], str(decl.get("description", "")), schema))
    return out


class LiveSocket(RealtimeEndpoint):
    """`/ws/google.ai.generativelanguage.{v1,v1beta,v1alpha}.GenerativeService.BidiGenerateContent`."""

    paths = tuple(
        f"/ws/google.ai.generativelanguage.{version}.GenerativeService.{method}"
        for version in ("v1", "v1beta", "v1alpha")
        for method in ("BidiGenerateContent", "BidiGenerateContentConstrained")
    )
    name = "live"
    operation = "chat"

    def open(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], *, audio_transcript: str
    ) -> RealtimeSession:
        """A session waiting for its setup message."""
        return GeminiLiveSession(audio_transcript)

    def presented_keys(self, query: Mapping[str, str], headers: Mapping[str, str]) -> list[str]:
        """The key from `?key=`, `x-goog-api-key` or an ephemeral `Authorization: Token …`."""
        keys = [query["key"]] if query.get("key") else []
        token = headers.get("authorization", "")
        if token.lower().startswith("token "):
            keys.append(token[6:].strip())
        return keys + self.provider.presented_keys(headers)


class GeminiLive(Gemini):
    """Gemini's Live API (its key headers, refusals and error shape are Gemini's)."""

    name: ClassVar[str] = "gemini-live"
    endpoint_classes: ClassVar[tuple[type[Endpoint], ...]] = (LiveSocket,)

    def claims(self, path: str, headers: Mapping[str, str]) -> int:
        """Nothing beyond its own route: the Gemini provider answers for the family."""
        return CLAIM_NONE


register_provider(GeminiLive)
