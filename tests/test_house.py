"""The shape of the package: no import cycle, no wire format outside providers/, a pacer that
re-anchors once, and a failed splice that writes nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import grimp
import pytest

from mockllm_tui.core.store import Store
from mockllm_tui.engine.pacing import Pacer
from mockllm_tui.http.app import create_app
from mockllm_tui.http.ratelimit import UNLIMITED
from mockllm_tui.rules import commands, document, load_initial

PACKAGE = Path(__file__).resolve().parent.parent / "mockllm_tui"


def test_no_import_cycle_counting_function_and_type_checking_imports() -> None:
    graph = grimp.build_graph("mockllm_tui", exclude_type_checking_imports=False)
    cycles = [
        (module, imported)
        for module in sorted(graph.modules)
        for imported in graph.find_modules_directly_imported_by(module)
        if imported != module and graph.chain_exists(imported, module)
    ]
    assert cycles == []


def wire_words() -> tuple[set[str], set[str], set[str]]:
    """Every provider's name, its paths and the header names it reads or writes."""
    providers = create_app(Store()).providers
    names = {p.name for p in providers}
    paths = {path.removesuffix("{id}") for p in providers for e in p.endpoints for path in e.paths}
    headers: set[str] = set()
    for p in providers:
        headers |= set(p.credential_headers) - {"authorization"}
        headers |= {k.decode() for k, _ in [*p.rate_limit_headers(UNLIMITED), *p.response_headers("id")]}
        headers |= {p.timing_header.decode()} if p.timing_header else set()
    return names, paths, headers


def string_constants(tree: ast.AST) -> list[ast.Constant]:
    """String constants that are not docstrings, option flags or model data (the `_m(...)` rows of the
    model registry, whose ids may carry a vendor's name, and `owned_by`)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_m":
            skip.update(id(sub) for sub in ast.walk(node))
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skip.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg == "owned_by":
            skip.add(id(node.value))
        target = getattr(node, "target", None)
        if isinstance(node, ast.AnnAssign) and isinstance(target, ast.Name) and target.id == "PUBLISHED_LIMITS":
            skip.update(id(sub) for sub in ast.walk(node))  # the registry's figures, by model id
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str | bytes)
        and id(n) not in skip
        and not str(n.value).startswith("--")
    ]


def test_no_module_outside_providers_names_a_provider_its_paths_or_headers() -> None:
    names, paths, headers = wire_words()
    found = []
    for file in sorted(PACKAGE.rglob("*.py")):
        # The pytest fixture's ready-made SDK clients (`mockllm.openai_client()`) name SDK packages.
        if {"providers", "testing"} & set(file.relative_to(PACKAGE).parts):
            continue
        for node in string_constants(ast.parse(file.read_text())):
            text = node.value.decode() if isinstance(node.value, bytes) else str(node.value)
            hits = [n for n in names if n in text]
            hits += [h for h in headers if re.search(rf"(?<![\w-]){re.escape(h)}(?![\w-])", text.lower())]
            hits += [p for p in paths if text == p or (len(p) > 4 and text.startswith(p))]
            if hits:
                found.append(f"{file.relative_to(PACKAGE)}:{node.lineno}: {text[:60]!r} names {hits}")
    assert found == []


def test_the_pacer_is_deadline_based_and_re_anchors_at_the_last_send() -> None:
    pacer = Pacer(anchor_time=10.0, speed=10.0, last_sent=10.0)
    assert pacer.due(5) == pytest.approx(10.5)
    assert pacer.batch_end([5, 5, 0, 5], 0, 4, now=11.0) == (3, 10)  # 10 tokens due by 11.0, the 0-token frame rides
    pacer.sent(10, now=11.2)
    assert pacer.due(5) == pytest.approx(11.5)  # late sends do not push later deadlines back
    assert pacer.follow(20.0) and pacer.due(5) == pytest.approx(11.2 + 0.25)
    assert not pacer.follow(20.0)
    fixed = Pacer(anchor_time=0.0, speed=5.0, fixed=True)
    assert not fixed.follow(50.0) and fixed.speed == 5.0
    unlimited = Pacer(anchor_time=3.0, speed=0.0)
    assert unlimited.unlimited and unlimited.batch_end([4, 4, 4], 0, 3, now=0.0) == (3, 12)


def test_a_splice_bug_writes_nothing_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "responses.yml"
    text = '# mine\nresponses:\n  "hello": "hi"   # keep\n  "default": "fallback"\n'
    path.write_text(text)
    store = Store()
    load_initial(store, path)

    def broken_splice(*args: object) -> str:
        raise IndexError("list index out of range")

    monkeypatch.setattr(document.Document, "_splice", broken_splice)
    with pytest.raises(document.SpliceError, match="nothing was written"):
        commands.add_rule(store, {"match": {"exact": "new"}, "reply": "new reply"})
    assert path.read_text() == text


def test_no_dataclass_writes_its_own_init() -> None:
    """Value types are plain dataclasses: none turns off the generated `__init__` to repeat its
    fields by hand, and none defines an `__init__` of its own."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            decorators = [d for d in node.decorator_list if "dataclass" in ast.unparse(d)]
            if not decorators:
                continue
            if any("init=False" in ast.unparse(d) for d in decorators):
                problems.append(f"{path.name}:{node.name} turns off the generated __init__")
            if any(isinstance(item, ast.FunctionDef) and item.name == "__init__" for item in node.body):
                problems.append(f"{path.name}:{node.name} writes its own __init__")
    assert problems == []
