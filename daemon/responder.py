"""Per incident: diagnose → guard → act → verify → (resolved | next action | escalate)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from daemon.actions import ACTIONS, ActionContext, ActionParams, ActionResult, run_with_retries
from daemon.agents import AGENTS, ESCALATE, Decision, Diagnoser, DiagnosisRequest, Spend
from daemon.agents.chain import LLMDiagnosers
from daemon.agents.tools import LiveTools
from daemon.clock import Clock
from daemon.detector import effective
from daemon.diagnosis import Cause, DiagnosisSettings, examine
from daemon.durations import format_duration
from daemon.errors import EscalateError, PermanentError, TemporaryError
from daemon.guard import Guard
from daemon.incidents import Event, Incident, IncidentStore, Resolution, Status
from daemon.kube.cluster import KubeClient
from daemon.redact import DEFAULT as REDACTOR
from daemon.redact import Redactor
from daemon.runtime import PlaybookRuntime
from daemon.templating import TemplateProblem
from daemon.timeline import Timeline
from probes.base import EvidenceProbe, Outcome, Reading, check_once, probe_failure
from probes.prometheus_source import PrometheusClient

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


def before_diagnosis(actionable: bool, message: str) -> str | None:
    """Why to escalate without asking any agent (the daemon and `opsmedic eval` alike): an
    inconclusive reading is never acted on."""
    return None if actionable else f"probe inconclusive: {message}"


def template_context(incident: Incident, reading: Reading | None) -> dict[str, Any]:
    return {
        "labels": dict(incident.labels),
        "value": reading.value if reading else incident.value,
        "evidence": dict(reading.evidence) if reading else {},
        "causes": [],  # names of the causes found (examine() fills it before diagnosis)
        "incident": {
            "id": incident.id,
            "playbook": incident.playbook,
            "severity": incident.severity,
            "opened_at": incident.opened_at,
        },
    }


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One planned run of an action: its id and kind, rendered parameters, its number over
    the incident (which names the idempotency key) and over this action."""

    action: str
    uses: str
    params: ActionParams
    number: int
    of_action: int


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
        kubernetes: Mapping[str, KubeClient] | None = None,
        prometheus: Mapping[str, PrometheusClient] | None = None,
        agents: LLMDiagnosers | None = None,
        redactor: Redactor = REDACTOR,
        diagnosis: DiagnosisSettings | None = None,
    ) -> None:
        self.store = store
        self.diagnosis = diagnosis or DiagnosisSettings()
        self.timeline = timeline
        self.guard = guard
        self.clock = clock
        self.probe_retries = probe_retries
        self.kubernetes = dict(kubernetes or {})
        self.prometheus = dict(prometheus or {})
        self.agents = agents
        self.redactor = redactor
        self.rules: Diagnoser = AGENTS.get("rules")()

    def _diagnoser(self, runtime: PlaybookRuntime) -> Diagnoser:
        """rules; auto (the config's default LLM agent, else rules); a configured agent; or
        a diagnoser registered in code."""
        agent = runtime.playbook.diagnose.agent
        if agent == "auto":
            agent = (self.agents.default if self.agents else None) or "rules"
        if agent == "rules":
            return self.rules
        if self.agents is not None and agent in self.agents:
            return self.agents.diagnoser(agent)
        return AGENTS.get(agent)()

    def _tools(self, runtime: PlaybookRuntime, incident: Incident) -> LiveTools:
        """Read-only evidence tools on the playbook's own Prometheus source and cluster."""
        probe = runtime.playbook.probe_config
        return LiveTools(
            incident=incident,
            store=self.store,
            clock=self.clock,
            prometheus=self.prometheus.get(getattr(probe, "source", "default")),
            kube=self.kubernetes.get(getattr(probe, "cluster", "default")),
            redactor=self.redactor,
        )

    def _spend(self, incident: Incident) -> Spend:
        now = self.clock.now()
        return Spend(
            incident_usd=self.store.llm_spend(incident_id=incident.id),
            today_usd=self.store.llm_spend(since=now - now % 86400),  # since 00:00 UTC
        )

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
        interrupted = self._interrupted(runtime, incident, ilog) if resume else None
        inconclusive = (
            before_diagnosis(reading.actionable, reading.message)
            if interrupted is None and reading is not None
            else None
        )
        if inconclusive is not None:
            await self._escalate(runtime, incident, inconclusive)
            return
        while True:
            current = self.store.get(incident.id)
            if current is None or current.status is not Status.OPEN:
                return
            incident = current
            attempts = self.store.action_attempts(incident.id)
            if interrupted is not None:
                planned: Attempt | None = await self._replay(incident, interrupted, attempts)
                interrupted = None
            else:
                context = template_context(incident, reading)
                planned = await self._plan(runtime, incident, context, attempts, ilog)
            if planned is None:
                return  # escalated
            action_id = planned.action
            result = await self._run(runtime, incident, planned, ilog)
            await self.timeline.record(
                incident,
                "action_finished" if result.ok else "action_failed",
                f"{action_id}: {result.message}",
                data={
                    "action": action_id,
                    "attempt": planned.number,
                    "ok": result.ok,
                    **result.data,
                },
            )
            if result.escalate:
                await self._escalate(runtime, incident, f"{action_id}: {result.message}")
                return
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
                    f"verified healthy after {action_id}: {check.message}",
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

    async def _plan(
        self,
        runtime: PlaybookRuntime,
        incident: Incident,
        context: dict[str, Any],
        attempts: Mapping[str, int],
        ilog: IncidentLog,
    ) -> Attempt | None:
        """Gather evidence, diagnose, ask the guard, render the parameters, and record the
        start of the attempt; None when the incident was escalated instead."""
        playbook = runtime.playbook
        evidence = await self._gather_evidence(runtime, incident)
        causes = await self._examine(runtime, incident, context, evidence, attempts)
        decision = await self._decide(runtime, incident, context, attempts, ilog, causes)
        if decision.escalates:
            await self._escalate(runtime, incident, decision.reason)
            return None
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
            return None
        if not verdict.allowed:
            await self.timeline.record(
                incident, "guard_denied", verdict.reason, data={"action": step.id}
            )
            await self._escalate(runtime, incident, verdict.reason)
            return None
        try:
            params = step.params(context, decision.params)
        except (ValidationError, TemplateProblem, ValueError) as exc:
            reason = f"action {step.id} has invalid parameters after rendering: {exc}"
            await self._escalate(runtime, incident, reason)
            return None
        planned = Attempt(
            action=step.id,
            uses=step.uses,
            params=params,
            number=sum(attempts.values()) + 1,
            of_action=attempts[step.id] + 1,
        )
        await self.timeline.record(
            incident,
            "action_started",
            f"{step.id} ({step.uses}), attempt {planned.number}",
            data={
                "action": step.id,
                "uses": step.uses,
                "attempt": planned.number,
                "params": params.model_dump(mode="json", by_alias=True),
            },
        )
        return planned

    async def _replay(
        self, incident: Incident, started: Event, attempts: Mapping[str, int]
    ) -> Attempt:
        """The attempt a stop or crash cut short, to run again with the same idempotency key."""
        planned = Attempt(
            action=started.data["action"],
            uses=started.data["uses"],
            params=ACTIONS.get(started.data["uses"]).params.model_validate(started.data["params"]),
            number=int(started.data["attempt"]),
            of_action=attempts[started.data["action"]],
        )
        await self.timeline.record(
            incident,
            "action_resumed",
            f"{planned.action}: attempt {planned.number} was cut short; re-running it with the "
            "same idempotency key, which acts only if the change was never made",
            data={"action": planned.action, "attempt": planned.number},
        )
        return planned

    async def _gather_evidence(
        self, runtime: PlaybookRuntime, incident: Incident
    ) -> dict[str, Any]:
        """Read-only evidence for this diagnosis, redacted, and stored with the incident."""
        if not isinstance(runtime.probe, EvidenceProbe):
            return {}
        timeout = runtime.playbook.probe_config.timeout
        try:
            found = await asyncio.wait_for(runtime.probe.evidence(incident.labels), timeout)
        except TimeoutError:
            found = {"evidence_error": f"gathering evidence timed out after {timeout:g}s"}
        found = self.redactor.value(found)
        if found:
            await self.timeline.record(
                incident, "evidence", f"gathered {', '.join(sorted(found))}", data=found
            )
        return found

    async def _examine(
        self,
        runtime: PlaybookRuntime,
        incident: Incident,
        context: dict[str, Any],
        evidence: Mapping[str, Any],
        attempts: Mapping[str, int],
    ) -> tuple[Cause, ...]:
        """Find the causes in the evidence and the target's history; record them and put them
        in the context (`evidence.causes`, `causes`) that templates and agents see."""
        now, settings = self.clock.now(), self.diagnosis
        seen = examine(
            {**context["evidence"], **evidence},
            breach_age=now - incident.opened_at + runtime.playbook.probe_config.for_,
            past=self.store.history(
                incident.fingerprint, since=now - settings.history_window, other_than=incident.id
            ),
            attempts=attempts,
            now=now,
            settings=settings,
            playbook_patterns=runtime.playbook.causes,
        )
        seen.into(context)
        if seen.causes:
            await self.timeline.record(
                incident,
                "causes",
                "; ".join(f"{c.cause}: {c.detail}" for c in seen.causes),
                data={"causes": seen.evidence["causes"]},
            )
        return seen.causes

    def _interrupted(
        self, runtime: PlaybookRuntime, incident: Incident, ilog: IncidentLog
    ) -> Event | None:
        """An attempt cut short by a stop or crash, if it is safe to run again: its kind is
        idempotent (the same key acts once). Otherwise its outcome stays unknown and it counts
        as a spent attempt."""
        started = self.store.unfinished_action(incident.id)
        if started is None:
            return None
        uses = started.data.get("uses", "")
        if uses in ACTIONS.names() and ACTIONS.get(uses).idempotent:
            return started
        ilog.warning(
            "attempt %s (%s) was cut short and %s is not idempotent; not re-running it",
            started.data.get("attempt"),
            started.data.get("action"),
            uses,
        )
        return None

    async def _decide(
        self,
        runtime: PlaybookRuntime,
        incident: Incident,
        context: dict[str, Any],
        attempts: Mapping[str, int],
        ilog: IncidentLog,
        causes: tuple[Cause, ...],
    ) -> Decision:
        request = DiagnosisRequest(
            incident=incident,
            playbook=runtime.playbook,
            context=context,
            attempts=attempts,
            tools=self._tools(runtime, incident),
            spend=self._spend(incident),
            causes=causes,
        )
        diagnoser = self._diagnoser(runtime)
        decision = await diagnoser.diagnose(request)
        if decision.calls:  # errors and tool names hold model text: redacted like events
            calls = [
                replace(c, error=self.redactor.text(c.error), tools=self.redactor.value(c.tools))
                for c in decision.calls
            ]
            self.store.record_llm_calls(incident.id, calls)
        for note in decision.notes:
            await self.timeline.record(incident, note.kind, note.message, data=note.data)
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
                "params": dict(decision.params),
                "llm_calls": len(decision.calls),
                "tokens": decision.tokens,
                "cost_usd": round(decision.cost_usd, 6),
            },
        )
        return decision

    async def _run(
        self, runtime: PlaybookRuntime, incident: Incident, planned: Attempt, ilog: IncidentLog
    ) -> ActionResult:
        kind = ACTIONS.get(planned.uses)
        context = ActionContext(
            incident_id=incident.id,
            attempt=planned.number,
            action_attempt=planned.of_action,
            clock=self.clock,
            kubernetes=self.kubernetes,
        )
        retries = runtime.playbook.policy.action_retries
        try:
            return await run_with_retries(kind.create(), planned.params, context, retries=retries)
        except EscalateError as exc:
            ilog.error("action %s failed: %s; escalating", planned.action, exc)
            return ActionResult(ok=False, message=str(exc), escalate=True)
        except (TemporaryError, PermanentError) as exc:
            ilog.error("action %s failed: %s; choosing the next step", planned.action, exc)
            return ActionResult(ok=False, message=str(exc))

    async def _resolve(self, incident: Incident, message: str, resolution: Resolution) -> None:
        await self.timeline.resolve(incident, resolution, message)

    async def _escalate(self, runtime: PlaybookRuntime, incident: Incident, reason: str) -> None:
        """Escalate, with the causes last found (the message shows them)."""
        found = self.store.events(incident.id, kind="causes")
        causes = found[-1].data.get("causes", []) if found else []
        await self.timeline.escalate(incident, reason, route=runtime.route, causes=causes)
