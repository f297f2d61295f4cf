"""A mirror of a running server's store, for a panel attached to it.

It is a Store, so the panel reads it as it reads its own server's: the journal, counters, knobs and
rules are the server's as its event stream tells them (`apply`), and the store's events are
published as usual. What the panel changes through the store (knobs, fail-next, clearing the
journal) goes to the server's admin API instead, and the server's answer is what the mirror then
holds. A command while the server cannot be reached raises NotConnected.

The answer to a command and the event stream come on different connections, so an event the server
made before it answered can arrive after the answer: the answer names the last event made before it
(`x-mock-event-id`), and the mirror skips the knobs or rules events up to that one, which would take
an older state back (and the next key press would start from that).

The counters and the rules' hits are the server's own (`totals.changed`), not counted here: a
realtime session counts each of its responses, and the events tell of the session's row once.
A fallback's near misses are read from the server when the panel shows the request
(`fetch_near_misses`), as the embedded panel works them out only then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, get_args

from mockllm_tui.core.conversation import NearMisses
from mockllm_tui.core.journal_data import entry_from_data, update_entry
from mockllm_tui.core.knobs import KNOB_NAMES, ErrorMode, KnobError, Knobs
from mockllm_tui.core.shared_state import LocalState, StateMode
from mockllm_tui.core.store import DEFAULT_JOURNAL_SIZE, Counters, JournalEntry, StartupConfig, Store
from mockllm_tui.remote.errors import NotConnected, RefusedCommand
from mockllm_tui.rules.commands import ScenarioView
from mockllm_tui.rules.fileio import assign_ids
from mockllm_tui.rules.matcher import RuleSet
from mockllm_tui.rules.model import Entry, Match, RuleError, RulesModel, RuleSpec
from mockllm_tui.rules.validate import parse_rule

if TYPE_CHECKING:
    from mockllm_tui.remote.client import AdminClient


def counters_from(data: dict[str, Any], probes: int = 0) -> Counters:
    """Counters from their plain data (`probes` when the data does not say)."""
    return Counters(
        total=int(data.get("total", 0)),
        by_status={int(k): int(v) for k, v in (data.get("by_status") or {}).items()},
        in_flight=int(data.get("in_flight", 0)),
        streams_open=int(data.get("streams_open", 0)),
        errors=int(data.get("errors", 0)),
        probes=int(data.get("probes", probes)),
    )


def scenario_of(data: dict[str, Any]) -> ScenarioView:
    """A scenario's row from its plain data (`ScenarioView.public`, whose `step` is 1-based)."""
    steps = int(data.get("steps", 0))
    return ScenarioView(str(data.get("name", "")), min(int(data.get("step", 1)) - 1, steps), steps, data.get("next"))


def event_number(ident: str) -> tuple[str, int] | None:
    """An event id `EPOCH-N` as (EPOCH, N)."""
    epoch, _, number = ident.rpartition("-")
    return (epoch, int(number)) if number.isdigit() else None


def entry_of(view: dict[str, Any]) -> Entry:
    """A rules-file entry from a rule as the admin API lists it."""
    try:
        spec = parse_rule({k: v for k, v in (view.get("rule") or {}).items() if k not in ("id", "index")})
    except RuleError:  # a rule form this side does not know: shown by its summary
        spec = RuleSpec(match=Match(), name=view.get("name"), reply=str(view.get("reply", "")))
    kind = view.get("kind")
    if kind == "default":
        return Entry(spec, key="default")
    if kind == "short":
        return Entry(spec, key=spec.match.exact or str(view.get("match", "")))
    return Entry(spec)


class ServerState(LocalState):
    """The attached server's state as its event stream tells it: its `mode` is the server's."""

    def __init__(self) -> None:
        super().__init__("attached")
        self.reported: StateMode = "memory"

    @property
    def mode(self) -> StateMode:
        """The server's state: memory, redis, or degraded while its Redis is lost."""
        return self.reported


