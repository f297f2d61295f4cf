"""The media flow: pictures, audio, transcripts and moderation verdicts (providers/media.py).

It reads the body, has the endpoint parse it (off the event loop: uploads are decoded), records the
request, asks the rules for each judged input, carries out the knobs (an error, the latency), reads a
rule's file, has the endpoint make its answer (off the event loop: pictures and audio are encoded)
and sends it whole or as a stream.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from mockllm_tui.core.conversation import Reply
from mockllm_tui.engine.answer import ErrorAnswer, answer_faults, preview, record_conversation, require_known_model
from mockllm_tui.engine.exchange import Exchange
from mockllm_tui.providers.base import now_s
from mockllm_tui.providers.media import MEDIA_MAX_BODY, MediaContext, MediaEndpoint


async def run_media(endpoint: MediaEndpoint, ex: Exchange) -> None:
    """Serve one media request end to end."""
    store, entry = ex.store, ex.entry
    if endpoint.method != "GET":
        await ex.read_body(max(store.config.max_body, MEDIA_MAX_BODY))
    job = await asyncio.to_thread(endpoint.parse_media, ex.path, ex.headers, ex.body)
    replies: list[Reply] = []
    if job.requests:
        first = job.requests[0]
        entry.provider = first.provider
        record_conversation(ex, first)
        entry.preview = preview(job.preview)
        require_known_model(ex, job.model)
        replies = [store.rules.choose(request) for request in job.requests]
        entry.rule = ", ".join(dict.fromkeys(r.rule for r in replies if r.rule)) or None
        # Any input's error rule answers for the whole request.
        deciding = next((r for r in replies if r.error is not None), replies[0])
        if await answer_faults(ex, deciding) is None:
            return
    else:
        entry.preview = preview(job.preview)
    named = replies[0].file if replies else None
    ctx = MediaContext(root=mock_root(ex), created=now_s(), rule_file=read_rule_file(named) if named else None)
    answer = await asyncio.to_thread(endpoint.answer, job, replies, ctx)
    entry.reply_text, entry.thumbnail = answer.reply_text, answer.thumbnail
    entry.input_tokens, entry.output_tokens = answer.input_tokens, answer.output_tokens
    store.count_tokens_used(answer.input_tokens + answer.output_tokens)
    if answer.frames is None:
        await ex.send_bytes(200, answer.body, content_type=answer.content_type)
        return
    await ex.start_stream(content_type=endpoint.provider.stream_content_type)
    for frame in answer.frames:
        await ex.send_chunk(frame.data, frame.text)
    await ex.end_stream()


def read_rule_file(path: str) -> bytes:
    """The bytes of a rule's `image:` or `audio:` file; a 500 naming the path when it is gone."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ErrorAnswer(500, f"mockllm-tui: the rule's file {path} cannot be read ({exc.strerror})") from None


def mock_root(ex: Exchange) -> str:
    """The address the request came to, as the client wrote it (for the URLs the mock serves)."""
    scheme = str(ex.scope.get("scheme", "http"))
    host = ex.headers.get("host")
    if not host:
        server = ex.scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scheme}://{host}"
