"""Surgical edits of the responses file's text.

A Document is the file's text with its ruamel round-trip data and node positions. An edit (insert,
replace, delete or move of one entry of `rules:`, `responses:` or `settings:`) changes the
round-trip data, renders just that entry with ruamel in the file's own indentation, and splices it
into the original text: every other line stays byte for byte. The result is verified by parsing it
again, and a splice that fails that check is refused (SpliceError), never written. When the text
cannot be spliced by design (a flow-style section, say) the whole round-trip data is dumped
instead, which still keeps comments, key order and quoting.
"""

from __future__ import annotations

import contextlib
import io
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    ScalarString,
    SingleQuotedScalarString,
)

from mockllm_tui.rules.model import MATCH_KEYS, RULE_KEYS, RuleError, RulesFileError, RulesModel
from mockllm_tui.rules.validate import parse_document
from mockllm_tui.rules.yamlnodes import plain

Section = Literal["rules", "responses", "settings"]
OpKind = Literal["insert", "replace", "delete", "move"]
WIDTH = 1 << 16


@dataclass(frozen=True, slots=True)
class Op:
    """One edit of one entry. `value` is rule data (rules) or a (key, value) pair (responses, settings);
    for "move", `index` is the entry and `to` its new index within the section."""

    kind: OpKind
    section: Section
    index: int
    value: Any = None
    to: int = 0
    #: A comment line written above an inserted rule (one line, without the `#`).
    comment: str = ""


class _NoSplice(Exception):
    """The text cannot be edited line-wise; dump the whole data instead."""


class SpliceError(RuleError):
    """A splice went wrong (a bug, not the user's input): nothing is written."""


def make_yaml(mapping: int = 2, sequence: int = 4, offset: int = 2) -> YAML:
    """A round-trip YAML that keeps quotes and never wraps lines."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = WIDTH
    yaml.allow_unicode = True
    yaml.indent(mapping=mapping, sequence=max(sequence, offset + 2), offset=offset)
    return yaml


def yaml_error(exc: YAMLError) -> RulesFileError:
    """A YAML syntax error as a located RuleError."""
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        line = mark.line + 1 if mark is not None else None
        return RulesFileError([RuleError(f"invalid YAML: {problem}", line=line)])
    return RulesFileError([RuleError(f"invalid YAML: {exc}")])


def dump(data: Any, yaml: YAML | None = None) -> str:
    """Round-trip data as text."""
    out = io.StringIO()
    (yaml or make_yaml()).dump(data, out)
    return out.getvalue()


def content_end(node: Node) -> int:
    """The line index after the node's last character of content (comments after it excluded)."""
    if isinstance(node, ScalarNode) or getattr(node, "flow_style", False):
        mark = node.end_mark
        return int(mark.line) + (1 if mark.column > 0 else 0)
    children: list[Node] = []
    if isinstance(node, MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, SequenceNode):
        children = list(node.value)
    if not children:
        return int(node.start_mark.line) + 1
    return max(content_end(child) for child in children)


@dataclass(slots=True)
class Layout:
    """Where a section's entries are in the text, and how it is indented."""

    key_line: int | None = None
    items: list[tuple[int, int]] = field(default_factory=list)
    dash_col: int = 2
    content_col: int = 4
    mapping_indent: int = 2
    #: For an empty flow-style section on its key's line (`rules: []`): the text after the `[]`
    #: (an end-of-line comment, say); None otherwise.
    empty_tail: str | None = None


