"""`mockllm-tui --attach URL`: the panel under Pilot as a client of a real headless server (a
subprocess on a free port), driven by real openai SDK calls."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static, TextArea

from mockllm_tui.remote import attached as attached_module
from mockllm_tui.remote.attached import AttachedServer
from mockllm_tui.remote.client import AdminClient
from mockllm_tui.remote.mirror import MirrorStore
from mockllm_tui.remote.rule_access import RemoteRuleAccess
from mockllm_tui.tui.app import MockPanel
from mockllm_tui.tui.screens.rule_editor import RuleEditor
from mockllm_tui.tui.screens.save_path import SavePathScreen
from mockllm_tui.tui.widgets.request_log import RequestLog
from mockllm_tui.tui.widgets.rule_table import SCENARIO_ROW, RuleTable
from tests.support import PanelDriver, rendered
from tests.test_headless import start_headless

SIZE = (160, 45)
LONG_REPLY = " ".join(f"word{i}" for i in range(40))
RESPONSES = f"""\
# the server's own file
rules:
  - name: story
    match: {{contains: story}}
    reply: "{LONG_REPLY}"
responses:
  "hello": "Hello from the server."   # greeting
  "default": "This is a mock response from mockllm-tui."
"""


@dataclass
class Attached(PanelDriver):
    """The attached panel, its pilot and mirror, the server process and an SDK client for it."""

    wait_s = 10.0

    app: MockPanel
    pilot: Pilot[int]
    mirror: MirrorStore
    server: subprocess.Popen[str]
    port: int
    client: openai.AsyncOpenAI
    tmp: Path

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"


    def status(self) -> str:
        return rendered(self.app.query_one("#status-url", Static))


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@contextlib.asynccontextmanager
async def attached_panel(
    tmp_path: Path, *args: str, key: str | None = None, connect: bool = True, responses: str = RESPONSES, rules: int = 3
) -> AsyncIterator[Attached]:
    server_dir = tmp_path / "server"
    server_dir.mkdir(parents=True)
    (server_dir / "responses.yml").write_text(responses)
    proc, port, _ = start_headless("--quiet", *args, cwd=server_dir)
    try:
        mirror = MirrorStore(AdminClient(f"http://127.0.0.1:{port}", key))
        app = MockPanel(
            mirror,
            AttachedServer(mirror, first_retry_s=0.05),
            watch_file=False,
            keymap_file=tmp_path / "keymap.yml",
            export_dir=tmp_path,
            rules=RemoteRuleAccess(mirror),
        )
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0)
            running = Attached(app, pilot, mirror, proc, port, client, tmp_path)
            if connect:
                await running.until(lambda: mirror.connected and len(mirror.rules_list()) == rules)
            yield running
            await client.close()
    finally:
        stop(proc)


@pytest.fixture
async def attached(tmp_path: Path) -> AsyncIterator[Attached]:
    async with attached_panel(tmp_path, "--stream-speed", "40") as running:
        yield running


async def test_requests_and_a_growing_stream_show_in_the_attached_panel(attached: Attached) -> None:
    assert f"attached to {attached.root}" in attached.status()
    assert await attached.chat("hello") == "Hello from the server."
    log = attached.app.query_one(RequestLog)
    await attached.until(lambda: log.row_count == 1 and not next(iter(log.rows_by_id.values())).open)
    entry = next(iter(log.rows_by_id.values()))
    assert entry.reply_text == "Hello from the server." and entry.rule == "#2"
    detail = attached.app.query_one("#detail-body", Static)
    await attached.until(lambda: "Hello from the server." in rendered(detail))

    stream = await attached.client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "tell me a story"}], stream=True
    )

    async def consume() -> str:
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    task = asyncio.create_task(consume())
    await attached.until(lambda: "streaming:" in rendered(detail) and "word3 " in rendered(detail))
    assert "word39" not in rendered(detail)  # still growing
    await attached.until(lambda: "word20 " in rendered(detail))
    assert await asyncio.wait_for(task, 20) == LONG_REPLY
    await attached.until(lambda: "stream:" in rendered(detail) and "word39" in rendered(detail))
    table = attached.app.query_one(RuleTable)
    await attached.until(lambda: [v.hits for v in table.views] == [1, 1, 0])


async def test_a_toggle_changes_the_servers_next_reply(attached: Attached) -> None:
    assert await attached.chat("hello")
    attached.app.controls.armed_rate = 1.0
    await attached.pilot.press("x")
    with pytest.raises(openai.APIStatusError):
        await attached.chat("this one fails")
    settings = httpx.get(attached.root + "/_mock/settings").json()
    assert settings["effective"]["error_rate"] == 1.0
    await attached.pilot.press("x")
    assert await attached.chat("hello") == "Hello from the server."
    await attached.pilot.press("plus")
    assert httpx.get(attached.root + "/_mock/settings").json()["effective"]["latency_ms"] > 0
    assert attached.mirror.knobs.latency_ms > 0


async def test_n_makes_a_rule_the_server_serves_and_w_saves_its_file(attached: Attached) -> None:
    assert await attached.chat("what is mockllm?") == "This is a mock response from mockllm-tui."
    log = attached.app.query_one(RequestLog)
    await attached.until(lambda: log.row_count == 1 and attached.app.selected is not None)
    await attached.until(lambda: attached.app.selected is not None and attached.app.selected.conversation is not None)
    await attached.pilot.press("n")
    editor = attached.app.screen
    assert isinstance(editor, RuleEditor)
    assert editor.query_one("#pattern", Input).value == "what is mockllm?"
    assert attached.app.focused is editor.query_one("#reply", TextArea)
    await attached.pilot.press(*"A mock LLM.", "ctrl+s")
    assert not isinstance(attached.app.screen, RuleEditor)
    assert await attached.chat("what is mockllm?") == "A mock LLM."
    server_file = (attached.tmp / "server" / "responses.yml").read_text()
    assert "A mock LLM." in server_file and "# greeting" in server_file
    table = attached.app.query_one(RuleTable)
    assert any(v.label == "what-is-mockllm" for v in table.views)

    # w: a new local file gets the server's text
    local = attached.tmp / "mine.yml"
    await attached.pilot.press("w")
    dialog = attached.app.screen
    assert isinstance(dialog, SavePathScreen)
    field = dialog.query_one("#save-path", Input)
    assert field.value == "./responses.yml"
    field.value = str(local)
    await attached.pilot.press("enter")
    assert local.read_text() == server_file

    # a hand edit here, a change there: w again changes only the entry that changed
    local.write_text(local.read_text().replace("# the server's own file", "# my copy, with my comment"))
    await attached.pilot.press("a")
    assert isinstance(attached.app.screen, RuleEditor)
    await attached.pilot.press(*"ping")
    attached.app.screen.query_one("#rule-name", Input).focus()
    await attached.pilot.press("shift+tab", "shift+tab", "shift+tab", *"pong", "ctrl+s")
    assert await attached.chat("ping") == "pong"
    await attached.pilot.press("w")
    attached.app.screen.query_one("#save-path", Input).value = str(local)
    await attached.pilot.press("enter")
    mine = local.read_text()
    assert "# my copy, with my comment" in mine and "pong" in mine and "A mock LLM." in mine


async def test_a_lost_server_shows_disconnected_and_the_panel_catches_up(tmp_path: Path) -> None:
    async with attached_panel(tmp_path) as attached:
        assert await attached.chat("hello")
        log = attached.app.query_one(RequestLog)
        await attached.until(lambda: log.row_count == 1)
        stop(attached.server)
        await attached.until(lambda: "disconnected" in attached.status())
        assert log.row_count == 1  # keeps what it shows
        await attached.pilot.press("plus")
        await attached.until(lambda: any("not connected" in str(n.message) for n in attached.app._notifications))
        proc, port, _ = start_headless("--quiet", "--port", str(attached.port), cwd=tmp_path / "server")
        attached.server = proc
        try:
            assert port == attached.port
            await attached.until(lambda: attached.mirror.connected, timeout=20)
            await attached.until(lambda: "disconnected" not in attached.status())
            assert await attached.chat("hello again") == "This is a mock response from mockllm-tui."
            await attached.until(
                lambda: any(
                    e.preview == "hello again" or "hello again" in e.transcript()[-1][1]
                    for e in log.rows_by_id.values()
                    if e.transcript()
                )
            )
        finally:
            stop(proc)


async def test_attaching_needs_the_servers_key(tmp_path: Path) -> None:
    async with attached_panel(tmp_path / "wrong", "--api-key", "sk-secret", key="sk-wrong", connect=False) as refused:
        await refused.until(lambda: "refused" in refused.status())
        assert not refused.mirror.connected
        await refused.pilot.press("x")
        await refused.until(lambda: any("not connected" in str(n.message) for n in refused.app._notifications))
    async with attached_panel(tmp_path / "right", "--api-key", "sk-secret", key="sk-secret") as attached:
        assert attached.mirror.connected and "refused" not in attached.status()
        await attached.pilot.press("plus")
        answer = httpx.get(attached.root + "/_mock/settings", headers={"authorization": "Bearer sk-secret"})
        assert answer.json()["effective"]["latency_ms"] > 0


async def test_try_resend_curl_and_save_settings_go_to_the_server(attached: Attached) -> None:
    from mockllm_tui.tui.screens.try_prompt import TryPromptScreen

    await attached.pilot.press("t")
    assert isinstance(attached.app.screen, TryPromptScreen)
    await attached.pilot.press(*"a story please", "enter")
    result = attached.app.screen.query_one("#try-result", Static)
    assert "Winner: story" in rendered(result)
    await attached.pilot.press("escape")
    assert attached.mirror.counters.total == 0  # trying counts nothing, here or there
    assert httpx.get(attached.root + "/_mock/journal").json()["counters"]["total"] == 0

    assert await attached.chat("hello") == "Hello from the server."
    log = attached.app.query_one(RequestLog)
    await attached.until(lambda: attached.app.selected is not None and not attached.app.selected.open)
    copied: list[str] = []
    attached.app.copy_to_clipboard = copied.append  # type: ignore[method-assign]
    await attached.pilot.press("y")
    assert copied and f"{attached.root}/v1/chat/completions" in copied[0] and "hello" in copied[0]
    await attached.pilot.press("r")
    await attached.until(lambda: log.row_count == 2)
    assert httpx.get(attached.root + "/_mock/journal").json()["counters"]["total"] == 2

    await attached.pilot.press("plus", "ctrl+s")
    await attached.until(lambda: "latency_ms" in (attached.tmp / "server" / "responses.yml").read_text())
    assert "# greeting" in (attached.tmp / "server" / "responses.yml").read_text()


def test_attach_refuses_what_is_not_a_url_and_headless() -> None:
    import sys

    for args, said in (
        (["--attach", "127.0.0.1:8000"], "expected http(s)://HOST:PORT"),
        (["--attach", "http://127.0.0.1:8000", "--headless"], "--attach and --headless exclude each other"),
    ):
        done = subprocess.run([sys.executable, "-m", "mockllm_tui", *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and said in done.stderr


class LaggingEvents:
    """The attached panel reads the event stream late, as a busy panel does under load: each event
    is handed over `lag_s` after it was read from the socket (in order)."""

    def __init__(self, lag_s: float) -> None:
        self.lag_s = lag_s
        #: The events read from the socket so far, and how many of them were handed over (applied).
        self.read: list[tuple[str, Any]] = []
        self.handed = 0
        self.original = attached_module.sse_events

    async def __call__(self, response: httpx.Response) -> AsyncIterator[tuple[str, str | None, Any]]:
        queue: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()

        async def read() -> None:
            async for event in self.original(response):
                self.read.append((event[0], event[2]))
                queue.put_nowait((time.monotonic() + self.lag_s, event))
            queue.put_nowait((0.0, None))

        reader = asyncio.create_task(read())
        try:
            while True:
                due, event = await queue.get()
                if event is None:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                yield event
                self.handed += 1
        finally:
            reader.cancel()

    def knobs_after(self, after: int) -> int:
        """How many events were read up to the first `knobs.changed` read after the first `after`
        (0: none yet)."""
        return next((n for n, (name, _) in enumerate(self.read[after:], after + 1) if name == "knobs.changed"), 0)


async def test_quick_presses_of_a_toggle_all_land_and_the_panel_agrees_with_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's event about one press reaches the panel after the next press changed the speed
    again: the panel must not take the older value back (the next press would start from it)."""
    from mockllm_tui.tui.format import faster, slower, speed_label

    lagging = LaggingEvents(0.3)
    monkeypatch.setattr(attached_module, "sse_events", lagging)
    async with attached_panel(tmp_path, "--stream-speed", "40") as attached:
        speed = attached.mirror.knobs.stream_speed

        async def press(key: str) -> None:
            nonlocal speed
            speed = slower(speed) if key == "left_square_bracket" else faster(speed)
            await attached.pilot.press(key)

        async def round_of(key: str) -> None:
            start = len(lagging.read)
            await press(key)
            await attached.until(lambda: lagging.knobs_after(start) > 0)  # the server told of it: read, not applied
            told = lagging.knobs_after(start)
            await press(key)
            await attached.until(lambda: lagging.handed >= told)  # applied now, after a newer change
            await press(key)

        await round_of("right_square_bracket")  # 40 -> 50, 100, 200
        await round_of("right_square_bracket")  # -> 500, 1000, unlimited
        assert httpx.get(attached.root + "/_mock/settings").json()["effective"]["stream_speed"] == speed
        knobs = attached.app.query_one("#status-knobs", Static)
        await attached.until(
            lambda: attached.mirror.knobs.stream_speed == speed and speed_label(speed) in rendered(knobs)
        )
        # and many quick presses in a row
        for key in ["left_square_bracket", "left_square_bracket", "right_square_bracket", "right_square_bracket"] * 5:
            await press(key)
        assert httpx.get(attached.root + "/_mock/settings").json()["effective"]["stream_speed"] == speed
        await attached.until(
            lambda: attached.mirror.knobs.stream_speed == speed and speed_label(speed) in rendered(knobs)
        )


