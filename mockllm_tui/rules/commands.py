"""Rule commands: what the panel and the admin API call to read and change the rules.

Every rule has an internal integer `id` (kept across edits and reloads), which the commands take.
What users see is its identity (rules/identity.py): its name, or `#N` for the rule at 1-based
listing position N; `find_rule` turns an identity back into a rule. Positions (`index`, 0-based)
are in listing order: the rich `rules:` first (tried in order), then the short-form `responses:`
in file order (the `default` key is the catch-all and is tried last wherever it stands).

A change is validated with the file's own messages (RuleError), made live (`store.set_rules`) and,
unless `persist=False`, written back surgically. When the file changed on disk since it was
loaded, the change is merged onto the current file by finding the same entry there; when that
entry is gone or different, ConflictError is raised and nothing changes. When the file cannot be
written (read-only), the change stays live in memory and `ChangeResult.message` says so. With a
shared state the document read and written is the group's (fileio.DocumentHome): a change that
lost the race to another process's is planned again on the new text (fileio.retry_stale).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mockllm_tui.core.conversation import ChoiceContext, Conversation, Message, Reply
from mockllm_tui.core.knobs import KnobError, validate_knob_values
from mockllm_tui.core.sessions import SessionState
from mockllm_tui.core.store import Store
from mockllm_tui.rules.document import Document, Op, Section
from mockllm_tui.rules.fileio import (
    WriteError,
    apply_ruleset,
    assign_ids,
    copy_target,
    empty_ruleset,
    open_for_change,
    reload_from_disk,
    retry_stale,
    write_change,
)
from mockllm_tui.rules.identity import default_name, find_identity, rule_identity
from mockllm_tui.rules.matcher import CompiledRule, RuleSet
from mockllm_tui.rules.model import Entry, FileSource, RuleError, RulesFileError, RulesModel, RuleSpec
from mockllm_tui.rules.validate import parse_rule, parse_short

__all__ = [
    "ChangeResult",
    "ConflictError",
    "RuleError",
    "RuleNotFound",
    "RuleView",
    "RulesFile",
    "ScenarioView",
    "TryResult",
    "add_rule",
    "add_rule_for",
    "add_session_rule",
    "delete_rule",
    "delete_session_rule",
    "find_rule",
    "get_rule",
    "list_rules",
    "list_scenarios",
    "list_session_rules",
    "move_rule",
    "new_rule_name",
    "parse_rule_data",
    "reload_rules",
    "reset_scenario",
    "rules_file",
    "save_settings",
    "try_prompt",
    "update_rule",
]


class RuleNotFound(LookupError):
    """No rule has this id (or identity)."""

    def __init__(self, rule_id: int | str) -> None:
        super().__init__(f"no rule {rule_id}" if isinstance(rule_id, str) else f"no rule with id {rule_id}")
        self.rule_id = rule_id


class ConflictError(RuntimeError):
    """The file changed on disk in a way the change cannot be merged onto; nothing was changed."""


@dataclass(frozen=True, slots=True)
class RuleView:
    """One row of the rules table: internal id, position, kind, name, `label` (the rule's identity:
    its name, or `#N`), match summary, reply preview, hits."""

    id: int
    index: int
    kind: str
    name: str | None
    label: str
    match: str
    reply: str
    hits: int
    volatile: bool
    spec: RuleSpec

    def public(self) -> dict[str, Any]:
        """As plain data (the admin API's shape: `id` is the identity; `rule` is the rich form,
        accepted back by PUT)."""
        return {
            "id": self.label,
            "index": self.index,
            "kind": self.kind,
            "name": self.name,
            "match": self.match,
            "reply": self.reply,
            "hits": self.hits,
            "in_memory_only": self.volatile,
            "rule": self.spec.to_data(),
        }


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """What a change did: the rule as it is now (None after a delete), whether the file was written,
    and a note when it was not (read-only file, memory-only rule)."""

    rule: RuleView | None
    persisted: bool
    message: str | None = None

    def public(self) -> dict[str, Any]:
        """As plain data."""
        return {
            "rule": self.rule.public() if self.rule else None,
            "persisted": self.persisted,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class RulesFile:
    """The responses file served: its path (None: no file) and, while it is the read-only packaged
    example, the file its first change creates."""

    path: Path | None
    copy_to: Path | None = None


@dataclass(frozen=True, slots=True)
class TryResult:
    """Which rule would answer a prompt (None: a fallback) and its reply."""

    rule_id: int | None
    label: str
    reply: Reply


# -- reading -------------------------------------------------------------------------------------


def ruleset_of(store: Store) -> RuleSet:
    """The store's rule set (an empty one when the store holds something else)."""
    rules = store.rules if store.has_rules else None
    if isinstance(rules, RuleSet):
        return rules
    return empty_ruleset(Path(store.config.responses_path) if store.config.responses_path else None)


