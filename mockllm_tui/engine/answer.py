"""What every endpoint needs to answer, whatever its wire format: record the parsed request in the
journal, plan the faults, wait out the latency, and refuse with an error before any byte.

Nothing here knows a wire format: an error is raised as `ErrorAnswer` and the dispatcher renders
it in the provider's own shape, with the provider's own retry headers.
"""

from __future__ import annotations

import asyncio

from mockllm_tui.core.conversation import Conversation, Reply
from mockllm_tui.core.models import ModelInfo, check_model, model_not_found
from mockllm_tui.engine.exchange import ClientGone, Exchange
from mockllm_tui.engine.faults import INJECTED_RETRY_AFTER_MS, TIMEOUT_STATUS, FaultPlan, PlannedError, decide

PREVIEW_CHARS = 80
#: Recorded for a request whose client went away.
DISCONNECT_STATUS = 499
#: Recorded for a request the server itself cut short (shutdown), not the client.
SHUTDOWN_STATUS = 503


class ErrorAnswer(Exception):
    """Raised to answer with an error status before any byte (an injected fault, a rule's error,
    a rate limit, the timeout cap); the dispatcher renders it in the provider's shape.

    `retry_after_ms` asks for the provider's retry headers (None: no retry advice).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        retry_after_ms: float | None = None,
        code: str | None = None,
        type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_ms = retry_after_ms
        self.code = code
        self.type = type


def preview(text: str) -> str:
    """A one-line prompt preview for the journal."""
    line = " ".join(text.split())
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1] + "…"


def record_conversation(ex: Exchange, conversation: Conversation) -> None:
    """Fill the journal entry from the parsed request (the panel shows its neutral transcript)."""
    entry = ex.entry
    entry.model = conversation.model
    entry.conversation = conversation
    entry.preview = preview(conversation.last_user_text() or conversation.system)
    entry.stream = conversation.stream


def decide_for(ex: Exchange, reply: Reply) -> FaultPlan:
    """The fault plan for this request, consuming one `fail_next` if set."""
    store = ex.store
    session = ex.entry.session
    fail_next, status, mode = store.take_fail_next(session)
    return decide(
        store.knobs_for(session),
        reply,
        ex.headers,
        store.rng,
        fail_next=fail_next,
        fail_next_status=status,
        fail_next_mode=mode,
    )


def note_fault(ex: Exchange, error: PlannedError) -> None:
    """Record an injected fault on the journal entry."""
    entry = ex.entry
    entry.fault, entry.fault_status, entry.fault_mode = error.describe(), error.status, error.mode


def injected_message(error: PlannedError) -> str:
    """The message of an injected error."""
    return f"Injected error {error.status} by mockllm-tui ({error.reason})"


async def fail_before(ex: Exchange, error: PlannedError, plan: FaultPlan, reply: Reply) -> None:
    """Carry out an error that comes before any byte (or any error of a non-streamed request):
    after the latency, hang (`timeout`), cut the connection (`disconnect`), or raise ErrorAnswer
    with the status and retry advice."""
    await wait_latency(ex, plan.latency_s)
    if error.mode == "timeout":
        await hang(ex)
        return
    if error.mode == "disconnect":
        await ex.cut()
    if error.reason == "rule" and reply.error is not None:
        raise ErrorAnswer(
            error.status, reply.error.message, retry_after_ms=INJECTED_RETRY_AFTER_MS, type=reply.error.type
        )
    raise ErrorAnswer(error.status, injected_message(error), retry_after_ms=INJECTED_RETRY_AFTER_MS)


async def answer_faults(ex: Exchange, reply: Reply) -> FaultPlan | None:
    """Plan the faults of a request that is answered whole; carry out an error (raises) or wait out
    the latency. Returns the plan once the request may be answered (None if it was not)."""
    plan = decide_for(ex, reply)
    if plan.error is not None:
        note_fault(ex, plan.error)
        await fail_before(ex, plan.error, plan, reply)
        return None
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


async def hang(ex: Exchange) -> None:
    """Hold the request open without answering until the client gives up, or answer 504 at the cap."""
    cap = ex.store.knobs.timeout_cap_s
    try:
        await asyncio.wait_for(ex.receive(), cap)
    except TimeoutError:
        message = f"mockllm-tui held the request for the timeout cap ({cap:g} s)"
        raise ErrorAnswer(TIMEOUT_STATUS, message, retry_after_ms=INJECTED_RETRY_AFTER_MS) from None
    raise ClientGone()


def require_known_model(ex: Exchange, name: str) -> None:
    """Refuse (404 `model_not_found`) a model that is unknown while models are strict."""
    check_model(ex.store.models, name, strict=ex.store.config.strict_models)


def model_in_path(ex: Exchange) -> tuple[str, ModelInfo]:
    """The model a `GET .../models/{id}` names (recorded in the journal), or a 404 when it is unknown."""
    name = ex.path.rsplit("/", 1)[-1]
    ex.entry.model = name
    ex.entry.preview = f"retrieve {name}"
    model = ex.store.models.resolve(name)
    if model is None:
        raise model_not_found(name)
    return name, model
