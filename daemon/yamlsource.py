"""YAML loading that remembers where every key came from, so errors name file:line:field."""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from daemon.errors import ConfigError
from daemon.registry import did_you_mean

Loc = tuple[str | int, ...]


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
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_yaml(path: Path) -> Source:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}:0: (file): cannot read: {exc.strerror or exc}"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 - SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        what = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}:{line}: (syntax): invalid YAML: {what}"]) from None
    lines: dict[Loc, int] = {}
    problems: list[str] = []
    if node is not None:
        _walk(node, (), lines, problems, path)
    if problems:
        raise ConfigError(problems)
    return Source(path=path, data=data, lines=lines)


def _walk(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[str], path: Path
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(f"{path}:{line}: {format_loc((*loc, key))}: duplicate key")
            seen.add(key)
            lines[(*loc, key)] = line
            _walk(value_node, (*loc, key), lines, problems, path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            _walk(item, (*loc, index), lines, problems, path)


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
