"""Write SVG screenshots of the panel for the README: `python -m mockllm_tui.tools.screenshots`.

Runs the real panel with the real server on a loopback port, on a copy of the shipped
responses.yml, sends real traffic with the openai SDK (a development dependency), and saves:
main-stream.svg (a reply streaming out), chunk-timeline.svg (the same stream's chunks as sent, `c`),
rule-editor.svg, rule-from-request.svg (`n` on a request that got the fallback), toggles.svg,
help.svg, and attached.svg (a panel attached to a server with `--attach`; `--attached` shoots only that).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from mockllm_tui.core.store import Store
from mockllm_tui.http.app import create_app
from mockllm_tui.http.runner import PortInUse, ServerHandle
from mockllm_tui.rules import load_initial
from mockllm_tui.rules.commands import add_rule
from mockllm_tui.tui.app import MockPanel
from mockllm_tui.tui.widgets.controls import Controls
from mockllm_tui.tui.widgets.rule_table import RuleTable

SIZE = (160, 45)
ROOT = Path(__file__).resolve().parents[2]
STORY = (
    "Once upon a time a developer needed an LLM that always answered the same way, instantly, "
    "offline and for free. So they started mockllm-tui, pointed their SDK at it, and watched every "
    "request arrive, every token stream out, and every injected error land exactly where they wanted it."
)


def example_responses() -> Path:
    """The shipped example file (the repo's responses.yml, or the package's default)."""
    repo = ROOT / "responses.yml"
    return repo if repo.is_file() else Path(__file__).resolve().parents[1] / "data" / "responses.yml"


def server_handle(store: Store) -> ServerHandle:
    """The server on port 8000 when it is free (so the picture shows the usual URL), else any port."""
    app = create_app(store)
    try:
        return ServerHandle(app, "127.0.0.1", 8000, grace_s=1)
    except PortInUse:
        return ServerHandle(app, "127.0.0.1", 0, grace_s=1)


async def until(pilot: object, condition: object, timeout: float = 10.0) -> None:
    """Let the app run until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the panel did not get there in time")
        await pilot.pause(0.05)  # type: ignore[attr-defined]


async def shoot(out: Path) -> list[Path]:
    """Run the panel, make traffic, save the screenshots; returns the files written."""
    import openai

    home = Path(tempfile.mkdtemp(prefix="mockllm-shots-"))
    work = home / "project"
    work.mkdir()
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(home)  # the status bar shows the file as ~/project/responses.yml
    try:
        path = work / "responses.yml"
        shutil.copyfile(example_responses(), path)
        store = Store()
        load_initial(store, path)
        add_rule(store, {"name": "story", "match": {"contains": "story"}, "reply": STORY}, persist=False)
        handle = server_handle(store)
        app = MockPanel(store, handle, watch_file=False, keymap_file=work / "keymap.yml", export_dir=work)
        written: list[Path] = []

        def save(name: str) -> None:
            for field in app.screen.query("Input, TextArea"):
                field.cursor_blink = False  # type: ignore[attr-defined]
            app.save_screenshot(name, str(out))
            written.append(out / name)

        async with app.run_test(size=SIZE) as pilot:
            client = openai.AsyncOpenAI(base_url=handle.url, api_key="sk-demo", max_retries=0)
            for prompt in ("hello", "what is the weather in Paris?", "what colour is the sky?", "count"):
                await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
            with contextlib.suppress(openai.APIStatusError):
                await client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "make it explode"}]
                )
            store.set_knobs("live", {"stream_speed": 20})
            stream = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "tell me a story"}], stream=True
            )
            seen = 0
            async for _chunk in stream:
                seen += 1
                if seen == 28:
                    await pilot.pause(0.2)
                    save("main-stream.svg")
                    await pilot.press("c")
                if seen == 40:
                    await pilot.pause(0.2)
                    app.detail.scroll_end(animate=False)
                    await pilot.pause(0.1)
                    save("chunk-timeline.svg")
                    await pilot.press("c")
            await until(pilot, lambda: store.counters.streams_open == 0)

            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "what is the capital of France?"}]
            )
            await until(pilot, lambda: app.selected is not None and app.selected.preview.startswith("what is the cap"))
            await pilot.press("n")
            await pilot.press(*"Paris.")
            await pilot.pause(0.1)
            save("rule-from-request.svg")
            await pilot.press("escape")

            table = app.query_one(RuleTable)
            table.focus()
            table.move_cursor(row=2)
            await pilot.press("e")
            await pilot.pause(0.1)
            save("rule-editor.svg")
            await pilot.press("escape")

            store.set_knobs(
                "live",
                {
                    "latency_ms": 250,
                    "stream_speed": 50,
                    "stream_chunk": "token",
                    "error_rate": 0.25,
                    "error_status": [503],
                    "error_mode": "mid_stream",
                },
            )
            store.set_fail_next(2, 429)
            await pilot.pause(0.2)
            app.query_one(Controls).query_one("#fail-count").focus()
            await pilot.pause(0.2)
            save("toggles.svg")

            app.query_one(RuleTable).focus()
            await pilot.press("question_mark")
            await pilot.pause(0.1)
            save("help.svg")
            await client.close()
        return written
    finally:
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home
        shutil.rmtree(home, ignore_errors=True)


