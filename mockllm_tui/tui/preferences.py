"""The panel's remembered choices (the theme), in a small YAML file next to the keymap."""

from __future__ import annotations

from pathlib import Path

import yaml


def load_theme(path: Path) -> str | None:
    """The theme remembered in `path` (None when there is none).

    Raises ValueError with the file name when the file is not a `theme: name` mapping.
    """
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if data is None:
        return None
    theme = data.get("theme") if isinstance(data, dict) else None
    if not isinstance(theme, str):
        raise ValueError(f"{path}: expected `theme: <name>`")
    return theme


def save_theme(path: Path, theme: str) -> None:
    """Remember `theme` in `path` (the folder is made when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"theme": theme}), encoding="utf-8")
