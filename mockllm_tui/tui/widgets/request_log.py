"""The request log: one row a request, newest at the bottom, follows new rows, filters.

A Line-API widget (toolong's pattern): it holds the journal entries it shows and renders only the
rows on screen, one `Strip` a line, from a bounded cache. A tick that adds hundreds of rows costs
a dictionary entry per row plus the rows on screen, never a pass over the whole log.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from mockllm_tui.core.store import JournalEntry
from mockllm_tui.tui.format import clock, duration_text, entry_matches, status_style, stream_marker
from mockllm_tui.tui.screens.filter import FilterScreen

# (key, header label, width, right-justified); the prompt column takes any width left over.
COLUMNS: tuple[tuple[str, str, int, bool], ...] = (
    ("time", "time", 12, False),
    ("provider", "provider", 9, False),
    ("endpoint", "endpoint", 17, False),
    ("model", "model", 12, False),
    ("prompt", "prompt", 18, False),
    ("rule", "rule", 12, False),
    ("status", "code", 4, False),
    ("ms", "ms", 6, True),
    ("stream", "≋", 1, False),
)
PROMPT_COLUMN = 4
CELL_PADDING = 1
STRIP_CACHE_SIZE = 300
CONTROL_CHARS = {c: " " for c in range(32)} | {127: " "}
Cell = tuple[str, str]  # (text, rich style definition)


def row_cells(entry: JournalEntry, frame: int) -> list[Cell]:
    """The cells of one entry's row, as (plain text, style)."""
    return [
        (clock(entry.time), ""),
        (entry.provider, ""),
        (entry.path[3:] if entry.path.startswith("/v1/") else entry.path, ""),
        (entry.model, ""),
        (entry.preview, ""),
        ("too long", "bold red") if entry.refused_for_length else (entry.rule or "", ""),
        ("…", "dim") if entry.open else (str(entry.status), status_style(entry.status)),
        (duration_text(entry), ""),
        (stream_marker(entry, frame), "bold cyan"),
    ]


@lru_cache(maxsize=16)
def column_widths(total: int) -> tuple[tuple[tuple[int, bool], ...], int]:
    """Each column's content width and justification when the row is `total` cells wide (the
    prompt column flexes), and the row's width with the padding."""
    widths = [width for _, _, width, _ in COLUMNS]
    fixed = sum(widths) + 2 * CELL_PADDING * len(widths)
    widths[PROMPT_COLUMN] += max(0, total - fixed)
    columns = tuple((width, right) for width, (_, _, _, right) in zip(widths, COLUMNS, strict=True))
    return columns, max(total, fixed)


def fit(text: str, width: int, right: bool) -> str:
    """The text on one line in exactly `width` cells: cropped, or padded on the left or right."""
    if text.isascii() and text.isprintable():  # the common case: one cell a character
        if len(text) > width:
            return text[:width]
        return text.rjust(width) if right else text.ljust(width)
    text = text.translate(CONTROL_CHARS)
    if right and (short := width - cell_len(text)) > 0:
        return " " * short + text
    return set_cell_size(text, width)


