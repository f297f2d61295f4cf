"""The chat pipeline: parse -> rules -> shape -> faults/timing -> render (JSON or paced SSE).

Every stage records into the request's journal entry.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mockllm_tui.core.conversation import Conversation, Reply, RequestError
from mockllm_tui.core.models import check_model
from mockllm_tui.core.tokens import count_tokens, split_chunks
from mockllm_tui.engine.exchange import ClientGone, Exchange
from mockllm_tui.engine.faults import TIMEOUT_STATUS, FaultPlan, InjectedError, chunk_lateness, decide, retry_headers
from mockllm_tui.engine.shaping import shape_reply
from mockllm_tui.providers.base import Frame, RenderContext, new_id, now_s

if TYPE_CHECKING:
    from mockllm_tui.providers.base import Endpoint

PREVIEW_CHARS = 80
DISCONNECT_STATUS = 499
#: Recorded for a request the server itself cut short (shutdown), not the client.
SHUTDOWN_STATUS = 503
#: The longest single sleep while pacing a stream; longer waits re-read the live speed this often.
SPEED_POLL_S = 0.25


class InjectedFailure(Exception):
    """Raised to answer with an error before any byte; the dispatcher renders it in the provider's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        code: str | None = None,
        type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []
        self.code = code
        self.type = type


def preview(text: str) -> str:
    """A one-line prompt preview for the journal."""
    line = " ".join(text.split())
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1] + "…"


def record_conversation(ex: Exchange, conversation: Conversation) -> None:
    """Fill the journal entry from the parsed request."""
    entry = ex.entry
    entry.model = conversation.model
    entry.conversation = conversation
    entry.preview = preview(conversation.last_user_text() or conversation.system)
    entry.stream = conversation.stream


async def run_chat(endpoint: Endpoint, ex: Exchange) -> None:
    """Serve one chat-like request end to end."""
    store = ex.store
    await ex.read_body(store.max_body)
    conversation = endpoint.parse(ex.read_json_object())
    record_conversation(ex, conversation)
    check_model(store, conversation.model)
    reply = store.rules.choose(conversation)
    ex.entry.rule = reply.rule
    plan = decide_for(ex, reply)
    error = plan.error
    if error is not None:
        ex.entry.fault = error.describe()
        if error.mode == "before" or not conversation.stream:
            await fail_before(ex, error, plan, reply)
            return
    reply = shape_reply(conversation, reply)
    store.count_tokens_used(reply.usage.total_tokens)

    ctx = RenderContext(id=new_id(endpoint.id_prefix), created=now_s(), request_id=ex.entry.request_id)
    await wait_latency(ex, plan.latency_s)
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


async def fail_before(ex: Exchange, error: InjectedError, plan: FaultPlan, reply: Reply) -> None:
    """Carry out an error that comes before any byte (or any error of a non-streamed request):
    after the latency, hang (`timeout`), cut the connection (`disconnect`), or answer with the
    status and the retry-contract headers."""
    await wait_latency(ex, plan.latency_s)
    if error.mode == "timeout":
        await hang(ex)
        return
    if error.mode == "disconnect":
        await ex.cut()
    headers = retry_headers(error.status)
    if error.reason == "rule" and reply.error is not None:
        raise InjectedFailure(error.status, reply.error.message, headers, type=reply.error.type)
    raise InjectedFailure(error.status, injected_message(error), headers)


async def wait_latency(ex: Exchange, delay_s: float) -> None:
    """Wait out the latency; a client that leaves meanwhile ends the request at once (ClientGone)."""
    if delay_s <= 0:
        return
    try:
        await asyncio.wait_for(ex.receive(), delay_s)
    except TimeoutError:
        return
    raise ClientGone()


async def hang(ex: Exchange) -> None:
    """Hold the request open without answering until the client gives up, or answer 504 at the cap."""
    cap = ex.store.knobs.timeout_cap_s
    try:
        await asyncio.wait_for(ex.receive(), cap)
    except TimeoutError:
        message = f"mockllm-tui held the request for the timeout cap ({cap:g} s)"
        raise InjectedFailure(TIMEOUT_STATUS, message, retry_headers(TIMEOUT_STATUS)) from None
    raise ClientGone()


