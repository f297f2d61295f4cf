"""Speech, transcription and translation through the openai SDK: audio a decoder reads, of the
right length, deterministic; transcripts in every format, streamed, decided by rules; the errors."""

from __future__ import annotations

import base64
import io
import math
import re
from pathlib import Path
from typing import Any

import av
import httpx
import openai
import orjson
import pytest
from openai.types.audio import (
    Transcription,
    TranscriptionDiarized,
    TranscriptionTextDeltaEvent,
    TranscriptionTextDoneEvent,
    TranscriptionTextSegmentEvent,
    TranscriptionVerbose,
    Translation,
    TranslationVerbose,
)

from mockllm_tui.engine.audio import SAMPLE_RATE, encode_audio, encode_in, speech_pcm, speech_seconds
from tests.conftest import Live, serving_file
from tests.openai_testkit import assert_openai_error, post_raw, sse_events

RULES = """
rules:
  - name: welcome
    match: {contains: "welcome message"}
    audio: welcome.mp3
  - name: meeting
    match: {file: "meeting-*"}
    reply: "Minutes: the budget is approved. Next meeting on Friday!"
  - name: guided
    match: {contains: "spell names", endpoint: "audio.*"}
    reply: "Mr. Smith met Ms. Jones."
  - name: long-call
    match: {duration: {min: 20}}
    reply: "That was a long call."
  - name: french
    match: {model: "*-diarize"}
    reply: "Hello. Hi there. How are you? Fine, thanks."
  - name: busy
    match: {contains: "too busy"}
    error: {status: 503, message: "the speaker is busy"}
"""
SENTENCE = "The quick brown fox jumps over the lazy dog and runs into the forest."


@pytest.fixture
async def audio(tmp_path: Path) -> Any:
    """The live server with RULES and the rule's mp3 beside the responses file."""
    (tmp_path / "welcome.mp3").write_bytes(encode_audio(speech_pcm("welcome to the show", "ash"), "mp3"))
    async with serving_file(tmp_path, RULES) as running:
        yield running


def client(live: Live) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=live.openai_url, api_key="sk-test", max_retries=0)


