"""The rule commands of an attached panel: sent to the server's admin API, which applies them and
writes its own file; the mirror then reads the server's rules again, so the change shows at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mockllm_tui.core.conversation import ErrorReply, Reply, ToolCall
from mockllm_tui.core.store import JournalEntry
from mockllm_tui.remote.client import rule_path
from mockllm_tui.remote.mirror import MirrorStore
from mockllm_tui.rules.commands import ChangeResult, RuleNotFound, RuleView, ScenarioView, TryResult, list_rules


class RemoteRuleAccess:
    """RuleAccess over HTTP, for a MirrorStore."""

    def __init__(self, mirror: MirrorStore) -> None:
        self.mirror = mirror

    def _label(self, rule_id: int) -> str:
        for view in list_rules(self.mirror):
            if view.id == rule_id:
                return view.label
        raise RuleNotFound(rule_id)

    def _view(self, label: str | None) -> RuleView | None:
        return next((v for v in list_rules(self.mirror) if v.label == label), None) if label else None

    def _result(self, answer: Any) -> ChangeResult:
        self.mirror.refresh_rules()
        rule = answer.get("rule") if isinstance(answer, dict) else None
        view = self._view(rule.get("id")) if isinstance(rule, dict) else None
        return ChangeResult(view, bool(answer.get("persisted")), answer.get("message"))

    def add(self, data: Any, index: int | None = None) -> ChangeResult:
        """See rules.access.RuleAccess."""
        body = {**data, "index": index} if index is not None and isinstance(data, dict) else data
        return self._result(self.mirror.command("POST", "/_mock/rules", json=body))

    def add_for(self, entry: JournalEntry, data: Any) -> ChangeResult:
        """See rules.access.RuleAccess."""
        answer = self.mirror.command("POST", "/_mock/rules/from-request", json={"request": entry.id, "rule": data})
        return self._result(answer)

    def update(self, rule_id: int, data: Any) -> ChangeResult:
        """See rules.access.RuleAccess."""
        return self._result(self.mirror.command("PUT", rule_path(self._label(rule_id)), json=data))

    def delete(self, rule_id: int) -> ChangeResult:
        """See rules.access.RuleAccess."""
        return self._result(self.mirror.command("DELETE", rule_path(self._label(rule_id))))

    def move(self, rule_id: int, new_index: int) -> ChangeResult:
        """See rules.access.RuleAccess."""
        body = {"id": self._label(rule_id), "index": new_index}
        return self._result(self.mirror.command("POST", "/_mock/rules/reorder", json=body))

    def scenarios(self) -> list[ScenarioView]:
        """See rules.access.RuleAccess: the server's, as its events tell them."""
        return list(self.mirror.scenarios)

    def try_prompt(self, text: str, model: str | None = None) -> TryResult:
        """See rules.access.RuleAccess."""
        answer = self.mirror.command("POST", "/_mock/try", json={"prompt": text, "model": model})
        error = answer.get("error")
        reply = Reply(
            text=answer.get("reply") or "",
            tool_calls=[ToolCall(c["name"], c.get("arguments") or {}) for c in answer.get("tool_calls") or ()],
            error=ErrorReply(int(error["status"]), str(error["message"])) if error else None,
        )
        view = self._view(answer.get("rule"))
        label = answer.get("label") or answer.get("rule") or "fallback"
        return TryResult(view.id if view is not None else None, label, reply)

    def save_settings(self, values: Mapping[str, Any]) -> ChangeResult:
        """See rules.access.RuleAccess: the server saves its own live values (the same ones)."""
        answer = self.mirror.settings_command("POST", "/_mock/settings/save")
        return ChangeResult(None, bool(answer.get("persisted")), answer.get("message"))
