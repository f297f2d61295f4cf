"""Pure-Python cost of a request, in process, without the network: each HTTP protocol (`--http uvicorn`
and `--http fast`) fed the benchmark's chat request through a fake transport, beside the app alone
(called with a fake receive and send). The difference is what the protocol itself costs.

`python -m benchmarks.protocol_cost [--requests 20000] [--rounds 3] [--profile uvicorn|fast]` prints
microseconds a request (best of the rounds, CPU time); `--profile` adds cProfile's top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from typing import Any

import orjson
import uvicorn
import uvloop
from uvicorn.server import ServerState

from benchmarks.common import CHAT_BODY
from mockllm_tui.cli import PACKAGED_RESPONSES
from mockllm_tui.core.store import Store
from mockllm_tui.http.app import MockApp, create_app
from mockllm_tui.http.runner import HTTP_PROTOCOLS, uvicorn_config
from mockllm_tui.rules import load_initial

BODY = orjson.dumps(CHAT_BODY)
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


class FakeTransport(asyncio.Transport):
    """Collects what the protocol writes; says a response is whole when its bytes have arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closing = False

    def write(self, data: Any) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        pass


def make_app() -> MockApp:
    """The headless server's app, with the packaged example's rules."""
    store = Store()
    load_initial(store, PACKAGED_RESPONSES)
    return create_app(store)


async def through_protocol(app: MockApp, http: str, count: int) -> float:
    """CPU seconds for `count` requests fed to one kept-alive connection of this protocol."""
    config: uvicorn.Config = uvicorn_config(app, http=http)
    config.load()
    state = ServerState()
    proto: Any = config.http_protocol_class(config=config, server_state=state, app_state={})
    transport = FakeTransport()
    proto.connection_made(transport)
    start = time.process_time()
    for _ in range(count):
        proto.data_received(REQUEST)
        while state.tasks:
            await next(iter(state.tasks))
    spent = time.process_time() - start
    proto.connection_lost(None)
    return spent


async def app_alone(app: MockApp, count: int) -> float:
    """CPU seconds for `count` requests given to the app directly (a fake receive and send)."""
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(BODY))],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }
    message = {"type": "http.request", "body": BODY, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(_: Any) -> None:
        pass

    start = time.process_time()
    for _ in range(count):
        await app(dict(scope, state={}), receive, send)
    return time.process_time() - start


async def measure(count: int, rounds: int) -> dict[str, float]:
    """Best-of-rounds microseconds a request: the app alone, and through each protocol."""
    app = make_app()
    await app.prepare_fallback()
    best: dict[str, float] = {}
    await app_alone(app, 500)  # warm-up
    for _ in range(rounds):
        runs = {"app alone": await app_alone(app, count)}
        for http in HTTP_PROTOCOLS:
            runs[f"--http {http}"] = await through_protocol(app, http, count)
        for name, spent in runs.items():
            best[name] = min(best.get(name, float("inf")), spent / count * 1e6)
    return best


def main() -> None:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile", choices=HTTP_PROTOCOLS)
    p.add_argument("--top", type=int, default=25)
    opts = p.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        best = runner.run(measure(opts.requests, opts.rounds))
        alone = best["app alone"]
        for name, us in best.items():
            extra = "" if name == "app alone" else f"  (the protocol: {us - alone:.1f} us)"
            print(f"{name:>16}: {us:6.1f} us a request{extra}")
        if opts.profile:
            prof = cProfile.Profile()
            runner.run(profiled(prof, opts.profile, opts.requests))
            pstats.Stats(prof).sort_stats("tottime").print_stats(opts.top)


async def profiled(prof: cProfile.Profile, http: str, count: int) -> None:
    """`count` requests through one protocol under cProfile."""
    app = make_app()
    await app.prepare_fallback()
    await through_protocol(app, http, 500)  # warm-up
    prof.enable()
    await through_protocol(app, http, count)
    prof.disable()


if __name__ == "__main__":
    main()
