"""Durations as users write them: `30s`, `5m`, `1h30m`, `250ms`, or a number of seconds.

A duration is never negative, never more than `MAX_SECONDS` (100 years), and a field that is
an interval or a time limit (`every`, `verify_after`, `step`, any `timeout`) must be more than
zero: `every: 0s` would run the probe back to back, a zero timeout would fail every call.
Waits such as `for`, `cooldown` and `keep_firing_for` may be zero.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, ValidationInfo, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
PATTERN = r"^((\d+(\.\d+)?)(ms|s|m|h|d|w))+$"

MAX_SECONDS = 100 * 365.25 * 86400.0
"""The longest duration: 100 years (longer ones overflow the scheduler's date arithmetic)."""
POSITIVE_FIELDS = frozenset({"every", "verify_after", "step", "timeout"})
"""Duration fields that must be more than zero, by name, in every model that has them."""


def parse_duration(value: Any) -> float:
    """Seconds; raise ValueError with a message for the user."""
    return _seconds(value)


def _validate(value: Any, info: ValidationInfo) -> float:
    """pydantic's validator: a field named in POSITIVE_FIELDS must also be more than zero."""
    seconds = _seconds(value)
    field = info.field_name
    if seconds == 0 and field in POSITIVE_FIELDS:
        raise ValueError(
            f"{field} must be more than zero (got {value!r}); use at least 1ms, e.g. 1s"
        )
    return seconds


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a duration is a string like '30s', '5m' or '1h', not a boolean")
    if isinstance(value, int | float):
        return _bounded(value, value)
    if not isinstance(value, str):
        raise ValueError("a duration is a string like '30s', '5m' or '1h'")
    text = value.strip()
    if re.fullmatch(PATTERN, text):
        return _bounded(sum(float(n) * _UNITS[u] for n, u in _PART.findall(text)), value)
    if text.startswith("-") and re.fullmatch(PATTERN, text[1:].strip()):
        raise ValueError(f"a duration must not be negative (got {_shown(value)})")
    raise ValueError(
        f"invalid duration {_shown(value)}: use a number with a unit, like 30s, 5m, 1h30m"
    )


def _bounded(seconds: float, value: Any) -> float:
    shown = _shown(value)
    try:
        seconds = float(seconds)
    except OverflowError:  # an int with hundreds of digits
        seconds = math.inf
    if math.isnan(seconds):
        raise ValueError("a duration must be a number of seconds, not NaN")
    if seconds < 0:
        raise ValueError(f"a duration must not be negative (got {shown})")
    if seconds > MAX_SECONDS:
        raise ValueError(f"duration {shown} is too large: at most 100 years (5200w)")
    return seconds


def _shown(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 4000:  # str() refuses > 4300 digits
        return f"(a number of about {int(value.bit_length() * 0.30103)} digits)"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else f"{text[:20]}…{text[-8:]} ({len(text)} characters)"


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
    BeforeValidator(_validate),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": PATTERN}, {"type": "number", "minimum": 0}],
            "description": "A duration: 30s, 5m, 1h30m, 250ms, or a number of seconds "
            "(every, verify_after, step and timeouts: more than zero)",
        }
    ),
]
