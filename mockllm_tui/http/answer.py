"""What every flow needs to answer, whatever its wire format: plan the faults, wait out the latency,
and refuse with an error before any byte.

Nothing here knows a wire format: an error is raised as `RequestError` and the dispatcher renders
it in the provider's own shape, with the provider's own retry headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NoReturn

from mockllm_tui.core.conversation import Reply, RequestError
from mockllm_tui.core.store import Store
from mockllm_tui.engine.faults import INJECTED_RETRY_AFTER_MS, TIMEOUT_STATUS, FaultPlan, PlannedError, decide
from mockllm_tui.http.exchange import ClientGone, Exchange

#: Recorded for a request whose client went away.
DISCONNECT_STATUS = 499
#: Recorded for a request the server itself cut short (shutdown), not the client.
SHUTDOWN_STATUS = 503


async def pick_from_sequence(store: Store, reply: Reply) -> None:
    """A reply from a `replies:` sequence takes the item at the group's position (with a shared
    state; in memory the item picked is already the one)."""
    sequence = reply.sequence
    if sequence is None or store.state.counters is None:
        return
    index = await store.state.next_position(sequence)
    if index != sequence.index:
        reply.text = sequence.pick(index)


async def plan_faults(ex: Exchange, reply: Reply) -> FaultPlan:
    """The fault plan for this request, consuming one `fail_next` if set (the group's, with a shared
    state); an injected error is recorded in the journal."""
    store = ex.store
    session = ex.journal.entry.session
    fail_next, status, mode = await store.state.take_fail_next(store, session)
    plan = decide(
        store.knobs_for(session),
        reply,
        ex.headers,
        store.rng,
        fail_next=fail_next,
        fail_next_status=status,
        fail_next_mode=mode,
    )
    error = plan.error
    if error is not None:
        ex.journal.faulted(error.describe(), error.status, error.mode)
    return plan


def injected_message(error: PlannedError) -> str:
    """The message of an injected error."""
    return f"Injected error {error.status} by mockllm-tui ({error.reason})"


async def fail_before(ex: Exchange, error: PlannedError, plan: FaultPlan, reply: Reply) -> NoReturn:
    """Carry out an error that comes before any byte (or any error of a non-streamed request):
    after the latency, hang (`timeout`), cut the connection (`disconnect`), or raise RequestError
    with the status and retry advice."""
    await wait_latency(ex, plan.latency_s)
    if error.mode == "timeout":
        await hang(ex)
    if error.mode == "disconnect":
        await ex.cut()
    if error.reason == "rule" and reply.error is not None:
        raise RequestError(
            reply.error.message, status=error.status, retry_after_ms=INJECTED_RETRY_AFTER_MS, type=reply.error.type
        )
    raise RequestError(injected_message(error), status=error.status, retry_after_ms=INJECTED_RETRY_AFTER_MS)


async def answer_faults(ex: Exchange, reply: Reply) -> FaultPlan:
    """Plan the faults of a request that is answered whole: carry out an error (raises) or wait out
    the latency. Returns the plan once the request may be answered."""
    plan = await plan_faults(ex, reply)
    if plan.error is not None:
        await fail_before(ex, plan.error, plan, reply)
    await wait_latency(ex, plan.latency_s)
    return plan


async def wait_latency(ex: Exchange, delay_s: float) -> None:
    """Wait out the latency; a client that leaves meanwhile ends the request at once (ClientGone)."""
    if delay_s <= 0:
        return
    try:
        await asyncio.wait_for(ex.receive(), delay_s)
    except TimeoutError:
        return
    raise ClientGone()


async def hang(ex: Exchange) -> NoReturn:
    """Hold the request open without answering until the client gives up, or answer 504 at the cap."""
    cap = ex.store.knobs.timeout_cap_s
    try:
        await asyncio.wait_for(ex.receive(), cap)
    except TimeoutError:
        message = f"mockllm-tui held the request for the timeout cap ({cap:g} s)"
        raise RequestError(message, status=TIMEOUT_STATUS, retry_after_ms=INJECTED_RETRY_AFTER_MS) from None
    raise ClientGone()


async def fail_mid_stream(ex: Exchange, error: PlannedError, error_event: Callable[[int, str], bytes]) -> None:
    """An injected fault in the middle of a stream: the connection cut, held to the timeout cap, or
    an error event in the provider's shape (`error_event(status, message)`), then the end."""
    if error.mode == "disconnect":
        await ex.cut()
    status, message = error.status, injected_message(error)
    if error.mode == "timeout":
        # The disconnect watcher cancels this sleep when the client gives up.
        cap = ex.store.knobs.timeout_cap_s
        await asyncio.sleep(cap)
        status, message = TIMEOUT_STATUS, f"mockllm-tui held the stream for the timeout cap ({cap:g} s)"
    await ex.send_chunk(error_event(status, message), "")
    await ex.end_stream(status)