def _view(ruleset: RuleSet, index: int) -> RuleView:
    rule = ruleset.rules[index]
    return RuleView(
        id=rule.id,
        index=index,
        kind=rule.entry.kind,
        name=rule.spec.name,
        label=rule.label,
        match=rule.spec.match.summary() if rule.entry.kind != "default" else "anything (catch-all)",
        reply=rule.spec.preview(),
        hits=rule.hits,
        volatile=rule.id in ruleset.volatile,
        spec=rule.spec,
    )


def rules_file(store: Store) -> RulesFile:
    """The file the rules are served from, and where a change goes while it is read-only."""
    path = Path(store.config.responses_path) if store.config.responses_path else None
    return RulesFile(path, copy_target(path) if path is not None else None)


def list_rules(store: Store) -> list[RuleView]:
    """Every rule in listing order."""
    ruleset = ruleset_of(store)
    return [_view(ruleset, i) for i in range(len(ruleset))]


def get_rule(store: Store, rule_id: int) -> RuleView:
    """One rule by internal id (RuleNotFound)."""
    ruleset = ruleset_of(store)
    try:
        return _view(ruleset, ruleset.index_of(rule_id))
    except ValueError:
        raise RuleNotFound(rule_id) from None


def find_rule(store: Store, ident: str) -> RuleView:
    """One rule by its identity: a name, or a position as `#N` or `N` (a name wins). RuleNotFound
    when none has it; RuleError when several rules share the name."""
    ruleset = ruleset_of(store)
    found = find_identity(ident, [rule.spec.name for rule in ruleset.rules])
    if not found:
        raise RuleNotFound(ident)
    if len(found) > 1:
        where = ", ".join(f"#{i + 1}" for i in found)
        raise RuleError(f"{len(found)} rules are named {ident!r} ({where}): name one by its position", where="rule")
    return _view(ruleset, found[0])


def new_rule_name(store: Store, prompt: str) -> str | None:
    """A readable name for a new rule that answers `prompt`, unique among the rules (None when the
    prompt has no letters or digits)."""
    return default_name(prompt, [rule.spec.name for rule in ruleset_of(store).rules])


def parse_rule_data(data: Any) -> RuleSpec:
    """A rule from plain data in the rich form (`id`, `index` and the read-only view keys are ignored)."""
    if isinstance(data, Mapping):
        data = {k: v for k, v in data.items() if k not in ("id", "index")}
    return parse_rule(data, "rule")


def try_prompt(
    store: Store, text: str, model: str | None = None, provider: str | None = None, system: str = ""
) -> TryResult:
    """Which rule would answer this prompt, and the reply, without counting a hit or advancing a sequence.

    Without a `provider`, rules that name one do not match (the prompt comes from no wire format)."""
    ruleset = ruleset_of(store)
    scratch = RuleSet(ruleset.model, ruleset.ids, previous=ruleset)
    conversation = Conversation(
        provider=provider or "",
        endpoint="chat",
        model=model or "mock-model",
        messages=[Message(role="user", content=text)],
        system=system,
    )
    # The default session's scenario positions, in a copy: a try moves nothing.
    default = store.sessions.default
    choice = scratch.explain(conversation, ChoiceContext(session=SessionState(None, scenarios=dict(default.scenarios))))
    return TryResult(choice.rule_id, choice.label, choice.reply)


