"""The detail pane: the selected request's conversation, reply (growing live for open streams),
headers and any fault. Its wire view shows a stream's chunks as sent, with their timing (the
chunk timeline), or a whole reply's bytes as sent."""

from __future__ import annotations

import json
import time

from rich.console import Group, RenderableType
from rich.json import JSON
from rich.rule import Rule
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from mockllm_tui.core.store import REDACTED, JournalEntry
from mockllm_tui.tui.format import chunk_lines, live_stats, offset_text, status_style

MIN_LAYOUT_INTERVAL_S = 0.3
MIN_SWITCH_INTERVAL_S = 0.4  # moving through the log by hand
FOLLOW_SWITCH_INTERVAL_S = 1.0  # following a busy log, the selection changes every tick
ROLE_STYLES = {"system": "magenta", "user": "cyan", "assistant": "green", "tool": "yellow", "tools": "yellow"}


def describe_entry(entry: JournalEntry, *, wire: bool = False) -> RenderableType:
    """Everything the pane shows for one request (`wire`: the reply as sent, not its text)."""
    head = Text()
    head.append(f"#{entry.id} ", style="bold")
    head.append(f"{entry.method} {entry.path}")
    for part in (entry.provider, entry.model):
        if part:
            head.append(f" · {part}")
    head.append(" · ")
    if entry.open:
        head.append("open", style="bold cyan")
    else:
        head.append(str(entry.status), style=status_style(entry.status))
        head.append(f" · {entry.duration_ms:.0f} ms")
    if entry.rule:
        head.append(f" · rule {entry.rule}", style="italic")
    if entry.session is not None:
        head.append(f" · session {entry.session}")
    parts: list[RenderableType] = [head]
    if entry.foreign:
        parts.append(Text(f"served by another process: {entry.instance}", style="dim"))
    if entry.scenario is not None:
        s = entry.scenario
        ended = " · finished" if s.get("finished") else ""
        parts.append(Text(f"scenario {s.get('name')}: step {s.get('step')}/{s.get('steps')}{ended}", style="cyan"))
    nearest = entry.nearest()
    if nearest:
        parts.append(Rule("Why no rule matched · the nearest rules", style="dim"))
        for rule, reason in nearest:
            line = Text()
            line.append(f"{rule}: ", style="bold yellow")
            line.append(reason)
            parts.append(line)
    if entry.prompt_tokens is not None:
        window = f" / {entry.context_window:,}" if entry.context_window else ""
        parts.append(Text(f"prompt {entry.prompt_tokens:,}{window} tokens", style="dim"))
    if entry.limit_breach:
        verdict = "refused for length" if entry.refused_for_length else "over a limit, served anyway"
        parts.append(Text(f"{verdict}: {entry.limit_breach}", style="bold red"))
    if entry.fault:
        parts.append(Text(f"fault injected: {entry.fault}", style="bold red"))
    parts.append(Rule("Conversation", style="dim"))
    for role, text in entry.transcript() or ([("request", entry.preview)] if entry.preview else []):
        line = Text()
        line.append(f"{role}: ", style=f"bold {ROLE_STYLES.get(role, 'white')}")
        line.append(text)
        parts.append(line)
    if entry.thinking_text:
        parts.append(Rule("Thinking", style="dim"))
        parts.append(Text(entry.thinking_text, style="italic dim"))
    if wire and entry.stream:
        parts.append(Rule("Chunks as sent · c: the text", style="dim"))
        parts.append(Text(stream_stats(entry), style="bold cyan" if entry.open else "cyan"))
        parts.append(chunk_timeline(entry))
    elif wire:
        size = f" · {len(entry.response_body)} bytes" if entry.response_body else ""
        parts.append(Rule(f"Reply as sent{size} · c: the text", style="dim"))
        body = entry.response_body.decode("utf-8", "replace")
        if body:
            parts.append(body_text(body))
        else:
            parts.append(Text("(waiting…)" if entry.open else "(no body recorded)", style="dim"))
    else:
        parts.append(Rule("Reply · c: as sent", style="dim"))
        if entry.stream:
            parts.append(Text(stream_stats(entry), style="bold cyan" if entry.open else "cyan"))
        reply = entry.reply_text or "".join(entry.chunks)
        parts.append(Text(reply or ("(waiting…)" if entry.open else "(no reply text)"), style="" if reply else "dim"))
        if entry.thumbnail is not None:
            parts.append(picture_text(*entry.thumbnail))
    parts.append(Rule("Headers", style="dim"))
    for name, value in sorted(entry.request_headers.items()):
        line = Text()
        line.append(f"{name}: ", style="bold")
        line.append(value, style="dim" if value == REDACTED else "")
        parts.append(line)
    return Group(*parts)


def picture_text(width: int, height: int, rgb: bytes) -> Text:
    """A small picture in half-block characters: each cell shows two pixels, top and bottom."""
    out = Text()
    for y in range(0, height - 1, 2):
        for x in range(width):
            top, bottom = (y * width + x) * 3, ((y + 1) * width + x) * 3
            upper = "#{:02x}{:02x}{:02x}".format(*rgb[top : top + 3])
            lower = "#{:02x}{:02x}{:02x}".format(*rgb[bottom : bottom + 3])
            out.append("▀", style=f"{upper} on {lower}")
        out.append("\n")
    return out


