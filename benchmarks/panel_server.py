"""The panel open, headless under Textual's `run_test`, serving like `mockllm-tui` does.

`python -m benchmarks.panel_server [mockllm-tui options]` prints `panel serving on http://127.0.0.1:PORT`,
then reads commands from stdin, one a line:
- `key K`: press K and print `key_ms MS` once the panel's screen shows the effect: a widget's text
  changes and shows the new stream speed (for `]` / `[`), and the screen has been refreshed since.
  Prints `key_ms nan` if nothing showed in 2 s.

The key goes in as a terminal would send it (an `events.Key` through the driver), not through
`Pilot.press`: that waits for the process to go idle (up to a second, twice), which it never
does under load, so it would time the wait rather than the panel.
- `dialog K`: press K (`a`, `e` or `n`), print `dialog_ms MS` once the rule editor has been drawn
  (the first frame of it the compositor hands to the terminal driver, turned into the escape
  sequences a terminal would get), then press escape and wait for the main screen to be drawn
  again. Prints `dialog_ms nan` if no editor showed in 2 s.
- `focus ID`: focus the widget with this id (`rules`: then `e` edits the highlighted rule).
- `quit`: stop.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from mockllm_tui.cli import build_parser, make_store, prepare
from mockllm_tui.core.store import Store

SHOW_TIMEOUT_S = 2.0


def screen_texts(app: Any) -> dict[int, str]:
    """The plain text of every Static on the current screen, by widget id()."""
    from textual.widgets import Static

    out: dict[int, str] = {}
    for widget in app.screen.query(Static):
        try:
            out[id(widget)] = str(widget.render())
        except Exception:  # a widget that cannot render outside a paint: skip it
            continue
    return out


def key_event(key: str) -> Any:
    """The `events.Key` a terminal sends for `key` (a character such as `[`, or a key name)."""
    from textual import events
    from textual.keys import _character_to_key

    if len(key) == 1:
        return events.Key(key if key.isalnum() else _character_to_key(key), key)
    return events.Key(key, None)


async def press_and_time(app: Any, store: Store, key: str) -> float:
    """Milliseconds from the key press to a refreshed screen with a widget text showing the new speed."""
    before_speed = store.knobs.stream_speed
    before = screen_texts(app)
    t0 = time.perf_counter()
    app._driver.send_message(key_event(key))
    deadline = t0 + SHOW_TIMEOUT_S
    while time.perf_counter() < deadline:
        speed = store.knobs.stream_speed
        if speed != before_speed:
            marks = ("∞",) if speed <= 0 else (f"{speed:g}",)
            for wid, text in screen_texts(app).items():
                if text != before.get(wid) and any(m in text for m in marks):
                    await app.screen.wait_for_refresh()
                    return (time.perf_counter() - t0) * 1000.0
        await asyncio.sleep(0.002)
    return float("nan")


class FrameClock:
    """Notes when each screen's frames reach the driver (headless: where a terminal write would be)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last: dict[type, float] = {}
        self._display = app._display
        app._display = self.display

    def display(self, screen: Any, renderable: Any) -> None:
        from textual._compositor import CompositorUpdate

        self._display(screen, renderable)
        if renderable is None:
            return
        if isinstance(renderable, CompositorUpdate):  # the work of a real terminal's write, minus the I/O
            renderable.render_segments(self.app.console)
        self.last[type(screen)] = time.perf_counter()

    async def wait_drawn(self, screen_type: type, since: float, timeout_s: float) -> float:
        """When a frame of `screen_type` was drawn after `since` (nan if none within `timeout_s`)."""
        deadline = since + timeout_s
        while time.perf_counter() < deadline:
            drawn = self.last.get(screen_type, 0.0)
            if drawn > since:
                return drawn
            await asyncio.sleep(0.002)
        return float("nan")


async def open_dialog(app: Any, clock: FrameClock, key: str) -> float:
    """Milliseconds from pressing `key` to the rule editor drawn; then close it again."""
    from mockllm_tui.tui.screens.rule_editor import RuleEditor

    t0 = time.perf_counter()
    app._driver.send_message(key_event(key))
    drawn = await clock.wait_drawn(RuleEditor, t0, SHOW_TIMEOUT_S)
    if isinstance(app.screen, RuleEditor):
        closed = time.perf_counter()
        app._driver.send_message(key_event("escape"))
        await clock.wait_drawn(type(app.screen_stack[0]), closed, SHOW_TIMEOUT_S)
    return (drawn - t0) * 1000.0


async def run(argv: list[str]) -> None:
    """Open the panel headless and obey stdin."""
    from mockllm_tui.tui.app import MockPanel

    args = build_parser().parse_args(argv)
    store = make_store(args)
    handle = prepare(args, store)
    app = MockPanel(store, handle)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with app.run_test(headless=True, size=(160, 48)) as pilot:
        clock = FrameClock(app)
        await pilot.pause()
        print(f"panel serving on http://127.0.0.1:{handle.port}", flush=True)
        while line := (await reader.readline()).decode().strip():
            if line == "quit":
                break
            if line.startswith("key "):
                ms = await press_and_time(app, store, line[4:])
                print(f"key_ms {ms:.1f}", flush=True)
            elif line.startswith("focus "):
                app.set_focus(app.query_one(f"#{line[6:]}"))
            elif line.startswith("dialog "):
                ms = await open_dialog(app, clock, line[7:])
                print(f"dialog_ms {ms:.1f}", flush=True)


def main() -> None:
    """Entry point (uvloop, as the real panel runs)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