# -- planning: which section operations a change needs ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One section operation, with the entry it writes and the id it concerns."""

    op: Op
    entry: Entry | None
    rule_id: int


class Rows:
    """The entries of both sections with their ids: the planner's view of a model."""

    def __init__(self, rules: list[tuple[int, Entry]], responses: list[tuple[int, Entry]]) -> None:
        self.sections: dict[str, list[tuple[int, Entry]]] = {"rules": rules, "responses": responses}

    @classmethod
    def of(cls, ruleset: RuleSet) -> Rows:
        n = len(ruleset.model.rules)
        pairs = [(r.id, r.entry) for r in ruleset.rules]
        return cls(pairs[:n], pairs[n:])

    @property
    def rules(self) -> list[tuple[int, Entry]]:
        return self.sections["rules"]

    @property
    def responses(self) -> list[tuple[int, Entry]]:
        return self.sections["responses"]

    def identity(self, rule_id: int) -> str:
        """What a rule is called: its name, or `#N` for its position here."""
        for position, (rid, entry) in enumerate(self.rules + self.responses, start=1):
            if rid == rule_id:
                return rule_identity(position, entry.spec.name)
        return f"id {rule_id}"

    def locate(self, rule_id: int) -> tuple[Section, int]:
        sections: tuple[Section, Section] = ("rules", "responses")
        for section in sections:
            for i, (rid, _) in enumerate(self.sections[section]):
                if rid == rule_id:
                    return section, i
        raise RuleNotFound(rule_id)

    def apply(self, step: Step) -> None:
        op, rows = step.op, self.sections[step.op.section]
        if op.kind == "insert" and step.entry is not None:
            rows.insert(op.index, (step.rule_id, step.entry))
        elif op.kind == "replace" and step.entry is not None:
            rows[op.index] = (rows[op.index][0], step.entry)
        elif op.kind == "delete":
            del rows[op.index]
        elif op.kind == "move":
            rows.insert(op.to, rows.pop(op.index))

    def short_conflict(self, key: str, skip: int | None = None) -> int | None:
        """The id of another short-form entry with the same prompt, if any."""
        folded = key.strip().lower()
        for rid, entry in self.responses:
            if rid != skip and entry.key is not None and entry.key.strip().lower() == folded:
                return rid
        return None


def _rule_step(kind: str, index: int, spec: RuleSpec, rule_id: int, comment: str = "") -> Step:
    return Step(Op(kind, "rules", index, spec.to_data(), comment=comment), Entry(spec), rule_id)  # type: ignore[arg-type]


def _short_step(kind: str, index: int, key: str, spec: RuleSpec, rule_id: int) -> Step:
    reply = spec.reply or ""
    entry = parse_short(key, reply, None)
    return Step(Op(kind, "responses", index, (key, reply)), entry, rule_id)  # type: ignore[arg-type]


def _short_key_for(rows: Rows, spec: RuleSpec, skip: int | None = None) -> str | None:
    key = spec.short_key()
    if key is None:
        return None
    if rows.short_conflict(key, skip) is not None:
        return None
    return key


def plan_add(rows: Rows, spec: RuleSpec, index: int | None, new_id: int, comment: str = "") -> list[Step]:
    """Steps to add a rule: short form when it fits and the file uses it, else a rich rule (with
    `comment` on a line above it)."""
    n, m = len(rows.rules), len(rows.responses)
    key = spec.short_key()
    if key is not None and (m > 0 or n == 0):
        clash = rows.short_conflict(key)
        if clash is not None:
            raise RuleError(
                f"a response for {key!r} already exists (rule {rows.identity(clash)}); edit that one instead",
                where="rule",
            )
        if index is None or index >= n:
            at = m if index is None else min(index - n, m)
            return [_short_step("insert", at, key, spec, new_id)]
    at = n if index is None else max(0, min(index, n))
    return [_rule_step("insert", at, spec, new_id, comment)]


