"""The Redis state with every shared part joined: what `--state redis://…` builds."""

from __future__ import annotations

from mockllm_tui.shared.connection import RedisState


def redis_state(url: str, prefix: str, instance: str) -> RedisState:
    """A Redis state for this URL and prefix, sharing the knobs, rules, counters and journal."""
    state = RedisState(url, prefix, instance)
    return state