async def test_scenarios_the_step_that_answered_and_near_misses_show_as_embedded(tmp_path: Path) -> None:
    from tests.test_panel_agent import RESPONSES as AGENT_RESPONSES

    async with attached_panel(tmp_path, responses=AGENT_RESPONSES, rules=1) as attached:
        table = attached.app.query_one(RuleTable)
        row = SCENARIO_ROW + "booking"
        await attached.until(lambda: table.row_count == 2)
        assert str(table.get_cell(row, "reply")) == "step 1/2"
        assert str(table.get_cell(row, "match")) == "scenario · next: ask city"
        assert await attached.chat("book a room") == "Which city?"
        await attached.until(lambda: str(table.get_cell(row, "reply")) == "step 2/2")
        assert str(table.get_cell(row, "match")) == "scenario · next: booking step 2"
        detail = attached.app.query_one("#detail-body", Static)
        await attached.until(lambda: "scenario booking: step 1/2" in rendered(detail))
        assert await attached.chat("Paris") == "Booked."
        await attached.until(lambda: str(table.get_cell(row, "reply")) == "finished 2/2")
        await attached.until(lambda: "scenario booking: step 2/2 · finished" in rendered(detail))
        # another session's steps do not move the table's (the default session's) position
        other = openai.AsyncOpenAI(
            base_url=attached.root + "/v1", api_key="k", max_retries=0, default_headers={"x-mock-session": "abc"}
        )
        assert (await other.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "book"}]))
        # a fallback: the detail pane says why the nearest rule missed, read from the server when shown
        reply = await other.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "weather?"}]
        )
        await other.close()
        assert reply.choices[0].message.content
        log = attached.app.query_one(RequestLog)
        await attached.until(lambda: log.row_count == 4 and attached.app.selected is log.entry_at(3))
        await attached.until(lambda: "Why no rule matched" in rendered(detail))
        text = " ".join(rendered(detail).split())
        assert "weather: model: 'gpt-4o-mini' is not 'gpt-4o'" in text and "session abc" in text
        assert str(table.get_cell(row, "reply")) == "finished 2/2"
        # a request a rule answered has no near misses to show
        await attached.pilot.press("up")
        await attached.until(lambda: rendered(detail).startswith("#3 "))
        assert "Why no rule matched" not in rendered(detail)
        # a reset over the admin API shows at once
        assert httpx.post(attached.root + "/_mock/scenarios/booking/reset").status_code == 200
        await attached.until(lambda: str(table.get_cell(row, "reply")) == "step 1/2")