def plan_update(rows: Rows, rule_id: int, spec: RuleSpec) -> list[Step]:
    """Steps to change a rule in place (a short-form entry that no longer fits moves to `rules:`)."""
    section, i = rows.locate(rule_id)
    if section == "rules":
        return [_rule_step("replace", i, spec, rule_id)]
    key = _short_key_for(rows, spec, skip=rule_id)
    if key is not None:
        return [_short_step("replace", i, key, spec, rule_id)]
    return [
        Step(Op("delete", "responses", i), None, rule_id),
        _rule_step("insert", len(rows.rules), spec, rule_id),
    ]


def plan_delete(rows: Rows, rule_id: int) -> list[Step]:
    """Steps to remove a rule."""
    section, i = rows.locate(rule_id)
    return [Step(Op("delete", section, i), None, rule_id)]


def plan_move(rows: Rows, rule_id: int, new_index: int) -> list[Step]:
    """Steps to move a rule to listing position `new_index` (crossing between the forms if needed)."""
    section, i = rows.locate(rule_id)
    n, m = len(rows.rules), len(rows.responses)
    new_index = max(0, min(new_index, n + m - 1))
    entry = (rows.rules if section == "rules" else rows.responses)[i][1]
    if section == "rules":
        if new_index <= n - 1:
            return [Step(Op("move", "rules", i, to=new_index), None, rule_id)] if new_index != i else []
        key = _short_key_for(rows, entry.spec)
        if key is None:
            raise RuleError(
                f"rule {rows.identity(rule_id)} needs the rich form, and rich rules are tried before every "
                f"short-form response: it can move to positions 0-{n - 1}",
                where="rule",
            )
        return [
            Step(Op("delete", "rules", i), None, rule_id),
            _short_step("insert", min(new_index - (n - 1), m), key, entry.spec, rule_id),
        ]
    if new_index >= n:
        to = min(new_index - n, m - 1)
        return [Step(Op("move", "responses", i, to=to), None, rule_id)] if to != i else []
    return [
        Step(Op("delete", "responses", i), None, rule_id),
        _rule_step("insert", new_index, entry.spec, rule_id),
    ]


# -- committing: memory, then the file ----------------------------------------------------------------


def _model_with(model: RulesModel, rows: Rows) -> RulesModel:
    return replace(
        model,
        rules=tuple(e for _, e in rows.rules),
        responses=tuple(e for _, e in rows.responses),
        warnings=(),
    )


def _find(entries: list[Entry], entry: Entry, hint: int) -> int | None:
    if 0 <= hint < len(entries) and entries[hint] == entry:
        return hint
    for i, e in enumerate(entries):
        if e == entry:
            return i
    return None


def _apply_keeping_error(store: Store, ruleset: RuleSet, persisted: bool) -> None:
    """Make the rules live; a file error stays shown unless the file was just written (so is valid)."""
    error = store.file_error
    apply_ruleset(store, ruleset)
    if error is not None and not persisted:
        store.set_file_error(error)


def _disk_entries(doc: Document, section: Section) -> list[Entry]:
    return list(doc.model.rules if section == "rules" else doc.model.responses)


def _write_steps(
    doc: Document, rows: Rows, steps: list[Step], volatile: frozenset[int], name: str
) -> tuple[Document, bool]:
    """Apply the steps to the file's current document, finding each entry there by its content.
    Also says whether a step was skipped because its rule is in memory only."""
    skipped = False
    rows = Rows(list(rows.rules), list(rows.responses))
    for step in steps:
        op = step.op
        mem = rows.sections[op.section]
        disk = _disk_entries(doc, op.section)
        if op.kind == "insert":
            anchor = mem[op.index][1] if op.index < len(mem) else None
            at = _find(disk, anchor, op.index) if anchor is not None else None
            doc = doc.apply(replace(op, index=len(disk) if at is None else at))
        else:
            at = _find(disk, mem[op.index][1], op.index)
            if at is None:
                if mem[op.index][0] not in volatile:
                    raise ConflictError(
                        f"rule {rows.identity(mem[op.index][0])} was changed in {name} since it was loaded; "
                        "nothing was changed (reload and try again)"
                    )
                skipped = True
            elif op.kind == "move":
                after = mem[: op.index] + mem[op.index + 1 :]
                anchor = after[op.to][1] if op.to < len(after) else None
                rest = disk[:at] + disk[at + 1 :]
                to = _find(rest, anchor, op.to) if anchor is not None else None
                doc = doc.apply(replace(op, index=at, to=len(rest) if to is None else to))
            else:
                doc = doc.apply(replace(op, index=at))
        rows.apply(step)
    return doc, skipped


