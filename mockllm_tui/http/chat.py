"""The chat flow: parse -> limits -> rules -> shape -> faults/timing -> render (JSON or paced stream).

It runs every provider's `ChatEndpoint` the same way. Every stage records into the request's
journal entry.
"""

from __future__ import annotations

import asyncio

from mockllm_tui.core.conversation import Conversation, NoRuleMatched, Reply, RequestError
from mockllm_tui.core.tokens import count_conversation, count_tokens, split_chunks
from mockllm_tui.engine.faults import FaultPlan, chunk_lateness
from mockllm_tui.engine.limits import find_breach, header_window, limits_for, resolve_thinking
from mockllm_tui.engine.pacing import Pacer
from mockllm_tui.engine.shaping import shape_reply
from mockllm_tui.http.answer import (
    DISCONNECT_STATUS,
    SHUTDOWN_STATUS,
    fail_before,
    fail_mid_stream,
    pick_from_sequence,
    plan_faults,
    wait_latency,
)
from mockllm_tui.http.exchange import ClientGone, Exchange
from mockllm_tui.http.upstream import UpstreamProxy
from mockllm_tui.providers.base import ChatEndpoint, Frame, RenderContext, new_id, now_s
from mockllm_tui.rules.choosing import choose_reply

#: The longest single sleep while pacing a stream; longer waits re-read the live speed this often.
SPEED_POLL_S = 0.25


async def run_chat(endpoint: ChatEndpoint, ex: Exchange, proxy: UpstreamProxy | None = None) -> None:
    """Serve one chat-like request end to end (with an upstream for its provider, a request no rule
    matches is forwarded there)."""
    store, journal, request = ex.store, ex.journal, ex.request
    await ex.read_body(store.config.max_body)
    upstream = proxy.upstream(ex, endpoint.provider) if proxy is not None else None
    try:
        conversation = endpoint.parse_conversation(request)
    except RequestError:
        if proxy is None or upstream is None:
            journal.parsed(model=endpoint.named_model(request))
            raise
        # The real API is the judge of what it accepts (a Responses `previous_response_id` it made, say).
        await proxy.forward(ex, endpoint, None, upstream)
        return
    journal.parsed(conversation)
    endpoint.check_model(conversation.model, request)
    if endpoint.answer_headers:
        ex.extra_headers += endpoint.answer_headers
    if proxy is None or upstream is None:
        input_tokens = check_limits(ex, endpoint, conversation)
        try:
            reply = choose_reply(store, conversation, ex.headers, journal.entry)
        except NoRuleMatched as exc:
            journal.missed(exc.near_misses)
            raise
    else:
        matched = proxy.rule_reply(ex, conversation)
        if matched is None:  # the upstream judges its own limits
            await proxy.forward(ex, endpoint, conversation, upstream)
            return
        input_tokens = check_limits(ex, endpoint, conversation)
        reply = matched
    await pick_from_sequence(store, reply)
    journal.matched(reply.rule, reply.rule_id, scenario=reply.scenario, near_misses=reply.near_misses)
    plan = await plan_faults(ex, reply)
    error = plan.error
    if error is not None and (error.mode == "before" or not conversation.stream):
        await fail_before(ex, error, plan, reply)
    reply = shape_reply(conversation, reply, input_tokens=input_tokens)
    store.count_tokens_used(reply.usage.total_tokens)

    ctx = RenderContext(id=new_id(endpoint.id_prefix), created=now_s(), request_id=ex.request_id, t0=ex.t0)
    journal.replied(reply, ctx.id)
    await wait_latency(ex, plan.latency_s)
    if not conversation.stream:
        body = endpoint.render(conversation, reply, ctx)
        journal.reply_text(reply.text)
        await ex.send_json(200, body)
        endpoint.remember(conversation, reply, ctx, body)
        return
    chunking = store.knobs_for(ex.journal.entry.session).stream_chunk
    ctx.pieces = split_chunks(reply.text, chunking)
    ctx.piece_tokens = [count_tokens(p) for p in ctx.pieces]
    ctx.thinking_pieces = split_chunks(reply.thinking, chunking)
    ctx.thinking_piece_tokens = [count_tokens(p) for p in ctx.thinking_pieces]
    await stream_reply(ex, endpoint, conversation, reply, ctx, plan)


def check_limits(ex: Exchange, endpoint: ChatEndpoint, conversation: Conversation) -> int:
    """Count the input, settle thinking, and refuse (the provider's `limit_error`) a request that
    breaks a model limit. Runs before the rules, so a refused request uses up no rule hit, `replies`
    step or `fail_next`, as the real API refuses before it generates anything. Returns the input tokens.
    """
    store = ex.store
    model = store.models.resolve(conversation.model)
    resolve_thinking(conversation, model)
    limits = limits_for(model, store.knobs.context_window, header_window(ex.headers))
    input_tokens = count_conversation(conversation)
    breach = find_breach(conversation, input_tokens, limits, model.id if model is not None else conversation.model)
    if breach is None:
        ex.journal.limited(input_tokens, limits.window, None, False)
        return input_tokens
    error = endpoint.limit_error(breach)
    ex.journal.limited(input_tokens, limits.window, breach.describe(), error is not None)
    if error is not None:
        raise error
    return input_tokens


async def stream_reply(
    ex: Exchange,
    endpoint: ChatEndpoint,
    conversation: Conversation,
    reply: Reply,
    ctx: RenderContext,
    plan: FaultPlan,
) -> None:
    """Send the stream, each frame when its tokens are due (see engine/pacing.py).

    A wait longer than SPEED_POLL_S looks at the live speed every SPEED_POLL_S, so a very slow
    stream speeds up at once. A mid-stream error or disconnect from the plan happens about
    halfway through the text.
    """
    frames = list(endpoint.render_stream(conversation, reply, ctx))
    tokens = [f.tokens for f in frames]
    cut_at = _cut_point(frames) if plan.error is not None else -1
    loop = asyncio.get_running_loop()
    store = ex.store
    session = ex.journal.entry.session
    await ex.start_stream(content_type=endpoint.stream_content_type)
    # Deadlines count from the request's arrival plus its latency, so time spent parsing a burst of
    # requests is caught up rather than added to every stream.
    fixed = plan.speed_override
    pacer = Pacer(
        anchor_time=loop.time() - ex.elapsed_ms() / 1000.0 + plan.latency_s,
        speed=fixed if fixed is not None else store.knobs_for(session).stream_speed,
        fixed=fixed is not None,
        last_sent=loop.time(),
    )
    ex.journal.paced(pacer.speed)
    index, count = 0, len(frames)
    try:
        while index < count:
            if index == cut_at and plan.error is not None:
                await fail_mid_stream(ex, plan.error, lambda status, text: endpoint.stream_error(status, text, ctx))
                return
            if tokens[index] and not pacer.unlimited:
                late = chunk_lateness(store.knobs_for(session), tokens[index] / pacer.speed, store.rng)
                while not pacer.unlimited:
                    delay = pacer.due(tokens[index]) + late - loop.time()
                    if delay <= 0:
                        break
                    await asyncio.sleep(min(delay, SPEED_POLL_S))
                    pacer.follow(store.knobs_for(session).stream_speed)
            end, sent = pacer.batch_end(tokens, index, cut_at if cut_at > index else count, loop.time())
            batch = frames[index:end]
            await ex.send_chunks([f.data for f in batch], [f.text for f in batch])
            pacer.sent(sent, loop.time())
            index = end
            pacer.follow(store.knobs_for(session).stream_speed)
        ex.journal.reply_text(reply.text)
        ex.journal.paced(pacer.speed)
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
