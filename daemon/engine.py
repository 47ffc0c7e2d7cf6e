"""Wiring: scheduler → probes → detector → incidents → responder, and the daemon's lifecycle."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from datetime import UTC, datetime

from daemon import systemd
from daemon.clock import Clock, SystemClock
from daemon.config import Settings
from daemon.detector import Phase, Transition
from daemon.guard import Guard
from daemon.incidents import Incident, IncidentStore, Resolution, Status
from daemon.notify.base import Notifier
from daemon.notify.console import ConsoleNotifier
from daemon.playbook import LoadedPlaybook
from daemon.responder import Responder
from daemon.runtime import PlaybookRuntime
from daemon.timeline import Timeline
from probes.base import Outcome, ProbeContext, Reading, check_once

log = logging.getLogger(__name__)


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
        context = ProbeContext(clock=clock)
        self.runtimes = {
            lp.playbook.name: PlaybookRuntime.build(lp.playbook, lp.path, context)
            for lp in playbooks
        }
        self.timeline = Timeline(store, notifiers, clock)
        self.responder = Responder(
            store=store,
            timeline=self.timeline,
            guard=Guard(store, clock, force_dry_run=self.settings.dry_run),
            clock=clock,
            probe_retries=self.settings.probe_retries,
        )
        self._responses: dict[int, asyncio.Task[None]] = {}
        self._ticks: set[asyncio.Task[object]] = set()
        self._scheduler: object | None = None

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self, *, schedule: bool = True) -> None:
        """Pick up open incidents from the log, then start polling."""
        await self.recover()
        if schedule:
            self._start_scheduler()

    async def recover(self) -> None:
        for incident in self.store.open_incidents():
            runtime = self.runtimes.get(incident.playbook)
            if runtime is None:
                if incident.status is Status.OPEN:
                    escalated = self.store.set_status(
                        incident.id, Status.ESCALATED, at=self.clock.now()
                    )
                    await self.timeline.record(
                        escalated,
                        "escalated",
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
            for transition in runtime.detector.observe(readings, self.clock.now()):
                await self._on_transition(runtime, transition)
        except Exception:  # noqa: BLE001 - one bad cycle must not stop the daemon
            log.exception("playbook %s: probe cycle failed; next try on schedule", name)
        finally:
            if task is not None:
                self._ticks.discard(task)

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
                summary=reading.message if reading else "no data",
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
        resolved = self.store.set_status(
            incident.id, Status.RESOLVED, at=self.clock.now(), resolution=resolution
        )
        await self.timeline.record(
            resolved, "resolved", f"probe healthy again ({resolution})", route=runtime.route
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


async def check_now(playbooks: Sequence[LoadedPlaybook], clock: Clock) -> dict[str, list[Reading]]:
    """Run each playbook's probe once, now: readings only, no incidents, no actions."""
    context = ProbeContext(clock=clock)
    results = {}
    for lp in playbooks:
        runtime = PlaybookRuntime.build(lp.playbook, lp.path, context)
        results[lp.playbook.name] = await check_once(
            runtime.probe, lp.playbook.probe_config, clock=clock, retries=0
        )
    return results
