"""Request-body parsing helpers shared by every wire format: typed field access with errors
that name the field (`messages: field required`)."""

from __future__ import annotations

from typing import Any

from mockllm_tui.core.conversation import Message, RequestError, ToolCall


def require(body: dict[str, Any], key: str, kind: type | tuple[type, ...], prefix: str = "") -> Any:
    """A required field of the right JSON type, or RequestError("key: field required")."""
    name = prefix + key
    if key not in body or body[key] is None:
        raise RequestError(f"{name}: field required", param=name)
    return check_type(body[key], kind, name)


def optional(
    body: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None, prefix: str = ""
) -> Any:
    """An optional field of the right JSON type (None means absent)."""
    value = body.get(key)
    if value is None:
        return default
    return check_type(value, kind, prefix + key)


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
}


def check_type(value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    """Value if it has the JSON type, else RequestError naming the field."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        wanted = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise RequestError(f"{name}: expected {wanted}, got {type_name(value)}", param=name)
    return value


def type_name(value: Any) -> str:
    """A JSON type name for a Python value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def append_turn(
    messages: list[Message], role: str, texts: list[str], calls: list[ToolCall], results: list[Message]
) -> None:
    """Add one parsed turn: an assistant's text and tool calls as one message; a user's tool results
    (role "tool" messages) before its text, which is left out when only results came."""
    if role == "assistant":
        messages.append(Message(role="assistant", content="\n".join(texts), tool_calls=calls))
        return
    messages.extend(results)
    if texts or not results:
        messages.append(Message(role="user", content="\n".join(texts)))
