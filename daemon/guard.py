"""The guard: may this action run now? Every guard rail, in the order it is asked:

1. pause (kill switch)      → record "would run", escalate
2. silence                  → hold the response until the silence ends
3. inhibition               → a source incident suppresses acting; escalate
4. attempt limits           → per incident and per action; escalate
5. cooldown                 → acted on this target recently in another incident; escalate
6. flap guard               → this action ran `burst` times on this target within `interval`
                              (systemd's StartLimitBurst); escalate until the target stays
                              healthy for `healthy_for`
7. shadow mode              → record "would have done", escalate; no action runs
8. rate limit               → at most N actions per window over all playbooks; wait
9. blast radius             → at most N remediations at once per label group and in total;
                              wait, in order of severity then age

Waits end in an escalation after `max_wait`. All counted state comes from the incident log
(pauses and silences too), so a restart resets nothing; only which incidents are waiting and
which hold a remediation slot live in memory, and a restart rebuilds the latter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from daemon.clock import Clock
from daemon.durations import Duration, format_duration
from daemon.incidents import Incident, IncidentStore
from daemon.inhibit import Inhibitor, SilenceSettings

if TYPE_CHECKING:
    from daemon.playbook import ActionStepBase, PlaybookBase

SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
POLL = 30.0  # a waiting response asks again at least this often (a pause or silence may end)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BlastRadius(Section):
    total: int = Field(20, ge=1, description="Remediations in flight at once, in all")
    per_group: int = Field(5, ge=1, description="Remediations in flight at once per group")
    group_by: list[str] = Field(
        default_factory=lambda: ["namespace"],
        description="Labels that form a group; incidents without them group by playbook",
    )


class RateLimit(Section):
    actions: int = Field(30, ge=1, description="Actions started per window, over all playbooks")
    per: Duration = Field(600.0, description="The window")


class FlapGuard(Section):
    burst: int = Field(3, ge=1, description="Runs of one action on one target per interval")
    interval: Duration = 3600.0
    healthy_for: Duration = Field(
        1800.0,
        description="Once tripped, the guard holds until the target stayed healthy this long",
    )


class SafetySettings(Section):
    shadow: bool = Field(
        False,
        description="Run detect → diagnose → guard and record what would have been done; "
        "never act (per playbook: policy.shadow)",
    )
    paused: bool | list[str] = Field(
        False,
        description="Kill switch: true pauses every playbook, a list pauses those playbooks "
        "(also `opsmedic pause`)",
    )
    blast_radius: BlastRadius = Field(default_factory=BlastRadius)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    flap: FlapGuard = Field(default_factory=FlapGuard)
    max_wait: Duration = Field(
        600.0,
        description="How long an action may wait for the rate limit or blast radius before "
        "the incident is escalated instead",
    )
    silences: list[SilenceSettings] = Field(
        default_factory=list, description="Maintenance windows (also `opsmedic silence add`)"
    )


class Rule(StrEnum):
    ALLOWED = "allowed"
    PAUSED = "paused"
    SILENCED = "silenced"
    INHIBITED = "inhibited"
    ATTEMPTS = "attempts"
    COOLDOWN = "cooldown"
    FLAP = "flap"
    SHADOW = "shadow"
    RATE = "rate_limit"
    BLAST = "blast_radius"


WAITS = (Rule.SILENCED, Rule.RATE, Rule.BLAST)
WOULD_RUN = (Rule.PAUSED, Rule.SHADOW)


@dataclass(frozen=True, kw_only=True)
class Verdict:
    rule: Rule
    reason: str
    until: float | None = None
    """For a wait: when to ask again (None: when a remediation slot frees)."""
    source: int | None = None
    """For an inhibition: the source incident."""

    @property
    def allowed(self) -> bool:
        return self.rule is Rule.ALLOWED

    @property
    def waits(self) -> bool:
        return self.rule in WAITS

    @property
    def would_run(self) -> bool:
        """Paused or shadow: record what would have run, then escalate."""
        return self.rule in WOULD_RUN


@dataclass(frozen=True, kw_only=True)
class _Slot:
    incident: int
    group: str


@dataclass(frozen=True, kw_only=True, order=True)
class _Waiter:
    rank: int
    opened_at: float
    incident: int
    group: str


class Guard:
    def __init__(
        self,
        store: IncidentStore,
        clock: Clock,
        *,
        settings: SafetySettings | None = None,
        inhibitor: Inhibitor | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings or SafetySettings()
        self.inhibitor = inhibitor or Inhibitor(store, clock)
        self._slots: dict[int, _Slot] = {}
        self._waiting: dict[int, _Waiter] = {}
        self._freed = asyncio.Event()

    # --- the question ---------------------------------------------------------------------

    def check(self, playbook: PlaybookBase, incident: Incident, step: ActionStepBase) -> Verdict:
        """Whether `step` may run for `incident` now; never has side effects."""
        now, policy, settings = self.clock.now(), playbook.policy, self.settings
        paused = self._paused(playbook.name)
        if paused is not None:
            return Verdict(rule=Rule.PAUSED, reason=f"paused ({paused}): would run {step.id}")
        silence = self.inhibitor.silence(incident)
        if silence is not None:
            left = "until lifted" if silence.ends is None else format_duration(silence.ends - now)
            why = f": {silence.comment}" if silence.comment else ""
            return Verdict(
                rule=Rule.SILENCED,
                reason=f"silenced ({left}) by silence #{silence.id or 'config'} "
                f"({', '.join(silence.matchers)}){why}",
                until=silence.ends,
            )
        inhibited = self.inhibitor.inhibited_by(incident)
        if inhibited is not None:
            source, why = inhibited
            return Verdict(
                rule=Rule.INHIBITED,
                reason=f"inhibited: {why} (incident #{source.id}); not acting on this target "
                "while it is",
                source=source.id,
            )
        attempts = self.store.action_attempts(incident.id)
        total = sum(attempts.values())
        if total >= policy.max_attempts:
            return Verdict(
                rule=Rule.ATTEMPTS,
                reason=f"attempt limit reached: {total} of {policy.max_attempts} actions tried",
            )
        if attempts[step.id] >= step.max_attempts:
            return Verdict(
                rule=Rule.ATTEMPTS,
                reason=f"{step.id} already tried {attempts[step.id]} of {step.max_attempts} times",
            )
        last = self.store.last_action(incident.fingerprint, other_than=incident.id)
        if last is not None and now - last.at < policy.cooldown:
            return Verdict(
                rule=Rule.COOLDOWN,
                reason=f"cooldown: opsmedic acted on this target {format_duration(now - last.at)} "
                f"ago in incident #{last.incident_id} (cooldown "
                f"{format_duration(policy.cooldown)}); the fix did not hold",
            )
        flapping = self._flapping(incident, step.id)
        if flapping is not None:
            return Verdict(rule=Rule.FLAP, reason=flapping)
        if settings.shadow or policy.shadow:
            return Verdict(rule=Rule.SHADOW, reason=f"shadow mode: would run {step.id}")
        limited = self._rate_limited(now)
        if limited is not None:
            return limited
        return self._blast_radius(playbook, incident) or Verdict(
            rule=Rule.ALLOWED, reason="within limits"
        )

    def _paused(self, playbook: str) -> str | None:
        paused = self.settings.paused
        if paused is True or (isinstance(paused, list) and playbook in paused):
            return "safety.paused in the config"
        now = self.clock.now()
        for pause in self.store.controls("pause", at=now):
            if pause.playbook in (None, playbook):
                left = "" if pause.ends is None else f", {format_duration(pause.ends - now)} left"
                by = f" by {pause.created_by}" if pause.created_by else ""
                return f"opsmedic pause{by}{left}"
        return None

    def _flapping(self, incident: Incident, action: str) -> str | None:
        flap, now = self.settings.flap, self.clock.now()
        streak = self.store.unhealthy_since(
            incident.fingerprint, healthy_for=flap.healthy_for, now=now
        )
        runs = self.store.action_starts(
            since=max(streak, now - flap.interval), fingerprint=incident.fingerprint, action=action
        )
        tripped = self.store.guard_denials(
            incident.fingerprint, rule=Rule.FLAP, action=action, since=streak
        )
        if len(runs) < flap.burst and not tripped:
            return None
        return (
            f"flap guard: {action} ran {len(runs)} time(s) on this target in the last "
            f"{format_duration(flap.interval)} (limit {flap.burst}); it acts again only after "
            f"the target stays healthy for {format_duration(flap.healthy_for)}"
        )

    def _rate_limited(self, now: float) -> Verdict | None:
        limit = self.settings.rate_limit
        starts = self.store.action_starts(since=now - limit.per)
        if len(starts) < limit.actions:
            return None
        return Verdict(
            rule=Rule.RATE,
            reason=f"rate limit: {len(starts)} actions started in the last "
            f"{format_duration(limit.per)} (limit {limit.actions})",
            until=starts[len(starts) - limit.actions] + limit.per,
        )

    def group(self, incident: Incident) -> str:
        keys = self.settings.blast_radius.group_by
        found = [f"{k}={incident.labels[k]}" for k in keys if k in incident.labels]
        return ",".join(found) if found else f"playbook={incident.playbook}"

    def _blast_radius(self, playbook: PlaybookBase, incident: Incident) -> Verdict | None:
        radius, group = self.settings.blast_radius, self.group(incident)
        slots = [s for s in self._slots.values() if s.incident != incident.id]
        in_group = sum(1 for s in slots if s.group == group)
        me = self._waiter(playbook, incident)

        def room(g: str) -> bool:
            busy = sum(1 for s in slots if s.group == g)
            return len(slots) < radius.total and busy < radius.per_group

        ahead = [w for w in self._waiting.values() if w < me and room(w.group)]
        if room(group) and not ahead:
            return None
        if len(slots) >= radius.total:
            why = f"{len(slots)} remediations in flight (limit {radius.total})"
        elif in_group >= radius.per_group:
            why = f"{in_group} remediations in flight in {group} (limit {radius.per_group})"
        else:
            why = f"{len(ahead)} incident(s) of higher severity or older are waiting first"
        return Verdict(rule=Rule.BLAST, reason=f"blast radius: {why}")

    @staticmethod
    def _waiter(playbook: PlaybookBase, incident: Incident) -> _Waiter:
        return _Waiter(
            rank=SEVERITY_RANK.get(playbook.severity, 1),
            opened_at=incident.opened_at,
            incident=incident.id,
            group="",
        )

    # --- remediation slots and waiting -----------------------------------------------------

    def admit(self, incident: Incident) -> None:
        """Take a remediation slot (right after an allowed check, before the action starts)."""
        self._waiting.pop(incident.id, None)
        self._slots[incident.id] = _Slot(incident=incident.id, group=self.group(incident))

    def release(self, incident_id: int) -> None:
        """The remediation ended (verified, failed or escalated): free its slot."""
        self._waiting.pop(incident_id, None)
        if self._slots.pop(incident_id, None) is not None:
            self.wake()

    def wake(self) -> None:
        """Wake every waiting response to ask again (a slot freed, or the daemon stops)."""
        self._freed.set()
        self._freed = asyncio.Event()

    async def wait(self, playbook: PlaybookBase, incident: Incident, verdict: Verdict) -> None:
        """Wait for a limit to lift: until `verdict.until`, or until a slot frees."""
        if verdict.rule in (Rule.RATE, Rule.BLAST):
            self._waiting[incident.id] = _Waiter(
                **{**self._waiter(playbook, incident).__dict__, "group": self.group(incident)}
            )
        now = self.clock.now()
        until = min(verdict.until if verdict.until is not None else now + POLL, now + POLL)
        waits: list[asyncio.Future[object]] = [
            asyncio.ensure_future(self._freed.wait()),
            asyncio.ensure_future(self.clock.sleep(max(0.0, until - now))),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in waits:
                future.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*waits, return_exceptions=True)

    def stop_waiting(self, incident_id: int) -> None:
        self._waiting.pop(incident_id, None)

    @property
    def in_flight(self) -> Sequence[int]:
        return sorted(self._slots)
