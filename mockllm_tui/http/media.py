"""The media flow: pictures, audio, transcripts and moderation verdicts (providers/media.py).

It reads the body, has the endpoint parse it (off the event loop: uploads are decoded), records the
request, asks the rules for each judged input, carries out the knobs (an error, the latency), reads a
rule's file, has the endpoint make its answer (off the event loop: pictures and audio are encoded)
and sends it whole or as a stream (paced by the stream speed, with any mid-stream fault).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx

from mockllm_tui.core.conversation import Reply, RequestError, preview
from mockllm_tui.engine.faults import FaultPlan
from mockllm_tui.http.answer import fail_before, fail_mid_stream, pick_from_sequence, plan_faults, wait_latency
from mockllm_tui.http.exchange import Exchange
from mockllm_tui.http.upstream import (
    Upstream,
    UpstreamProxy,
    failure,
    forwarded_headers,
    returned_headers,
    upstream_key,
)
from mockllm_tui.providers.base import Frame, now_s
from mockllm_tui.providers.media import MEDIA_MAX_BODY, MediaContext, MediaEndpoint, MediaJob
from mockllm_tui.rules.identity import UPSTREAM_LABEL

log = logging.getLogger("mockllm_tui.upstream")


async def run_media(endpoint: MediaEndpoint, ex: Exchange, proxy: UpstreamProxy | None = None) -> None:
    """Serve one media request end to end (with an upstream for its provider, a request no rule
    answers is forwarded there, and recorded while recording)."""
    store, journal = ex.store, ex.journal
    if endpoint.method != "GET":
        await ex.read_body(max(store.config.max_body, MEDIA_MAX_BODY))
    job = await asyncio.to_thread(endpoint.parse_media, ex.request)
    replies: list[Reply] = []
    plan: FaultPlan | None = None
    if job.requests:
        first = job.requests[0]
        entry = journal.entry
        journal.served_by(first.provider, entry.system, entry.request_id, endpoint.name, endpoint.operation)
        journal.parsed(first, what=preview(job.preview))
        endpoint.check_model(job.model, ex.request)
        upstream = proxy.upstream(ex, endpoint.provider) if proxy is not None else None
        if upstream is not None and proxy is not None:
            matched = [proxy.rule_reply(ex, request) for request in job.requests]
            if any(reply is None for reply in matched):
                await forward_media(proxy, ex, endpoint, job, upstream)
                return
            replies = [reply for reply in matched if reply is not None]
        else:
            replies = [store.rules.choose(request) for request in job.requests]
        for reply in replies:
            await pick_from_sequence(store, reply)
        journal.matched(", ".join(dict.fromkeys(r.rule for r in replies if r.rule)) or None)
        # Any input's error rule answers for the whole request.
        deciding = next((r for r in replies if r.error is not None), replies[0])
        plan = await plan_faults(ex, deciding)
        error = plan.error
        if error is not None and (error.mode == "before" or not job.stream):
            await fail_before(ex, error, plan, deciding)
        await wait_latency(ex, plan.latency_s)
    else:
        journal.parsed(what=preview(job.preview))
    named = replies[0].file if replies else None
    ctx = MediaContext(root=mock_root(ex), created=now_s(), rule_file=read_rule_file(named) if named else None)
    answer = await asyncio.to_thread(endpoint.answer, job, replies, ctx)
    journal.made(answer.reply_text, answer.input_tokens, answer.output_tokens, answer.thumbnail)
    store.count_tokens_used(answer.input_tokens + answer.output_tokens)
    if answer.frames is None:
        await ex.send_bytes(200, answer.body, content_type=answer.content_type)
        return
    await send_frames(ex, endpoint, answer.frames, plan)


async def send_frames(ex: Exchange, endpoint: MediaEndpoint, frames: list[Frame], plan: FaultPlan | None) -> None:
    """Send a stream's frames, a frame that carries tokens when they are due at the stream speed; a
    mid-stream fault from the plan happens halfway through."""
    store = ex.store
    error = plan.error if plan is not None else None
    cut_at = len(frames) // 2 if error is not None else -1
    override = plan.speed_override if plan is not None else None
    await ex.start_stream(content_type=endpoint.provider.stream_content_type)
    for index, frame in enumerate(frames):
        if index == cut_at and error is not None:
            await fail_mid_stream(ex, error, endpoint.provider.stream_error)
            return
        speed = override if override is not None else store.knobs.stream_speed
        if frame.tokens and speed > 0:
            await asyncio.sleep(frame.tokens / speed)
        await ex.send_chunk(frame.data, frame.text)
    await ex.end_stream()


async def forward_media(
    proxy: UpstreamProxy, ex: Exchange, endpoint: MediaEndpoint, job: MediaJob, upstream: Upstream
) -> None:
    """Send the request to the upstream and its answer back whole; while recording, a 2xx answer the
    endpoint can read back becomes a rule (and a file beside the responses file)."""
    ex.journal.matched(UPSTREAM_LABEL)
    timeout_s = ex.store.config.upstream_timeout_s
    client = proxy.client(timeout_s)
    method, url = ex.scope["method"], upstream.target(ex.path, ex.query)
    key = upstream_key(endpoint.provider, upstream)
    headers = forwarded_headers(ex.scope.get("headers", ()), endpoint.provider, key, method, url, ex.body)
    try:
        response = await client.request(method, url, headers=headers, content=ex.body)
    except httpx.HTTPError as exc:
        status, message = failure(exc, upstream, timeout_s)
        raise RequestError(message, status=status) from None
    ex.extra_headers = []  # the upstream's own headers go back, not ours
    ex.timing_header = None
    ctype = response.headers.get("content-type", "application/json")
    body = response.content
    if response.is_success and ex.store.knobs.record:
        recorded = await asyncio.to_thread(endpoint.read_upstream, job, ctype, body)
        if recorded is not None:
            try:
                proxy.recorder.record_media(
                    ex.store,
                    job.requests[0],
                    upstream.host,
                    reply=recorded.reply,
                    file=recorded.file,
                    extension=recorded.extension,
                    flagged=recorded.flagged,
                )
            except Exception as exc:  # a recording problem never breaks the answer
                log.warning("could not record the answer from %s: %s", upstream.host, exc)
    await ex.send_bytes(
        response.status_code, body, returned_headers(response.headers, stream=False), ctype.encode("latin-1")
    )


def read_rule_file(path: str) -> bytes:
    """The bytes of a rule's `image:` or `audio:` file; a 500 naming the path when it is gone."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        message = f"mockllm-tui: the rule's file {path} cannot be read ({exc.strerror})"
        raise RequestError(message, status=500) from None


def mock_root(ex: Exchange) -> str:
    """The address the request came to, as the client wrote it (for the URLs the mock serves)."""
    scheme = str(ex.scope.get("scheme", "http"))
    host = ex.headers.get("host")
    if not host:
        server = ex.scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scheme}://{host}"
