"""aimock (`@copilotkit/aimock`, Node), the fastest peer, as a side-by-side baseline.

Installed with npm into benchmarks/out/aimock on first use when Node is present; without Node (or
npm), the benchmark says so in one line and skips it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from benchmarks.common import HERE

PACKAGE = "@copilotkit/aimock"
HOME = HERE / "out" / "aimock"
CLI = HOME / "node_modules" / PACKAGE / "dist" / "cli.js"
#: The reply the chat.lua request gets from every server in the comparison.
REPLY = "Hello there, friend!"


def aimock_cmd(tmp: Path, *extra: str) -> tuple[list[str] | None, str]:
    """The command that serves the benchmark's chat request with aimock (plus `extra` options), or None
    and why not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, "aimock skipped: Node.js and npm are not installed."
    if not CLI.exists():
        HOME.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund", PACKAGE], cwd=HOME, capture_output=True, text=True
        )
        if done.returncode != 0 or not CLI.exists():
            return None, f"aimock skipped: `npm install {PACKAGE}` failed: {done.stderr.strip()[:200]}"
    fixtures = tmp / "aimock-fixtures.json"
    match = {"userMessage": "Say hello in five words."}
    fixtures.write_text(json.dumps({"fixtures": [{"match": match, "response": {"content": REPLY}}]}))
    version = json.loads((CLI.parent.parent / "package.json").read_text())["version"]
    return [node, str(CLI), "-p", "0", "-f", str(fixtures), *extra], f"aimock {version}"
