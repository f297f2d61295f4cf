"""The realtime flow: a WebSocket session, fed to its provider's pure translator (providers/realtime.py).

Each response the session asks for runs like a streamed chat request: the rules choose the reply,
and the knobs plan latency, pacing and faults. The socket is one journal row, open while the socket
is: every event the session sends is a chunk of it (labelled with its type), its conversation and
reply are the latest turn's; each response is counted on its own (totals, `/metrics`).
The socket is read while a response streams, so `response.cancel` and a hang-up take effect at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl

from mockllm_tui.core.conversation import NoRuleMatched, Reply
from mockllm_tui.core.sessions import session_of
from mockllm_tui.core.store import Store
from mockllm_tui.core.tokens import count_conversation, count_tokens, split_chunks
from mockllm_tui.engine.faults import TIMEOUT_STATUS, PlannedError, decide
from mockllm_tui.engine.pacing import Pacer
from mockllm_tui.engine.shaping import shape_reply
from mockllm_tui.http.answer import DISCONNECT_STATUS, injected_message, pick_from_sequence
from mockllm_tui.http.auth import INVALID_KEY_CODE, headers_text, key_matches
from mockllm_tui.http.exchange import REDACTED_HEADERS, Receive, Scope, Send, redact_headers
from mockllm_tui.http.journal import JournalRecorder
from mockllm_tui.providers.base import Frame
from mockllm_tui.providers.realtime import (
    CLOSE_NORMAL,
    CLOSE_SERVER_ERROR,
    Answer,
    Cancel,
    Close,
    Emit,
    RealtimeEndpoint,
    RealtimeSession,
    Step,
    Turn,
)
from mockllm_tui.rules.choosing import choose_reply

log = logging.getLogger("mockllm_tui")

#: The longest single sleep while pacing; longer waits re-read the live speed this often.
SPEED_POLL_S = 0.25
#: Recorded as the status of a response the client cancelled.
CANCELLED_STATUS = 499
#: The status of a session's row: the socket was switched to (the close's fault status replaces it).
SWITCHED_STATUS = 101


class SocketClosed(Exception):
    """The client hung up."""


def query_params(scope: Scope) -> dict[str, str]:
    """The handshake's query string as a dict (the last value of a repeated name)."""
    return dict(parse_qsl(bytes(scope.get("query_string", b"")).decode("latin-1")))


def key_refused(
    store: Store, endpoint: RealtimeEndpoint, query: Mapping[str, str], headers: Mapping[str, str]
) -> str | None:
    """Why the handshake's key is refused (None: it is accepted, or no key is required)."""
    expected = store.knobs.api_key
    if expected is None:
        return None
    keys = endpoint.presented_keys(query, headers)
    accepts = getattr(endpoint.provider, "accepts_ephemeral", None)
    if key_matches(expected, keys) or (accepts is not None and any(accepts(k, expected, time.time()) for k in keys)):
        return None
    return endpoint.provider.auth_refusal(not keys)


async def serve_realtime(
    endpoint: RealtimeEndpoint,
    scope: Scope,
    receive: Receive,
    send: Send,
    store: Store,
    secret_headers: frozenset[str] = REDACTED_HEADERS,
) -> None:
    """Serve one WebSocket from its handshake to its close."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    headers = headers_text(scope.get("headers", ()))
    query = query_params(scope)
    refusal = key_refused(store, endpoint, query, headers)
    if refusal is not None:
        await _deny(scope, send, endpoint, refusal)
        return
    session = endpoint.open(scope["path"], query, headers, audio_transcript=store.knobs.audio_transcript)
    await send({"type": "websocket.accept"})
    kept_headers = redact_headers(headers, secret_headers)
    journal = JournalRecorder(store, "WS", scope["path"], kept_headers)
    provider = endpoint.provider
    journal.served_by(provider.name, provider.system, "", endpoint.name, endpoint.operation)
    journal.parsed(model=session.model)
    journal.in_session(session_of(headers))
    journal.first_byte()
    connection = Connection(endpoint, session, scope, receive, send, store, kept_headers, journal)
    await connection.run()


async def _deny(scope: Scope, send: Send, endpoint: RealtimeEndpoint, message: str) -> None:
    """A 401 at the handshake in the provider's shape (or a policy close where the server cannot answer HTTP)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = endpoint.provider.error_body(401, message, code=INVALID_KEY_CODE)
        head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "websocket.http.response.start", "status": 401, "headers": head})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})


