"""Per incident: diagnose → guard → act → verify → (resolved | next action | escalate)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from daemon.actions import ACTIONS, ActionContext, ActionResult, run_with_retries
from daemon.agents import AGENTS, ESCALATE, Decision, Diagnoser, DiagnosisRequest
from daemon.clock import Clock
from daemon.detector import effective
from daemon.durations import format_duration
from daemon.errors import PermanentError, TemporaryError
from daemon.guard import Guard
from daemon.incidents import Incident, IncidentStore, Resolution, Status
from daemon.runtime import PlaybookRuntime
from daemon.templating import TemplateProblem
from daemon.timeline import Timeline
from probes.base import Outcome, Reading, check_once, probe_failure

log = logging.getLogger(__name__)


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, kw_only=True)
class Verification:
    health: Health
    reading: Reading | None
    message: str


def judge_target(readings: list[Reading], labels: Mapping[str, str], no_data: str) -> Verification:
    """Is the incident's series healthy in this scan? Missing means healthy, as in the detector."""
    failure = probe_failure(readings)
    if failure is not None:
        return Verification(
            health=Health.INCONCLUSIVE, reading=None, message=f"probe failed: {failure.message}"
        )
    reading = next((r for r in readings if dict(r.labels) == dict(labels)), None)
    outcome = effective(reading.outcome if reading else Outcome.NO_DATA, no_data)
    if reading is not None and outcome is Outcome.BREACH and not reading.actionable:
        outcome = Outcome.ERROR  # an inconclusive breach: neither healthy nor worth acting on
    message = reading.message if reading else "series absent from the probe's result"
    health = {
        Outcome.OK: Health.HEALTHY,
        Outcome.BREACH: Health.UNHEALTHY,
        Outcome.ERROR: Health.INCONCLUSIVE,
    }[outcome]
    return Verification(health=health, reading=reading, message=message)


def template_context(incident: Incident, reading: Reading | None) -> dict[str, Any]:
    return {
        "labels": dict(incident.labels),
        "value": reading.value if reading else incident.value,
        "evidence": dict(reading.evidence) if reading else {},
        "incident": {
            "id": incident.id,
            "playbook": incident.playbook,
            "severity": incident.severity,
            "opened_at": incident.opened_at,
        },
    }


class IncidentLog(logging.LoggerAdapter):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"incident {self.extra['incident']}: {msg}" if self.extra else msg, kwargs