def _commit(store: Store, steps: list[Step], rule_id: int | None, persist: bool) -> ChangeResult:
    ruleset = ruleset_of(store)
    rows = Rows.of(ruleset)
    before = Rows(list(rows.rules), list(rows.responses))
    for step in steps:
        rows.apply(step)
    model = _model_with(ruleset.model, rows)
    ids = [rid for rid, _ in rows.rules + rows.responses]
    volatile = set(ruleset.volatile)
    source = ruleset.source
    persisted, message = False, None
    if not steps:
        persisted = persist
    elif not persist:
        if rule_id is not None:
            volatile.add(rule_id)
    elif source is None:
        message = "no responses file: the change is live in memory only"
    else:
        try:
            written = _persist(store, source, before, steps, ruleset.volatile)
        except WriteError as exc:
            message = f"{exc.strerror}; the change is live in memory only"
            if rule_id is not None:
                volatile.add(rule_id)
        else:
            if written is None:
                name = f"rule {before.identity(rule_id)}" if rule_id is not None else "the rule"
                message = f"{name} is in memory only (persist=false): nothing was written"
            else:
                new_source, disk_model, merged = written
                persisted, source = True, new_source
                volatile.discard(rule_id if rule_id is not None else -1)
                if merged or (not volatile and disk_model.entries != model.entries):
                    pinned = dict(zip(ids, model.entries, strict=True))
                    model, ids, volatile = disk_model, assign_ids(disk_model, ruleset, pinned), set()
    new = RuleSet(model, ids, source=source, previous=ruleset, volatile=volatile)
    _apply_keeping_error(store, new, persisted)
    view = None
    if rule_id is not None and rule_id in new.ids:
        view = _view(new, new.index_of(rule_id))
    return ChangeResult(rule=view, persisted=persisted, message=message)


def _persist(
    store: Store, source: FileSource, before: Rows, steps: list[Step], volatile: frozenset[int]
) -> tuple[FileSource, RulesModel, bool] | None:
    """Write the steps onto the document as it is now (the file on disk, or the shared one; planned
    again when that changed under the write). Returns the new source, the document's model and
    whether it had changed since it was loaded (None: nothing to write)."""

    def attempt() -> tuple[FileSource, RulesModel, bool] | None:
        doc, on_disk = open_for_change(store, source)
        new, skipped = _write_steps(doc, before, steps, volatile, source.name)
        merged = on_disk.digest != source.digest
        if new.text == doc.text:
            return None if skipped else (on_disk, doc.model, merged)
        return write_change(store, on_disk, new.text), new.model, merged

    return retry_stale(attempt)


# -- the commands ------------------------------------------------------------------------------------


def add_rule(
    store: Store, data: Any, *, index: int | None = None, persist: bool = True, comment: str = ""
) -> ChangeResult:
    """Add a rule (rich-form data) at listing position `index` (None: the end of its form). A rich
    rule gets `comment` as a comment line above it in the file."""
    spec = parse_rule_data(data)
    ruleset = ruleset_of(store)
    new_id = ruleset.next_id()
    return _commit(store, plan_add(Rows.of(ruleset), spec, index, new_id, comment), new_id, persist)


