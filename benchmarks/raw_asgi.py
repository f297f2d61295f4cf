"""The baseline: a raw ASGI app that reads the body and answers fixed bytes, on the same uvicorn
(uvloop + httptools, the very settings of mockllm-tui's embedded server: `uvicorn_config`).

`python -m benchmarks.raw_asgi [--port 0]` prints `raw-asgi serving on http://127.0.0.1:PORT` first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson
import uvicorn
import uvloop

from mockllm_tui.http.runner import bind_socket, uvicorn_config

BODY = orjson.dumps(
    {
        "id": "chatcmpl-0123456789abcdef01234567",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "This is a mock response from mockllm-tui.",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 17, "completion_tokens": 10, "total_tokens": 27},
    }
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the request body, answer the fixed JSON."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


async def serve(port: int) -> None:
    """Serve until killed."""
    sock = bind_socket("127.0.0.1", port)
    sys.stdout.write(f"raw-asgi serving on http://127.0.0.1:{sock.getsockname()[1]}\n")
    sys.stdout.flush()
    await uvicorn.Server(uvicorn_config(app)).serve(sockets=[sock])


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.port))


if __name__ == "__main__":
    main()
