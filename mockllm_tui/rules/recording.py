"""Recording: a real upstream's answer kept as an ordinary rule of the responses file.

A recorded rule matches the last user message exactly, plus the provider, the model and the turn
(and the tool whose result the current turn carries, for a tool-result request), so a recorded agent
loop replays turn by turn. It answers with the recorded
text or tool calls at the recorded pace (`latency_ms`, `stream_speed`), under a comment line
saying when and from where it was recorded. It is written through the same surgical write-back
as every other edit (commands.add_rule / update_rule).

While recording, the rules recorded in this run do not answer: a repeat goes upstream again, and an
answer that differs extends the rule's `replies` sequence, so replay gives the answers in order.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mockllm_tui.core.conversation import ChoiceContext, Conversation, Reply, ReplySource
from mockllm_tui.core.media import MediaRequest
from mockllm_tui.core.store import Store
from mockllm_tui.rules.commands import ChangeResult, add_rule, ruleset_of, update_rule
from mockllm_tui.rules.fileio import copy_target
from mockllm_tui.rules.matcher import RuleSet
from mockllm_tui.rules.model import RuleSpec

GLOB_SPECIAL = re.compile(r"([*?\[])")
#: Where recorded pictures and audio go, beside the responses file.
RECORDED_FOLDER = "recorded"
#: (provider, model, last user message folded, the current turn's tool name or None, the turn)
RecordKey = tuple[str, str, str, str | None, int]


def answer_by_rules(
    source: ReplySource, conversation: Conversation, skip: Collection[int] = (), context: ChoiceContext | None = None
) -> Reply | None:
    """The reply of the rule (or scenario step) that matches, leaving out the fallbacks and the rules
    in `skip`; None when only a fallback would answer. A reply source that is not a rule set always answers."""
    if not isinstance(source, RuleSet):
        return source.choose(conversation)
    choice = source.match(conversation, skip, context)
    return None if choice is None else choice.reply


def literal_glob(text: str) -> str:
    """A glob (the `model` and `tool_result` conditions) that matches exactly this text."""
    return GLOB_SPECIAL.sub(r"[\1]", text)


@dataclass(frozen=True, slots=True)
class Timing:
    """A recorded answer's pace: milliseconds to the first token, and tokens per second after it."""

    latency_ms: float | None = None
    stream_speed: float | None = None


def measure_pace(started: float, marks: list[tuple[float, int]]) -> Timing:
    """The timing of an answer from (seconds, tokens) marks as its text arrived: the first mark is the
    time to the first token; the tokens after it over the time after it are the speed (None when
    they all came at once)."""
    if not marks:
        return Timing()
    first, first_tokens = marks[0]
    last = marks[-1][0]
    latency_ms = max(0, round((first - started) * 1000.0))
    tokens = sum(n for _, n in marks) - first_tokens
    if last - first <= 0 or tokens <= 0:
        return Timing(latency_ms)
    return Timing(latency_ms, max(0.1, round(tokens / (last - first), 1)))


def current_tool(conversation: Conversation) -> str | None:
    """The tool whose result the current turn carries last ("*" when its name is unknown; None: none)."""
    results = conversation.current_tool_results()
    if not results:
        return None
    return conversation.result_name(results[-1]) or "*"


def record_key(conversation: Conversation) -> RecordKey:
    """What makes two requests "the same prompt" for recording."""
    prompt = conversation.last_user_text().strip().lower()
    return conversation.provider, conversation.model, prompt, current_tool(conversation), conversation.turn()


def rule_data(conversation: Conversation, reply: Reply, timing: Timing) -> dict[str, Any]:
    """The recorded rule, as rich-form data."""
    match: dict[str, Any] = {"exact": conversation.last_user_text()}
    if conversation.provider:
        match["provider"] = conversation.provider
    match["model"] = literal_glob(conversation.model)
    tool = current_tool(conversation)
    if tool is not None:
        match["tool_result"] = literal_glob(tool) if tool != "*" else "*"
    match["turn"] = conversation.turn()
    data: dict[str, Any] = {"match": match}
    if reply.text or not reply.tool_calls:
        data["reply"] = reply.text
    if reply.tool_calls:
        data["tool_calls"] = [{"name": c.name, "arguments": c.arguments} for c in reply.tool_calls]
    if timing.latency_ms is not None:
        data["latency_ms"] = timing.latency_ms
    if timing.stream_speed is not None:
        data["stream_speed"] = timing.stream_speed
    return data


