"""The rule commands bound to one store: the panel's way to change the rules.

`StoreRuleAccess` runs rules.commands on the panel's own store; an attached panel has one that sends
the same commands to the server it is attached to (remote/rule_access.py). Both raise RuleError
(or a subclass) for a refused change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from mockllm_tui.core.store import JournalEntry, Store
from mockllm_tui.rules import commands
from mockllm_tui.rules.commands import ChangeResult, RuleError, ScenarioView, TryResult


class RuleAccess(Protocol):
    """What the panel does to the rules (and the file's `settings:`)."""

    def add(self, data: Any, index: int | None = None) -> ChangeResult:
        """Add a rule (rich-form data) at listing position `index` (None: the end of its form)."""
        ...

    def add_for(self, entry: JournalEntry, data: Any) -> ChangeResult:
        """Add a rule that answers this journaled request, where no rule shadows it."""
        ...

    def update(self, rule_id: int, data: Any) -> ChangeResult:
        """Replace a rule's content."""
        ...

    def delete(self, rule_id: int) -> ChangeResult:
        """Remove a rule."""
        ...

    def move(self, rule_id: int, new_index: int) -> ChangeResult:
        """Move a rule to listing position `new_index`."""
        ...

    def try_prompt(self, text: str, model: str | None = None) -> TryResult:
        """Which rule answers a prompt (nothing counted)."""
        ...

    def scenarios(self) -> list[ScenarioView]:
        """Every scenario, and where the default session is in it."""
        ...

    def save_settings(self, values: Mapping[str, Any]) -> ChangeResult:
        """Write knob values into the file's `settings:`."""
        ...


class StoreRuleAccess:
    """The rule commands on this process's own store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, data: Any, index: int | None = None) -> ChangeResult:
        """See RuleAccess."""
        return commands.add_rule(self.store, data, index=index)

    def add_for(self, entry: JournalEntry, data: Any) -> ChangeResult:
        """See RuleAccess."""
        if entry.conversation is None:
            raise RuleError(f"request #{entry.id} has no conversation to match")
        return commands.add_rule_for(self.store, data, entry.conversation)

    def update(self, rule_id: int, data: Any) -> ChangeResult:
        """See RuleAccess."""
        return commands.update_rule(self.store, rule_id, data)

    def delete(self, rule_id: int) -> ChangeResult:
        """See RuleAccess."""
        return commands.delete_rule(self.store, rule_id)

    def move(self, rule_id: int, new_index: int) -> ChangeResult:
        """See RuleAccess."""
        return commands.move_rule(self.store, rule_id, new_index)

    def try_prompt(self, text: str, model: str | None = None) -> TryResult:
        """See RuleAccess."""
        return commands.try_prompt(self.store, text, model=model)

    def scenarios(self) -> list[ScenarioView]:
        """See RuleAccess."""
        return commands.list_scenarios(self.store)

    def save_settings(self, values: Mapping[str, Any]) -> ChangeResult:
        """See RuleAccess."""
        return commands.save_settings(self.store, None, values)
