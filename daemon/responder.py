"""Per incident: diagnose → guard → act → verify → (resolved | next action | escalate)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from daemon.actions import ACTIONS, ActionContext, ActionParams, ActionResult, run_with_retries
from daemon.actions.base import Reconcilable
from daemon.agents import AGENTS, ESCALATE, Decision, Diagnoser, DiagnosisRequest, Spend
from daemon.agents.chain import LLMDiagnosers
from daemon.agents.tools import LiveTools
from daemon.clock import Clock
from daemon.detector import effective
from daemon.diagnosis import Cause, DiagnosisSettings, examine
from daemon.durations import format_duration
from daemon.errors import EscalateError, PermanentError, TemporaryError
from daemon.guard import Guard, Rule, Verdict
from daemon.incidents import Event, EventKind, Incident, IncidentStore, Resolution, Status
from daemon.kube.cluster import KubeClient
from daemon.playbook import ActionStepBase
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


class Stopping(Exception):  # noqa: N818 - a signal, not an error
    """The daemon is stopping: start no new diagnosis or action."""


@dataclass(frozen=True, kw_only=True)
class Landed:
    """An action whose change landed and awaits verification, from `since`."""

    action: str
    since: float


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
        records: Path | None = None,
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
        self.records = records
        self.rules: Diagnoser = AGENTS.get("rules")()
        self.stopping = False

    def stop(self) -> None:
        """From now on, no response starts a new diagnosis or action (SIGTERM); those waiting
        on a guard rail stop waiting."""
        self.stopping = True
        self.guard.wake()

    def _go_on(self) -> None:
        if self.stopping:
            raise Stopping

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
        except (Stopping, asyncio.CancelledError) as exc:
            why = str(exc.args[0]) if exc.args and not self.stopping else None
            ilog.warning("response interrupted (%s)", why or "daemon stopping")
            await self.timeline.record(
                incident,
                EventKind.INTERRUPTED,
                f"response cut short: {why}"
                if why
                else "daemon stopping; the response resumes on restart",
            )
            if isinstance(exc, asyncio.CancelledError):
                raise
        except Exception as exc:  # noqa: BLE001 - an incident must never be dropped
            ilog.exception("responder failed unexpectedly; escalating")
            await self._escalate(runtime, incident, f"opsmedic internal error: {exc!r}")
        finally:
            self.guard.release(incident.id)

    async def _respond(
        self,
        runtime: PlaybookRuntime,
        incident: Incident,
        reading: Reading | None,
        resume: bool,
        ilog: IncidentLog,
    ) -> None:
        landed: Landed | None = None
        if resume:
            await self.timeline.record(
                incident, EventKind.RESUMED, "daemon restarted; reconciling before judging"
            )
            landed = await self._reconcile(runtime, incident, ilog)
            current = self.store.get(incident.id)
            if current is None or current.status is not Status.OPEN:
                return
            if landed is None:
                check = await self.verify(runtime, incident)
                if not await self._judged(runtime, incident, check, after=None):
                    return
                reading = check.reading
        elif reading is not None:
            inconclusive = before_diagnosis(reading.actionable, reading.message)
            if inconclusive is not None:
                await self._escalate(runtime, incident, inconclusive)
                return
        while True:
            if landed is not None:
                check = await self._verify_landed(runtime, incident, landed)
                self.guard.release(incident.id)
                if not await self._judged(runtime, incident, check, after=landed.action):
                    return
                reading, landed = check.reading or reading, None
            self._go_on()
            current = self.store.get(incident.id)
            if current is None or current.status is not Status.OPEN:
                return
            incident = current
            context = template_context(incident, reading)
            planned = await self._plan(runtime, incident, context, ilog)
            if isinstance(planned, Verification):  # waited on a guard rail: judge afresh
                if not await self._judged(runtime, incident, planned, after=None):
                    return
                reading = planned.reading
                continue
            if planned is None:
                return  # escalated
            result = await self._run(runtime, incident, planned, ilog)
            await self.timeline.record(
                incident,
                EventKind.ACTION_FINISHED if result.ok else EventKind.ACTION_FAILED,
                f"{planned.action}: {result.message}",
                data={"action": planned.action, "attempt": planned.number, "ok": result.ok}
                | dict(result.data),
            )
            if result.escalate:
                await self._escalate(runtime, incident, f"{planned.action}: {result.message}")
                return
            if result.ok:
                landed = Landed(action=planned.action, since=self.clock.now())
            else:
                self.guard.release(incident.id)

    async def _judged(
        self,
        runtime: PlaybookRuntime,
        incident: Incident,
        check: Verification,
        *,
        after: str | None,
    ) -> bool:
        """Act on a re-check: healthy → resolved (auto-remediated only right `after` a landed
        action), inconclusive → escalated (never acted on); True when still unhealthy."""
        if check.health is Health.HEALTHY:
            if after is not None:
                message = f"verified healthy after {after}: {check.message}"
                await self._resolve(incident, message, Resolution.AUTO_REMEDIATED)
            else:
                message = f"healthy again, with no landed action to credit: {check.message}"
                await self._resolve(incident, message, Resolution.RECOVERED)
            return False
        if check.health is Health.INCONCLUSIVE:
            await self._escalate(runtime, incident, f"verification inconclusive: {check.message}")
            return False
        if after is not None:
            await self.timeline.record(
                incident, EventKind.VERIFY_FAILED, f"still unhealthy: {check.message}"
            )
        return True

    async def _verify_landed(
        self, runtime: PlaybookRuntime, incident: Incident, landed: Landed
    ) -> Verification:
        """Wait `verify_after` from when the action landed, then re-check the target."""
        wait = max(0.0, landed.since + runtime.playbook.policy.verify_after - self.clock.now())
        await self.timeline.record(
            incident,
            EventKind.VERIFYING,
            f"re-checking in {format_duration(wait)}",
            data={"action": landed.action, "since": landed.since},
        )
        await self.clock.sleep(wait)
        return await self.verify(runtime, incident)

    async def _plan(
        self,
        runtime: PlaybookRuntime,
        incident: Incident,
        context: dict[str, Any],
        ilog: IncidentLog,
    ) -> Attempt | Verification | None:
        """Gather evidence, diagnose, ask the guard, render the parameters, and record the
        start of the attempt. None when the incident was escalated instead; a Verification
        (a fresh re-check) when a guard rail held the action back for a while, to judge afresh."""
        playbook = runtime.playbook
        attempts = self.store.action_attempts(incident.id)
        evidence = await self._gather_evidence(runtime, incident)
        causes = await self._examine(runtime, incident, context, evidence, attempts)
        decision = await self._decide(runtime, incident, context, attempts, ilog, causes)
        if decision.escalates:
            await self._escalate(runtime, incident, decision.reason)
            return None
        step = playbook.step(decision.action)
        assert step is not None  # noqa: S101 - _decide only returns listed actions
        verdict = self.guard.check(playbook, incident, step)
        if verdict.waits:
            return await self._wait(runtime, incident, step, verdict)
        if verdict.would_run:
            await self.timeline.record(
                incident,
                EventKind.SHADOW,
                f"{verdict.reason} ({step.uses}); not acting",
                data={"action": step.id, "rule": verdict.rule, "with": dict(step.with_)},
            )
            await self._escalate(runtime, incident, verdict.reason)
            return None
        if not verdict.allowed:
            await self._deny(runtime, incident, step, verdict)
            return None
        try:
            params = step.params(context, decision.params)
        except (ValidationError, TemplateProblem, ValueError) as exc:
            reason = f"action {step.id} has invalid parameters after rendering: {exc}"
            await self._escalate(runtime, incident, reason)
            return None
        self._go_on()
        planned = Attempt(
            action=step.id,
            uses=step.uses,
            params=params,
            number=self.store.attempts_started(incident.id) + 1,
            of_action=attempts[step.id] + 1,
        )
        self.guard.admit(incident)
        await self.timeline.record(
            incident,
            EventKind.ACTION_STARTED,
            f"{step.id} ({step.uses}), attempt {planned.number}",
            data={
                "action": step.id,
                "uses": step.uses,
                "attempt": planned.number,
                "params": params.model_dump(mode="json", by_alias=True),
            },
        )
        return planned

    async def _deny(
        self, runtime: PlaybookRuntime, incident: Incident, step: ActionStepBase, verdict: Verdict
    ) -> None:
        await self.timeline.record(
            incident,
            EventKind.GUARD_DENIED,
            verdict.reason,
            data={"action": step.id, "rule": verdict.rule, "source": verdict.source},
        )
        await self._escalate(runtime, incident, verdict.reason)

    async def _wait(
        self, runtime: PlaybookRuntime, incident: Incident, step: ActionStepBase, verdict: Verdict
    ) -> Verification | None:
        """Hold the action while a silence, the rate limit or the blast radius says wait; past
        `max_wait` (silences excepted) escalate. Then re-check the target, to judge afresh."""
        playbook, recorded = runtime.playbook, None
        deadline = self.clock.now() + self.guard.settings.max_wait
        try:
            while verdict.waits:
                if verdict.rule is not recorded:
                    recorded = verdict.rule
                    await self.timeline.record(
                        incident,
                        EventKind.GUARD_WAITING,
                        f"{verdict.reason}; {step.id} waits",
                        data={"action": step.id, "rule": verdict.rule},
                    )
                if verdict.rule is not Rule.SILENCED and self.clock.now() >= deadline:
                    waited = format_duration(self.guard.settings.max_wait)
                    await self._deny(
                        runtime,
                        incident,
                        step,
                        replace(verdict, reason=f"waited {waited}: {verdict.reason}"),
                    )
                    return None
                await self.guard.wait(playbook, incident, verdict)
                self._go_on()
                verdict = self.guard.check(playbook, incident, step)
        finally:
            self.guard.stop_waiting(incident.id)
        return await self.verify(runtime, incident)

    async def _reconcile(
        self, runtime: PlaybookRuntime, incident: Incident, ilog: IncidentLog
    ) -> Landed | None:
        """Before judging an incident after a restart, learn what became of its last action:
        an attempt cut short is reconciled with its target (did its change land?), and one
        whose change landed is verified as if the daemon never stopped. Returns the landed
        action to verify, or None to judge afresh."""
        last = self.store.last_action_event(incident.id)
        if last is None:
            return None
        action = str(last.data.get("action", ""))
        if last.kind is EventKind.VERIFYING:
            self.guard.admit(incident)
            return Landed(action=action, since=float(last.data.get("since", last.at)))
        if last.kind is EventKind.ACTION_FINISHED or (
            last.kind is EventKind.ACTION_RECONCILED and last.data.get("ok")
        ):
            self.guard.admit(incident)
            return Landed(action=action, since=last.at)
        if last.kind is not EventKind.ACTION_STARTED:
            return None
        self.guard.admit(incident)  # it was in flight: it holds its slot while reconciled
        result, why = await self._landed(incident, last, ilog)
        attempt = last.data.get("attempt")
        if result is None:
            self.guard.release(incident.id)
            await self.timeline.record(
                incident,
                EventKind.ACTION_RECONCILED,
                f"{action}: attempt {attempt} never landed ({why}); it is not counted",
                data={"action": action, "attempt": attempt, "landed": False, "ok": False},
            )
            return None
        await self.timeline.record(
            incident,
            EventKind.ACTION_RECONCILED,
            f"{action}: {result.message}",
            data={"action": action, "attempt": attempt, "landed": True, "ok": result.ok}
            | dict(result.data),
        )
        if result.escalate:
            await self._escalate(runtime, incident, f"{action}: {result.message}")
            return None
        if not result.ok:
            self.guard.release(incident.id)
            return None
        return Landed(action=action, since=self.clock.now())

    async def _landed(
        self, incident: Incident, started: Event, ilog: IncidentLog
    ) -> tuple[ActionResult | None, str]:
        """The result of an attempt cut short if its change landed, else None and why."""
        uses = str(started.data.get("uses", ""))
        if uses not in ACTIONS.names():
            return None, f"unknown action kind {uses!r}"
        kind = ACTIONS.get(uses)
        action = kind.create()
        if not isinstance(action, Reconcilable):
            return None, f"{uses} cannot tell whether it acted; treated as not run"
        context = ActionContext(
            incident_id=incident.id,
            attempt=int(started.data["attempt"]),
            action_attempt=self.store.action_attempts(incident.id)[started.data["action"]],
            clock=self.clock,
            kubernetes=self.kubernetes,
            records=self.records,
            started_at=started.at,
        )
        try:
            params = kind.params.model_validate(started.data["params"])
            return await action.reconcile(params, context), "its change is not on the target"
        except (TemporaryError, PermanentError, EscalateError, ValidationError) as exc:
            ilog.warning("cannot tell whether attempt %s landed: %s", context.attempt, exc)
            return None, f"cannot tell: {exc}; treated as not run"

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
                incident, EventKind.EVIDENCE, f"gathered {', '.join(sorted(found))}", data=found
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
                EventKind.CAUSES,
                "; ".join(f"{c.cause}: {c.detail}" for c in seen.causes),
                data={"causes": seen.evidence["causes"]},
            )
        return seen.causes

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
        if decision.calls:  # errors and tool names hold model text: the timeline redacts them
            self.timeline.llm_calls(incident, decision.calls)
        for note in decision.notes:
            await self.timeline.record(incident, EventKind(note.kind), note.message, data=note.data)
        allowed = {s.id for s in runtime.playbook.steps} | {ESCALATE}
        if decision.action not in allowed:
            ilog.warning(
                "agent %s chose %r, which the playbook does not list; using rules",
                diagnoser.name,
                decision.action,
            )
            await self.timeline.record(
                incident,
                EventKind.DECISION_REJECTED,
                f"{diagnoser.name} chose {decision.action!r}, not in the playbook; using rules",
            )
            decision = await self.rules.diagnose(request)
        await self.timeline.record(
            incident,
            EventKind.DIAGNOSED,
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
            records=self.records,
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
        found = self.store.events(incident.id, kind=EventKind.CAUSES)
        causes = found[-1].data.get("causes", []) if found else []
        await self.timeline.escalate(incident, reason, route=runtime.route, causes=causes)