def recorded_comment(origin: str, now: float | None = None) -> str:
    """The comment line above a recorded rule: when, and from which upstream."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() if now is None else now))
    return f"recorded {stamp} from {origin}"


class Recorder:
    """Writes proxied answers as rules, and remembers the rules it wrote in this run."""

    def __init__(self) -> None:
        self._ids: dict[RecordKey, int] = {}

    @property
    def recorded_ids(self) -> frozenset[int]:
        """The ids of the rules recorded in this run (they do not answer while recording)."""
        return frozenset(self._ids.values())

    def record(
        self, store: Store, conversation: Conversation, reply: Reply, timing: Timing, origin: str
    ) -> ChangeResult | None:
        """Save an answer: a new rule, or the next answer of a rule recorded earlier in this run.
        None when nothing changed (the same answer again)."""
        key = record_key(conversation)
        ruleset = ruleset_of(store)
        known = self._ids.get(key)
        rule = ruleset.find(known) if known is not None else None
        if rule is not None:
            data = extended(rule.spec, reply)
            return None if data is None else update_rule(store, rule.id, data)
        index = self._tool_result_index(ruleset, key) if key[3] is not None else None
        result = add_rule(store, rule_data(conversation, reply, timing), index=index, comment=recorded_comment(origin))
        if result.rule is not None:
            self._ids[key] = result.rule.id
        return result

    def record_media(
        self,
        store: Store,
        request: MediaRequest,
        origin: str,
        *,
        reply: str | None = None,
        file: bytes | None = None,
        extension: str = "",
        flagged: dict[str, float] | None = None,
    ) -> ChangeResult | None:
        """Save a media answer as a rule: a transcript's text, a file (written beside the responses
        file, under `recorded/`) or a moderation verdict. None when nothing was saved (the same
        request was recorded earlier in this run, or there is no responses file to write beside)."""
        key = (request.provider, request.model, f"{request.endpoint}\x1f{media_subject(request)}", None, 0)
        ruleset = ruleset_of(store)
        if key in self._ids or ruleset.source is None:
            return None
        data: dict[str, Any] = {"match": media_match(request)}
        if file is not None:
            name = saved_file_name(request, file, extension)
            # Beside the file the rule is written to (the packaged example's copy, it being read-only).
            served = ruleset.source.path
            target = (copy_target(served) or served).parent / name
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, file)
            data["image" if request.answer_kind == "image" else "audio"] = name
        elif flagged is not None:
            data["moderation"] = {"flagged": list(flagged), "scores": flagged} if flagged else {"flagged": []}
        elif reply is not None:
            data["reply"] = reply
        else:
            return None
        result = add_rule(store, data, comment=recorded_comment(origin))
        if result.rule is not None:
            self._ids[key] = result.rule.id
        return result

    def _tool_result_index(self, ruleset: RuleSet, key: RecordKey) -> int | None:
        """Above the first rule that answers the same conversation's text turn (None: at the end)."""
        provider, model, prompt, _, turn = key
        for index, rule in enumerate(ruleset.rules[: len(ruleset.model.rules)]):
            m = rule.spec.match
            if (
                m.tool_result is None
                and (m.exact or "").strip().lower() == prompt
                and (m.provider or "").lower() == provider.lower()
                and m.model == literal_glob(model)
                and (m.turn is None or m.turn.holds(turn))
            ):
                return index
        return None


def media_subject(request: MediaRequest) -> str:
    """What identifies a media request for recording: its text and its upload's name."""
    return f"{request.last_user_text()}\x1f{request.file_name or ''}"


def media_match(request: MediaRequest) -> dict[str, Any]:
    """The recorded rule's match: the endpoint, provider and model, the text (when there is one or
    nothing else to match) and the upload's name."""
    match: dict[str, Any] = {}
    text = request.last_user_text()
    if text or request.file_name is None:
        match["exact"] = text
    match.update(endpoint=request.endpoint, provider=request.provider, model=literal_glob(request.model))
    if request.file_name is not None:
        match["file"] = literal_glob(request.file_name)
    return match


def saved_file_name(request: MediaRequest, data: bytes, extension: str) -> str:
    """`recorded/<words of the prompt>-<hash>.<ext>`, relative to the responses file's folder."""
    words = re.findall(r"[a-z0-9]+", (request.last_user_text() or request.file_name or request.endpoint).lower())
    stem = "-".join(words[:6]) or "media"
    digest = hashlib.blake2b(data, digest_size=4).hexdigest()
    return f"{RECORDED_FOLDER}/{stem}-{digest}.{extension or 'bin'}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file whole or not at all (a temporary file beside it, renamed over it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def extended(spec: RuleSpec, reply: Reply) -> dict[str, Any] | None:
    """The rule with a differing text answer added to its `replies` sequence; None when the answer
    is the one it gives last, or involves tool calls (a sequence holds text only)."""
    answers = list(spec.replies) if spec.replies is not None else [spec.reply or ""]
    if reply.tool_calls or spec.tool_calls or answers[-1] == reply.text:
        return None
    data = spec.to_data()
    data.pop("reply", None)
    data["replies"] = [*answers, reply.text]
    return data