async def test_a_realtime_session_counts_each_response_and_shows_its_event_types(attached: Attached) -> None:
    counts = attached.app.query_one("#status-counts", Static)
    async with attached.client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        for prompt in ("hello", "tell me a story"):
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}
            )
            await conn.response.create()
            async for event in conn:
                if event.type == "response.done":
                    break
        # while the socket is open, its row shows the latest turn and the rule that answered it
        detail = attached.app.query_one("#detail-body", Static)
        await attached.until(lambda: "user: tell me a story" in rendered(detail) and "rule story" in rendered(detail))
        await attached.until(lambda: "word39" in rendered(detail))
        assert "Hello from the server.word0" not in "".join(rendered(detail).split())  # the latest reply only
        assert attached.app.query_one(RequestLog).entry_at(0).open
    for _ in range(2):  # health checks count apart, as embedded
        assert httpx.get(attached.root + "/health").status_code == 200
    server = httpx.get(attached.root + "/_mock/journal").json()["counters"]
    assert server["total"] == 4  # two responses, two health checks: the session's row is not counted again
    log = attached.app.query_one(RequestLog)
    await attached.until(lambda: log.row_count == 1 and not log.entry_at(0).open)
    await attached.until(lambda: attached.mirror.counters.public() == server)
    await attached.until(lambda: "2 total" in rendered(counts))
    table = attached.app.query_one(RuleTable)
    await attached.until(lambda: [v.hits for v in table.views] == [1, 1, 0])  # each response's rule
    await attached.pilot.press("c")
    await attached.until(lambda: "response.output_text" in rendered(detail))
    shown = rendered(detail)
    assert "session.created" in shown and "response.created" in shown and "end · 101" in shown
    assert "+-" not in shown  # every event after the session began