class Connection:
    """One accepted socket: reads client messages, carries out the session's steps, streams responses."""

    def __init__(
        self,
        endpoint: RealtimeEndpoint,
        session: RealtimeSession,
        scope: Scope,
        receive: Receive,
        send: Send,
        store: Store,
        headers: dict[str, str],
        journal: JournalRecorder,
    ) -> None:
        self.endpoint, self.session, self.scope = endpoint, session, scope
        self.receive, self._send, self.store, self.headers = receive, send, store, headers
        self.journal = journal
        #: How the session's row ends: SWITCHED_STATUS, or the status of a fault that closed the socket.
        self.close_status = SWITCHED_STATUS
        self.response: asyncio.Task[None] | None = None
        self.turn: Turn | None = None
        self.closed = False
        self.queue: list[Turn] = []

    async def send_text(self, data: bytes, text: str = "", label: str | None = None) -> None:
        """One text frame (a server event), recorded as a chunk of the session's row: `text` is the
        reply text it carries, `label` its type (None: the session names it)."""
        if self.closed:
            raise SocketClosed()
        await self._send({"type": "websocket.send", "text": data.decode()})
        self.journal.chunk(text, len(data), self.session.label(data) if label is None else label)

    async def close(self, code: int, reason: str = "") -> None:
        """Close the socket (once)."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self._send({"type": "websocket.close", "code": code, "reason": reason})

    async def run(self) -> None:
        """Until the client leaves, the session closes, or it idles past `realtime_idle_s`."""
        try:
            await self.carry_out(self.session.opened())
            while not self.closed:
                try:
                    message = await asyncio.wait_for(self.receive(), self.store.knobs.realtime_idle_s)
                except TimeoutError:
                    await self.close(CLOSE_NORMAL, "session idle timeout")
                    break
                if message["type"] == "websocket.disconnect":
                    self.closed = True
                    break
                text, raw = message.get("text"), message.get("bytes")
                data: str | bytes = text if isinstance(text, str) else raw if isinstance(raw, bytes) else b""
                limit = self.store.config.max_body
                steps = self.session.too_large(len(data), limit) if len(data) > limit else self.session.receive(data)
                await self.carry_out(steps)
        except SocketClosed:
            pass
        finally:
            self.closed = True
            if self.response is not None and not self.response.done():
                self.response.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self.response
            self.journal.session_ended(self.close_status)

    async def carry_out(self, steps: list[Step]) -> None:
        """Do what the session asks, in order."""
        for step in steps:
            if isinstance(step, Emit):
                for data in step.messages:
                    await self.send_text(data)
            elif isinstance(step, Answer):
                self.start(step.turn)
            elif isinstance(step, Cancel):
                await self.cancel()
            elif isinstance(step, Close):
                await self.close(step.code, step.reason)

    def start(self, turn: Turn) -> None:
        """Answer a turn in the background (the next one waits for the one in progress)."""
        if self.response is not None and not self.response.done():
            self.queue.append(turn)
            return
        self.turn = turn
        self.response = asyncio.ensure_future(self.answer(turn))
        self.response.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and not isinstance(task.exception(), SocketClosed):
            log.error("realtime response failed", exc_info=task.exception())
        if self.queue and not self.closed:
            self.start(self.queue.pop(0))

    async def cancel(self) -> None:
        """Stop the response in progress and say so."""
        task, turn = self.response, self.turn
        if task is None or turn is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, SocketClosed):
            await task
        for data in self.session.cancelled(turn):
            await self.send_text(data)

    async def answer(self, turn: Turn) -> None:
        """One response: rules, knobs, then the session's frames, paced; recorded into the session's
        row and counted as a request of its own."""
        store, conversation, journal = self.store, turn.conversation, self.journal
        started = time.perf_counter()
        journal.next_response(conversation, turn.response_id, self.session.model)
        session = journal.entry.session
        knobs = store.knobs_for(session)
        status = DISCONNECT_STATUS
        mark: int | None = None
        try:
            try:
                reply = choose_reply(store, conversation, self.headers, journal.entry)
            except NoRuleMatched as exc:
                journal.missed(exc.near_misses)
                status = await self._fail(turn, "before", exc.status, exc.message)
                return
            await pick_from_sequence(store, reply)
            journal.matched(reply.rule, reply.rule_id, scenario=reply.scenario, near_misses=reply.near_misses)
            fail_next, fail_status, fail_mode = await store.state.take_fail_next(store, session)
            plan = decide(
                knobs,
                reply,
                self.headers,
                store.rng,
                fail_next=fail_next,
                fail_next_status=fail_status,
                fail_next_mode=fail_mode,
            )
            if plan.latency_s > 0:
                await asyncio.sleep(plan.latency_s)
            error = plan.error
            if error is not None:
                journal.faulted(error.describe(), error.status, error.mode)
                if error.mode != "mid_stream":
                    status = await self._fail(turn, error.mode, error.status, self._error_message(error, reply))
                    return
            reply = shape_reply(conversation, reply, input_tokens=count_conversation(conversation))
            journal.replied(reply, turn.response_id)
            store.count_tokens_used(reply.usage.total_tokens)
            pieces = split_chunks(reply.text, knobs.stream_chunk)
            frames = self.session.render(turn, reply, pieces, [count_tokens(p) for p in pieces])
            mark = len(journal.entry.chunks)
            cut = _cut_point(frames) if error is not None else -1
            await self._paced(frames, plan.speed_override, cut)
            if error is not None:
                await self.close(CLOSE_SERVER_ERROR, injected_message(error)[:120])
                status = self.close_status = error.status
                return
            journal.reply_text(reply.text)
            self.session.finished(turn, reply)
            status = 200
        except asyncio.CancelledError:
            status = DISCONNECT_STATUS if self.closed else CANCELLED_STATUS
            raise
        finally:
            journal.response_ended(status, started, len(journal.entry.chunks) if mark is None else mark)

    def _error_message(self, error: PlannedError, reply: Reply) -> str:
        if error.reason == "rule" and reply.error is not None:
            return reply.error.message
        return injected_message(error)

    async def _fail(self, turn: Turn, mode: str, status: int, message: str) -> int:
        """An error before any output: the session's error, a hold until the cap, or a cut."""
        if mode == "disconnect":
            await self.close(CLOSE_SERVER_ERROR, "connection dropped by mockllm-tui (injected fault)")
            self.close_status = status
            return DISCONNECT_STATUS
        if mode == "timeout":
            await asyncio.sleep(self.store.knobs.timeout_cap_s)
            status, message = (
                TIMEOUT_STATUS,
                f"mockllm-tui held the response for the timeout cap ({self.store.knobs.timeout_cap_s:g} s)",
            )
        await self.carry_out(self.session.rule_error(turn, status, message))
        if self.closed:
            self.close_status = status
        return status

    async def _paced(self, frames: list[Frame], fixed: float | None, cut: int) -> None:
        """Send the frames, each when its tokens are due (as chat streams are paced)."""
        loop = asyncio.get_running_loop()
        store = self.store
        pacer = Pacer(
            anchor_time=loop.time(),
            speed=fixed if fixed is not None else store.knobs.stream_speed,
            fixed=fixed is not None,
            last_sent=loop.time(),
        )
        for index, frame in enumerate(frames):
            if index == cut:
                return
            if frame.tokens and not pacer.unlimited:
                while not pacer.unlimited:
                    delay = pacer.due(frame.tokens) - loop.time()
                    if delay <= 0:
                        break
                    await asyncio.sleep(min(delay, SPEED_POLL_S))
                    pacer.follow(store.knobs.stream_speed)
            await self.send_text(frame.data, frame.text, frame.label)
            pacer.sent(frame.tokens, loop.time())
            pacer.follow(store.knobs.stream_speed)


def _cut_point(frames: list[Frame]) -> int:
    """Where a mid-stream fault cuts: after about half the text frames (at least one)."""
    text_frames = [i for i, f in enumerate(frames) if f.tokens]
    if not text_frames:
        return max(len(frames) - 1, 1)
    return text_frames[len(text_frames) // 2] + 1 if len(text_frames) == 1 else text_frames[len(text_frames) // 2]
