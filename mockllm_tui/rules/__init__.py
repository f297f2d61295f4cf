"""The rules: the responses.yml format, matching, hot reload and surgical write-back.

- model.py: the file model (rules, matchers, replies, defaults, the source file)
- validate.py, yamlnodes.py, lint.py: validation with file and line, YAML node helpers, warnings
- matcher.py: RuleSet, the store's reply source (first match wins)
- identity.py: what a rule is called everywhere (its name, or `#N`) and default names for new rules
- document.py: surgical text edits of the file
- fileio.py: load, watch, reload, atomic write, --check
- commands.py: what the panel and the admin API call (list/add/update/delete/move/try, settings)
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from mockllm_tui.core.store import Store
from mockllm_tui.rules import fileio


def load_initial(store: Store, path: Path) -> None:
    """Load the responses file into the store at start-up (a broken file is reported, not fatal)."""
    fileio.load_initial(store, Path(path))


async def watch_rules(store: Store, path: Path) -> None:
    """Reload the file whenever it changes, until cancelled."""
    await fileio.watch_rules(store, Path(path))


def check_file(path: Path, out: TextIO) -> int:
    """Validate a responses file, print problems with their lines: 0 when valid, 1 otherwise."""
    return fileio.check_file(Path(path), out)