async def shoot_attached(out: Path) -> list[Path]:
    """A panel attached to a server (its own process in real use; here the server runs on the same
    loop, as in `shoot`): a scenario under way, and a fallback's near misses. Saves attached.svg."""
    import openai

    from mockllm_tui.remote.attached import AttachedServer
    from mockllm_tui.remote.client import AdminClient
    from mockllm_tui.remote.mirror import MirrorStore
    from mockllm_tui.remote.rule_access import RemoteRuleAccess

    home = Path(tempfile.mkdtemp(prefix="mockllm-shots-"))
    work = home / "project"
    work.mkdir()
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    handle: ServerHandle | None = None
    try:
        path = work / "responses.yml"
        shutil.copyfile(example_responses(), path)
        store = Store()
        load_initial(store, path)
        handle = server_handle(store)
        await handle.start()
        mirror = MirrorStore(AdminClient(handle.url))
        app = MockPanel(
            mirror,
            AttachedServer(mirror),
            watch_file=False,
            keymap_file=work / "keymap.yml",
            export_dir=work,
            rules=RemoteRuleAccess(mirror),
        )
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: mirror.connected and bool(mirror.rules_list()))
            client = openai.AsyncOpenAI(base_url=handle.url, api_key="sk-demo", max_retries=0)
            for prompt in ("hello", "what colour is the sky?", "book a room", "count"):
                await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
            await client.chat.completions.create(
                model="gpt-3.5-turbo", messages=[{"role": "user", "content": "what is the weather in Tokyo?"}]
            )
            await client.close()
            await until(pilot, lambda: mirror.counters.total == 5 and "Why no rule matched" in detail_text(app))
            await until(pilot, lambda: any(s.step == 1 for s in mirror.scenarios))
            await pilot.pause(1.2)  # the hit counts redraw once a second
            app.query_one(RuleTable).scroll_end(animate=False)  # the scenario's row, after the rules
            await pilot.pause(0.1)
            app.save_screenshot("attached.svg", str(out))
        return [out / "attached.svg"]
    finally:
        if handle is not None:
            await handle.stop()
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home
        shutil.rmtree(home, ignore_errors=True)


def detail_text(app: MockPanel) -> str:
    """The detail pane's text."""
    from rich.console import Console
    from textual.widgets import Static

    body = app.query_one("#detail-body", Static)
    console = Console(width=max(body.size.width, 40), record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(body.content)
    return console.export_text()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots", help="folder for the SVGs")
    parser.add_argument("--attached", action="store_true", help="only attached.svg")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = [] if args.attached else asyncio.run(shoot(args.out))
    written += asyncio.run(shoot_attached(args.out))
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
