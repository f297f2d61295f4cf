"""OpenAI's audio API: `POST /v1/audio/speech`, `/v1/audio/transcriptions` and `/v1/audio/translations`."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mockllm_tui.core.conversation import Reply, RequestError
from mockllm_tui.core.media import media_request
from mockllm_tui.core.tokens import count_tokens
from mockllm_tui.engine.audio import (
    AUDIO_FORMATS,
    AudioFormat,
    AudioFormatError,
    AudioInfo,
    encode_audio,
    probe_audio,
    speech_pcm,
    speech_seconds,
)
from mockllm_tui.engine.transcript import TimedSegment, timed_words, timeline
from mockllm_tui.providers.base import Frame, Request
from mockllm_tui.providers.media import MediaAnswer, MediaContext, MediaEndpoint, MediaJob, RecordedMedia
from mockllm_tui.providers.multipart import Form
from mockllm_tui.providers.openai_common import OpenAIBase
from mockllm_tui.providers.openai_media import (
    PROVIDER,
    form_bool,
    form_float,
    form_str,
    invalid_value,
    one_of,
    read_fields,
    required_upload,
)
from mockllm_tui.providers.registry import register_provider

VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "onyx",
    "nova",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
MAX_SPEECH_INPUT = 4096
SPEECH_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
#: Bytes of audio per `speech.audio.delta` event.
SPEECH_DELTA_BYTES = 16 * 1024
#: Audio tokens a second (speech output, transcription input), as the GPT-4o audio models bill them.
AUDIO_TOKENS_PER_S = 10
MAX_UPLOAD = 25 * 1024 * 1024
TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
LANGUAGES = {
    "en": "english",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
    "ja": "japanese",
    "zh": "chinese",
    "ko": "korean",
    "ru": "russian",
    "pl": "polish",
    "sv": "swedish",
    "uk": "ukrainian",
}
SUPPORTED_UPLOADS = "['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']"
#: A word with the space before it (and the space after the last word): the pieces join to the text.
PIECE = re.compile(r"\s*\S+(?:\s+$)?")


def sse_data(payload: dict[str, Any]) -> bytes:
    """One `data:` event (the audio API's streams carry the event type inside the JSON)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


# -- speech ------------------------------------------------------------------------------------


def speech_voice(value: Any) -> str:
    """The voice: a built-in name or a custom `{"id": "voice_..."}`; a 400 naming `voice` otherwise."""
    if value is None or value == "":
        raise RequestError("Missing required parameter: 'voice'.", param="voice", code="missing_required_parameter")
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"].startswith("voice_"):
        return str(value["id"])
    if isinstance(value, str) and value in VOICES:
        return value
    listed = ", ".join(f"'{v}'" for v in VOICES)
    shown = value if isinstance(value, str) else repr(value)
    raise invalid_value(
        f'Invalid value: \'{shown}\'. Supported values are: {listed}, or a custom voice {{"id": "voice_..."}}.',
        "voice",
    )


@dataclass(slots=True)
class SpeechJob:
    """A parsed speech request."""

    text: str
    voice: str
    fmt: AudioFormat
    speed: float
    sse: bool


class Speech(MediaEndpoint):
    """`POST /v1/audio/speech`: audio of the input, or the rule's `audio:` file."""

    paths = ("/v1/audio/speech", "/audio/speech")
    name = "audio.speech"
    operation = "text_to_speech"

    def parse_media(self, request: Request) -> MediaJob:
        """The text, voice, format and speed; the rules see the input."""
        fields, _ = read_fields(request.headers, request.body, multipart=False)
        model = form_str(fields, "model", required=True) or ""
        text = form_str(fields, "input", required=True) or ""
        if len(text) > MAX_SPEECH_INPUT:
            raise invalid_value(
                f"Invalid 'input': string too long. Expected a string with maximum length {MAX_SPEECH_INPUT}, "
                f"but got a string with length {len(text)} instead.",
                "input",
            )
        voice = speech_voice(fields.get("voice"))
        fmt: AudioFormat = one_of(  # type: ignore[assignment]
            form_str(fields, "response_format", "mp3"), AUDIO_FORMATS, "response_format"
        )
        speed = form_float(fields, "speed", 0.25, 4.0, 1.0)
        stream_format = one_of(form_str(fields, "stream_format", "audio"), ("sse", "audio"), "stream_format")
        if stream_format == "sse" and model.lower().startswith("tts-1"):
            raise invalid_value(f"stream_format 'sse' is not supported for {model}.", "stream_format")
        form_str(fields, "instructions")
        sse = stream_format == "sse"
        judged = media_request(PROVIDER, self.name, model, text, "audio", stream=sse)
        return MediaJob([judged], text, SpeechJob(text, voice, fmt, speed, sse))

    def read_upstream(self, job: MediaJob, content_type: str, body: bytes) -> RecordedMedia | None:
        """The audio as sent (a stream of events is not kept)."""
        speech: SpeechJob = job.params
        if speech.sse or not body:
            return None
        return RecordedMedia(file=body, extension=speech.fmt)

    def answer(self, job: MediaJob, replies: list[Reply], ctx: MediaContext) -> MediaAnswer:
        """The audio (or the rule's file, as it is), whole or as `speech.audio.*` events."""
        speech: SpeechJob = job.params
        seconds = speech_seconds(speech.text, speech.speed)
        named = replies[0].file
        if ctx.rule_file is not None and named:
            audio = ctx.rule_file
            ctype = SPEECH_TYPES.get(Path(named).suffix.lower().lstrip("."), "application/octet-stream")
        else:
            audio = encode_audio(speech_pcm(speech.text, speech.voice, speech.speed), speech.fmt)
            ctype = SPEECH_TYPES[speech.fmt]
        input_tokens, output_tokens = count_tokens(speech.text), math.ceil(seconds * AUDIO_TOKENS_PER_S)
        out = MediaAnswer(
            reply_text=f"[{speech.fmt} audio, {seconds:.1f} s]", input_tokens=input_tokens, output_tokens=output_tokens
        )
        if not speech.sse:
            out.body, out.content_type = audio, ctype.encode()
            return out
        frames = [
            Frame(sse_data({"type": "speech.audio.delta", "audio": base64.b64encode(piece).decode("ascii")}), "[audio]")
            for piece in (audio[i : i + SPEECH_DELTA_BYTES] for i in range(0, len(audio), SPEECH_DELTA_BYTES))
        ]
        total = input_tokens + output_tokens
        usage = {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": total}
        frames.append(Frame(sse_data({"type": "speech.audio.done", "usage": usage})))
        out.frames = frames
        return out


# -- transcription and translation -------------------------------------------------------------


def transcript_formats(model: str, translation: bool) -> tuple[str, ...]:
    """The response formats a model gives."""
    name = model.lower()
    if translation:
        return TRANSCRIPT_FORMATS[:5]
    if "diarize" in name:
        return ("json", "text", "diarized_json")
    if name.startswith(("gpt-4o", "gpt-transcribe")):
        return ("json", "text")
    return TRANSCRIPT_FORMATS[:5]


def token_usage_model(model: str) -> bool:
    """Whether a model bills tokens (the GPT-4o family) rather than seconds (whisper-1)."""
    return not model.lower().startswith("whisper")


def clock(seconds: float, separator: str) -> str:
    """`HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (VTT)."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(segments: list[TimedSegment]) -> str:
    """The segments as SubRip subtitles."""
    return "".join(
        f"{i}\n{clock(s.start, ',')} --> {clock(s.end, ',')}\n{s.text}\n\n" for i, s in enumerate(segments, 1)
    )


def vtt(segments: list[TimedSegment]) -> str:
    """The segments as WebVTT."""
    return "WEBVTT\n\n" + "".join(f"{clock(s.start, '.')} --> {clock(s.end, '.')}\n{s.text}\n\n" for s in segments)


def segment_object(index: int, segment: TimedSegment) -> dict[str, Any]:
    """A `TranscriptionSegment`."""
    return {
        "id": index,
        "seek": 0,
        "start": segment.start,
        "end": segment.end,
        "text": " " + segment.text,
        "tokens": [50364 + i for i in range(count_tokens(segment.text))],
        "temperature": 0.0,
        "avg_logprob": -0.25,
        "compression_ratio": 1.2,
        "no_speech_prob": 0.01,
    }


@dataclass(slots=True)
class Transcribe:
    """A parsed transcription or translation request."""

    endpoint: str
    model: str
    filename: str
    audio: AudioInfo
    prompt: str
    response_format: str
    language: str
    granularities: list[str] = field(default_factory=list)
    logprobs: bool = False
    stream: bool = False
    speakers: list[str] = field(default_factory=list)

    @property
    def translation(self) -> bool:
        """Whether this is a translation (to English)."""
        return self.endpoint == "audio.translations"

    def usage(self, text: str) -> dict[str, Any]:
        """`{type: duration}` for whisper-1, `{type: tokens}` for the GPT-4o models."""
        if not token_usage_model(self.model):
            return {"type": "duration", "seconds": math.ceil(self.audio.duration_s)}
        audio_tokens = math.ceil(self.audio.duration_s * AUDIO_TOKENS_PER_S)
        text_tokens = count_tokens(self.prompt) if self.prompt else 0
        output = count_tokens(text)
        return {
            "type": "tokens",
            "input_tokens": audio_tokens + text_tokens,
            "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": text_tokens},
            "output_tokens": output,
            "total_tokens": audio_tokens + text_tokens + output,
        }

    def speaker(self, index: int) -> str:
        """The speaker of segment `index`: the known names in turn, else A and B."""
        names = self.speakers or ["A", "B"]
        return names[index % len(names)]


def logprob_list(text: str) -> list[dict[str, Any]]:
    """A token log probability for each piece of the text (confident, deterministic)."""
    return [{"token": p, "bytes": list(p.encode()), "logprob": -0.01} for p in PIECE.findall(text)]


class Transcriptions(MediaEndpoint):
    """`POST /v1/audio/transcriptions` (multipart): the rule's text, in the format asked for."""

    paths = ("/v1/audio/transcriptions", "/audio/transcriptions")
    name = "audio.transcriptions"
    operation = "speech_to_text"
    multipart = True

    def parse_media(self, request: Request) -> MediaJob:
        """The upload (decoded: a 400 for a file that is not audio) and the options; the rules see
        the `prompt` field, the file's name and the audio's duration."""
        fields, form = read_fields(request.headers, request.body, multipart=True)
        assert form is not None
        job = self.parse(fields, form)
        judged = media_request(
            PROVIDER,
            self.name,
            job.model,
            job.prompt,
            "text",
            file_name=job.filename,
            duration_s=job.audio.duration_s,
            stream=job.stream,
        )
        return MediaJob([judged], job.prompt or job.filename, job)

    def read_upstream(self, job: MediaJob, content_type: str, body: bytes) -> RecordedMedia | None:
        """The transcript's text, from a JSON answer or a plain `text` one (subtitles and streams
        are not kept)."""
        transcribe: Transcribe = job.params
        if transcribe.stream or transcribe.response_format in ("srt", "vtt"):
            return None
        if transcribe.response_format == "text":
            return RecordedMedia(reply=body.decode("utf-8", "replace").rstrip("\n"))
        try:
            text = orjson.loads(body)["text"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        return RecordedMedia(reply=text) if isinstance(text, str) else None

    def answer(self, job: MediaJob, replies: list[Reply], ctx: MediaContext) -> MediaAnswer:
        """The rule's text in the format asked for, or streamed as `transcript.text.*` events."""
        transcribe: Transcribe = job.params
        text = replies[0].text
        usage = transcribe.usage(text)
        out = MediaAnswer(reply_text=text)
        if usage["type"] == "tokens":
            out.input_tokens, out.output_tokens = usage["input_tokens"], usage["output_tokens"]
        if transcribe.stream:
            out.frames = list(self.stream_frames(transcribe, text, usage))
            return out
        segments = timeline(text, transcribe.audio.duration_s)
        fmt = transcribe.response_format
        if fmt in ("text", "srt", "vtt"):
            body = text + "\n" if fmt == "text" else srt(segments) if fmt == "srt" else vtt(segments)
            out.body, out.content_type = body.encode(), b"text/plain; charset=utf-8"
            return out
        out.body = orjson.dumps(self.body(transcribe, text, segments, usage))
        return out

    def parse(self, fields: dict[str, Any], form: Form) -> Transcribe:
        """The request, its upload decoded (a 400 for a file that is not audio)."""
        upload = required_upload(form, "file")
        model = form_str(fields, "model", required=True) or ""
        if len(upload.data) > MAX_UPLOAD:
            raise RequestError(
                f"Maximum content size limit ({MAX_UPLOAD}) exceeded ({len(upload.data)} bytes read)", status=413
            )
        try:
            audio = probe_audio(upload.data)
        except AudioFormatError:
            raise RequestError(
                f"Invalid file format. Supported formats: {SUPPORTED_UPLOADS}", param="file", code="invalid_value"
            ) from None
        translation = self.name == "audio.translations"
        formats = transcript_formats(model, translation)
        fmt = form_str(fields, "response_format", "json") or "json"
        if fmt not in formats:
            if fmt in TRANSCRIPT_FORMATS:
                listed = " or ".join(f"'{f}'" for f in formats)
                raise invalid_value(
                    f"response_format '{fmt}' is not compatible with model '{model}'. Use {listed}.",
                    "response_format",
                )
            one_of(fmt, formats, "response_format")
        granularities = form.texts("timestamp_granularities")
        for value in granularities:
            one_of(value, ("word", "segment"), "timestamp_granularities")
        if granularities and fmt != "verbose_json":
            raise invalid_value(
                "timestamp_granularities requires response_format=verbose_json.", "timestamp_granularities"
            )
        include = form.texts("include")
        for value in include:
            one_of(value, ("logprobs",), "include")
        form_float(fields, "temperature", 0.0, 1.0, 0.0)
        language = form_str(fields, "language", "en") or "en"
        # whisper-1 ignores `stream`, as the API does.
        stream = form_bool(fields, "stream") and not translation and token_usage_model(model)
        return Transcribe(
            endpoint=self.name,
            model=model,
            filename=upload.filename,
            audio=audio,
            prompt=form_str(fields, "prompt", "") or "",
            response_format=fmt,
            language="english" if translation else LANGUAGES.get(language.lower(), language.lower()),
            granularities=granularities,
            logprobs="logprobs" in include and fmt == "json" and token_usage_model(model),
            stream=stream,
            speakers=form.texts("known_speaker_names"),
        )

    def body(self, job: Transcribe, text: str, segments: list[TimedSegment], usage: dict[str, Any]) -> Any:
        """The JSON answer for `json`, `verbose_json` or `diarized_json`."""
        duration = round(job.audio.duration_s, 3)
        if job.response_format == "diarized_json":
            return {
                "task": "transcribe",
                "duration": duration,
                "text": text,
                "segments": [
                    {
                        "type": "transcript.text.segment",
                        "id": f"seg_{i}",
                        "start": s.start,
                        "end": s.end,
                        "text": s.text,
                        "speaker": job.speaker(i),
                    }
                    for i, s in enumerate(segments)
                ],
                "usage": usage,
            }
        if job.response_format == "verbose_json":
            body: dict[str, Any] = {"task": "translate" if job.translation else "transcribe"}
            body.update(language=job.language, duration=duration, text=text)
            if not job.granularities or "segment" in job.granularities:
                body["segments"] = [segment_object(i, s) for i, s in enumerate(segments)]
            if "word" in job.granularities:
                words = timed_words(text, job.audio.duration_s)
                body["words"] = [{"word": w.word, "start": w.start, "end": w.end} for w in words]
            if not job.translation:
                body["usage"] = {"type": "duration", "seconds": math.ceil(job.audio.duration_s)}
            return body
        body = {"text": text}
        if job.logprobs:
            body["logprobs"] = logprob_list(text)
        if not job.translation:
            body["usage"] = usage
        return body

    def stream_frames(self, job: Transcribe, text: str, usage: dict[str, Any]) -> Iterator[Frame]:
        """`transcript.text.delta` events (and, diarizing, `transcript.text.segment` ones), then
        `transcript.text.done` with the whole text and the usage."""
        diarize = job.response_format == "diarized_json"
        pieces = PIECE.findall(text)
        at = 0
        for i, segment in enumerate(timeline(text, job.audio.duration_s)):
            for delta in pieces[at : at + len(segment.words)]:
                event: dict[str, Any] = {"type": "transcript.text.delta", "delta": delta}
                if job.logprobs:
                    event["logprobs"] = logprob_list(delta)
                if diarize:
                    event["segment_id"] = f"seg_{i}"
                yield Frame(sse_data(event), delta, count_tokens(delta))
            at += len(segment.words)
            if diarize:
                seg = {
                    "type": "transcript.text.segment",
                    "id": f"seg_{i}",
                    "start": segment.start,
                    "end": segment.end,
                    "text": segment.text,
                    "speaker": job.speaker(i),
                }
                yield Frame(sse_data(seg))
        done: dict[str, Any] = {"type": "transcript.text.done", "text": text, "usage": usage}
        if job.logprobs:
            done["logprobs"] = logprob_list(text)
        yield Frame(sse_data(done))


class Translations(Transcriptions):
    """`POST /v1/audio/translations` (multipart): the rule's text as an English translation."""

    paths = ("/v1/audio/translations", "/audio/translations")
    name = "audio.translations"
    operation = "speech_to_text"


class OpenAIAudio(OpenAIBase):
    """OpenAI's audio endpoints."""

    name = "openai-audio"
    endpoint_classes = (Speech, Transcriptions, Translations)


register_provider(OpenAIAudio)
