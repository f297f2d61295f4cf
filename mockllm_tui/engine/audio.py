"""Speech made up for a text, and what an uploaded audio file is.

The speech is a tone per word (its pitch from the word and the voice) with a pause after each, so
its length grows with the text (about three words a second) and divides by the speed. It is
16-bit mono PCM at 24 kHz, encoded with PyAV (FFmpeg's encoders, shipped in its wheel) as MP3,
Ogg Opus, AAC in ADTS, FLAC, or with the standard library as WAV. Deterministic: the same text,
voice, speed and format give the same bytes.

PyAV is imported on first use, so start-up does not pay for it.
"""

from __future__ import annotations

import hashlib
import io
import math
import sys
import wave
from array import array
from dataclasses import dataclass
from typing import Literal

AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
AUDIO_FORMATS: tuple[AudioFormat, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")
SAMPLE_RATE = 24_000
#: Seconds of a word: a base and a share per letter, then the pause after it (at speed 1.0).
WORD_BASE_S = 0.12
LETTER_S = 0.04
WORD_MAX_S = 0.8
PAUSE_S = 0.08
AMPLITUDE = 6_000
#: (container, encoder, sample rate) for the formats PyAV encodes.
ENCODERS: dict[str, tuple[str, str, int]] = {
    "mp3": ("mp3", "libmp3lame", SAMPLE_RATE),
    "opus": ("ogg", "libopus", 48_000),
    "aac": ("adts", "aac", SAMPLE_RATE),
    "flac": ("flac", "flac", SAMPLE_RATE),
}
#: Containers (as FFmpeg names its demuxers) that a transcription accepts.
ACCEPTED_CONTAINERS = frozenset({"wav", "flac", "mp3", "ogg", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})


class AudioFormatError(ValueError):
    """An upload that is not audio in an accepted format."""


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """A decoded upload: its container and codec (as FFmpeg names them), sample rate and seconds."""

    container: str
    codec: str
    sample_rate: int
    duration_s: float


def word_seconds(word: str, speed: float = 1.0) -> float:
    """How long a word is spoken, its pause included."""
    return (min(WORD_MAX_S, WORD_BASE_S + LETTER_S * len(word)) + PAUSE_S) / speed


def speech_seconds(text: str, speed: float = 1.0) -> float:
    """How long the speech of a text lasts."""
    return sum(word_seconds(w, speed) for w in text.split()) or PAUSE_S / speed


def speech_pcm(text: str, voice: str, speed: float = 1.0) -> bytes:
    """The speech of a text as 16-bit little-endian mono PCM at SAMPLE_RATE."""
    samples = array("h")
    for word in text.split() or [""]:
        total = round(word_seconds(word, speed) * SAMPLE_RATE)
        pause = round(PAUSE_S / speed * SAMPLE_RATE)
        digest = hashlib.blake2b(f"{voice}\x1f{word.lower()}".encode(), digest_size=2).digest()
        pitch = 140 + int.from_bytes(digest, "big") % 260
        samples.extend(_tone(pitch, max(0, total - pause)))
        samples.extend(array("h", bytes(2 * pause)))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def _tone(pitch: int, count: int) -> array[int]:
    """A sine tone of `count` samples (one period computed, then repeated), with soft edges."""
    period = max(2, round(SAMPLE_RATE / pitch))
    cycle = array("h", (round(AMPLITUDE * math.sin(2 * math.pi * i / period)) for i in range(period)))
    tone = (cycle * (count // period + 1))[:count]
    ramp = min(count // 2, SAMPLE_RATE // 100)
    for i in range(ramp):
        tone[i] = tone[i] * i // ramp
        tone[count - 1 - i] = tone[count - 1 - i] * i // ramp
    return tone


def encode_audio(pcm: bytes, fmt: AudioFormat) -> bytes:
    """16-bit mono PCM at SAMPLE_RATE in one of the speech formats."""
    if fmt == "pcm":
        return pcm
    if fmt == "wav":
        out = io.BytesIO()
        with wave.open(out, "wb") as file:
            file.setnchannels(1)
            file.setsampwidth(2)
            file.setframerate(SAMPLE_RATE)
            file.writeframes(pcm)
        return out.getvalue()
    return encode_in(pcm, *ENCODERS[fmt])


def encode_in(pcm: bytes, container: str, codec: str, rate: int) -> bytes:
    """16-bit mono PCM at SAMPLE_RATE encoded with an FFmpeg encoder (`codec`) at `rate`, in a
    container (as FFmpeg's muxers name them: mp3, ogg, adts, flac, ipod, webm, ...)."""
    import av

    out = io.BytesIO()
    # bitexact: no encoder version or random stream serial, so the bytes are the same every time.
    with av.open(out, "w", format=container, options={"fflags": "+bitexact"}) as muxer:
        stream = muxer.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.audio.stream.AudioStream)
        context = stream.codec_context
        context.options = {"flags": "+bitexact"}
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
        frame.planes[0].update(pcm)
        frame.sample_rate = SAMPLE_RATE
        resampler = av.AudioResampler(
            format=context.format.name, layout="mono", rate=rate, frame_size=context.frame_size or None
        )
        for piece in [*resampler.resample(frame), *resampler.resample(None), None]:
            muxer.mux(stream.encode(piece))
    return out.getvalue()


def probe_audio(data: bytes) -> AudioInfo:
    """What an upload is (recognised by its content, not its name) and how long it lasts, decoded;
    AudioFormatError when it is not audio in an accepted container."""
    import av

    try:
        with av.open(io.BytesIO(data), "r") as demuxer:
            container = demuxer.format.name
            if container not in ACCEPTED_CONTAINERS or not demuxer.streams.audio:
                raise AudioFormatError(f"not audio in a supported format (found {container!r})")
            stream = demuxer.streams.audio[0]
            samples = sum(frame.samples for frame in demuxer.decode(stream))
            rate = stream.codec_context.sample_rate or SAMPLE_RATE
            codec = stream.codec_context.name
    except av.FFmpegError as exc:
        raise AudioFormatError(f"not a readable audio file ({exc})") from None
    if samples <= 0:
        raise AudioFormatError("the audio file holds no sound")
    return AudioInfo(container, codec, rate, samples / rate)