class Document:
    """A responses file: its text, round-trip data, composed nodes and validated model."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True)
        yaml = make_yaml()
        try:
            self.root: Node | None = yaml.compose(text)
            self.data: Any = None if self.root is None else yaml.constructor.construct_document(self.root)
        except YAMLError as exc:
            raise yaml_error(exc) from None
        self.model: RulesModel = parse_document(self.data)

    # -- layout --------------------------------------------------------------------------------

    def _section_node(self, name: str) -> tuple[Node, Node] | None:
        if not isinstance(self.root, MappingNode):
            return None
        for key, value in self.root.value:
            if isinstance(key, ScalarNode) and key.value == name:
                return key, value
        return None

    def layout(self, name: str) -> Layout:
        """The section's entry positions (line ranges) and indentation; raises _NoSplice when the
        entries do not each own whole lines."""
        found = self._section_node(name)
        if found is None:
            return Layout()
        key, value = found
        out = Layout(key_line=int(key.start_mark.line))
        if isinstance(value, ScalarNode) and str(value.tag).endswith(":null"):
            return out
        if (
            isinstance(value, MappingNode | SequenceNode)
            and not value.value
            and key.start_mark.line == value.end_mark.line
        ):
            out.empty_tail = self.lines[int(key.start_mark.line)][int(value.end_mark.column) :]
            return out
        if getattr(value, "flow_style", False) or not isinstance(value, MappingNode | SequenceNode):
            raise _NoSplice
        if isinstance(value, SequenceNode):
            for item in value.value:
                start = int(item.start_mark.line)
                line = self.lines[start] if start < len(self.lines) else ""
                if not line.lstrip().startswith("-"):
                    raise _NoSplice
                out.items.append((start, content_end(item)))
            if value.value:
                first = value.value[0]
                out.dash_col = self.lines[int(first.start_mark.line)].index("-")
                out.content_col = int(first.start_mark.column)
                out.mapping_indent = _mapping_indent(first)
        else:
            for k, v in value.value:
                start = int(k.start_mark.line)
                out.items.append((start, max(content_end(v), start + 1)))
            if value.value:
                out.content_col = int(value.value[0][0].start_mark.column)
        if out.items and out.items[0][0] <= int(key.start_mark.line):
            raise _NoSplice
        trimmed = []
        for start, end in out.items:
            while end > start + 1 and not self.lines[end - 1].strip():
                end -= 1
            trimmed.append((start, end))
        for (_, end), (start, _) in itertools.pairwise(trimmed):
            if start < end:
                raise _NoSplice
        out.items = trimmed
        return out

    # -- edits ---------------------------------------------------------------------------------

    def apply(self, op: Op) -> Document:
        """The document after one edit (verified). Raises RulesFileError when the result is invalid."""
        try:
            layout = self.layout(op.section)
        except _NoSplice:
            layout = None
        data = self.data if isinstance(self.data, CommentedMap) else CommentedMap()
        mutate(data, op, quote_like=_quote_style(data.get(op.section)))
        if layout is not None:
            with contextlib.suppress(_NoSplice):
                return self._spliced(op, data, layout)
        return Document(dump(data, self._yaml_for(layout)))

    def _spliced(self, op: Op, data: CommentedMap, layout: Layout) -> Document:
        """The text with the edit spliced in, if it says exactly what the edited data says; else
        SpliceError (a bug of ours: the file stays as it was rather than be rewritten whole)."""
        try:
            spliced = Document(self._splice(op, data, layout))
            if spliced.model == parse_document(data):
                return spliced
            problem = "the result reads differently from the edit"
        except (RulesFileError, IndexError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        raise SpliceError(
            f"internal error: the edit could not be spliced into the file's text ({problem}); "
            "nothing was written, please report this"
        )

    def _yaml_for(self, layout: Layout | None) -> YAML:
        rules = layout if layout is not None else Layout()
        with contextlib.suppress(_NoSplice):
            rules = self.layout("rules")
        return make_yaml(rules.mapping_indent, rules.content_col, rules.dash_col)

    def _render(self, section: str, payload: Any, layout: Layout, *, with_key: bool) -> list[str]:
        """Lines of `section:` holding only `payload`, in the section's indentation (key line kept or not)."""
        if section == "rules":
            yaml = make_yaml(layout.mapping_indent, layout.content_col, layout.dash_col)
        else:
            yaml = make_yaml(layout.content_col if layout.items else 2, 4, 2)
        text = dump(CommentedMap([(section, payload)]), yaml)
        node = make_yaml().compose(text)
        if not isinstance(node, MappingNode):
            raise _NoSplice
        value = node.value[0][1]
        if getattr(value, "flow_style", False):
            raise _NoSplice
        lines = text.splitlines(keepends=True)
        end = content_end(value)
        while end > 1 and not lines[end - 1].strip():
            end -= 1
        return lines[0 if with_key else 1 : end]

    def _splice(self, op: Op, data: CommentedMap, layout: Layout) -> str:
        lines = list(self.lines)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        section = op.section
        items = layout.items
        if op.kind == "move":
            start, end = items[op.index]
            block = lines[start:end]
            del lines[start:end]
            shift = end - start
            rest = [
                (s - shift, e - shift) if s >= end else (s, e) for s, e in items[: op.index] + items[op.index + 1 :]
            ]
            at = rest[op.to][0] if op.to < len(rest) else rest[-1][1] if rest else start
            lines[at:at] = block
            return "".join(lines)
        if op.kind == "delete":
            start, end = items[op.index]
            del lines[start:end]
            return "".join(lines)
        payload = _single(data[section], op.index, section)
        if layout.empty_tail is not None and layout.key_line is not None:
            # `rules: []` becomes `rules:` with the entry below it (an end-of-line comment stays)
            block = _with_comment(self._render(section, payload, layout, with_key=True), op, 1)
            tail = layout.empty_tail
            if tail.strip():
                block[0] = block[0].rstrip("\n") + tail.rstrip("\n") + "\n"
            lines[layout.key_line : layout.key_line + 1] = block
            return "".join(lines)
        if layout.key_line is None:
            block = _with_comment(self._render(section, payload, layout, with_key=True), op, 1)
            at = self._new_section_at(section)
            if at == len(lines) and lines and lines[-1].strip():
                block = ["\n", *block]
            lines[at:at] = block
            return "".join(lines)
        block = self._render(section, payload, layout, with_key=False)
        if op.kind == "replace":
            start, end = items[op.index]
            inline = self._inline_value(section, op.index, block) if section != "rules" else None
            if inline is not None:
                lines[start] = inline
            else:
                lines[start:end] = block
        else:
            block = _with_comment(block, op, 0)
            if op.index < len(items):
                at = items[op.index][0]
                # a comment right above an entry is that entry's: a commented rule goes above both
                while op.comment and at - 1 > layout.key_line and _is_comment(lines[at - 1]):
                    at -= 1
            else:
                at = items[-1][1] if items else layout.key_line + 1
            lines[at:at] = block
        return "".join(lines)

    def _inline_value(self, section: str, index: int, block: list[str]) -> str | None:
        """For `key: value` on one line whose key stays: the line with only the value's characters
        replaced (spacing and end-of-line comment kept), or None when that does not apply."""
        found = self._section_node(section)
        rendered = make_yaml().compose("".join(block).lstrip())
        if found is None or not isinstance(found[1], MappingNode) or not isinstance(rendered, MappingNode):
            return None
        old_key, old_value = found[1].value[index]
        new_key, new_value = rendered.value[0]
        single = all(
            isinstance(n, ScalarNode) and n.start_mark.line == n.end_mark.line and n.style not in ("|", ">")
            for n in (old_value, new_value)
        )
        if not single or old_key.value != new_key.value or old_key.start_mark.line != old_value.start_mark.line:
            return None
        line = self.lines[int(old_value.start_mark.line)]
        text = "".join(block).lstrip()
        first = text.splitlines()[0]
        value_text = first[int(new_value.start_mark.column) : int(new_value.end_mark.column)]
        return line[: int(old_value.start_mark.column)] + value_text + line[int(old_value.end_mark.column) :]

    def _new_section_at(self, section: str) -> int:
        """Where a new section goes: `rules:` above the first section (and the comments just above it);
        the others at the end."""
        if section != "rules" or not isinstance(self.root, MappingNode) or not self.root.value:
            return len(self.lines)
        found = self._section_node("responses")
        first = found[0] if found is not None else self.root.value[0][0]
        key_line = at = int(first.start_mark.line)
        while at > 0 and self.lines[at - 1].lstrip().startswith("#"):
            at -= 1
        return key_line if at == 0 else at  # a comment block opening the file is its header: stay below


