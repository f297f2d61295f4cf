"""Deterministic speech for the realtime APIs: PCM16 audio that fits a text, and where speech is in a buffer.

The audio is not a voice: each word is a short tone (its pitch from the word and the voice), with a
pause between words, so a text always gives the same bytes and a length a listener would expect
(about 55 ms a character, 0.11 s for a word of one letter). `speech_spans` finds the stretches of a
PCM16 buffer louder than a threshold, as a server-side voice activity detector would.
"""

from __future__ import annotations

import math
import sys
import zlib
from array import array
from functools import lru_cache

#: Output rate of both realtime APIs (PCM16, mono, little-endian).
OUTPUT_RATE = 24_000
MS_PER_CHAR = 55.0
_FRAME_MS = 20
_FADE = 96


def speech_duration_ms(text: str, speed: float = 1.0) -> float:
    """How long `text` takes to say at `speed` (1.0 is normal)."""
    return len(text) * MS_PER_CHAR / max(speed, 0.25)


def synthesize(text: str, voice: str = "", *, rate: int = OUTPUT_RATE, speed: float = 1.0) -> bytes:
    """PCM16 little-endian mono audio for `text`, the same bytes for the same text, voice and speed."""
    per_char = rate * MS_PER_CHAR / 1000.0 / max(speed, 0.25)
    base = 140 + zlib.crc32(voice.encode()) % 120
    return b"".join(_sound(word, base, rate, round(len(word) * per_char)) for word in _words_and_gaps(text))


@lru_cache(maxsize=4096)
def _sound(word: str, base: int, rate: int, count: int) -> bytes:
    """A word's tone (a gap's silence), faded in and out so words do not click."""
    if word.isspace():
        return bytes(2 * count)
    step = 2.0 * math.pi * (base + zlib.crc32(word.encode()) % 220) / rate
    samples = array(
        "h", (int(9000 * min(1.0, i / _FADE, (count - 1 - i) / _FADE) * math.sin(step * i)) for i in range(count))
    )
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def _words_and_gaps(text: str) -> list[str]:
    out: list[str] = []
    current = ""
    for ch in text:
        if current and ch.isspace() != current[-1].isspace():
            out.append(current)
            current = ""
        current += ch
    if current:
        out.append(current)
    return out


def duration_ms(pcm: bytes | int, rate: int) -> float:
    """The length of PCM16 mono audio (its bytes, or their count) in milliseconds."""
    size = pcm if isinstance(pcm, int) else len(pcm)
    return size / 2 / rate * 1000.0


def speech_spans(pcm: bytes, rate: int, *, threshold: float = 0.5, silence_ms: int = 500) -> list[tuple[int, int]]:
    """The (start_ms, end_ms) stretches of speech in PCM16 mono audio, in 20 ms frames.

    A frame is speech when its RMS level is above `threshold` (0 to 1, as the APIs' VAD threshold)
    of a loud-ish voice; a pause shorter than `silence_ms` does not end a stretch. A stretch still
    open at the end of the buffer has end_ms -1.
    """
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    frame = max(1, rate * _FRAME_MS // 1000)
    floor = 300.0 + threshold * 2000.0
    spans: list[tuple[int, int]] = []
    start = -1
    last_loud = -1
    for index in range(0, len(samples) - frame + 1, frame):
        chunk = samples[index : index + frame]
        rms = math.sqrt(sum(s * s for s in chunk) / frame)
        at_ms = index * 1000 // rate
        if rms >= floor:
            if start < 0:
                start = at_ms
            last_loud = at_ms + _FRAME_MS
        elif start >= 0 and at_ms + _FRAME_MS - last_loud >= silence_ms:
            spans.append((start, last_loud))
            start = -1
    if start >= 0:
        spans.append((start, -1))
    return spans
