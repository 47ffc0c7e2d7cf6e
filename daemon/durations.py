"""Durations as users write them: `30s`, `5m`, `1h30m`, `250ms`, or a number of seconds."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
PATTERN = r"^((\d+(\.\d+)?)(ms|s|m|h|d|w))+$"


def parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a duration is a string like '30s', '5m' or '1h', not a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("a duration is a string like '30s', '5m' or '1h'")
    text = value.strip()
    if not re.fullmatch(PATTERN, text):
        raise ValueError(
            f"invalid duration {value!r}: use a number with a unit, like 30s, 5m, 1h30m"
        )
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "never"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds % 1 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": PATTERN}, {"type": "number", "minimum": 0}],
            "description": "A duration: 30s, 5m, 1h30m, 250ms, or a number of seconds",
        }
    ),
]
