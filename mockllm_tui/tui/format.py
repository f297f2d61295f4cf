"""Pure helpers for the panel: steps for the knobs, text for journal entries, curl commands.

Nothing here imports Textual, so it is tested without a terminal.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

from mockllm_tui.core.knobs import Knobs
from mockllm_tui.core.store import PROBE_PATHS, REDACTED, JournalEntry
from mockllm_tui.core.tokens import count_tokens
from mockllm_tui.rules.commands import RulesFile
from mockllm_tui.rules.fileio import short_path, shown_path

LATENCY_STEPS_MS: tuple[float, ...] = (0, 100, 250, 500, 1000, 2000, 5000, 10000)
SPEED_STEPS: tuple[float, ...] = (5, 10, 20, 50, 100, 200, 500, 1000)  # tokens/s; 0 = unlimited
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
#: Headers of the connection, not of the request's meaning: a replay leaves them to the client.
TRANSPORT_HEADERS = frozenset(
    {"host", "content-length", "connection", "accept-encoding", "transfer-encoding", "keep-alive", "user-agent"}
)


def step_up(value: float, steps: tuple[float, ...]) -> float:
    """The first step above `value` (the last step when already at or above it)."""
    return next((s for s in steps if s > value), steps[-1])


def step_down(value: float, steps: tuple[float, ...]) -> float:
    """The last step below `value` (the first step when already at or below it)."""
    return next((s for s in reversed(steps) if s < value), steps[0])


def faster(speed: float) -> float:
    """`]`: the next speed step up; past the highest finite step comes unlimited (0)."""
    if speed <= 0 or speed >= SPEED_STEPS[-1]:
        return 0.0
    return step_up(speed, SPEED_STEPS)


def slower(speed: float) -> float:
    """`[`: the next speed step down; from unlimited (0) to the highest finite step."""
    if speed <= 0:
        return SPEED_STEPS[-1]
    return step_down(speed, SPEED_STEPS)


def speed_label(speed: float) -> str:
    """Tokens per second, or ∞ for unlimited."""
    return "∞" if speed <= 0 else f"{speed:g} tok/s"


def file_label(file: RulesFile) -> str:
    """The responses file in the status bar: its path (home as `~`), or, for the read-only packaged
    example, where the first change goes."""
    if file.path is None:
        return "(no file)"
    if file.copy_to is not None:
        return f"example (read-only) · edits go to {shown_path(file.copy_to)}"
    return short_path(file.path)


def errors_label(knobs: Knobs) -> str:
    """Error injection as it is: `off`, or `on 100% 500 before` (rate, statuses, mode)."""
    if knobs.error_rate <= 0:
        return "off"
    statuses = ",".join(str(s) for s in knobs.error_status)
    return f"on {knobs.error_rate:.0%} {statuses} {knobs.error_mode}"


def status_style(status: int) -> str:
    """The colour of a status code."""
    if status == 0:
        return "dim"
    if status < 300:
        return "green"
    if status < 400:
        return "cyan"
    if status == 429 or status < 500:
        return "yellow"
    return "bold red"


def clock(ts: float) -> str:
    """HH:MM:SS.mmm in local time."""
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def stream_marker(entry: JournalEntry, frame: int) -> str:
    """A spinner while a stream is open, ≋ for a finished stream, blank otherwise."""
    if not entry.stream:
        return ""
    return SPINNER[frame % len(SPINNER)] if entry.open else "≋"


def duration_text(entry: JournalEntry) -> str:
    """The duration in ms, or the time so far while the request runs."""
    if entry.open:
        return f"{(time.perf_counter() - entry.started) * 1000:.0f}…"
    return f"{entry.duration_ms:.0f}"


PROBES_WORD = "probes"  # the filter word that shows health checks and metrics scrapes with the rest


def shows_probes(query: str) -> bool:
    """Whether a filter shows health checks and metrics scrapes, which the log and the totals leave
    out otherwise: it has the word `probes`, or names them (`health`, `/metrics`)."""
    for word in query.lower().split():
        if word == PROBES_WORD or (":" not in word and any(word in path for path in PROBE_PATHS)):
            return True
    return False


def entry_matches(entry: JournalEntry, query: str) -> bool:
    """Whether the entry matches a filter: words that must all appear in its text, status, model or rule.

    `status:5` matches statuses starting with 5, `model:x` and `rule:x` look at one field only,
    `session:ID` keeps one session's requests (exactly that ID). Health checks and metrics scrapes
    match only a filter that shows them (`shows_probes`).
    """
    if entry.probe and not shows_probes(query):
        return False
    for word in query.lower().split():
        field, _, value = word.partition(":")
        if word == PROBES_WORD:
            continue
        if value and field == "status":
            if not str(entry.status).startswith(value):
                return False
        elif value and field == "model":
            if value not in entry.model.lower():
                return False
        elif value and field == "rule":
            if value not in (entry.rule or "").lower():
                return False
        elif value and field == "session":
            if value != (entry.session or "").lower():
                return False
        else:
            hay = " ".join(
                (str(entry.status), entry.model, entry.rule or "", entry.preview, entry.path, entry.provider)
            ).lower()
            if word not in hay:
                return False
    return True


def live_stats(entry: JournalEntry, now: float | None = None) -> dict[str, float | int | None]:
    """Chunk count, tokens/s since the first chunk, and time to first token (ms) of a stream.

    A finished stream sent at unlimited speed has no rate to speak of (it went out as fast as it
    could be written): `unpaced` is 1 and `tokens_per_s` None.
    """
    now = time.perf_counter() if now is None else now
    tokens = count_tokens("".join(entry.chunks))
    ttft = None if entry.first_chunk_at is None else (entry.first_chunk_at - entry.started) * 1000
    end = now if entry.open else entry.started + entry.duration_ms / 1000
    unpaced = not entry.open and entry.stream_speed is not None and entry.stream_speed <= 0
    rate = None
    if entry.first_chunk_at is not None and end > entry.first_chunk_at and not unpaced:
        rate = tokens / (end - entry.first_chunk_at)
    return {
        "chunks": len(entry.chunks),
        "tokens": tokens,
        "tokens_per_s": rate,
        "ttft_ms": ttft,
        "unpaced": int(unpaced),
    }


def replayable_headers(entry: JournalEntry) -> dict[str, str]:
    """The recorded headers a client would send again (transport and SDK bookkeeping left out)."""
    return {
        name: value
        for name, value in entry.request_headers.items()
        if name not in TRANSPORT_HEADERS and not name.startswith("x-stainless-")
    }


def curl_command(entry: JournalEntry, root: str) -> str:
    """The request as a curl command (credentials stay redacted)."""
    parts = ["curl", "-sS", "-X", entry.method, root.rstrip("/") + entry.path]
    for name, value in replayable_headers(entry).items():
        parts += ["-H", f"{name}: {value}"]
    if entry.request_body:
        parts += ["-d", entry.request_body.decode("utf-8", "replace")]
    return " ".join(shlex.quote(p) for p in parts)


def resend_headers(entry: JournalEntry, api_key: str | None) -> dict[str, str]:
    """Headers to send the request again: the recorded ones, with the live key put back where a
    credential was redacted."""
    out = replayable_headers(entry)
    for name, value in out.items():
        if value == REDACTED:
            out[name] = f"Bearer {api_key or 'mock'}" if name == "authorization" else api_key or "mock"
    return out


def export_line(entry: JournalEntry) -> str:
    """One JSON line of the journal export."""
    return json.dumps(entry.public(with_body=True), ensure_ascii=False)


def offset_text(ms: float) -> str:
    """A time offset for the chunk timeline: `120 ms`, or `1.2 s` past a second."""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def chunk_lines(entry: JournalEntry, limit: int = 1000) -> tuple[int, list[tuple[str, str, str, str]]]:
    """A stream's chunks as sent: how many earlier ones are left out, then (offset from the
    request's start, gap since the previous chunk, label, text) for the last `limit` chunks; the
    label names the chunk (a realtime event's type) where its wire format does, else it is ""."""
    times, chunks, labels = entry.chunk_times, entry.chunks, entry.chunk_labels
    count = min(len(times), len(chunks))
    first = max(0, count - limit)
    previous = entry.started if first == 0 else times[first - 1]
    out = []
    for index in range(first, count):
        at, label = times[index], labels[index] if index < len(labels) else ""
        gap = f"+{offset_text((at - previous) * 1000)}"
        out.append((f"+{offset_text((at - entry.started) * 1000)}", gap, label, chunks[index]))
        previous = at
    return first, out


def last_user_message(entry: JournalEntry) -> str:
    """The request's last user message in full (from its transcript), or "" when it has none."""
    return next((text for role, text in reversed(entry.transcript()) if role == "user"), "")


def rule_data_for(entry: JournalEntry, reply: str) -> dict[str, Any]:
    """A rule (rich-form data) that answers the same request again: an exact match on its last user
    message, its model and provider, and `reply`."""
    match: dict[str, str] = {"exact": last_user_message(entry)}
    if entry.model:
        match["model"] = entry.model
    provider = entry.conversation.provider if entry.conversation is not None else entry.provider
    if provider:
        match["provider"] = provider
    return {"match": match, "reply": reply}
