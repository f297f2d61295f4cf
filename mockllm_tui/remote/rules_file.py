"""`w` in an attached panel: the server's rules file saved to a local path.

A new file gets the server's text as it is. An existing file is changed surgically into the
server's rules: only the entries of `rules:`, `responses:` and `settings:` that differ are
inserted, replaced or deleted, so its comments and layout stay. When the files also differ
elsewhere (`defaults:`, `models:`) the server's text is written whole.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import orjson

from mockllm_tui.rules.document import Document, Op, Section
from mockllm_tui.rules.fileio import atomic_write
from mockllm_tui.rules.model import Entry, RulesFileError, RulesModel


def _items(model: RulesModel, section: Section) -> list[tuple[str, Any]]:
    """A section's entries as (comparable key, the value an Op writes)."""
    if section == "settings":
        return [(orjson.dumps([k, v], default=str).decode(), (k, v)) for k, v in model.settings.items()]
    entries: tuple[Entry, ...] = model.rules if section == "rules" else model.responses
    out = []
    for e in entries:
        value: Any = e.spec.to_data() if section == "rules" else (e.key, e.spec.reply or "")
        out.append((orjson.dumps([e.key, e.spec.to_data()], default=str).decode(), value))
    return out


def surgical_update(local: Document, target: RulesModel) -> Document:
    """`local` changed entry by entry until its rules, responses and settings are `target`'s."""
    doc = local
    sections: tuple[Section, ...] = ("rules", "responses", "settings")
    for section in sections:
        have, want = _items(doc.model, section), _items(target, section)
        matcher = SequenceMatcher(a=[k for k, _ in have], b=[k for k, _ in want], autojunk=False)
        shift = 0
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            at = i1 + shift
            if tag == "replace" and i2 - i1 == j2 - j1:
                for k in range(j2 - j1):
                    doc = doc.apply(Op("replace", section, at + k, want[j1 + k][1]))
                continue
            for _ in range(i2 - i1):
                doc = doc.apply(Op("delete", section, at))
            for k in range(j2 - j1):
                doc = doc.apply(Op("insert", section, at + k, want[j1 + k][1]))
            shift += (j2 - j1) - (i2 - i1)
    return doc


def save_rules_text(path: Path, text: str) -> str:
    """Write the server's rules file text to `path` (surgically when it exists); says what it did."""
    path = Path(path)
    if not path.exists():
        atomic_write(path, text)
        return f"Saved the server's rules to {path} (new file)"
    target = Document(text).model
    try:
        local = Document(path.read_text(encoding="utf-8"))
        updated = surgical_update(local, target)
    except (RulesFileError, UnicodeDecodeError):
        atomic_write(path, text)
        return f"Saved the server's rules to {path} (the old file was not valid: replaced whole)"
    if (
        updated.model.entries != target.entries
        or updated.model.settings != target.settings
        or (updated.model.defaults != target.defaults or updated.model.models != target.models)
    ):
        atomic_write(path, text)
        return f"Saved the server's rules to {path} (replaced whole: its defaults or models differ)"
    if updated.text == local.text:
        return f"{path} already has the server's rules"
    atomic_write(path, updated.text)
    return f"Saved the server's rules into {path} (only the changed entries)"