def decode(data: bytes) -> tuple[str, str, int, float]:
    """Container, codec, sample rate and decoded seconds of an audio file."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        rate = stream.codec_context.sample_rate
        return container.format.name, stream.codec_context.name, rate, samples / rate


def wav(text: str = SENTENCE, voice: str = "alloy", speed: float = 1.0) -> bytes:
    return encode_audio(speech_pcm(text, voice, speed), "wav")


async def speak(live: Live, **body: Any) -> httpx.Response:
    payload = {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": SENTENCE, **body}
    response = await post_raw(live, "/v1/audio/speech", payload)
    assert response.status_code == 200, response.text
    return response


# -- speech ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "container", "codec", "rate", "ctype"),
    [
        ("mp3", "mp3", "mp3float", 24000, "audio/mpeg"),
        ("opus", "ogg", "opus", 48000, "audio/ogg"),
        ("aac", "aac", "aac", 24000, "audio/aac"),
        ("flac", "flac", "flac", 24000, "audio/flac"),
        ("wav", "wav", "pcm_s16le", 24000, "audio/wav"),
    ],
)
async def test_speech_in_every_format_decodes_to_the_texts_length(
    audio: Live, fmt: str, container: str, codec: str, rate: int, ctype: str
) -> None:
    response = await client(audio).audio.speech.create(
        model="gpt-4o-mini-tts",
        voice="coral",
        input=SENTENCE,
        response_format=fmt,  # type: ignore[arg-type]
    )
    data = response.read()
    assert response.response.headers["content-type"] == ctype
    found_container, found_codec, found_rate, seconds = decode(data)
    assert (found_container, found_codec, found_rate) == (container, codec, rate)
    words = len(SENTENCE.split())
    assert 2.0 <= words / seconds <= 4.2  # about 2 to 4 words a second
    assert seconds == pytest.approx(speech_seconds(SENTENCE), abs=0.1)  # AAC pads to whole frames


async def test_pcm_is_raw_16_bit_mono_at_24_khz_and_wav_holds_the_same_samples(audio: Live) -> None:
    pcm = (await speak(audio, response_format="pcm")).content
    assert len(pcm) % 2 == 0 and len(pcm) / 2 / SAMPLE_RATE == pytest.approx(speech_seconds(SENTENCE), abs=0.001)
    wave_file = (await speak(audio, response_format="wav")).content
    assert wave_file.startswith(b"RIFF") and wave_file.endswith(pcm)


async def test_speech_is_deterministic_per_input_and_voice_and_speed_shortens_it(audio: Live) -> None:
    first = (await speak(audio, response_format="mp3")).content
    assert (await speak(audio, response_format="mp3")).content == first
    assert (await speak(audio, response_format="mp3", voice="onyx")).content != first
    assert (await speak(audio, response_format="mp3", input="Something else entirely")).content != first
    fast = (await speak(audio, response_format="flac", speed=2.0)).content
    slow = (await speak(audio, response_format="flac", speed=0.5)).content
    assert decode(slow)[3] == pytest.approx(4 * decode(fast)[3], rel=0.02)
    custom = await speak(audio, response_format="wav", voice={"id": "voice_1234"})
    assert decode(custom.content)[0] == "wav"


async def test_speech_sse_deltas_join_into_the_same_bytes(audio: Live) -> None:
    whole = (await speak(audio, response_format="opus")).content
    streamed = await speak(audio, response_format="opus", stream_format="sse")
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [orjson.loads(data) for _, data in sse_events(streamed.content)]
    assert [e["type"] for e in events] == ["speech.audio.delta"] * (len(events) - 1) + ["speech.audio.done"]
    assert len(events) > 2
    assert b"".join(base64.b64decode(e["audio"]) for e in events[:-1]) == whole
    usage = events[-1]["usage"]
    assert set(usage) == {"input_tokens", "output_tokens", "total_tokens"}
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0


async def test_a_rule_answers_speech_with_its_file_byte_for_byte(audio: Live, tmp_path: Path) -> None:
    response = await speak(audio, input="Play the welcome message", response_format="wav")
    assert response.content == (tmp_path / "welcome.mp3").read_bytes()
    assert response.headers["content-type"] == "audio/mpeg"
    assert audio.store.journal()[-1].rule == "welcome"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": None}, "input"),
        ({"model": None}, "model"),
        ({"voice": None}, "voice"),
        ({"voice": "robot"}, "voice"),
        ({"voice": {"id": "nope"}}, "voice"),
        ({"response_format": "ogg"}, "response_format"),
        ({"speed": 5}, "speed"),
        ({"input": "x" * 4097}, "input"),
        ({"model": "tts-1", "stream_format": "sse"}, "stream_format"),
    ],
)
async def test_bad_speech_requests_name_the_field(audio: Live, body: dict[str, Any], param: str) -> None:
    payload = {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": "hi", **body}
    payload = {k: v for k, v in payload.items() if v is not None}
    assert_openai_error(await post_raw(audio, "/v1/audio/speech", payload), 400, param=param)


# -- transcription -----------------------------------------------------------------------------


async def test_transcription_json_follows_the_rule_with_usage_by_model(audio: Live) -> None:
    sdk = client(audio)
    whisper = await sdk.audio.transcriptions.create(model="whisper-1", file=("meeting-1.wav", wav()))
    Transcription.model_validate(whisper.model_dump(mode="json", exclude_unset=True), strict=True)
    assert whisper.text == "Minutes: the budget is approved. Next meeting on Friday!"
    assert whisper.usage is not None and whisper.usage.type == "duration"
    assert whisper.usage.seconds == math.ceil(decode(wav())[3])  # whole seconds, rounded up
    raw = await post_raw(
        audio,
        "/v1/audio/transcriptions",
        None,
        files={"file": ("meeting-2.mp3", encode_audio(speech_pcm(SENTENCE, "a"), "mp3"))},
        data={"model": "gpt-4o-transcribe"},
    )
    tokens = Transcription.model_validate(orjson.loads(raw.content), strict=True)
    assert tokens.usage is not None and tokens.usage.type == "tokens"
    assert tokens.usage.total_tokens == tokens.usage.input_tokens + tokens.usage.output_tokens


@pytest.mark.parametrize(
    ("filename", "fields", "expected"),
    [
        ("call.wav", {"prompt": "please spell names right"}, "Mr. Smith met Ms. Jones."),
        ("call.wav", {"model": "gpt-4o-transcribe-diarize"}, "Hello. Hi there. How are you? Fine, thanks."),
        ("call.flac", {}, "I don't know the answer to that."),
    ],
)
async def test_rules_match_prompt_model_and_file(
    audio: Live, filename: str, fields: dict[str, str], expected: str
) -> None:
    data = encode_audio(speech_pcm(SENTENCE, "x"), "flac" if filename.endswith("flac") else "wav")
    response = await post_raw(
        audio, "/v1/audio/transcriptions", None, files={"file": (filename, data)}, data={"model": "whisper-1", **fields}
    )
    assert response.status_code == 200, response.text
    assert orjson.loads(response.content)["text"] == expected


async def test_the_duration_matcher_sees_the_decoded_length(audio: Live) -> None:
    long_call = wav(" ".join([SENTENCE] * 5))
    result = await client(audio).audio.transcriptions.create(model="whisper-1", file=("call.ogg", long_call))
    assert result.text == "That was a long call."
    assert audio.store.journal()[-1].preview == "call.ogg"


async def test_text_srt_and_vtt_carry_the_same_text(audio: Live) -> None:
    sdk = client(audio)
    upload = ("meeting-3.wav", wav())
    text = await sdk.audio.transcriptions.create(model="whisper-1", file=upload, response_format="text")
    srt = await sdk.audio.transcriptions.create(model="whisper-1", file=upload, response_format="srt")
    vtt = await sdk.audio.transcriptions.create(model="whisper-1", file=upload, response_format="vtt")
    assert text.strip() == "Minutes: the budget is approved. Next meeting on Friday!"
    stamp = r"\d\d:\d\d:\d\d[,.]\d\d\d --> \d\d:\d\d:\d\d[,.]\d\d\d"
    assert re.fullmatch(
        rf"1\n{stamp}\nMinutes: the budget is approved\.\n\n2\n{stamp}\nNext meeting on Friday!\n\n", srt
    )
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")
    assert " ".join(line for line in srt.splitlines() if line and not line[0].isdigit()) == text.strip()
    raw = await post_raw(
        audio,
        "/v1/audio/transcriptions",
        None,
        files={"file": upload},
        data={"model": "whisper-1", "response_format": "vtt"},
    )
    assert raw.headers["content-type"].startswith("text/plain")


async def test_verbose_json_has_segments_and_words_within_the_duration(audio: Live) -> None:
    result = await client(audio).audio.transcriptions.create(
        model="whisper-1",
        file=("meeting-4.wav", wav()),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    TranscriptionVerbose.model_validate(result.model_dump(mode="json", exclude_unset=True), strict=True)
    expected = decode(wav())[3]
    assert result.duration == pytest.approx(expected, abs=0.001) and result.language == "english"
    assert result.segments is not None and result.words is not None
    assert [s.text.strip() for s in result.segments] == ["Minutes: the budget is approved.", "Next meeting on Friday!"]
    assert [w.word for w in result.words] == result.text.split()
    for item in [*result.segments, *result.words]:
        assert 0 <= item.start <= item.end <= result.duration
    words_only = await client(audio).audio.transcriptions.create(
        model="whisper-1",
        file=("meeting-4.wav", wav()),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert words_only.words and words_only.segments is None


async def test_diarized_json_labels_speakers(audio: Live) -> None:
    result = await client(audio).audio.transcriptions.create(
        model="gpt-4o-transcribe-diarize",
        file=("call.wav", wav()),
        response_format="diarized_json",
        extra_body={"known_speaker_names": ["agent", "customer"]},
    )
    TranscriptionDiarized.model_validate(result.model_dump(mode="json", exclude_unset=True), strict=True)
    assert [s.speaker for s in result.segments] == ["agent", "customer", "agent", "customer"]
    assert " ".join(s.text for s in result.segments) == result.text
    refused = await post_raw(
        audio,
        "/v1/audio/transcriptions",
        None,
        files={"file": ("a.wav", wav())},
        data={"model": "whisper-1", "response_format": "diarized_json"},
    )
    assert_openai_error(refused, 400, param="response_format")


async def test_streamed_transcription_deltas_join_to_the_done_text_with_usage(audio: Live) -> None:
    sdk = client(audio)
    upload = ("meeting-5.wav", wav())
    whole = await sdk.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=upload)
    stream = await sdk.audio.transcriptions.create(
        model="gpt-4o-mini-transcribe", file=upload, stream=True, include=["logprobs"]
    )
    events = [event async for event in stream]
    deltas = [e for e in events if isinstance(e, TranscriptionTextDeltaEvent)]
    done = events[-1]
    assert isinstance(done, TranscriptionTextDoneEvent) and len(deltas) == len(events) - 1 > 3
    assert "".join(d.delta for d in deltas) == done.text == whole.text
    assert done.usage is not None and done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    assert done.logprobs and deltas[0].logprobs
    diarized = await sdk.audio.transcriptions.create(
        model="gpt-4o-transcribe-diarize", file=upload, stream=True, response_format="diarized_json"
    )
    kinds = [type(e) async for e in diarized]
    # The `meeting-*` rule's two sentences: two speaker segments.
    assert kinds.count(TranscriptionTextSegmentEvent) == 2 and kinds[-1] is TranscriptionTextDoneEvent
    # whisper-1 ignores `stream`, as the API does.
    ignored = await post_raw(
        audio, "/v1/audio/transcriptions", None, files={"file": upload}, data={"model": "whisper-1", "stream": "true"}
    )
    assert ignored.headers["content-type"].startswith("application/json")


async def test_translations_are_english_in_every_format(audio: Live) -> None:
    sdk = client(audio)
    upload = ("meeting-6.wav", wav())
    plain = await sdk.audio.translations.create(model="whisper-1", file=upload)
    Translation.model_validate(plain.model_dump(mode="json", exclude_unset=True), strict=True)
    verbose = await sdk.audio.translations.create(model="whisper-1", file=upload, response_format="verbose_json")
    TranslationVerbose.model_validate(verbose.model_dump(mode="json", exclude_unset=True), strict=True)
    assert verbose.language == "english" and verbose.text == plain.text and verbose.segments
    srt = await sdk.audio.translations.create(model="whisper-1", file=upload, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> ")


async def test_uploads_that_are_not_audio_get_a_400(audio: Live) -> None:
    async def transcribe(files: Any, **data: str) -> httpx.Response:
        return await post_raw(audio, "/v1/audio/transcriptions", None, files=files, data={"model": "whisper-1", **data})

    text_file = await transcribe({"file": ("notes.wav", b"these are not sounds at all")})
    assert_openai_error(text_file, 400, param="file", mentions="Invalid file format")
    aac = encode_audio(speech_pcm("hi", "a"), "aac")  # speech can make it; transcription does not take it
    assert_openai_error(await transcribe({"file": ("x.aac", aac)}), 400, param="file")
    assert_openai_error(await transcribe({"other": ("x.wav", wav())}), 400, param="file")
    no_model = await post_raw(audio, "/v1/audio/transcriptions", None, files={"file": ("x.wav", wav())})
    assert_openai_error(no_model, 400, param="model")
    as_json = await post_raw(audio, "/v1/audio/transcriptions", {"model": "whisper-1", "file": "x.wav"})
    assert_openai_error(as_json, 400, mentions="multipart/form-data")
    bad_format = await transcribe({"file": ("x.wav", wav())}, response_format="xml")
    assert_openai_error(bad_format, 400, param="response_format")
    grains = await transcribe({"file": ("x.wav", wav())}, **{"timestamp_granularities[]": "word"})
    assert_openai_error(grains, 400, param="timestamp_granularities")
    huge = await transcribe({"file": ("big.wav", b"\0" * (25 * 1024 * 1024 + 1))})
    assert_openai_error(huge, 413)


async def test_knobs_and_rate_limits_apply_to_audio(audio: Live) -> None:
    busy = await post_raw(audio, "/v1/audio/speech", {"model": "tts-1", "voice": "echo", "input": "I am too busy"})
    assert_openai_error(busy, 503, mentions="the speaker is busy")
    audio.store.set_fail_next(1, 500)
    failed = await post_raw(
        audio, "/v1/audio/transcriptions", None, files={"file": ("a.wav", wav())}, data={"model": "whisper-1"}
    )
    assert_openai_error(failed, 500)
    audio.store.set_knobs("live", {"rate_limit_rpm": 1})
    await speak(audio)
    limited = await post_raw(audio, "/v1/audio/speech", {"model": "tts-1", "voice": "echo", "input": "again"})
    assert_openai_error(limited, 429)
    entries = [e for e in audio.store.journal() if e.endpoint == "audio.speech"]
    assert entries[-2].status == 200 and entries[-2].provider == "openai" and entries[-2].preview == SENTENCE


@pytest.mark.parametrize(
    ("name", "container", "codec", "rate"),
    [
        ("call.m4a", "ipod", "aac", 24000),
        ("call.webm", "webm", "libopus", 48000),
        ("call.ogg", "ogg", "libopus", 48000),
        ("call.mp3", "mp3", "libmp3lame", 24000),
        ("call.flac", "flac", "flac", 24000),
        ("no-extension", "wav", "pcm_s16le", 24000),
    ],
)
async def test_every_accepted_container_is_read_by_its_content(
    audio: Live, name: str, container: str, codec: str, rate: int
) -> None:
    data = encode_in(speech_pcm(SENTENCE, "alloy"), container, codec, rate)
    result = await client(audio).audio.transcriptions.create(
        model="whisper-1", file=(name, data), response_format="verbose_json"
    )
    assert result.duration == pytest.approx(speech_seconds(SENTENCE), abs=0.1)


async def test_a_mid_stream_fault_cuts_a_streamed_transcript_with_an_error_event(audio: Live) -> None:
    stream = await client(audio).audio.transcriptions.create(
        model="gpt-4o-transcribe",
        file=("meeting-7.wav", wav()),
        stream=True,
        extra_headers={"x-mock-error": "500", "x-mock-error-mode": "mid_stream"},
    )
    seen: list[str] = []
    with pytest.raises(openai.APIError, match="Injected error 500"):
        async for event in stream:
            seen.append(event.type)
    assert seen and set(seen) == {"transcript.text.delta"}
    assert audio.store.journal()[-1].status == 500
