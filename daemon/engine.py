"""Wiring: scheduler → probes → detector → incidents → responder, and the daemon's lifecycle."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from daemon import systemd
from daemon.agents.chain import LLMDiagnosers
from daemon.clock import Clock, SystemClock
from daemon.config import Settings
from daemon.detector import Phase, Transition, fingerprint
from daemon.guard import Guard
from daemon.incidents import Incident, IncidentStore, Resolution, Status
from daemon.kube.cluster import KubeClient
from daemon.notify.base import Notifier
from daemon.notify.console import ConsoleNotifier
from daemon.playbook import LoadedPlaybook
from daemon.redact import redact_logs
from daemon.responder import Responder
from daemon.runtime import PlaybookRuntime
from daemon.timeline import Timeline
from probes.base import (
    Outcome,
    ProbeContext,
    Reading,
    check_once,
    probe_failure,
)
from probes.prometheus_source import Dependency, PrometheusClient

log = logging.getLogger(__name__)

SOURCE_UNAVAILABLE = "source-unavailable"


class Engine:
    def __init__(
        self,
        *,
        playbooks: Sequence[LoadedPlaybook],
        store: IncidentStore,
        notifiers: Sequence[Notifier],
        clock: Clock,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.store = store
        self.clock = clock
        context = connect(self.settings, clock)
        self.runtimes = {
            lp.playbook.name: PlaybookRuntime.build(lp.playbook, lp.path, context)
            for lp in playbooks
        }
        self.redactor = redactor = self.settings.redactor()
        self.timeline = Timeline(store, notifiers, clock, redactor)
        self.agents = LLMDiagnosers(
            self.settings.agents, self.settings.llm, clock=clock, redactor=redactor
        )
        self.responder = Responder(
            store=store,
            timeline=self.timeline,
            guard=Guard(
                store, clock, force_dry_run=self.settings.dry_run, inhibitor=self.inhibition
            ),
            clock=clock,
            probe_retries=self.settings.probe_retries,
            kubernetes=context.kubernetes,
            prometheus=context.prometheus,
            agents=self.agents,
            redactor=redactor,
            diagnosis=self.settings.diagnosis,
        )
        self._responses: dict[int, asyncio.Task[None]] = {}
        self._ticks: set[asyncio.Task[object]] = set()
        self._errors: Counter[str] = Counter()  # consecutive query errors per dependency
        self._down: dict[str, int] = {}  # dependency → its source-unavailable incident
        self._scheduler: object | None = None

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self, *, schedule: bool = True) -> None:
        """Pick up open incidents from the log, then start polling."""
        await self.recover()
        if schedule:
            self._start_scheduler()

    async def recover(self) -> None:
        for incident in self.store.open_incidents():
            if incident.playbook == SOURCE_UNAVAILABLE:
                self._down[incident.labels["source"]] = incident.id
                continue
            runtime = self.runtimes.get(incident.playbook)
            if runtime is None:
                if incident.status is Status.OPEN:
                    await self.timeline.escalate(
                        incident,
                        f"playbook {incident.playbook!r} is no longer loaded; "
                        "a human must close this",
                    )
                continue
            runtime.detector.restore_firing(
                incident.fingerprint, incident.labels, incident.opened_at
            )
            if incident.status is Status.OPEN:
                log.info("incident %s: resuming after restart", incident.id)
                self._spawn(runtime, incident, None, resume=True)

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        scheduler = AsyncIOScheduler(timezone="UTC")
        for name, runtime in self.runtimes.items():
            every = runtime.playbook.probe_config.every
            scheduler.add_job(
                self.tick,
                IntervalTrigger(seconds=every, jitter=min(self.settings.jitter, every / 4)),
                args=[name],
                id=name,
                name=f"probe {name}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(every)),
                next_run_time=datetime.now(UTC),  # first check at once, then every `every`
            )
        scheduler.start()
        self._scheduler = scheduler

    async def stop(self, grace: float | None = None) -> None:
        """Stop polling; let in-flight responses finish within `grace`, then interrupt them
        (they are recorded as interrupted and resume on the next start)."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)  # type: ignore[attr-defined]
            self._scheduler = None
        grace = self.settings.shutdown_grace if grace is None else grace
        if self._ticks:
            await asyncio.wait(list(self._ticks), timeout=grace)
        pending = list(self._responses.values())
        if pending:
            log.info("waiting up to %.0fs for %d in-flight response(s)", grace, len(pending))
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        await self.agents.aclose()

    async def idle(self) -> None:
        """Wait until no response is in flight (for tests and the demo)."""
        while self._responses:
            await asyncio.gather(*list(self._responses.values()), return_exceptions=True)

    @property
    def responding(self) -> set[int]:
        return set(self._responses)

    # --- one probe cycle -----------------------------------------------------------------

    async def tick(self, name: str) -> None:
        """Run one playbook's probe once and act on what changed. Never raises."""
        runtime = self.runtimes[name]
        task = asyncio.current_task()
        if task is not None:
            self._ticks.add(task)
        try:
            config = runtime.playbook.probe_config
            readings = await check_once(
                runtime.probe, config, clock=self.clock, retries=self.settings.probe_retries
            )
            for reading in readings:
                if reading.outcome is Outcome.ERROR:
                    log.warning(
                        "playbook %s: probe error (%s); holding state, next try in %.0fs",
                        name,
                        reading.message,
                        config.every,
                    )
            dependency = _dependency(runtime)
            if dependency is not None:
                await self._track(dependency, readings)
                if dependency.name in self._down:
                    return  # inhibited: neither fire nor resolve while the source is down
            for transition in runtime.detector.observe(readings, self.clock.now()):
                await self._on_transition(runtime, transition)
        except Exception:  # noqa: BLE001 - one bad cycle must not stop the daemon
            log.exception("playbook %s: probe cycle failed; next try on schedule", name)
        finally:
            if task is not None:
                self._ticks.discard(task)

    def inhibition(self, playbook: str) -> str | None:
        """Why a playbook's incidents must not be acted on now, if they must not."""
        runtime = self.runtimes.get(playbook)
        dependency = _dependency(runtime) if runtime else None
        if dependency is None or dependency.name not in self._down:
            return None
        return (
            f"inhibited: {dependency.name} is unavailable "
            f"(incident #{self._down[dependency.name]}); not acting on data it cannot give"
        )

    async def _track(self, dependency: Dependency, readings: list[Reading]) -> None:
        """Count consecutive probe-level errors of a dependency; past its limit, open one
        source-unavailable incident (escalated); resolve it when the source answers again."""
        name = dependency.name
        failed = probe_failure(readings)
        if failed is None:
            self._errors[name] = 0
            incident_id = self._down.pop(name, None)
            incident = self.store.get(incident_id) if incident_id is not None else None
            if incident is not None and incident.is_open:
                await self.timeline.resolve(
                    incident, Resolution.RECOVERED, f"{name} is answering again"
                )
            return
        self._errors[name] += 1
        if self._errors[name] < dependency.error_limit or name in self._down:
            return
        labels = {"source": name}
        incident, _ = self.store.open(
            fingerprint=fingerprint(SOURCE_UNAVAILABLE, labels),
            playbook=SOURCE_UNAVAILABLE,
            labels=labels,
            severity="critical",
            summary=self.timeline.redactor.text(failed.message),
            value=None,
            at=self.clock.now(),
        )
        self._down[name] = incident.id
        await self.timeline.record(incident, "opened", failed.message)
        dependents = sorted(n for n, r in self.runtimes.items() if _dependency(r) == dependency)
        await self.timeline.escalate(
            incident,
            f"{self._errors[name]} consecutive query errors ({failed.message}); incidents of "
            f"{', '.join(dependents)} are inhibited until it answers",
        )

    async def _on_transition(self, runtime: PlaybookRuntime, t: Transition) -> None:
        if t.phase is Phase.PENDING:
            log.info("playbook %s: %s breaching, pending", t.playbook, dict(t.labels) or "target")
            return
        if t.phase is Phase.FIRING:
            reading = t.reading
            incident, created = self.store.open(
                fingerprint=t.fingerprint,
                playbook=t.playbook,
                labels=t.labels,
                severity=runtime.playbook.severity,
                summary=self.timeline.redactor.text(reading.message) if reading else "no data",
                value=reading.value if reading else None,
                at=t.at,
            )
            if created:
                await self.timeline.record(
                    incident,
                    "opened",
                    incident.summary,
                    data={
                        "value": incident.value,
                        "evidence": dict(reading.evidence) if reading else {},
                    },
                )
                self._spawn(runtime, incident, reading)
            return
        current = self.store.open_for(t.fingerprint)
        if current is None or current.id in self._responses:
            return  # an active response verifies the target itself
        incident = current
        resolution = (
            Resolution.RECOVERED_AFTER_ESCALATION
            if incident.status is Status.ESCALATED
            else Resolution.RECOVERED
        )
        await self.timeline.resolve(
            incident, resolution, f"probe healthy again ({resolution})", route=runtime.route
        )

    def _spawn(
        self,
        runtime: PlaybookRuntime,
        incident: Incident,
        reading: Reading | None,
        *,
        resume: bool = False,
    ) -> None:
        task = asyncio.create_task(
            self.responder.respond(runtime, incident, reading, resume=resume),
            name=f"incident-{incident.id}",
        )
        self._responses[incident.id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._responses.pop(incident.id, None)
            final = self.store.get(incident.id)
            if final is None:
                return
            if final.status is Status.RESOLVED:
                runtime.detector.forget(final.fingerprint)
            elif runtime.detector.phase(final.fingerprint) is not Phase.FIRING:
                runtime.detector.restore_firing(final.fingerprint, final.labels, self.clock.now())

        task.add_done_callback(done)


def connect(settings: Settings, clock: Clock) -> ProbeContext:
    """Clients of the configured data sources and clusters (they connect lazily)."""
    return ProbeContext(
        clock=clock,
        prometheus={n: PrometheusClient(n, src) for n, src in settings.prometheus.items()},
        kubernetes={n: KubeClient(n, c) for n, c in settings.kubernetes.items()},
    )


def _dependency(runtime: PlaybookRuntime) -> Dependency | None:
    return getattr(runtime.probe, "dependency", None)


def build_notifiers(settings: Settings, clock: Clock) -> list[Notifier]:
    notifiers: list[Notifier] = []
    if settings.notify.console:
        notifiers.append(ConsoleNotifier())
    slack = settings.notify.slack
    token = slack.token()
    if token:
        if not slack.channel:
            log.warning(
                "Slack token set but no notify.slack.channel: only playbooks with "
                "escalate.slack.channel will reach Slack"
            )
        from daemon.notify.slack import SlackNotifier

        notifiers.append(
            SlackNotifier(
                token=token,
                channel=slack.channel,
                clock=clock,
                base_url=slack.base_url,
                timeout=slack.timeout,
            )
        )
    else:
        log.info("Slack is off: no token in $%s or notify.slack.token_file", slack.token_env)
    return notifiers


async def serve(settings: Settings, playbooks: Sequence[LoadedPlaybook]) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    clock = SystemClock()
    store = IncidentStore(settings.database)
    engine = Engine(
        playbooks=playbooks,
        store=store,
        notifiers=build_notifiers(settings, clock),
        clock=clock,
        settings=settings,
    )
    redact_logs(engine.redactor)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await engine.start()
    log.info("opsmedic running: %d playbook(s), incident log %s", len(playbooks), settings.database)
    systemd.notify(f"READY=1\nSTATUS=watching {len(playbooks)} playbook(s)")
    await stop.wait()
    log.info("stopping: finishing in-flight steps (up to %.0fs)", settings.shutdown_grace)
    systemd.notify("STOPPING=1")
    await engine.stop()
    store.close()
    log.info("stopped")


async def check_now(
    settings: Settings, playbooks: Sequence[LoadedPlaybook], clock: Clock
) -> dict[str, list[Reading]]:
    """Run each playbook's probe once, now: readings only, no incidents, no actions."""
    context = connect(settings, clock)
    results = {}
    for lp in playbooks:
        runtime = PlaybookRuntime.build(lp.playbook, lp.path, context)
        results[lp.playbook.name] = await check_once(
            runtime.probe, lp.playbook.probe_config, clock=clock, retries=0
        )
    return results
