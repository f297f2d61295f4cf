"""Helpers over ruamel.yaml's round-trip nodes: the line of a key, plain values, and what is not
plain data (a tagged value such as `!!python/object` is refused, never built)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from ruamel.yaml.scalarbool import ScalarBoolean

from mockllm_tui.rules.model import RuleError

LineOf = Callable[[str | int | None], int | None]


def type_name(value: Any) -> str:
    """A value's kind as a message names it ("a string", "a mapping", ...)."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def unknown_key(key: Any, known: tuple[str, ...], what: str) -> str:
    """The message for an unknown key, with the closest known one as a hint."""
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (expected {', '.join(known)})"
    return f"unknown {what} {str(key)!r}{hint}"


def no_line(_: str | int | None) -> int | None:
    """A line finder for values that have no lines (plain data)."""
    return None


def line_finder(node: Any, fallback: int | None) -> LineOf:
    """A function giving the 1-based line of a key (or list index) of a ruamel node, else `fallback`."""
    lc = getattr(node, "lc", None)

    def line_of(key: str | int | None) -> int | None:
        if lc is None or key is None:
            return fallback
        try:
            found = lc.item(key) if isinstance(key, int) else lc.key(key)
            return int(found[0]) + 1
        except (KeyError, IndexError, TypeError, AttributeError):
            return fallback

    return line_of


def plain(value: Any) -> Any:
    """ruamel's round-trip values as plain Python values (str, int, float, bool, None, dict, list)."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None:
        return None
    if isinstance(value, bool | ScalarBoolean):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise RuleError(f"unsupported value {value!r} (only strings, numbers, booleans, lists and mappings)")


def find_unsupported(value: Any, line: int | None) -> RuleError | None:
    """The first value that is not plain data (a tagged value such as `!!python/object`), if any."""
    if isinstance(value, dict | list):
        line_of = line_finder(value, line)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            found = find_unsupported(item, line_of(key))
            if found is not None:
                return found
        return None
    if value is None or isinstance(value, str | int | float | bool | ScalarBoolean):
        return None
    tag = getattr(value, "tag", None)
    return RuleError(
        f"unsupported value {str(getattr(tag, 'value', tag) or type(value).__name__)!r}: "
        "only strings, numbers, booleans, lists and mappings are allowed",
        line=line,
    )
