"""What a rule is called, everywhere (the rules table, the log, the editor, the journal, the admin
API, the pytest report and the `rule` metric label): its `name` when it has one, else `#N`, its
1-based position in listing order. Also the readable default names the panel gives new rules.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

#: What answers when no rule does (the journal's `rule` for those requests). A default name never
#: takes one of them, so a rule is never mistaken for a fallback.
FALLBACK_LABELS: tuple[str, ...] = ("trigger: call tool", "trigger: raise error", "mirror", "unknown_response")
#: What the rule column says for a request passed through to an upstream.
UPSTREAM_LABEL = "upstream"
DEFAULT_NAME_CHARS = 40


def rule_identity(position: int, name: str | None) -> str:
    """A rule's identity: its name, or `#N` for the rule at 1-based listing `position`."""
    return name if name else f"#{position}"


def position_of(ident: str) -> int | None:
    """The 1-based position an identity names (`#3` or `3`), or None when it is not a number."""
    digits = ident[1:] if ident.startswith("#") else ident
    return int(digits) if digits.isascii() and digits.isdigit() else None


def find_identity(ident: str, names: Sequence[str | None]) -> list[int]:
    """The 0-based listing indexes of the rules `ident` names, given every rule's name in listing
    order: the rules with that name, else the rule at that position (`#N` or `N`)."""
    named = [i for i, name in enumerate(names) if name and name == ident]
    if named:
        return named
    position = position_of(ident.strip())
    if position is not None and 1 <= position <= len(names):
        return [position - 1]
    return []


def slug(text: str, size: int = DEFAULT_NAME_CHARS) -> str:
    """`text` as a name: lower case, words joined by `-`, everything but letters and digits dropped,
    cut at a word boundary to at most `size` characters."""
    words = ["".join(c for c in word if c.isalnum()) for word in text.lower().split()]
    out = ""
    for word in filter(None, words):
        joined = f"{out}-{word}" if out else word
        if len(joined) > size:
            return out or word[:size]
        out = joined
    return out


def default_name(prompt: str, taken: Collection[str | None]) -> str | None:
    """A readable name for a new rule answering `prompt` (`capital-of-france`), made unique among
    `taken` and the fallback labels with `-2`, `-3`; None when the prompt has no letters or digits."""
    base = slug(prompt)
    if not base:
        return None
    if base.isdigit():
        base = f"rule-{base}"  # a bare number would read as a position
    used = {*filter(None, taken), *FALLBACK_LABELS, UPSTREAM_LABEL}
    name, n = base, 1
    while name in used:
        n += 1
        name = f"{base}-{n}"
    return name
