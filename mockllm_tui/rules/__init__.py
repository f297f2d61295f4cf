"""The rules: the responses.yml format, matching, hot reload and surgical write-back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TextIO

from mockllm_tui.default_replies import FixedReplies
from mockllm_tui.state import Store


def load_initial(store: Store, path: Path) -> None:
    """Load the responses file into the store at start-up (placeholder: a fixed reply)."""
    store.set_rules(FixedReplies())


async def watch_rules(store: Store, path: Path) -> None:
    """Reload the file when it changes (placeholder: waits forever)."""
    await asyncio.Event().wait()


def check_file(path: Path, out: TextIO) -> int:
    """Validate a responses file: 0 when valid, 1 otherwise (placeholder)."""
    out.write(f"{path}: ok\n")
    return 0
