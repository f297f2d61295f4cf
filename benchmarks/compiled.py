"""mockllm-tui built with its optional mypyc step (the request path compiled), for the benchmark.

`pip wheel` with `HATCH_BUILD_HOOK_ENABLE_MYPYC=true` builds the wheel (a few minutes, once per
change of the sources); it is unpacked into benchmarks/out/compiled/<hash>/ and served from there,
beside the pure-Python install the other figures use. Without a C compiler, the benchmark says so
in one line and skips it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from benchmarks.common import HERE, ROOT

OUT = HERE / "out" / "compiled"


def source_hash() -> str:
    """A digest of the package's sources and build settings: a new one means a new build."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    for path in sorted((ROOT / "mockllm_tui").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def build(target: Path) -> str | None:
    """Build the compiled wheel and unpack it into `target`; None, or why it could not."""
    wheels, source = target.with_suffix(".wheels"), target.with_suffix(".src")
    shutil.rmtree(wheels, ignore_errors=True)
    shutil.rmtree(source, ignore_errors=True)
    # A copy of the sources: the mypyc hook compiles in place, and the checkout must stay pure Python.
    shutil.copytree(ROOT / "mockllm_tui", source / "mockllm_tui", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    print("building the mypyc-compiled wheel (a few minutes, once per source change)", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(source)],
        env={**os.environ, "HATCH_BUILD_HOOK_ENABLE_MYPYC": "true"}, capture_output=True, text=True,
        timeout=1800, check=False,
    )
    built = sorted(wheels.glob("mockllm_tui-*.whl"))
    if done.returncode != 0 or not built:
        output = done.stdout + done.stderr
        errors = [line.strip() for line in output.splitlines() if "error:" in line][:3]
        return "the mypyc build failed: " + (" | ".join(errors) or output.strip()[-300:])
    with zipfile.ZipFile(built[0]) as wheel:
        wheel.extractall(target)
    shutil.rmtree(wheels, ignore_errors=True)
    shutil.rmtree(source, ignore_errors=True)
    if not any(target.joinpath("mockllm_tui", "http").glob("protocol.*.so")):
        return "the mypyc build made no compiled modules"
    return None


def compiled_cmd(*args: str) -> tuple[list[str] | None, str]:
    """The command that runs the compiled build with `args`, or None and why not."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        return None, "compiled build skipped: no C compiler."
    target = OUT / source_hash()
    if not target.joinpath("mockllm_tui").exists():
        shutil.rmtree(OUT, ignore_errors=True)
        OUT.mkdir(parents=True)
        why = build(target)
        if why is not None:
            shutil.rmtree(target, ignore_errors=True)
            return None, f"compiled build skipped: {why}"
    boot = f"import sys; sys.path.insert(0, {str(target)!r}); from mockllm_tui.cli import main; sys.exit(main())"
    note = "compiled with mypyc (`HATCH_BUILD_HOOK_ENABLE_MYPYC=true pip install .`)"
    return [sys.executable, "-c", boot, *args], note