async def stream_reply(
    ex: Exchange,
    endpoint: Endpoint,
    conversation: Conversation,
    reply: Reply,
    ctx: RenderContext,
    plan: FaultPlan,
) -> None:
    """Send the stream, pacing each frame by its tokens (deadline-based: errors do not accumulate).

    A live change of the speed knob applies from the next frame: the next frame is then due its
    tokens' time at the new speed after the last one sent. A wait longer than SPEED_POLL_S looks
    at the knob every SPEED_POLL_S, so a very slow stream speeds up at once. A mid-stream error or
    disconnect from the plan happens about halfway through the text.
    """
    frames = list(endpoint.render_stream(conversation, reply, ctx))
    cut_at = _cut_point(frames) if plan.error is not None else -1
    loop = asyncio.get_running_loop()
    store = ex.store
    await ex.start_stream()
    sent_tokens = 0
    # Deadlines count from the request's arrival plus its latency, so time spent parsing a burst of
    # requests is caught up rather than added to every stream.
    anchor_time = loop.time() - ex.elapsed_ms() / 1000.0 + plan.latency_s
    last_sent = loop.time()
    anchor_tokens = 0
    fixed = plan.speed_override
    speed = fixed if fixed is not None else store.knobs.stream_speed
    index, count = 0, len(frames)
    try:
        while index < count:
            frame = frames[index]
            if index == cut_at and plan.error is not None:
                await _fail_stream(ex, endpoint, plan.error, ctx)
                return
            if frame.tokens and speed > 0:
                late = chunk_lateness(store.knobs, frame.tokens / speed, store.rng)
                while speed > 0:
                    delay = anchor_time + (sent_tokens + frame.tokens - anchor_tokens) / speed + late - loop.time()
                    if delay <= 0:
                        break
                    await asyncio.sleep(min(delay, SPEED_POLL_S))
                    if fixed is None and store.knobs.stream_speed != speed:
                        speed, anchor_time, anchor_tokens = store.knobs.stream_speed, last_sent, sent_tokens
            # Frames already due go out in the same write, so a busy loop catches up instead of drifting.
            end, tokens = index + 1, frame.tokens
            now = loop.time()
            while end < count and end != cut_at:
                extra = frames[end].tokens
                if extra and speed > 0 and anchor_time + (sent_tokens + tokens + extra - anchor_tokens) / speed > now:
                    break
                tokens += extra
                end += 1
            batch = frames[index:end]
            await ex.send_chunks([f.data for f in batch], [f.text for f in batch])
            sent_tokens += tokens
            index = end
            last_sent = loop.time()
            if fixed is None and store.knobs.stream_speed != speed:
                speed, anchor_time, anchor_tokens = store.knobs.stream_speed, last_sent, sent_tokens
        ex.entry.reply_text = reply.text
        await ex.end_stream()
        endpoint.remember(conversation, reply, ctx, None)
    except (asyncio.CancelledError, ClientGone):
        gone = ex.client_gone()
        ex.abandon(DISCONNECT_STATUS if gone else SHUTDOWN_STATUS)
        if not gone:
            raise


def _cut_point(frames: list[Frame]) -> int:
    text_frames = [i for i, f in enumerate(frames) if f.tokens]
    if not text_frames:
        return max(len(frames) - 1, 1)
    return text_frames[len(text_frames) // 2]


async def _fail_stream(ex: Exchange, endpoint: Endpoint, error: InjectedError, ctx: RenderContext) -> None:
    if error.mode == "disconnect":
        await ex.cut()
    status, message = error.status, injected_message(error)
    if error.mode == "timeout":
        # The disconnect watcher cancels this sleep when the client gives up.
        cap = ex.store.knobs.timeout_cap_s
        await asyncio.sleep(cap)
        status, message = TIMEOUT_STATUS, f"mockllm-tui held the stream for the timeout cap ({cap:g} s)"
    await ex.send_chunk(endpoint.stream_error(status, message, ctx), "")
    await ex.end_stream(status)


__all__ = ["InjectedFailure", "RequestError", "run_chat"]