def _with_comment(block: list[str], op: Op, at: int) -> list[str]:
    """The rendered lines with the op's comment line inserted at `at`, indented like the line it precedes."""
    if not op.comment or op.section != "rules" or at >= len(block):
        return block
    line = block[at]
    indent = line[: len(line) - len(line.lstrip())]
    return [*block[:at], f"{indent}# {comment_text(op.comment)}\n", *block[at:]]


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def comment_text(text: str) -> str:
    """A comment's text as one line."""
    return " ".join(text.split())


def _mapping_indent(item: Node) -> int:
    if isinstance(item, MappingNode):
        for key, value in item.value:
            if isinstance(value, MappingNode) and not value.flow_style and value.value:
                return max(1, int(value.value[0][0].start_mark.column) - int(key.start_mark.column))
    return 2


def _single(container: Any, index: int, section: str) -> Any:
    if section == "rules":
        return CommentedSeq([container[index]])
    key = list(container)[index]
    out = CommentedMap([(key, container[key])])
    comment = container.ca.items.get(key)
    if comment is not None:
        out.ca.items[key] = comment
    return out


# -- round-trip data changes ---------------------------------------------------------------------


def _quote_style(section: Any) -> type[str] | None:
    """The quoting the section's first key uses, for new keys and values (mockllm files quote)."""
    if isinstance(section, dict) and section:
        first = next(iter(section))
        if isinstance(first, DoubleQuotedScalarString | SingleQuotedScalarString):
            return type(first)
    return None