class Responder:
    def __init__(
        self,
        *,
        store: IncidentStore,
        timeline: Timeline,
        guard: Guard,
        clock: Clock,
        probe_retries: int = 2,
    ) -> None:
        self.store = store
        self.timeline = timeline
        self.guard = guard
        self.clock = clock
        self.probe_retries = probe_retries
        self.rules: Diagnoser = AGENTS.get("rules")()

    def _diagnoser(self, runtime: PlaybookRuntime) -> Diagnoser:
        agent = runtime.playbook.diagnose.agent
        return self.rules if agent in ("auto", "rules") else AGENTS.get(agent)()

    async def verify(self, runtime: PlaybookRuntime, incident: Incident) -> Verification:
        config = runtime.playbook.probe_config
        readings = await check_once(
            runtime.probe, config, clock=self.clock, retries=self.probe_retries
        )
        return judge_target(readings, incident.labels, config.no_data)

    async def respond(
        self,
        runtime: PlaybookRuntime,
        incident: Incident,
        reading: Reading | None,
        *,
        resume: bool = False,
    ) -> None:
        """Work an incident until it is resolved or escalated. Never raises (but cancellation)."""
        ilog = IncidentLog(log, {"incident": incident.id})
        try:
            await self._respond(runtime, incident, reading, resume, ilog)
        except asyncio.CancelledError:
            ilog.warning("response interrupted by shutdown; it resumes when the daemon restarts")
            self.store.append(
                incident.id,
                "interrupted",
                "daemon stopping; the response resumes on restart",
                at=self.clock.now(),
            )
            raise
        except Exception as exc:  # noqa: BLE001 - an incident must never be dropped
            ilog.exception("responder failed unexpectedly; escalating")
            await self._escalate(runtime, incident, f"opsmedic internal error: {exc!r}")

    async def _respond(
        self,
        runtime: PlaybookRuntime,
        incident: Incident,
        reading: Reading | None,
        resume: bool,
        ilog: IncidentLog,
    ) -> None:
        playbook = runtime.playbook
        if resume:
            await self.timeline.record(incident, "resumed", "daemon restarted; re-checking")
            check = await self.verify(runtime, incident)
            reading = check.reading or reading
            if check.health is Health.HEALTHY:
                acted = bool(self.store.action_attempts(incident.id))
                resolution = Resolution.AUTO_REMEDIATED if acted else Resolution.RECOVERED
                await self._resolve(incident, f"healthy on restart: {check.message}", resolution)
                return
        if reading is not None and not reading.actionable:
            await self._escalate(runtime, incident, f"probe inconclusive: {reading.message}")
            return
        while True:
            current = self.store.get(incident.id)
            if current is None or current.status is not Status.OPEN:
                return
            incident = current
            attempts = self.store.action_attempts(incident.id)
            context = template_context(incident, reading)
            decision = await self._decide(runtime, incident, context, attempts, ilog)
            if decision.escalates:
                await self._escalate(runtime, incident, decision.reason)
                return
            step = playbook.step(decision.action)
            assert step is not None  # noqa: S101 - _decide only returns listed actions
            verdict = self.guard.check(playbook, incident, step)
            if verdict.dry_run:
                await self.timeline.record(
                    incident,
                    "dry_run",
                    f"would run {step.id} ({step.uses}); not acting",
                    data={"action": step.id, "with": dict(step.with_)},
                )
                await self._escalate(runtime, incident, verdict.reason)
                return
            if not verdict.allowed:
                await self.timeline.record(
                    incident, "guard_denied", verdict.reason, data={"action": step.id}
                )
                await self._escalate(runtime, incident, verdict.reason)
                return
            try:
                params = step.params(context)
            except (ValidationError, TemplateProblem) as exc:
                reason = f"action {step.id} has invalid parameters after rendering: {exc}"
                await self._escalate(runtime, incident, reason)
                return
            attempt = sum(attempts.values()) + 1
            await self.timeline.record(
                incident,
                "action_started",
                f"{step.id} ({step.uses}), attempt {attempt}",
                data={
                    "action": step.id,
                    "uses": step.uses,
                    "attempt": attempt,
                    "params": params.model_dump(mode="json", by_alias=True),
                },
            )
            result = await self._run(
                runtime, incident, step.id, step.uses, params, attempt, attempts[step.id] + 1, ilog
            )
            await self.timeline.record(
                incident,
                "action_finished" if result.ok else "action_failed",
                f"{step.id}: {result.message}",
                data={"action": step.id, "attempt": attempt, "ok": result.ok, **result.data},
            )
            if not result.ok:
                continue
            wait = playbook.policy.verify_after
            await self.timeline.record(
                incident, "verifying", f"re-checking in {format_duration(wait)}"
            )
            await self.clock.sleep(wait)
            check = await self.verify(runtime, incident)
            reading = check.reading or reading
            if check.health is Health.HEALTHY:
                await self._resolve(
                    incident,
                    f"verified healthy after {step.id}: {check.message}",
                    Resolution.AUTO_REMEDIATED,
                )
                return
            if check.health is Health.INCONCLUSIVE:
                await self._escalate(
                    runtime, incident, f"verification inconclusive: {check.message}"
                )
                return
            await self.timeline.record(
                incident, "verify_failed", f"still unhealthy: {check.message}"
            )

    async def _decide(
        self,
        runtime: PlaybookRuntime,
        incident: Incident,
        context: dict[str, Any],
        attempts: Mapping[str, int],
        ilog: IncidentLog,
    ) -> Decision:
        request = DiagnosisRequest(
            incident=incident, playbook=runtime.playbook, context=context, attempts=attempts
        )
        diagnoser = self._diagnoser(runtime)
        decision = await diagnoser.diagnose(request)
        allowed = {s.id for s in runtime.playbook.steps} | {ESCALATE}
        if decision.action not in allowed:
            ilog.warning(
                "agent %s chose %r, which the playbook does not list; using rules",
                diagnoser.name,
                decision.action,
            )
            await self.timeline.record(
                incident,
                "decision_rejected",
                f"{diagnoser.name} chose {decision.action!r}, not in the playbook; using rules",
            )
            decision = await self.rules.diagnose(request)
        await self.timeline.record(
            incident,
            "diagnosed",
            f"{decision.action}: {decision.reason}",
            data={
                "agent": decision.agent,
                "action": decision.action,
                "confidence": decision.confidence,
                "reason": decision.reason,
            },
        )
        return decision

    async def _run(
        self,
        runtime: PlaybookRuntime,
        incident: Incident,
        action_id: str,
        uses: str,
        params: Any,
        attempt: int,
        action_attempt: int,
        ilog: IncidentLog,
    ) -> ActionResult:
        kind = ACTIONS.get(uses)
        context = ActionContext(
            incident_id=incident.id,
            attempt=attempt,
            action_attempt=action_attempt,
            clock=self.clock,
        )
        try:
            return await run_with_retries(
                kind.create(), params, context, retries=runtime.playbook.policy.action_retries
            )
        except (TemporaryError, PermanentError) as exc:
            ilog.error("action %s failed: %s; choosing the next step", action_id, exc)
            return ActionResult(ok=False, message=str(exc))

    async def _resolve(self, incident: Incident, message: str, resolution: Resolution) -> None:
        await self.timeline.resolve(incident, resolution, message)

    async def _escalate(self, runtime: PlaybookRuntime, incident: Incident, reason: str) -> None:
        await self.timeline.escalate(incident, reason, route=runtime.route)
