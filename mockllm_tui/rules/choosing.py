"""Choosing the reply for one HTTP request: its session (`x-mock-session`), strict mode (the
server's `--strict` or the request's `x-mock-strict`), and what the journal keeps of the choice
(the rule, the scenario step, the near misses)."""

from __future__ import annotations

from mockllm_tui.core.conversation import ChoiceContext, Conversation, NearMisses, NoRuleMatched, Reply
from mockllm_tui.core.sessions import strict_of
from mockllm_tui.core.store import JournalEntry, Store
from mockllm_tui.rules.matcher import RuleSet


def request_context(store: Store, headers: dict[str, str], entry: JournalEntry) -> ChoiceContext:
    """What the rules see of a request beyond its conversation."""
    return ChoiceContext(headers, store.session(entry.session), strict_of(headers, store.config.strict), entry)


def choose_reply(store: Store, conversation: Conversation, headers: dict[str, str], entry: JournalEntry) -> Reply:
    """The reply for a request, recorded on its journal entry (rule, scenario, near misses).

    Raises NoRuleMatched (a provider-shaped 404) in strict mode when no rule matches."""
    rules = store.rules
    if not isinstance(rules, RuleSet):
        reply = rules.choose(conversation)
    else:
        try:
            reply = rules.choose(conversation, request_context(store, headers, entry))
        except NoRuleMatched as exc:
            entry.near_misses = NearMisses(value=exc.near_misses)
            raise
    entry.rule = reply.rule
    entry.near_misses = reply.near_misses
    entry.scenario = reply.scenario
    return reply