def mutate(data: CommentedMap, op: Op, *, quote_like: type[str] | None = None) -> None:
    """Apply an edit to the round-trip data in place."""
    section = op.section
    if data.get(section) is None:
        container: Any = CommentedSeq() if section == "rules" else CommentedMap()
        if section in data:
            data[section] = container
        else:
            at = list(data).index("responses") if section == "rules" and "responses" in data else len(data)
            if section == "rules" and "responses" not in data:
                at = 0
            data.insert(at, section, container)
    container = data[section]
    if op.kind == "move":
        if section == "rules":
            container.insert(op.to, container.pop(op.index))
        else:
            key = list(container)[op.index]
            comment = container.ca.items.pop(key, None)
            value = container.pop(key)
            container.insert(op.to, key, value)
            if comment is not None:
                container.ca.items[key] = comment
        return
    if op.kind == "delete":
        if section == "rules":
            del container[op.index]
        else:
            del container[list(container)[op.index]]
        return
    if section == "rules":
        if op.kind == "insert":
            container.insert(op.index, rule_node(op.value))
        else:
            shared = frozenset(shared_nodes(data))
            if id(container[op.index]) in shared:
                container[op.index] = rule_node(op.value)
            else:
                merge_into(container[op.index], op.value, RULE_KEYS, shared)
        return
    key, value = op.value
    if op.kind == "insert":
        container.insert(op.index, _styled(key, None, quote_like), _styled(value, None, quote_like))
        return
    old_key = list(container)[op.index]
    old_value = container[old_key]
    new_value = old_value if plain(old_value) == value else _styled(value, old_value, quote_like)
    if old_key == key:
        container[old_key] = new_value
        return
    comment = container.ca.items.pop(old_key, None)
    del container[old_key]
    new_key = _styled(key, old_key, quote_like)
    container.insert(op.index, new_key, new_value)
    if comment is not None:
        container.ca.items[new_key] = comment


def _styled(value: Any, like: Any, quote_like: type[str] | None = None) -> Any:
    """A new value written in the style of the one it replaces (or of the section)."""
    if isinstance(value, str):
        if "\n" in value:
            if isinstance(like, LiteralScalarString) and not value.endswith((" ", "\t")):
                return LiteralScalarString(value)
            return DoubleQuotedScalarString(value)
        if isinstance(like, DoubleQuotedScalarString | SingleQuotedScalarString):
            return type(like)(value)
        if isinstance(like, ScalarString) and not isinstance(like, FoldedScalarString | LiteralScalarString):
            return DoubleQuotedScalarString(value)
        if like is None and quote_like is not None:
            return quote_like(value)
        return value
    if isinstance(value, dict):
        out = CommentedMap((k, _styled(v, None, DoubleQuotedScalarString)) for k, v in value.items())
        out.fa.set_flow_style()
        return out
    if isinstance(value, list):
        seq = CommentedSeq(_styled(v, None, DoubleQuotedScalarString) for v in value)
        seq.fa.set_flow_style()
        return seq
    return value


def shared_nodes(data: Any) -> set[int]:
    """The ids of collections reached by more than one path (YAML anchors and aliases)."""
    seen: set[int] = set()
    shared: set[int] = set()

    def walk(node: Any) -> None:
        if not isinstance(node, dict | list):
            return
        if id(node) in seen:
            shared.add(id(node))
            return
        seen.add(id(node))
        for child in node.values() if isinstance(node, dict) else node:
            walk(child)

    walk(data)
    return shared


def rule_node(data: dict[str, Any]) -> CommentedMap:
    """A new rule as round-trip data: scalars in block style, match/replies/tool calls/error in flow style."""
    node = CommentedMap()
    for key, value in data.items():
        node[key] = _styled(value, None, DoubleQuotedScalarString if key != "name" else None)
    return node


def merge_into(
    node: CommentedMap, data: dict[str, Any], order: tuple[str, ...], shared: frozenset[int] = frozenset()
) -> None:
    """Change a round-trip mapping to hold `data`, keeping unchanged values (and their comments and
    style) as they are, and putting new keys in the canonical order."""
    for key in [k for k in node if k not in data]:
        del node[key]
    for key, value in data.items():
        if key in node:
            node[key] = _merged(node[key], value, MATCH_KEYS if key == "match" else (), shared)
            continue
        new = _styled(value, None, DoubleQuotedScalarString if key != "name" else None)
        rank = order.index(key) if key in order else len(order)
        at = next((i for i, k in enumerate(node) if k in order and order.index(k) > rank), len(node))
        node.insert(at, key, new)


def _merged(old: Any, value: Any, order: tuple[str, ...] = (), shared: frozenset[int] = frozenset()) -> Any:
    """`value` as round-trip data, reusing `old` (its style and comments) wherever it is unchanged."""
    if plain(old) == value:
        return old
    if id(old) in shared:  # aliased elsewhere (an anchor): change a copy, never the shared one
        return _styled(value, None, DoubleQuotedScalarString)
    if isinstance(old, CommentedMap) and isinstance(value, dict):
        merge_into(old, value, order or tuple(value), shared)
        return old
    if isinstance(old, CommentedSeq) and isinstance(value, list) and len(old) == len(value):
        for i, item in enumerate(value):
            old[i] = _merged(old[i], item, (), shared)
        return old
    return _styled(value, old, DoubleQuotedScalarString if isinstance(old, dict | list) else None)
