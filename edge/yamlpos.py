"""YAML loading that keeps where every key and value came from, so errors can name FILE:LINE:COL."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from edge.errors import ConfigError, ConfigIssue

NodePath = tuple[object, ...]
"""Keys and list indices from the document root down to one node, e.g. ``("devices", 0, "url")``."""

MAP_TAG = "tag:yaml.org,2002:map"
SEQ_TAG = "tag:yaml.org,2002:seq"
MERGE_TAG = "tag:yaml.org,2002:merge"
TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"

# Aliases are expanded into copies; this bounds the work a crafted alias bomb can cause.
MAX_NODES = 100_000


@dataclass(frozen=True, slots=True)
class Position:
    """A 1-based line and column in the source text."""

    line: int
    column: int


@dataclass(slots=True)
class Located:
    """Where one value sits in the source, and where its key sits when it is a mapping value."""

    value: Position
    key: Position | None = None
    plain: str | None = None
    """The source text of an unquoted scalar, to explain how YAML typed it (``no`` became false)."""
    children: dict[object, Located] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Document:
    """Plain Python data (dicts, lists, scalars) and the source position of every node in it."""

    data: object
    root: Located
    issues: list[ConfigIssue]
    """Problems that did not stop loading (duplicate keys); the first occurrence of a key is kept."""

    def locate(self, path: NodePath) -> tuple[Located, bool]:
        """Return the deepest node along path and whether the whole path was found."""
        node = self.root
        for part in path:
            child = node.children.get(part)
            if child is None:
                return node, False
            node = child
        return node, True


def _position(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or exc.context or "invalid YAML"
    if "'\\t'" in problem:
        return "tab character: YAML accepts only spaces here; replace the tab with spaces"
    # PyYAML's wording for a key indented too far or not far enough names parser states, not the cause.
    hint = " (check the indentation)" if "<block end>" in problem else ""
    message = f"YAML syntax{hint}: {problem}"
    if exc.context and exc.problem:
        where = ""
        if exc.context_mark is not None and exc.context_mark != exc.problem_mark:
            where = f" at {exc.context_mark.line + 1}:{exc.context_mark.column + 1}"
        message += f" ({exc.context}{where})"
    return message


def _line_col(text: str, offset: int) -> Position:
    before = text[:offset]
    return Position(before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1)


def _reader_error(exc: yaml.reader.ReaderError, text: str, filename: str) -> ConfigError:
    at = _line_col(text, exc.position)
    message = f"character {chr(exc.character)!r} is not allowed in YAML text"
    return ConfigError([ConfigIssue(filename, at.line, at.column, message)])


def _describe_key(key: object) -> str:
    return f'"{key}"' if isinstance(key, str) else repr(key)


class _Walker:
    """Turns a composed node graph into plain data plus positions, reporting what plain YAML hides."""

    def __init__(self, loader: yaml.SafeLoader, filename: str) -> None:
        self.loader = loader
        self.filename = filename
        self.issues: list[ConfigIssue] = []
        self.count = 0
        self.active: set[int] = set()

    def issue(self, at: Position, message: str) -> None:
        self.issues.append(ConfigIssue(self.filename, at.line, at.column, message))

    def fatal(self, at: Position, message: str) -> ConfigError:
        return ConfigError([ConfigIssue(self.filename, at.line, at.column, message)])

    def walk(self, node: Node, key_at: Position | None) -> tuple[object, Located]:
        self.count += 1
        at = _position(node.start_mark)
        if self.count > MAX_NODES:
            # A whole-document problem: where the count ran over says nothing useful.
            message = f"document too large: more than {MAX_NODES} nodes once aliases are expanded"
            raise self.fatal(Position(1, 1), message)
        if id(node) in self.active:
            raise self.fatal(at, "an alias refers to a node that contains it (recursive structure)")
        if isinstance(node, MappingNode) and node.tag == MAP_TAG:
            self.active.add(id(node))
            try:
                return self.mapping(node, key_at)
            finally:
                self.active.discard(id(node))
        if isinstance(node, SequenceNode) and node.tag == SEQ_TAG:
            self.active.add(id(node))
            try:
                return self.sequence(node, key_at)
            finally:
                self.active.discard(id(node))
        return self.scalar(node, key_at)

    def scalar(self, node: Node, key_at: Position | None) -> tuple[object, Located]:
        """Construct a scalar or a specially tagged node (``!!set``...) with the safe constructor."""
        at = _position(node.start_mark)
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            # Tags that would build Python objects end here: the safe constructor knows none of them.
            raise self.fatal(at, f"YAML: {exc.problem}") from exc
        except ValueError:
            # 2019-02-30 looks like a timestamp to YAML but is no date: keep the text for the schema to judge.
            if not isinstance(node, ScalarNode) or node.tag != TIMESTAMP_TAG:
                raise
            # PyYAML leaves a failed node marked as under construction; an alias to it must not read as recursion.
            self.loader.recursive_objects.pop(node, None)
            value = node.value
        plain = node.value if isinstance(node, ScalarNode) and node.style is None else None
        return value, Located(at, key_at, plain)

    def sequence(self, node: SequenceNode, key_at: Position | None) -> tuple[object, Located]:
        items: list[object] = []
        here = Located(_position(node.start_mark), key_at)
        for index, item in enumerate(node.value):
            value, located = self.walk(item, None)
            items.append(value)
            here.children[index] = located
        return items, here

    def merge_sources(self, value: Node) -> list[MappingNode]:
        if isinstance(value, MappingNode) and value.tag == MAP_TAG:
            return [value]
        if isinstance(value, SequenceNode) and all(
            isinstance(item, MappingNode) and item.tag == MAP_TAG for item in value.value
        ):
            return list(value.value)
        raise self.fatal(_position(value.start_mark), "a merge key (<<) takes a mapping or a list of mappings")

    def mapping(self, node: MappingNode, key_at: Position | None) -> tuple[object, Located]:
        result: dict[object, object] = {}
        here = Located(_position(node.start_mark), key_at)
        merged: dict[object, tuple[object, Located]] = {}
        first_at: dict[object, Position] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                # Of several merged mappings the first wins, and the mapping's own keys beat them all.
                for source in reversed(self.merge_sources(value_node)):
                    data, located = self.walk(source, None)
                    for key, item in cast("dict[object, object]", data).items():
                        merged[key] = (item, located.children[key])
                continue
            key_pos = _position(key_node.start_mark)
            if not isinstance(key_node, ScalarNode):
                self.issue(key_pos, "a key must be a single value, not a mapping or a list")
                continue
            key, _ = self.scalar(key_node, None)
            if key in first_at:
                self.issue(key_pos, f"duplicate key {_describe_key(key)} (first at line {first_at[key].line})")
                continue
            first_at[key] = key_pos
            value, located = self.walk(value_node, key_pos)
            result[key] = value
            here.children[key] = located
        for key, (value, located) in merged.items():
            if key not in result:
                result[key] = value
                here.children[key] = located
        return result, here


def load_positioned(text: str, filename: str) -> Document | None:
    """Parse one YAML document with SafeLoader rules; None when it holds nothing; ConfigError on bad syntax."""
    try:
        # The reader checks every character up front, so even building the loader can fail.
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, filename) from exc
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            at = _position(mark) if mark is not None else Position(1, 1)
            raise ConfigError([ConfigIssue(filename, at.line, at.column, _syntax_message(exc))]) from exc
        except yaml.reader.ReaderError as exc:
            raise _reader_error(exc, text, filename) from exc
        if node is None:
            return None
        walker = _Walker(loader, filename)
        data, root = walker.walk(node, None)
        return Document(data, root, walker.issues)
    finally:
        loader.dispose()