class MirrorStore(Store):
    """The store of a panel attached to a server at `client.root`."""

    def __init__(self, client: AdminClient, *, journal_size: int = DEFAULT_JOURNAL_SIZE) -> None:
        self.server_state = ServerState()
        super().__init__(
            journal_size=journal_size, config=StartupConfig(url=client.root + "/v1"), state=self.server_state
        )
        self.client = client
        #: Whether the event stream is connected (commands need it), and what to say about it.
        self.connected = False
        self.connection = "connecting"
        #: The scenarios, and where the server's default session is in each.
        self.scenarios: list[ScenarioView] = []
        self._rule_ids: dict[str, int] = {}  # a rule's identity -> its id here
        self._answered: dict[str, tuple[str, int]] = {}  # event name -> the last event a command's answer followed
        self._near_misses_due: set[int] = set()  # fallback answers whose near misses are not read yet
        self.set_rules(RuleSet(RulesModel(), []))

    # -- the connection --------------------------------------------------------------------------

    def set_connection(self, connected: bool, text: str) -> None:
        """The event stream's state (the status bar shows `text` while not connected)."""
        self.connected = connected
        self.connection = text

    def require(self) -> None:
        """Raise NotConnected unless the server is reachable now."""
        if not self.connected:
            raise NotConnected()

    def command(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None, state: str = ""
    ) -> Any:
        """Send a command to the server (NotConnected when it cannot be reached). `state` names the
        event (`knobs.changed`, `rules.changed`) whose state the answer gives: the ones the server
        made before it answered are skipped when they come."""
        self.require()
        answer, mark = self.client.exchange(method, path, json=json, params=params)
        number = event_number(mark) if mark and state else None
        if number is not None:
            self._answered[state] = number
        return answer

    def _older(self, name: str, ident: str) -> bool:
        """Whether this event was made before a command's answer that the mirror holds."""
        answered = self._answered.get(name)
        if answered is None:
            return False
        number = event_number(ident)
        return number is not None and number[0] == answered[0] and number[1] <= answered[1]

    # -- commands the panel sends through the store -----------------------------------------------

    def set_knobs(self, layer: str, values: dict[str, Any], *, replace_layer: bool = False) -> Knobs:
        """Live knob values go to the server (KnobError when it refuses one)."""
        if layer != "live":
            return super().set_knobs(layer, values, replace_layer=replace_layer)
        try:
            if replace_layer:
                self.command("DELETE", "/_mock/settings", state="knobs.changed")
            view = self.command("PATCH", "/_mock/settings", json=values, state="knobs.changed")
        except RefusedCommand as exc:
            raise KnobError(exc.message) from None
        self.apply_settings(view)
        return self.knobs

    def set_fail_next(
        self, count: int, status: int | None = None, mode: ErrorMode | None = None, session: str | None = None
    ) -> None:
        """Arm the server's fail-next (of a session when one is named)."""
        body = {"count": count, "status": status, "mode": mode}
        params = {"session": session} if session else None
        answer = self.command("POST", "/_mock/fail-next", json=body, params=params, state="knobs.changed")
        if session is None:
            self._fail_next, self._fail_next_status = int(answer["count"]), answer.get("status")
        self.publish("knobs", self.knobs)

    def clear_journal(self) -> None:
        """Clear the server's journal (and this copy)."""
        self.command("DELETE", "/_mock/journal")
        super().clear_journal()

    # -- what the server tells -------------------------------------------------------------------

    def apply(self, name: str, data: Any, ident: str | None = None) -> None:
        """Bring the mirror up to date with one event of the server's stream (`ident`: its id)."""
        if ident and self._answered and self._older(name, ident):
            return
        if name == "request.started":
            self._started(data)
        elif name == "request.chunk":
            self._chunk(data)
        elif name == "request.ended":
            self._ended(data)
        elif name == "knobs.changed":
            self.apply_settings(data)
        elif name == "rules.changed":
            self.apply_rules(data)
        elif name == "totals.changed":
            self.apply_totals(data)
        elif name == "state.changed":
            if data.get("journal_cleared"):
                super().clear_journal()
            self._set_counters(data.get("counters") or {})
            self.apply_state(data.get("state"))

    def apply_state(self, mode: Any) -> None:
        """The server's state mode (`state.changed`'s `state`): published when it changes."""
        if mode in get_args(StateMode) and mode != self.server_state.reported:
            self.server_state.reported = mode
            self.state_changed()

    def _set_counters(self, data: dict[str, Any]) -> None:
        """The server's counters, in place (the status bar holds the object)."""
        told = counters_from(data, self._counters.probes)
        c = self._counters
        c.total, c.by_status, c.in_flight = told.total, told.by_status, told.in_flight
        c.streams_open, c.errors, c.probes = told.streams_open, told.errors, told.probes

    def apply_totals(self, data: dict[str, Any]) -> None:
        """The server's counters, its rules' hits (in listing order) and where its scenarios are."""
        self._set_counters(data.get("counters") or {})
        hits = data.get("hits")
        rules = self.rules_list()
        if hits is not None and len(hits) == len(rules):  # else rules.changed with the hits is on its way
            for rule, count in zip(rules, hits, strict=True):
                rule.hits = int(count)
        if "scenarios" in data:
            self.scenarios = [scenario_of(s) for s in data["scenarios"]]

    def apply_settings(self, view: dict[str, Any]) -> None:
        """The server's knobs (`/_mock/settings`'s shape): in force, the live layer, fail-next, and
        (from the event stream) the upstreams' hosts. The API key in force here is the one this
        panel attached with (the server never shows its own)."""
        effective = {k: v for k, v in view["effective"].items() if k in KNOB_NAMES and k != "api_key"}
        effective["api_key"] = self.client.api_key
        live = view["layers"]["live"].items()
        self._knob_layers["live"] = {k: v for k, v in live if k in KNOB_NAMES and k != "api_key"}
        fail = view.get("fail_next") or {}
        self._fail_next, self._fail_next_status = int(fail.get("count", 0)), fail.get("status")
        if "upstreams" in view:  # their hosts, as the status bar shows them
            self.configure(upstreams=tuple((host, f"http://{host}") for host in view["upstreams"]))
        super().set_knobs("cli", effective, replace_layer=True)

    def apply_rules(self, data: dict[str, Any]) -> None:
        """The server's rules (as `/_mock/rules` lists them) and its file's state."""
        views = data.get("rules", data.get("data", []))
        entries = [entry_of(view) for view in views]
        rich = tuple(e for e in entries if e.key is None)
        model = RulesModel(rules=rich, responses=tuple(e for e in entries if e.key is not None))
        ordered = list(rich) + [e for e in entries if e.key is not None]
        by_entry = {id(e): view for e, view in zip(entries, views, strict=True)}
        previous = self.rules if self.has_rules else None
        ids = assign_ids(model, previous)
        volatile = [i for i, e in zip(ids, ordered, strict=True) if by_entry[id(e)].get("in_memory_only")]
        ruleset = RuleSet(model, ids, volatile=volatile)
        for rule, entry in zip(ruleset.rules, ordered, strict=True):
            view = by_entry[id(entry)]
            rule.label, rule.hits = str(view.get("id", rule.label)), int(view.get("hits", 0))
        if "scenarios" in data:
            self.scenarios = [scenario_of(s) for s in data["scenarios"]]
        self.configure(responses_path=str(data.get("file") or ""))
        self._rule_ids = {rule.label: rule.id for rule in reversed(ruleset.rules)}  # the first of a name wins
        self.set_rules(ruleset)
        error = data.get("file_error")
        if error != self.file_error:
            self.set_file_error(error)
        for notice in data.get("notices") or ():
            self.announce(notice)

    def refresh_rules(self) -> None:
        """Read the server's rules now (after a change this panel made)."""
        self.apply_rules(self.command("GET", "/_mock/rules", state="rules.changed"))

    def settings_command(self, method: str, path: str) -> dict[str, Any]:
        """A command whose answer holds the server's knobs (`/_mock/settings`'s shape): applied here."""
        answer: dict[str, Any] = self.command(method, path, state="knobs.changed")
        self.apply_settings(answer)
        return answer

    # -- what the event stream leaves out --------------------------------------------------------

    def lacks_near_misses(self, entry: JournalEntry) -> bool:
        """Whether a fallback answered this request and its near misses were not read yet."""
        return entry.id in self._near_misses_due

    async def fetch_near_misses(self, entry: JournalEntry) -> bool:
        """Read a fallback answer's near misses from the server; says whether they came."""
        self._near_misses_due.discard(entry.id)
        try:
            answer = await self.client.get(f"/_mock/journal/{entry.id}")
        except NotConnected:
            self._near_misses_due.add(entry.id)  # again when it is shown again
            return False
        except RefusedCommand:  # no longer in the server's journal
            return False
        near = [(str(m["rule"]), str(m["reason"])) for m in answer.get("near_misses") or ()]
        entry.near_misses = NearMisses(value=near)
        return True

    def _note_near_misses(self, entry: JournalEntry, data: dict[str, Any], request_id: str) -> None:
        """Whether a fallback answered (the events say only that): read the near misses when shown.
        A realtime session's row answers again with each response (a new request id)."""
        fallback = data.get("near_misses")
        if fallback is None:
            return
        if not fallback:
            entry.near_misses = None
            self._near_misses_due.discard(entry.id)
        elif entry.near_misses is None or entry.request_id != request_id:
            entry.near_misses = None
            self._near_misses_due.add(entry.id)

    def load_journal(self, body: dict[str, Any]) -> None:
        """Replace the journal with the server's (`/_mock/journal?full=true`)."""
        self._journal.clear()
        self._open.clear()
        self._near_misses_due.clear()
        for data in body.get("data", ()):
            entry = self._new_entry(data)
            self._journal.append(entry)
            if entry.open:
                self._open[entry.id] = entry
        self._set_counters(body.get("counters") or {})
        self.publish("journal_cleared")

    # -- requests --------------------------------------------------------------------------------

    def _new_entry(self, data: dict[str, Any]) -> JournalEntry:
        """An entry as the server tells it, pointed at this side's rule."""
        entry = entry_from_data(data)
        self._place(entry)
        self._note_near_misses(entry, data, "")
        return entry

    def _place(self, entry: JournalEntry) -> None:
        """Point the entry at this side's rule (the server's ids are its own)."""
        entry.rule_id = self._rule_ids.get(entry.rule) if entry.rule else None

    def rules_list(self) -> list[Any]:
        """The mirrored rules (compiled)."""
        rules = self.rules
        return list(rules) if isinstance(rules, RuleSet) else []

    def _known(self, entry_id: int) -> JournalEntry | None:
        entry = self._open.get(entry_id)
        if entry is not None:
            return entry
        if not self._journal or entry_id > self._journal[-1].id:  # the server's ids only grow: a new one
            return None
        return self.entry(entry_id)

    def _started(self, data: dict[str, Any]) -> None:
        entry = self._known(int(data["id"]))
        if entry is not None:
            self._update(entry, data)
            return
        entry = self._new_entry(data)
        self._journal.append(entry)
        if entry.open:
            self._open[entry.id] = entry
            self.publish("request", entry)
        else:
            self._finish(entry)

    def _chunk(self, data: dict[str, Any]) -> None:
        entry = self._known(int(data["id"]))
        if entry is None:
            return  # the stream began before this panel knew of it: its end brings it whole
        self._update(entry, data)
        self.publish("chunk", entry)

    def _ended(self, data: dict[str, Any]) -> None:
        entry = self._known(int(data["id"]))
        if entry is None:
            entry = self._new_entry(data)
            self._journal.append(entry)
            self._finish(entry)
            return
        was_open = entry.open
        self._update(entry, data)
        if was_open:
            self._open.pop(entry.id, None)
            self._finish(entry)

    def _update(self, entry: JournalEntry, data: dict[str, Any]) -> None:
        request_id = entry.request_id
        update_entry(entry, data)
        if "rule" in data:
            self._place(entry)
        self._note_near_misses(entry, data, request_id)

    def _finish(self, entry: JournalEntry) -> None:
        """Tell the panel of a request that ended (the totals and hits come from the server)."""
        self.publish("done", entry)