def add_rule_for(store: Store, data: Any, conversation: Conversation, *, persist: bool = True) -> ChangeResult:
    """Add a rule (rich-form data) that answers `conversation`: as a rich rule placed above the first
    rule that matches the conversation now (which would shadow it), else at the end of `rules:`."""
    spec = parse_rule_data(data)
    ruleset = ruleset_of(store)
    prompt = conversation.last_user_text()
    folded = prompt.strip().lower()
    rich = ruleset.rules[: len(ruleset.model.rules)]
    at = next((i for i, rule in enumerate(rich) if rule.test(conversation, prompt, folded) is not None), len(rich))
    new_id = ruleset.next_id()
    return _commit(store, [_rule_step("insert", at, spec, new_id)], new_id, persist)


def update_rule(store: Store, rule_id: int, data: Any, *, persist: bool = True) -> ChangeResult:
    """Replace a rule's content (rich-form data); its id and position stay."""
    spec = parse_rule_data(data)
    return _commit(store, plan_update(Rows.of(ruleset_of(store)), rule_id, spec), rule_id, persist)


def delete_rule(store: Store, rule_id: int, *, persist: bool = True) -> ChangeResult:
    """Remove a rule."""
    return _commit(store, plan_delete(Rows.of(ruleset_of(store)), rule_id), rule_id, persist)


def move_rule(store: Store, rule_id: int, new_index: int, *, persist: bool = True) -> ChangeResult:
    """Move a rule to listing position `new_index`."""
    return _commit(store, plan_move(Rows.of(ruleset_of(store)), rule_id, new_index), rule_id, persist)


def reload_rules(store: Store) -> None:
    """Read the file again now (memory-only changes are dropped). Raises RuleError when it is invalid."""
    error = reload_from_disk(store, force=True)
    if error is not None:
        raise RuleError(error)


def save_settings(
    store: Store, path: Path | str | None, values: Mapping[str, Any], *, persist: bool = True
) -> ChangeResult:
    """Set knob values in the file's `settings:` section (a value of None removes the key), make them
    the store's "file" knob layer, and write them back surgically (into `path`, default: the rules'
    file). When the file cannot be written, `ChangeResult.message` says why (the values stay live)."""
    try:
        validate_knob_values({k: v for k, v in values.items() if v is not None})
    except KnobError as exc:
        raise RuleError(str(exc), where="settings") from None
    ruleset = ruleset_of(store)
    settings = {**ruleset.model.settings, **values}
    settings = {k: v for k, v in settings.items() if v is not None}
    model = replace(ruleset.model, settings=settings)
    source = ruleset.source
    if path is not None:
        source = FileSource(Path(path), source.text if source else "", source.digest if source else "")
    persisted, message = False, None
    ids, volatile = ruleset.ids, ruleset.volatile
    if persist and source is not None:
        base = source

        def attempt() -> tuple[Document, FileSource, bool]:
            doc, on_disk = open_for_change(store, base)
            for key, value in values.items():
                doc = _set_setting(doc, key, value)
            return doc, write_change(store, on_disk, doc.text), on_disk.digest != base.digest

        try:
            doc, written, merged = retry_stale(attempt)
        except RulesFileError as exc:
            message = f"{exc}; the settings are live in memory only"
        except WriteError as exc:
            message = f"{exc.strerror}; the settings are live in memory only"
        else:
            persisted, source = True, written
            if merged:  # the document had other changes too: serve it whole
                model, ids, volatile = doc.model, assign_ids(doc.model, ruleset), frozenset()
    elif persist:
        message = "no responses file: the settings are live in memory only"
    new = RuleSet(model, ids, source=source, previous=ruleset, volatile=volatile)
    _apply_keeping_error(store, new, persisted)
    return ChangeResult(rule=None, persisted=persisted, message=message)


def _set_setting(doc: Document, key: str, value: Any) -> Document:
    keys = list(doc.model.settings)
    if key in keys:
        at = keys.index(key)
        if value is None:
            return doc.apply(Op("delete", "settings", at))
        return doc.apply(Op("replace", "settings", at, (key, value)))
    if value is None:
        return doc
    return doc.apply(Op("insert", "settings", len(keys), (key, value)))


