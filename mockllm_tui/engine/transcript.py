"""A transcript's timeline: the words of a text spread over an audio's duration, and grouped into
segments (a sentence each, at most SEGMENT_WORDS words). Formats (SRT, VTT, JSON) are the
provider's business."""

from __future__ import annotations

from dataclasses import dataclass, field

SEGMENT_WORDS = 24
SENTENCE_ENDS = (".", "!", "?", "…")


@dataclass(frozen=True, slots=True)
class TimedWord:
    """A word and when it is said, in seconds."""

    word: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class TimedSegment:
    """A run of words and when it is said, in seconds."""

    text: str
    start: float
    end: float
    words: tuple[TimedWord, ...] = field(default=())


def timed_words(text: str, duration_s: float) -> list[TimedWord]:
    """The words of `text` over `duration_s`, each as long as its letters (plus one) make it."""
    words = text.split()
    if not words:
        return []
    weights = [len(w) + 1 for w in words]
    unit = duration_s / sum(weights)
    out, at = [], 0.0
    for word, weight in zip(words, weights, strict=True):
        end = min(duration_s, at + weight * unit)
        out.append(TimedWord(word, round(at, 3), round(end, 3)))
        at = end
    return out


def timeline(text: str, duration_s: float) -> list[TimedSegment]:
    """The text's segments over the duration (none for an empty text)."""
    segments: list[TimedSegment] = []
    run: list[TimedWord] = []
    for word in timed_words(text, duration_s):
        run.append(word)
        if word.word.endswith(SENTENCE_ENDS) or len(run) >= SEGMENT_WORDS:
            segments.append(_segment(run))
            run = []
    if run:
        segments.append(_segment(run))
    return segments


def _segment(words: list[TimedWord]) -> TimedSegment:
    return TimedSegment(" ".join(w.word for w in words), words[0].start, words[-1].end, tuple(words))
