"""The guard: may this action run now? Attempt limits, cooldowns and dry-run. All its state
comes from the incident log, so a restart of the daemon resets nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from daemon.clock import Clock
from daemon.durations import format_duration
from daemon.incidents import Incident, IncidentStore

if TYPE_CHECKING:
    from daemon.playbook import ActionStepBase, PlaybookBase


@dataclass(frozen=True, kw_only=True)
class Verdict:
    allowed: bool
    reason: str
    dry_run: bool = False


class Guard:
    def __init__(
        self,
        store: IncidentStore,
        clock: Clock,
        *,
        force_dry_run: bool = False,
        inhibitor: Callable[[str], str | None] = lambda playbook: None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.force_dry_run = force_dry_run
        self.inhibitor = inhibitor

    def check(self, playbook: PlaybookBase, incident: Incident, step: ActionStepBase) -> Verdict:
        policy = playbook.policy
        inhibited = self.inhibitor(playbook.name)
        if inhibited is not None:
            return Verdict(allowed=False, reason=inhibited)
        attempts = self.store.action_attempts(incident.id)
        total = sum(attempts.values())
        if total >= policy.max_attempts:
            return Verdict(
                allowed=False,
                reason=f"attempt limit reached: {total} of {policy.max_attempts} actions tried",
            )
        if attempts[step.id] >= step.max_attempts:
            return Verdict(
                allowed=False,
                reason=f"{step.id} already tried {attempts[step.id]} of {step.max_attempts} times",
            )
        last = self.store.last_action(incident.fingerprint, other_than=incident.id)
        if last is not None and self.clock.now() - last.at < policy.cooldown:
            ago = format_duration(self.clock.now() - last.at)
            return Verdict(
                allowed=False,
                reason=f"cooldown: opsmedic acted on this target {ago} ago in incident "
                f"#{last.incident_id} (cooldown {format_duration(policy.cooldown)}); "
                "the fix did not hold",
            )
        if policy.dry_run or self.force_dry_run:
            return Verdict(allowed=False, dry_run=True, reason=f"dry run: would run {step.id}")
        return Verdict(allowed=True, reason="within limits")