async def test_a_picture_reply_shows_its_thumbnail_attached(attached: Attached) -> None:
    await attached.client.images.generate(model="gpt-image-1", prompt="a green meadow", size="1024x1536")
    log = attached.app.query_one(RequestLog)
    await attached.until(lambda: log.row_count == 1 and not log.entry_at(0).open)
    detail = attached.app.query_one("#detail-body", Static)
    await attached.until(lambda: "[1 x png 1024x1536]" in rendered(detail), 15)
    preview = [line for line in rendered(detail).splitlines() if line.strip().startswith("▀")]
    assert len(preview) == 24  # 48 pixels high, two to a cell
    assert len(preview[0].strip()) == 32  # 2:3, as the picture


async def test_the_servers_upstreams_and_recording_show_attached(tmp_path: Path) -> None:
    async with attached_panel(tmp_path, "--upstream", "openai=http://user:secret@127.0.0.1:9/v1") as attached:
        knobs = attached.app.query_one("#status-knobs", Static)
        await attached.until(lambda: "upstream 127.0.0.1:9" in rendered(knobs))
        assert "secret" not in rendered(knobs)
        await attached.pilot.press("R")
        await attached.until(lambda: "recording 127.0.0.1:9" in rendered(knobs))
        said = [str(n.message) for n in attached.app._notifications]
        assert "Recording on" in said  # not "no --upstream is set"
        assert httpx.get(attached.root + "/_mock/settings").json()["effective"]["record"] is True