def body_text(body: str) -> Text:
    """A whole reply's body: JSON indented and highlighted, anything else as it is."""
    try:
        data = json.loads(body)
    except ValueError:
        return Text(body)
    text = JSON.from_data(data, indent=2, ensure_ascii=False).text
    text.no_wrap, text.overflow = False, "fold"  # long values wrap in the narrow pane
    return text


def chunk_timeline(entry: JournalEntry) -> Text:
    """One line a chunk: its offset from the request's start, the gap since the previous chunk
    and its text; then how the stream ended (status and fault), or that it is still open."""
    skipped, lines = chunk_lines(entry)
    text = Text(no_wrap=True, overflow="ellipsis")
    if skipped:
        text.append(f"… {skipped} earlier chunks\n", style="dim")
    for offset, gap, label, chunk in lines:
        text.append(f"{offset:>9}", style="bold")
        text.append(f" {gap:>9}  ", style="dim")
        if label:
            text.append(label + (" " if chunk else ""), style="cyan")
            text.append(f'"{repr(chunk)[1:-1]}"' if chunk else "")
        else:
            text.append(repr(chunk)[1:-1] or "(empty)", style="" if chunk else "dim")
        text.append("\n")
    if entry.open:
        text.append("… streaming", style="bold cyan")
    else:
        end = f"+{offset_text(entry.duration_ms)}"
        text.append(f"{end:>9}", style="bold")
        text.append(f" end · {entry.status}", style=status_style(entry.status))
        if entry.fault:
            text.append(f" · {entry.fault}", style="bold red")
    return text


def stream_stats(entry: JournalEntry) -> str:
    """A stream's progress: "streaming: 12 chunks · 20.1 tok/s · TTFT 3 ms" (`unpaced` in place of
    the rate for a stream sent at unlimited speed)."""
    stats = live_stats(entry)
    bits = [f"{stats['chunks']} chunks"]
    if stats["unpaced"]:
        bits.append("unpaced")
    elif stats["tokens_per_s"] is not None:
        bits.append(f"{stats['tokens_per_s']:.1f} tok/s")
    if stats["ttft_ms"] is not None:
        bits.append(f"TTFT {stats['ttft_ms']:.0f} ms")
    state = "streaming" if entry.open else "stream"
    return f"{state}: {' · '.join(bits)}"


class DetailPane(VerticalScroll):
    """Shows one request; the app calls `show` on selection and `refresh_entry` on each tick."""

    DEFAULT_CSS = """
    DetailPane { height: 1fr; border: round $primary-darken-2; padding: 0 1; }
    DetailPane:focus { border: round $accent; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.entry: JournalEntry | None = None
        self.border_title = "Request"
        self._shown_chunks = -1
        self._lines = 0
        self._last_layout = 0.0
        self._shown_id: int | None = None
        self._last_switch = 0.0
        self.pending = False
        self.wire = False
        self._switch_interval = MIN_SWITCH_INTERVAL_S

    def compose(self) -> ComposeResult:
        yield Static(Text("Select a request to see it here.", style="dim"), id="detail-body")

    def show(self, entry: JournalEntry | None, *, following: bool = False) -> None:
        """Show this request (None: nothing selected); `following`: the log moved by itself."""
        self.entry = entry
        self._switch_interval = FOLLOW_SWITCH_INTERVAL_S if following else MIN_SWITCH_INTERVAL_S
        self._shown_chunks = -1
        self.refresh_entry()

    def toggle_wire(self) -> None:
        """Switch between the reply's text and the reply as sent (the chunk timeline for a stream)."""
        self.wire = not self.wire
        self._shown_chunks = -1
        self._last_layout = 0.0  # a key press shows at once
        self.refresh_entry(force=True)

    def refresh_entry(self, *, force: bool = False) -> None:
        """Re-render when the shown request changed (a chunk arrived, or it finished).

        A change of height relayouts the whole screen, which is costly: at most a few times a
        second, and so is a switch to another request. A deferred update sets `pending`, and the
        app's next tick calls again.
        """
        force = force or self.pending
        entry = self.entry
        body = self.query_one("#detail-body", Static)
        if entry is None:
            self.pending = False
            if self._shown_id is not None or self.border_title != "Request":
                body.update(Text("Select a request to see it here.", style="dim"))
                self.border_title = "Request"
            self._shown_id = None
            return
        now = time.monotonic()
        switch = entry.id != self._shown_id
        if switch and now - self._last_switch < self._switch_interval:
            self.pending = True
            return
        stamp = len(entry.chunks) if entry.open else -2 - entry.status
        if not force and stamp == self._shown_chunks and not entry.open:
            return
        content = describe_entry(entry, wire=self.wire)
        console = self.app.console
        width = max(body.size.width, 10)
        lines = len(console.render_lines(content, console.options.update_width(width), pad=False))
        layout = lines != self._lines
        if layout and now - self._last_layout < MIN_LAYOUT_INTERVAL_S:
            self.pending = True
            return
        self.pending = False
        if layout:
            self._last_layout = now
        if switch:
            self._shown_id = entry.id
            self._last_switch = now
        at_end = self.scroll_y >= self.max_scroll_y - 1
        self._shown_chunks = stamp
        body.update(content, layout=layout)
        self._lines = lines
        view = (" · chunks" if entry.stream else " · as sent") if self.wire else ""
        title = f"Request #{entry.id}" + (" · live" if entry.open else "") + view
        if self.border_title != title:
            self.border_title = title
        if entry.open and at_end:
            self.call_after_refresh(self.scroll_end, animate=False)
