"""The Redis state with every shared part joined: what `--state redis://…` builds."""

from __future__ import annotations

from mockllm_tui.shared.connection import RedisState
from mockllm_tui.shared.counters import SharedCounters
from mockllm_tui.shared.journal import SharedJournal
from mockllm_tui.shared.knobs import SharedKnobs
from mockllm_tui.shared.rules_doc import SharedRules


def redis_state(url: str, prefix: str, instance: str) -> RedisState:
    """A Redis state for this URL and prefix, sharing the knobs, rules, counters and journal."""
    state = RedisState(url, prefix, instance)
    state.add_part(SharedRules(state))
    state.add_part(SharedKnobs(state))
    state.counters = counters = SharedCounters(state)
    state.add_part(counters)
    state.add_part(SharedJournal(state))
    return state
