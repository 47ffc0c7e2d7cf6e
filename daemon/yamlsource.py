"""YAML loading that remembers where every key came from, so errors name file:line:field.

Files are read defensively: they must be UTF-8 (a UTF-8 byte-order mark is fine), at most
`MAX_FILE_BYTES` long, with at most `MAX_NODES` values nested at most `MAX_DEPTH` deep, and
their aliases may add at most `MAX_ALIAS_NODES` values when expanded. These are counted while
the document is composed, before anything is built, so a "billion laughs" document or a
thousand nested brackets is refused in milliseconds. Every refusal is one
`file:line: field: message`, never a traceback.
"""

from __future__ import annotations

import codecs
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import (
    AliasEvent,
    Event,
    MappingEndEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from daemon.errors import ConfigError
from daemon.registry import did_you_mean

Loc = tuple[str | int, ...]

MAX_FILE_BYTES = 2 * 1024 * 1024
"""Larger files are refused unread."""
MAX_DEPTH = 100
"""How deeply collections may nest, aliases expanded."""
MAX_NODES = 50_000
"""Values (scalars and collections) written in one file."""
MAX_ALIAS_NODES = 100_000
"""Values that expanding every alias would add to the document."""


@dataclass(frozen=True)
class Source:
    """A parsed YAML document with the line of every key and list item."""

    path: Path
    data: Any
    lines: dict[Loc, int]

    def line_of(self, loc: Sequence[str | int]) -> int:
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return 1

    def problem(self, loc: Sequence[str | int], message: str) -> str:
        return f"{self.path}:{self.line_of(loc)}: {format_loc(loc) or '(top level)'}: {message}"

    def part(self, key: str) -> Source:
        """The document under one top-level key, keeping its lines (fields lose the prefix)."""
        data = self.data.get(key) if isinstance(self.data, dict) else None
        lines = {loc[1:]: n for loc, n in self.lines.items() if loc[:1] == (key,) and loc[1:]}
        return Source(path=self.path, data=data, lines=lines or {(): self.line_of((key,))})


def format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = str(part)
        if not text or not text.isprintable() or text != text.strip():
            text = repr(text)  # a key with a line break, or only spaces, still fits one line
        out += f".{text}" if out else text
    return out


def read_yaml(path: Path, *, pure: bool = False) -> Source:
    """Read one YAML document; raise ConfigError (file:line: field: message) for anything
    that is not a sane, single, UTF-8 YAML document within the limits above. It is parsed
    with libyaml when PyYAML has it, else (or with `pure`) with PyYAML's Python parser."""
    text = _read_text(path)
    loader: Any = (_PyLoader if pure else _Loader)(text)
    try:
        node = loader.single_node()
        lines: dict[Loc, int] = {}
        problems: list[str] = []
        if node is not None:
            _walk(node, lines, problems, path)  # before constructing: merge keys rewrite nodes
        data = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        field = format_loc(exc.loc[:12]) + ("…" if len(exc.loc) > 12 else "")
        raise ConfigError(
            [f"{path}:{exc.mark.line + 1}: {field or '(top level)'}: {exc.message}"]
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
        what = ": ".join(str(p) for p in parts if p) or str(exc).splitlines()[0]
        raise ConfigError([f"{path}:{line}: (syntax): invalid YAML: {what}"]) from None
    finally:
        loader.dispose()
    if problems:
        raise ConfigError(problems)
    return Source(path=path, data=data, lines=lines)


# --- bytes to text ---------------------------------------------------------------------------

# What YAML allows in a stream (PyYAML's Reader.NON_PRINTABLE, inverted).
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_OTHER_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),  # before UTF-16: it starts with the UTF-16 LE mark
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def _read_text(path: Path) -> str:
    def refuse(line: int, message: str) -> ConfigError:
        return ConfigError([f"{path}:{line}: (file): {message}"])

    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}:0: (file): cannot read: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise refuse(1, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; is this a playbook?")
    for bom, encoding in _OTHER_BOMS:
        if raw.startswith(bom):
            raise refuse(
                1,
                f"the file is {encoding} (it starts with a {encoding} byte-order "
                "mark); save it as UTF-8",
            )
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        hint = " (UTF-16 without a byte-order mark?)" if b"\x00" in raw else ""
        raise refuse(
            line,
            f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {column}{hint}; "
            "save the file as UTF-8",
        ) from None
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        hint = " (a binary file, or UTF-16 without a byte-order mark?)" if "\0" in text else ""
        raise refuse(
            line,
            f"control character U+{ord(bad.group()):04X} at column {column}{hint}; "
            "YAML allows only printable characters, tabs and line breaks",
        )
    return text


# --- composing with limits -------------------------------------------------------------------


class _Refused(yaml.YAMLError):
    """A document past one of the limits; `loc` is where it was found."""

    def __init__(self, mark: Any, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.loc = loc
        self.message = message


class _LimitedComposer:
    """PyYAML's composer (inlined) that counts as it goes: the values written, how deep they
    nest, and for every collection how many values and levels it stands for with its aliases
    expanded (memoized per node, so counting is linear in the text, whatever the aliases
    would expand to). The parser (libyaml's or PyYAML's) supplies the events."""

    if typing.TYPE_CHECKING:

        def check_event(self, *choices: type[Event]) -> bool: ...
        def get_event(self) -> Any: ...
        def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str: ...

    def __init__(self) -> None:
        self.anchors: dict[str, Node] = {}
        self._loc: list[str | int] = []
        self._depth = 0
        self._nodes = 0
        self._from_aliases = 0
        self._measured: dict[int, tuple[int, int]] = {}  # id(collection) -> (values, levels)

    def single_node(self) -> Node | None:
        """The one document's root node (None for an empty stream)."""
        self.get_event()  # stream start
        document = None
        if not self.check_event(StreamEndEvent):
            self.get_event()  # document start
            document = self._compose()
            self.get_event()  # document end
        if not self.check_event(StreamEndEvent):
            event = self.get_event()
            raise ComposerError(
                "expected a single document in the stream",
                document.start_mark if document is not None else None,
                "but found another document",
                event.start_mark,
            )
        return document

    def _refuse(self, mark: Any, message: str) -> _Refused:
        return _Refused(mark, tuple(self._loc), message)

    def _measure(self, node: Node) -> tuple[int, int]:
        return (1, 0) if isinstance(node, ScalarNode) else self._measured[id(node)]

    def _compose(self) -> Node:
        event = self.get_event()
        if isinstance(event, AliasEvent):
            return self._alias(event)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise self._refuse(
                event.start_mark, f"more than {MAX_NODES:,} values in one file; is it a playbook?"
            )
        anchor = event.anchor
        if anchor is not None and anchor in self.anchors:
            raise ComposerError(
                f"found duplicate anchor {anchor!r}; first occurrence",
                self.anchors[anchor].start_mark,
                "second occurrence",
                event.start_mark,
            )
        tag = event.tag
        if isinstance(event, ScalarEvent):
            if tag is None or tag == "!":
                tag = self.resolve(ScalarNode, event.value, event.implicit)
            start: Any = event.start_mark  # libyaml's Mark or PyYAML's
            end: Any = event.end_mark
            node: Node = ScalarNode(tag, event.value, start, end, style=event.style)
            if anchor is not None:
                self.anchors[anchor] = node
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise self._refuse(event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
        sequence = isinstance(event, SequenceStartEvent)
        kind = SequenceNode if sequence else MappingNode
        if tag is None or tag == "!":
            tag = self.resolve(kind, None, event.implicit)
        node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        values, levels = 1, 0
        loc = self._loc
        if sequence:
            closing: type[Event] = SequenceEndEvent
            while not self.check_event(closing):
                loc.append(len(node.value))
                item = self._compose()
                loc.pop()
                node.value.append(item)
                item_values, item_levels = self._measure(item)
                values += item_values
                levels = max(levels, item_levels)
        else:
            closing = MappingEndEvent
            while not self.check_event(closing):
                key = self._compose()
                loc.append(_key_of(key))
                value = self._compose()
                loc.pop()
                node.value.append((key, value))
                for child in (key, value):
                    child_values, child_levels = self._measure(child)
                    values += child_values
                    levels = max(levels, child_levels)
        node.end_mark = self.get_event().end_mark
        self._depth -= 1
        self._measured[id(node)] = (values, levels + 1)
        return node

    def _alias(self, event: Any) -> Node:
        node = self.anchors.get(event.anchor)
        if node is None:
            raise ComposerError(
                None, None, f"found undefined alias {event.anchor!r}", event.start_mark
            )
        if not isinstance(node, ScalarNode) and id(node) not in self._measured:
            raise self._refuse(
                event.start_mark,
                f"alias *{event.anchor} is inside the collection it names (a recursive "
                "document); recursive aliases are not supported",
            )
        values, levels = self._measure(node)
        self._from_aliases += values
        if self._from_aliases > MAX_ALIAS_NODES:
            raise self._refuse(
                event.start_mark,
                f"aliases expand to more than {MAX_ALIAS_NODES:,} values (a 'billion laughs' "
                "document?); write the values out or use fewer aliases",
            )
        if self._depth + levels > MAX_DEPTH:
            raise self._refuse(
                event.start_mark,
                f"alias *{event.anchor} nests the document deeper than {MAX_DEPTH} levels",
            )
        return node


class _Constructing(SafeConstructor):
    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """A value Python cannot hold (a 5,000-digit integer, a 13th month) is a YAML
        error on that value's line, not a crash."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError) as exc:
            reason = str(exc).split("; use sys.", 1)[0]  # Python's advice is not for users
            raise ConstructorError(
                None, None, f"cannot read this value: {reason}", node.start_mark
            ) from None


class _PyLoader(Reader, Scanner, Parser, _LimitedComposer, _Constructing, Resolver):
    """PyYAML's own parser, in Python: the fallback when PyYAML was built without libyaml."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _LimitedComposer.__init__(self)
        _Constructing.__init__(self)
        Resolver.__init__(self)


_Loader: type[Any] = _PyLoader
try:
    from yaml._yaml import CParser  # libyaml: scans and parses in C, 10-20x faster

    class _CLoader(CParser, _LimitedComposer, _Constructing, Resolver):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _Constructing.__init__(self)
            Resolver.__init__(self)
            _LimitedComposer.__init__(self)

    _Loader = _CLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    pass

LIBYAML = _Loader is not _PyLoader


def _key_of(node: Node) -> str:
    if isinstance(node, ScalarNode):
        return str(node.value)
    return f"<{'list' if isinstance(node, SequenceNode) else 'mapping'} key>"


def _walk(root: Node, lines: dict[Loc, int], problems: list[str], path: Path) -> None:
    """Record the line of every key and item (aliases expanded) and find duplicate keys.
    Iterative: the composer has bounded the depth and the expanded size."""
    stack: list[tuple[Node, Loc]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        children: list[tuple[Node, Loc]] = []
        if isinstance(node, MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = _key_of(key_node)
                line = key_node.start_mark.line + 1
                if key in seen and isinstance(key_node, ScalarNode):
                    problems.append(f"{path}:{line}: {format_loc((*loc, key))}: duplicate key")
                seen.add(key)
                lines[(*loc, key)] = line
                children.append((value_node, (*loc, key)))
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*loc, index)] = item.start_mark.line + 1
                children.append((item, (*loc, index)))
        stack.extend(reversed(children))


# --- turning pydantic errors into file:line: field: message ---------------------------------


def _annotation_at(annotation: Any, part: str | int) -> Any:
    """One step down a model's type by one part of an error location (tags included)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _annotation_at(typing.get_args(annotation)[0], part)
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            if member is type(None):
                continue
            fields = getattr(member, "model_fields", {})
            tag = next(
                (f for f in fields.values() if typing.get_origin(f.annotation) is typing.Literal),
                None,
            )
            if tag is not None and part in typing.get_args(tag.annotation):
                return member
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        return _annotation_at(members[0], part) if len(members) == 1 else None
    if origin in (list, tuple, Sequence) and isinstance(part, int):
        return typing.get_args(annotation)[0]
    if origin is dict:
        return typing.get_args(annotation)[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if part in (name, field.alias):
                if field.discriminator is not None:  # pydantic moved it off the annotation
                    return typing.Annotated[field.annotation, field]
                return field.annotation
    return None


def _keys_of(model: Any, loc: Loc) -> list[str]:
    current = model
    for part in loc:
        current = _annotation_at(current, part)
        if current is None:
            return []
    while typing.get_origin(current) in (typing.Annotated, typing.Union):
        members = [m for m in typing.get_args(current) if m is not type(None)]
        current = members[0]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _is_tagged_union(annotation: Any) -> bool:
    if typing.get_origin(annotation) is not typing.Annotated:
        return False
    inner = typing.get_args(annotation)[0]
    return len([m for m in typing.get_args(inner) if m is not type(None)]) > 1


def _strip_tags(model: Any, loc: Loc) -> Loc:
    """Drop the discriminator tags pydantic adds to union locations (`probe.http.url`)."""
    out: list[str | int] = []
    current = model
    for index, part in enumerate(loc):
        if current is None:
            out.extend(loc[index:])
            break
        if not (_is_tagged_union(current) and isinstance(part, str)):
            out.append(part)
        current = _annotation_at(current, part)
    return tuple(out)


def validation_problems(
    source: Source, model: Any, error: ValidationError, *, prefix: Loc = (), skip: Any = None
) -> list[str]:
    """One `file:line: field: message` per error; `prefix` locates `model` in the document."""
    problems = []
    for err in error.errors(include_url=False):
        raw_loc: Loc = tuple(err["loc"])
        if skip is not None and skip(err):
            continue
        loc = prefix + _strip_tags(model, raw_loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            name = str(raw_loc[-1])
            hint = did_you_mean(name, _keys_of(model, raw_loc[:-1]))
            message = f"unknown field {name!r}{hint}"
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx", {})
            tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
            field = ctx.get("discriminator", "kind").strip("'")
            tag = ctx.get("tag")
            loc = (*loc, field)
            message = (
                f"unknown {field} {tag!r}{did_you_mean(str(tag), tags)}; known: {', '.join(tags)}"
            )
        elif kind == "union_tag_not_found":
            field = err.get("ctx", {}).get("discriminator", "kind").strip("'")
            loc = (*loc, field)
            message = "field required"
        elif kind == "missing":
            message = "field required"
        else:
            message = err["msg"].removeprefix("Value error, ")
        problems.append(source.problem(loc, message))
    return problems
