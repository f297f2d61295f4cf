"""Choosing the reply for one HTTP request: its session (`x-mock-session`) and strict mode (the
server's `--strict` or the request's `x-mock-strict`). The flow records the choice in the journal
(the rule, the scenario step, a fallback's near misses)."""

from __future__ import annotations

from mockllm_tui.core.conversation import ChoiceContext, Conversation, Reply
from mockllm_tui.core.sessions import strict_of
from mockllm_tui.core.store import JournalEntry, Store
from mockllm_tui.rules.matcher import RuleSet


def request_context(store: Store, headers: dict[str, str], entry: JournalEntry) -> ChoiceContext:
    """What the rules see of a request beyond its conversation."""
    return ChoiceContext(headers, store.session(entry.session), strict_of(headers, store.config.strict), entry)


def choose_reply(store: Store, conversation: Conversation, headers: dict[str, str], entry: JournalEntry) -> Reply:
    """The reply for a request (`entry` is its journal entry, read by the pytest plugin's functions).

    Raises NoRuleMatched (a provider-shaped 404 naming the nearest rules) in strict mode when no rule matches."""
    rules = store.rules
    if not isinstance(rules, RuleSet):
        return rules.choose(conversation)
    return rules.choose(conversation, request_context(store, headers, entry))