# -- a session's own rules and the scenarios -------------------------------------------------------


def session_rule_view(rule: CompiledRule, index: int) -> dict[str, Any]:
    """One of a session's rules as plain data (the admin API's shape)."""
    return {
        "id": rule.id,
        "index": index,
        "kind": "session",
        "name": rule.spec.name,
        "label": rule.label,
        "match": rule.spec.match.summary(),
        "reply": rule.spec.preview(),
        "hits": rule.hits,
        "in_memory_only": True,
        "rule": rule.spec.to_data(),
    }


def list_session_rules(store: Store, session: str) -> list[dict[str, Any]]:
    """A session's own rules, in the order they are tried."""
    state = store.session(session)
    return [session_rule_view(rule, i) for i, rule in enumerate(state.rules)]


def add_session_rule(store: Store, session: str, data: Any, index: int | None = None) -> dict[str, Any]:
    """Add a rule only this session sees, tried before the shared rules (never written to the file);
    `index` places it among the session's rules (default: last)."""
    spec = parse_rule_data(data)
    state = store.session(session)
    rule_id = state.next_rule_id
    state.next_rule_id += 1
    label = spec.name or f"session #{rule_id}"
    at = len(state.rules) if index is None else max(0, min(index, len(state.rules)))
    state.rules.insert(at, CompiledRule(rule_id, Entry(spec=spec), 0, label, key=("session", rule_id)))
    store.publish("rules", store.rules if store.has_rules else None)
    return {"rule": session_rule_view(state.rules[at], at), "persisted": False, "message": None}


def delete_session_rule(store: Store, session: str, ident: str | int) -> dict[str, Any]:
    """Remove one of a session's rules, named by its identity (`session #2`, its name) or its id
    (RuleNotFound)."""
    state = store.session(session)
    text = str(ident).strip()
    for rule in state.rules:
        if text in (rule.label, str(rule.id), f"#{rule.id}"):
            state.rules.remove(rule)
            store.publish("rules", store.rules if store.has_rules else None)
            return {"rule": None, "persisted": False, "message": None}
    raise RuleNotFound(text)


@dataclass(frozen=True, slots=True)
class ScenarioView:
    """A scenario as the rules table and the admin API show it: where the session is in it."""

    name: str
    step: int
    steps: int
    next_label: str | None

    @property
    def finished(self) -> bool:
        """Whether every step has answered."""
        return self.step >= self.steps

    def position(self) -> str:
        """`step 2/4` or `finished 4/4`."""
        return f"finished {self.steps}/{self.steps}" if self.finished else f"step {self.step + 1}/{self.steps}"

    def public(self) -> dict[str, Any]:
        """As plain data (`step`: the 1-based step tried next, or steps + 1 when finished)."""
        return {
            "name": self.name,
            "step": self.step + 1,
            "steps": self.steps,
            "finished": self.finished,
            "next": self.next_label,
            "position": self.position(),
        }


def list_scenarios(store: Store, session: str | None = None) -> list[ScenarioView]:
    """Every scenario with the session's position in it."""
    state = store.session(session)
    out = []
    for scenario in ruleset_of(store).scenarios:
        step = min(state.scenarios.get(scenario.name, 0), len(scenario.steps))
        label = scenario.steps[step].label if step < len(scenario.steps) else None
        out.append(ScenarioView(scenario.name, step, len(scenario.steps), label))
    return out


def reset_scenario(store: Store, name: str, session: str | None = None, *, every: bool = True) -> ScenarioView:
    """Put a scenario back at step 1: in every session, or (`every=False`) in `session` only.
    Raises LookupError for an unknown name."""
    if ruleset_of(store).scenario(name) is None:
        raise LookupError(f"no scenario named {name!r}")
    store.sessions.reset_scenario(name, session, every=every)
    store.publish("rules", store.rules if store.has_rules else None)
    return next(v for v in list_scenarios(store, session) if v.name == name)