class RequestLog(ScrollView, can_focus=True):
    """The journal as a table. The app feeds it batches; it renders only what is on screen.

    Rows live in `_entries[_skip:]`; each row has an absolute sequence number (`_offset` + its
    index in `_entries`) that survives dropping the oldest rows, so the zebra stripe and the
    cursor stay put while rows scroll out of the bound. The header is screen line 0; row `r` is
    virtual line `r + 1`.
    """

    DEFAULT_CSS = """
    RequestLog {
        height: 1fr;
        overflow-x: hidden;
        overflow-y: auto;
        background: $surface;
        color: $foreground;
        border: round $primary-darken-2;
        border-title-color: $text;
        & > .request-log--header { text-style: bold; background: $panel; color: $foreground; }
        & > .request-log--even-row { background: $surface-lighten-1 50%; }
        & > .request-log--odd-row { }
        & > .request-log--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:dark > .request-log--even-row { background: $surface-darken-1 40%; }
        &:focus {
            border: round $accent;
            background-tint: $foreground 5%;
            & > .request-log--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .request-log--header { background-tint: $foreground 5%; }
        }
    }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "request-log--header",
        "request-log--even-row",
        "request-log--odd-row",
        "request-log--cursor",
    }

    BINDINGS: ClassVar[list[Any]] = [
        Binding("f", "toggle_follow", "Follow", id="log.follow", tooltip="Follow new requests in the log"),
        Binding(
            "slash",
            "filter",
            "Filter",
            id="log.filter",
            tooltip="Filter the log by text, status:, model:, rule: (probes: /health and /metrics polls too)",
        ),
        Binding("up", "cursor_up", "", show=False),
        Binding("down", "cursor_down", "", show=False),
        Binding("pageup", "page_up", "", show=False),
        Binding("pagedown", "page_down", "", show=False),
        Binding("home", "scroll_home", "", show=False),
        Binding("end", "scroll_end", "", show=False),
    ]

    follow: reactive[bool] = reactive(True)
    filter_text: reactive[str] = reactive("")

    class EntrySelected(Message):
        """The highlighted request changed."""

        def __init__(self, entry_id: int | None) -> None:
            super().__init__()
            self.entry_id = entry_id

    class FilterChanged(Message):
        """The filter changed: the app reloads the log from the journal."""

        def __init__(self, query: str) -> None:
            super().__init__()
            self.query = query

    def __init__(self, *, cap: int, id: str | None = None) -> None:
        super().__init__(id=id)
        self.cap = max(1, cap)
        self.rows_by_id: dict[int, JournalEntry] = {}
        self.frame = 0
        self._entries: list[JournalEntry] = []
        self._skip = 0  # rows dropped from the front of `_entries`, not yet sliced off
        self._offset = 0  # the sequence number of `_entries[0]`
        self._seq: dict[int, int] = {}  # entry id -> sequence number
        self._cursor = 0  # the cursor's sequence number
        self._posted: int | None = -1  # the entry id last announced by EntrySelected
        self._strips: LRUCache[tuple[int, int, int], Strip] = LRUCache(STRIP_CACHE_SIZE)
        self._header: tuple[int, Strip] | None = None
        self._styles: dict[str, Style] = {}
        self._cell_styles: dict[tuple[str, Style, bool], Style] = {}
        self._view = (0, 0)  # (content width, scroll y) while rendering

    def on_mount(self) -> None:
        self._update_title()
        self._update_size()

    # -- rows ----------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        """How many requests the log shows."""
        return len(self._entries) - self._skip

    @property
    def cursor_row(self) -> int:
        """The cursor's row index (0 when the log is empty)."""
        return max(0, min(self._cursor - self._offset - self._skip, self.row_count - 1))

    def entry_at(self, row: int) -> JournalEntry:
        """The entry shown in row `row` (0 is the oldest)."""
        if not 0 <= row < self.row_count:
            raise IndexError(row)
        return self._entries[self._skip + row]

    def get_row_at(self, row: int) -> list[str]:
        """The plain text of a row's cells, in column order."""
        return [text for text, _ in row_cells(self.entry_at(row), self.frame)]

    def selected_id(self) -> int | None:
        """The id of the highlighted request."""
        return self.entry_at(self.cursor_row).id if self.row_count else None

    # -- feeding -------------------------------------------------------------------------------

    def ingest(self, entries: Iterable[JournalEntry]) -> None:
        """Add new requests and update those that changed (one batch a tick)."""
        added = 0
        top, bottom = self._visible_rows()
        for entry in entries:
            seq = self._seq.get(entry.id)
            if seq is not None:
                row = seq - self._offset - self._skip
                if top <= row < bottom:
                    self.refresh_line(row + 1)
            elif entry_matches(entry, self.filter_text) if self.filter_text else not entry.probe:
                self._seq[entry.id] = self._offset + len(self._entries)
                self.rows_by_id[entry.id] = entry
                self._entries.append(entry)
                added += 1
        if not added:
            return
        dropped = self._drop_oldest()
        self._update_size()
        if dropped:  # every row on screen moved up
            self.refresh()
        elif bottom - top < self.scrollable_content_region.height - 1:  # new rows in the empty space
            self.refresh_lines(bottom + 1, added)
        if self.follow:
            self._move_cursor(self.row_count - 1)
        else:
            if dropped:  # keep the same rows on screen as the oldest ones leave
                self.scroll_to(y=max(0, self.scroll_offset.y - dropped), animate=False)
            self._move_cursor(self.cursor_row)

    def _drop_oldest(self) -> int:
        """Drop rows past the bound, oldest first; how many went."""
        extra = self.row_count - self.cap
        if extra <= 0:
            return 0
        for entry in self._entries[self._skip : self._skip + extra]:
            del self._seq[entry.id]
            del self.rows_by_id[entry.id]
        self._skip += extra
        if self._skip >= self.cap:  # slice off the dropped rows now and then: amortised O(1)
            del self._entries[: self._skip]
            self._offset += self._skip
            self._skip = 0
        return extra

    def reload(self, entries: Iterable[JournalEntry]) -> None:
        """Rebuild from these entries (after a filter change, a clear or a lost batch)."""
        selected = self.selected_id()
        query = self.filter_text
        shown = [e for e in entries if (entry_matches(e, query) if query else not e.probe)][-self.cap :]
        self._offset += len(self._entries)
        self._entries = shown
        self._skip = 0
        self._seq = {e.id: self._offset + i for i, e in enumerate(shown)}
        self.rows_by_id = {e.id: e for e in shown}
        self._update_size()
        self.refresh()
        if self.follow or selected not in self._seq:
            self._move_cursor(self.row_count - 1)
        else:
            self._move_cursor(self._seq[selected] - self._offset)

    def animate_open(self) -> None:
        """Advance the stream markers and durations of the open requests on screen."""
        self.frame += 1
        top, bottom = self._visible_rows()
        entries, first = self._entries, self._skip
        for row in range(top, bottom):
            if entries[first + row].open:
                self.refresh_line(row + 1)

    def _update_size(self) -> None:
        """Set the virtual size without a relayout of the screen (unless a scrollbar comes or goes)."""
        size = Size(self.scrollable_content_region.width, self.row_count + 1)
        if size == self.virtual_size:
            return
        scrollbar = self.show_vertical_scrollbar
        self.set_reactive(RequestLog.virtual_size, size)
        self._scroll_update(size)  # the scrollbar's size and position; the caller repaints the rows
        if scrollbar != self.show_vertical_scrollbar:
            self.refresh(layout=True)

    def _visible_rows(self) -> tuple[int, int]:
        """The rows on screen: [top, bottom)."""
        top = self.scroll_offset.y
        return top, min(self.row_count, top + max(0, self.scrollable_content_region.height - 1))

    # -- the cursor ----------------------------------------------------------------------------

    def _move_cursor(self, row: int) -> None:
        """Put the cursor on `row` (clamped), scroll it into view, and announce a new selection."""
        count = self.row_count
        old = self._cursor - self._offset - self._skip
        row = max(0, min(row, count - 1))
        self._cursor = self._offset + self._skip + row
        if old != row:
            top, bottom = self._visible_rows()
            for line in (old, row):
                if top <= line < bottom:
                    self.refresh_line(line + 1)
        page = max(1, self.scrollable_content_region.height - 1)
        top = self.scroll_offset.y
        if self.follow and count:
            self.scroll_to(y=max(0, count - page), animate=False)
        elif row < top:
            self.scroll_to(y=row, animate=False)
        elif row >= top + page:
            self.scroll_to(y=row - page + 1, animate=False)
        entry_id = self.entry_at(row).id if count else None
        if entry_id != self._posted:
            self._posted = entry_id
            self.post_message(self.EntrySelected(entry_id))

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 2)

    def action_cursor_up(self) -> None:
        """One row up (stops following)."""
        self.follow = False
        self._move_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        """One row down."""
        self._move_cursor(self.cursor_row + 1)

    def action_page_up(self) -> None:
        """A page up (stops following)."""
        self.follow = False
        self._move_cursor(self.cursor_row - self._page())

    def action_page_down(self) -> None:
        """A page down."""
        self._move_cursor(self.cursor_row + self._page())

    def action_scroll_home(self) -> None:
        """The oldest row (stops following)."""
        self.follow = False
        self._move_cursor(0)

    def action_scroll_end(self) -> None:
        """The newest row."""
        self._move_cursor(self.row_count - 1)

    def on_click(self, event: events.Click) -> None:
        """Select the clicked row; a row other than the newest stops following."""
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        row = offset.y - 1 + self.scroll_offset.y
        if 0 <= row < self.row_count:
            if row != self.row_count - 1:
                self.follow = False
            self._move_cursor(row)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        """Scrolling back through the log stops following (the wheel moves the view, not the cursor)."""
        self.follow = False

    def on_resize(self, event: events.Resize) -> None:
        """Keep the newest row at the bottom when following."""
        self._update_size()
        if self.follow:
            self._move_cursor(self.row_count - 1)

    def action_toggle_follow(self) -> None:
        """Follow new requests (or stop following)."""
        self.follow = not self.follow
        if self.follow:
            self._move_cursor(self.row_count - 1)

    # -- the filter ----------------------------------------------------------------------------

    def action_filter(self) -> None:
        """Ask for a filter (text, status:5xx, model:x, rule:x), applied as it is typed."""
        before = self.filter_text

        def closed(query: str | None) -> None:
            self.set_filter(before if query is None else query)  # escape: the filter as it was

        self.app.push_screen(FilterScreen(before, preview=self.set_filter), closed)

    def set_filter(self, query: str) -> None:
        """Show only the requests matching `query` (empty: all but the probes)."""
        query = query.strip()
        if query != self.filter_text:
            self.filter_text = query
            self.post_message(self.FilterChanged(self.filter_text))

    def watch_follow(self) -> None:
        self._update_title()

    def watch_filter_text(self) -> None:
        self._update_title()

    def _update_title(self) -> None:
        parts = ["Requests"]
        if self.follow:
            parts.append("following")
        if self.filter_text:
            parts.append(f"filter: {self.filter_text}")
        self.border_title = " · ".join(parts)

    # -- rendering -----------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._forget_styles()

    def _on_focus(self, event: events.Focus) -> None:
        self._forget_styles()  # the background tint and the cursor depend on focus
        super()._on_focus(event)

    def _on_blur(self, event: events.Blur) -> None:
        self._forget_styles()
        super()._on_blur(event)

    def _forget_styles(self) -> None:
        self._strips.clear()
        self._header = None
        self._styles.clear()
        self._cell_styles.clear()

    def _style(self, component: str) -> Style:
        """The widget's style with a component class on top ("" for the widget's own)."""
        style = self._styles.get(component)
        if style is None:
            style = self.rich_style
            if component:
                style += self.get_component_rich_style(component)
            self._styles[component] = style
        return style

    def render_lines(self, crop: Region) -> list[Strip]:
        """Render the lines in `crop` (what the view looks like is read once, not once a line)."""
        self._view = (self.scrollable_content_region.width, self.scroll_offset.y)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        """Screen line `y`: the header, a row, or blank."""
        width, scroll_y = self._view
        if y == 0:
            if self._header is None or self._header[0] != width:
                cells = [(label, "") for _, label, _, _ in COLUMNS]
                self._header = (width, self._strip(cells, width, self._style("request-log--header"), css_wins=False))
            return self._header[1]
        row = y - 1 + scroll_y
        if not 0 <= row < self.row_count:
            return Strip.blank(width, self._style(""))
        entry = self._entries[self._skip + row]
        seq = self._offset + self._skip + row
        if seq == self._cursor:
            cursor = self._style("request-log--cursor")
            return self._strip(row_cells(entry, self.frame), width, cursor, css_wins=True)
        key = (entry.id, self.frame if entry.open else -1, width)
        strip = self._strips.get(key)
        if strip is None:
            stripe = self._style("request-log--even-row" if seq % 2 == 0 else "request-log--odd-row")
            strip = self._strip(row_cells(entry, self.frame), width, stripe, css_wins=False)
            self._strips[key] = strip
        return strip

    def _strip(self, cells: list[Cell], width: int, base: Style, *, css_wins: bool) -> Strip:
        """One line of cells on a background; the cursor's colours win over a cell's own."""
        pad = " " * CELL_PADDING
        columns, length = column_widths(width)
        segments = []
        run: list[str] = []  # neighbouring cells in the same style make one segment
        run_style = base
        for (text, style), (cell_width, right) in zip(cells, columns, strict=True):
            full = base
            if style:
                key = (style, base, css_wins)
                full = self._cell_styles.get(key) or self._cell_styles.setdefault(
                    key, Style.parse(style) + base if css_wins else base + Style.parse(style)
                )
            if full is not run_style and run:
                segments.append(Segment("".join(run), run_style))
                run = []
            run_style = full
            run.append(pad + fit(text, cell_width, right) + pad)
        segments.append(Segment("".join(run), run_style))
        if length == width:
            return Strip(segments, width)
        return Strip(segments, length).adjust_cell_length(width, base)
