"""The kill switch and silences an operator sets from the CLI (`opsmedic pause`, `resume`,
`silence add|list|expire`). They are rows in the incident log, so a running daemon sees them
at its next decision and a restart keeps them."""

from __future__ import annotations

import getpass
from collections.abc import Sequence

from daemon.durations import format_duration
from daemon.errors import ConfigError
from daemon.incidents import Control, IncidentStore
from daemon.inhibit import Matcher


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def pause(
    store: IncidentStore, now: float, *, seconds: float | None, playbook: str | None, comment: str
) -> Control:
    """Stop every action (or one playbook's) now, for `seconds` or until resumed."""
    return store.add_control(
        Control(
            kind="pause",
            playbook=playbook,
            starts=now,
            ends=None if seconds is None else now + seconds,
            comment=comment,
            created_by=_who(),
            created_at=now,
        )
    )


def resume(store: IncidentStore, now: float, *, playbook: str | None) -> list[Control]:
    """Lift the pauses in force: all, or only those of one playbook."""
    return store.expire_controls("pause", at=now, playbook=playbook)


def expire_silences(store: IncidentStore, now: float, *, ids: Sequence[int]) -> list[Control]:
    """End these silences now; returns those that were in force."""
    return store.expire_controls("silence", at=now, ids=ids)


def add_silence(
    store: IncidentStore,
    now: float,
    *,
    matchers: Sequence[str],
    seconds: float,
    starts_in: float = 0.0,
    comment: str,
) -> Control:
    problems = []
    for text in matchers:
        try:
            Matcher.parse(text)
        except ValueError as exc:
            problems.append(f"--match: {exc}")
    if not matchers:
        problems.append("--match: give at least one label matcher, e.g. namespace=shop")
    if problems:
        raise ConfigError(problems)
    return store.add_control(
        Control(
            kind="silence",
            matchers=tuple(matchers),
            starts=now + starts_in,
            ends=now + starts_in + seconds,
            comment=comment,
            created_by=_who(),
            created_at=now,
        )
    )


def describe(control: Control, now: float) -> list[str]:
    """One table row: id, what, from, until, by, comment."""
    what = ", ".join(control.matchers) if control.kind == "silence" else control.playbook or "all"
    if control.ends is None:
        left = "until lifted"
    elif control.starts > now:
        left = f"starts in {format_duration(control.starts - now)}"
    else:
        left = f"{format_duration(max(0.0, control.ends - now))} left"
    return [f"#{control.id}", what, left, control.created_by or "-", control.comment or "-"]
