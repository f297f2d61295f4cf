"""The status bar: the URL, the shared state, the responses file, requests/s, in-flight, streams,
errors and the knobs."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from mockllm_tui.core.knobs import Knobs
from mockllm_tui.core.shared_state import StateMode
from mockllm_tui.core.store import Counters
from mockllm_tui.rules.commands import RulesFile
from mockllm_tui.tui.format import errors_label, file_label, speed_label

RATE_WINDOW = 60
COUNTS_INTERVAL_S = 0.5  # under load the counts change every tick; each redraw is a frame of its own
#: What the status bar says of each state mode (nothing for memory), and in which style.
STATE_WORDS: dict[StateMode, tuple[str, str]] = {
    "redis": ("shared: redis", "dim"),
    "degraded": ("shared state lost: serving the last known rules", "bold yellow"),
}


def arrived_count(counters: Counters, *, with_probes: bool) -> int:
    """Requests so far, counted as they arrive, not as they finish (health checks and metrics
    scrapes only `with_probes`)."""
    return counters.total + counters.in_flight - (0 if with_probes else counters.probes)


class StatusBar(Vertical):
    """Two lines at the top of the screen; fed by the app on each tick (it never reads the store)."""

    DEFAULT_CSS = """
    StatusBar { height: 2; background: $panel; padding: 0 1; }
    StatusBar > Horizontal { height: 1; }
    StatusBar #status-url { width: 1fr; text-style: bold; color: $accent; }
    StatusBar #status-file { width: 1fr; padding-left: 2; text-wrap: nowrap; text-overflow: ellipsis; }
    StatusBar #status-rate-label { width: 12; color: $text-muted; padding-left: 1; text-align: right; }
    StatusBar Sparkline { width: 24; height: 1; margin-left: 1; }
    StatusBar #status-counts { width: 56; padding-left: 1; }
    StatusBar #status-knobs { width: auto; color: $text-muted; }
    StatusBar #status-state { width: auto; padding-right: 3; display: none; }
    """

    def __init__(self, url: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.url = url
        self.rates: deque[float] = deque([0.0] * RATE_WINDOW, maxlen=RATE_WINDOW)
        self._counters: Counters | None = None
        self._shown_counts: tuple[int, int, int, int] | None = None
        self.with_probes = False  # count health checks and metrics scrapes in the total
        self._knobs_width = -1
        self._state: StateMode = "memory"

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static(self.url, id="status-url")
            yield Static("0 req/s", id="status-rate-label")
            yield Sparkline(list(self.rates), id="status-rate")
            yield Static(id="status-counts")
        with Horizontal():  # the file's path (or where edits go) gets the room the knobs leave
            yield Static(id="status-state")  # first: a lost shared state is not cropped on a narrow screen
            yield Static(id="status-knobs")
            yield Static(id="status-file")

    def on_mount(self) -> None:
        self.set_interval(COUNTS_INTERVAL_S, self._show_stale_counts)

    def show_connection(self, problem: str | None) -> None:
        """Attached: the URL, and what is wrong with the connection (None: nothing)."""
        text = Text(self.url)
        if problem:
            text.append(f"  {problem}", style="bold red")
        self.query_one("#status-url", Static).update(text, layout=False)

    def show_state(self, mode: StateMode) -> None:
        """The shared state's mode, before the knobs: quiet under Redis, a warning while it is lost,
        nothing in memory."""
        if mode == self._state:
            return
        self._state = mode
        words = STATE_WORDS.get(mode)
        shown = self.query_one("#status-state", Static)
        shown.update(Text(*words) if words is not None else "")
        shown.display = words is not None

    def show_file(self, file: RulesFile, error: str | None) -> None:
        """The responses file's path (or where edits go, for the read-only example) and whether it is valid."""
        text = Text(file_label(file))
        if error:
            text.append("  ✗ error", style="bold red")
        else:
            text.append("  ✓ valid", style="green")
        self.query_one("#status-file", Static).update(text, layout=False)

    def show_counts(self, counters: Counters) -> None:
        """In-flight requests, open streams, totals and errors (shown within COUNTS_INTERVAL_S)."""
        first = self._counters is None
        self._counters = counters
        if first:
            self._show_stale_counts()

    def count_probes(self, on: bool) -> None:
        """Count health checks and metrics scrapes in the total (while the log's filter shows them)."""
        self.with_probes = on
        self._show_stale_counts()

    def _show_stale_counts(self) -> None:
        counters = self._counters
        if counters is None:
            return
        arrived = arrived_count(counters, with_probes=self.with_probes)
        values = (arrived, counters.in_flight, counters.streams_open, counters.errors)
        if values == self._shown_counts:
            return
        self._shown_counts = values
        text = Text()
        text.append(f"{arrived}", style="bold")
        text.append(" total  ")
        text.append(f"{counters.in_flight}", style="bold")
        text.append(" in flight  ")
        text.append(f"{counters.streams_open}", style="bold")
        text.append(" streams  ")
        text.append(f"{counters.errors}", style="bold red" if counters.errors else "bold")
        text.append(" errors")
        self.query_one("#status-counts", Static).update(text, layout=False)

    def push_rate(self, per_second: float) -> None:
        """Add one second's request count to the sparkline."""
        self.rates.append(per_second)
        self.query_one(Sparkline).data = list(self.rates)
        self.query_one("#status-rate-label", Static).update(f"{per_second:g} req/s", layout=False)

    def show_knobs(self, knobs: Knobs, fail_next: int, upstreams: tuple[str, ...] = ()) -> None:
        """The live knob values at a glance, and the upstreams' hosts (`recording` while the knob is on)."""
        latency = f"{knobs.latency_ms:g} ms" + (f" ±{knobs.jitter_ms:g}" if knobs.jitter_ms else "")
        errors = errors_label(knobs)
        text = Text()
        for label, value in (
            ("latency", latency),
            ("speed", speed_label(knobs.stream_speed)),
            ("chunks", knobs.stream_chunk),
            ("errors", errors),
        ):
            text.append(f"{label} ")
            text.append(value, style="bold")
            text.append("   ")
        if upstreams:
            text.append("recording " if knobs.record else "upstream ", style="bold red" if knobs.record else "bold")
            text.append(", ".join(upstreams), style="bold")
            text.append("   ")
        if fail_next:
            text.append(f"fail next {fail_next}", style="bold yellow")
        # the knobs keep their width (the file's path gets the rest): a new width needs a new layout
        self.query_one("#status-knobs", Static).update(text, layout=text.cell_len != self._knobs_width)
        self._knobs_width = text.cell_len
