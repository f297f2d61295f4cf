"""Key remapping from a small YAML file: `binding id: keys` (as posting does)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

KEYMAP_ENV = "MOCKLLM_KEYMAP"


def keymap_path() -> Path:
    """$MOCKLLM_KEYMAP, or ~/.config/mockllm-tui/keymap.yml (honouring $XDG_CONFIG_HOME)."""
    given = os.environ.get(KEYMAP_ENV)
    if given:
        return Path(given).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "mockllm-tui" / "keymap.yml"


def load_keymap(path: Path) -> dict[str, str]:
    """The binding id -> keys mapping in `path` ({} when the file does not exist).

    Raises ValueError with the file name when the file is not such a mapping.
    """
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{path}: expected lines of `binding.id: keys`, e.g. `knobs.faster: right_square_bracket`")
    return {str(k): str(v) for k, v in data.items()}
