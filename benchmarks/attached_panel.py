"""A panel attached to a running server (`mockllm-tui --attach URL`), headless under Textual's `run_test`.

`python -m benchmarks.attached_panel URL [API_KEY]` prints `attached to http://127.0.0.1:PORT` once the
event stream is connected, then reads commands from stdin like benchmarks.panel_server:
- `key K`: press K and print `key_ms MS` once the screen shows the effect (the new stream speed, for
  `]` / `[`: the command went to the server, its answer came back, and the screen refreshed).
- `quit`: stop.
"""

from __future__ import annotations

import asyncio
import sys

from benchmarks.panel_server import press_and_time

CONNECT_TIMEOUT_S = 20.0


async def run(url: str, api_key: str | None) -> None:
    """Open the attached panel headless and obey stdin."""
    from mockllm_tui.remote.attached import AttachedServer
    from mockllm_tui.remote.client import AdminClient
    from mockllm_tui.remote.mirror import MirrorStore
    from mockllm_tui.remote.rule_access import RemoteRuleAccess
    from mockllm_tui.tui.app import MockPanel

    mirror = MirrorStore(AdminClient(url, api_key))
    app = MockPanel(mirror, AttachedServer(mirror), watch_file=False, rules=RemoteRuleAccess(mirror))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with app.run_test(headless=True, size=(160, 48)) as pilot:
        deadline = loop.time() + CONNECT_TIMEOUT_S
        while not mirror.connected and loop.time() < deadline:
            await pilot.pause(0.05)
        print(f"attached to {mirror.client.root}" if mirror.connected else "not connected", flush=True)
        while line := (await reader.readline()).decode().strip():
            if line == "quit":
                break
            if line.startswith("key "):
                ms = await press_and_time(app, mirror, line[4:])
                print(f"key_ms {ms:.1f}", flush=True)


def main() -> None:
    """Entry point (uvloop, as the real panel runs)."""
    import uvloop

    url, key = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(url, key))


if __name__ == "__main__":
    main()
