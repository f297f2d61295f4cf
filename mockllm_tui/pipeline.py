"""The chat pipeline: parse -> rules -> shape -> faults/timing -> render (JSON or paced SSE).

Every stage records into the request's journal entry.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mockllm_tui.conversation import Conversation, Reply, RequestError
from mockllm_tui.exchange import ClientGone, Exchange
from mockllm_tui.faults import FaultPlan, InjectedError, decide
from mockllm_tui.providers.base import Frame, RenderContext, new_id, now_s
from mockllm_tui.shaping import shape_reply
from mockllm_tui.tokens import count_tokens, split_chunks

if TYPE_CHECKING:
    from mockllm_tui.providers.base import Endpoint

PREVIEW_CHARS = 80
DISCONNECT_STATUS = 499


class InjectedFailure(Exception):
    """Raised to answer with an error before any byte; the dispatcher renders it in the provider's shape."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


def preview(text: str) -> str:
    """A one-line prompt preview for the journal."""
    line = " ".join(text.split())
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1] + "…"


def record_conversation(ex: Exchange, conversation: Conversation) -> None:
    """Fill the journal entry from the parsed request."""
    entry = ex.entry
    entry.model = conversation.model
    entry.preview = preview(conversation.last_user_text() or conversation.system)
    entry.stream = conversation.stream


async def run_chat(endpoint: Endpoint, ex: Exchange) -> None:
    """Serve one chat-like request end to end."""
    store = ex.store
    await ex.read_body(store.max_body)
    conversation = endpoint.parse(ex.read_json_object())
    record_conversation(ex, conversation)
    reply = store.rules.choose(conversation)
    ex.entry.rule = reply.rule
    if reply.error is not None:
        ex.entry.fault = f"{reply.error.status} before (rule)"
        raise InjectedFailure(reply.error.status, reply.error.message)
    reply = shape_reply(conversation, reply)
    store.count_tokens_used(reply.usage.total_tokens)
    plan = decide_for(ex, reply)
    error = plan.error
    if error is not None:
        ex.entry.fault = error.describe()
    if error is not None and (error.mode == "before" or not conversation.stream):
        if error.mode == "timeout":
            await hang(ex)
            return
        if error.mode == "disconnect":
            await sleep_until(plan.latency_s)
            await ex.cut()
        await sleep_until(plan.latency_s)
        raise InjectedFailure(error.status, injected_message(error))

    ctx = RenderContext(id=new_id(endpoint.id_prefix), created=now_s(), request_id=ex.entry.request_id)
    await sleep_until(plan.latency_s)
    if not conversation.stream:
        body = endpoint.render(conversation, reply, ctx)
        ex.entry.reply_text = reply.text
        await ex.send_json(200, body)
        endpoint.remember(conversation, reply, ctx, body)
        return
    ctx.pieces = split_chunks(reply.text, store.knobs.stream_chunk)
    ctx.piece_tokens = [count_tokens(p) for p in ctx.pieces]
    await stream_reply(ex, endpoint, conversation, reply, ctx, plan)


def decide_for(ex: Exchange, reply: Reply) -> FaultPlan:
    """The fault plan for this request, consuming one `fail_next` if set."""
    store = ex.store
    fail_next, fail_status = store.take_fail_next()
    return decide(store.knobs, reply, ex.headers, store.rng, fail_next=fail_next, fail_next_status=fail_status)


def injected_message(error: InjectedError) -> str:
    """The message of an injected error."""
    return f"Injected error {error.status} by mockllm-tui ({error.reason})"


async def sleep_until(delay_s: float) -> None:
    """Sleep for the latency, if any."""
    if delay_s > 0:
        await asyncio.sleep(delay_s)


async def hang(ex: Exchange) -> None:
    """Hold the request open without answering until the client gives up (bounded by the cap)."""
    ex.watch_disconnect()
    try:
        await asyncio.sleep(ex.store.knobs.timeout_cap_s)
    except asyncio.CancelledError:
        if not ex.client_gone():
            raise
    ex.abandon(DISCONNECT_STATUS if ex.client_gone() else 504)


async def stream_reply(
    ex: Exchange,
    endpoint: Endpoint,
    conversation: Conversation,
    reply: Reply,
    ctx: RenderContext,
    plan: FaultPlan,
) -> None:
    """Send the stream, pacing each frame by its tokens (deadline-based: errors do not accumulate).

    A live change of the speed knob applies from the next frame. A mid-stream error or disconnect
    from the plan happens about halfway through the text.
    """
    frames = list(endpoint.render_stream(conversation, reply, ctx))
    cut_at = _cut_point(frames) if plan.error is not None else -1
    loop = asyncio.get_running_loop()
    store = ex.store
    await ex.start_stream()
    sent_tokens = 0
    anchor_time = loop.time()
    anchor_tokens = 0
    speed = plan.speed_override if plan.speed_override is not None else store.knobs.stream_speed
    try:
        for index, frame in enumerate(frames):
            if index == cut_at and plan.error is not None:
                await _fail_stream(ex, endpoint, plan.error, ctx)
                return
            if frame.tokens and speed > 0:
                due = anchor_time + (sent_tokens + frame.tokens - anchor_tokens) / speed
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await ex.send_chunk(frame.data, frame.text)
            sent_tokens += frame.tokens
            if plan.speed_override is None and store.knobs.stream_speed != speed:
                speed = store.knobs.stream_speed
                anchor_time, anchor_tokens = loop.time(), sent_tokens
        ex.entry.reply_text = reply.text
        await ex.end_stream()
        endpoint.remember(conversation, reply, ctx, None)
    except (asyncio.CancelledError, ClientGone):
        if not ex.client_gone():
            ex.abandon(DISCONNECT_STATUS)
            raise
        ex.abandon(DISCONNECT_STATUS)


def _cut_point(frames: list[Frame]) -> int:
    text_frames = [i for i, f in enumerate(frames) if f.tokens]
    if not text_frames:
        return max(len(frames) - 1, 1)
    return text_frames[len(text_frames) // 2]


async def _fail_stream(ex: Exchange, endpoint: Endpoint, error: InjectedError, ctx: RenderContext) -> None:
    if error.mode == "disconnect":
        await ex.cut()
    if error.mode == "timeout":
        try:
            await asyncio.sleep(ex.store.knobs.timeout_cap_s)
        except asyncio.CancelledError:
            if not ex.client_gone():
                raise
        ex.abandon(DISCONNECT_STATUS)
        return
    data = endpoint.stream_error(error.status, injected_message(error), ctx)
    await ex.send_chunk(data, "")
    await ex.end_stream(error.status)


__all__ = ["InjectedFailure", "RequestError", "run_chat"]
