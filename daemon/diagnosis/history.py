"""Causes found in the target's history (the incident log, so they survive restarts):
`flapping`, `did_not_stick`, `repeated_failure`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from daemon.diagnosis.causes import Cause
from daemon.durations import format_duration

HEALED = "auto-remediated"


@dataclass(frozen=True, kw_only=True)
class PastAction:
    action: str  # the playbook's action id
    uses: str  # its kind
    ok: bool  # whether the action itself succeeded
    at: float


@dataclass(frozen=True, kw_only=True)
class PastIncident:
    """An earlier incident of the same target (same fingerprint)."""

    id: int
    opened_at: float
    resolution: str | None  # None: escalated, or still open
    actions: tuple[PastAction, ...] = ()


@dataclass(frozen=True, kw_only=True)
class HistoryLimits:
    flap_actions: int  # this many actions on the target within flap_window: flapping
    flap_window: float
    stick_window: float  # healed by an action this recently and back: did_not_stick
    repeat_window: float  # a failure this recent that an action did not heal: repeated_failure


def causes(
    history: Sequence[PastIncident],
    *,
    attempts: Mapping[str, int],
    now: float,
    limits: HistoryLimits,
) -> Iterator[Cause]:
    past = sorted(history, key=lambda i: i.opened_at, reverse=True)
    recent = [a for i in past for a in i.actions if now - a.at <= limits.flap_window]
    count = len(recent) + sum(attempts.values())
    if count >= limits.flap_actions:
        kinds = ", ".join(
            sorted({a.action for a in recent} | {a for a, n in attempts.items() if n})
        )
        yield Cause.of(
            "flapping",
            "history",
            f"{count} actions on this target within {format_duration(limits.flap_window)} "
            f"({kinds}; limit {limits.flap_actions - 1})",
        )
    for incident in past:
        ago = format_duration(now - incident.opened_at)
        ran = [a for a in incident.actions if a.ok]
        if not ran:
            continue
        last = ran[-1]
        if incident.resolution == HEALED and now - incident.opened_at <= limits.stick_window:
            yield Cause.of(
                "did_not_stick",
                "history",
                f"{last.action} ({last.uses}) healed this target in incident #{incident.id} "
                f"{ago} ago and the fault came back",
                uses=last.uses,
            )
        elif incident.resolution != HEALED and now - incident.opened_at <= limits.repeat_window:
            yield Cause.of(
                "repeated_failure",
                "history",
                f"{last.action} ({last.uses}) ran in incident #{incident.id} {ago} ago and did "
                "not heal this target",
                uses=last.uses,
            )
