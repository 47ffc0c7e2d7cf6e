"""Wiring: scheduler → probes → detector → incidents → responder, and the daemon's lifecycle."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from daemon import systemd
from daemon.actions.base import RECORDS_KEPT, prune_records
from daemon.agents.chain import LLMDiagnosers
from daemon.clock import Clock, SystemClock
from daemon.config import Settings
from daemon.detector import Phase, Transition, fingerprint
from daemon.errors import ConfigError
from daemon.guard import Guard, SafetySettings
from daemon.incidents import Incident, IncidentStore, Resolution, Status
from daemon.inhibit import SOURCE_UNAVAILABLE, Inhibitor
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
        self.context = context = connect(self.settings, clock)
        self.runtimes = {
            lp.playbook.name: PlaybookRuntime.build(lp.playbook, lp.path, context)
            for lp in playbooks
        }
        self.redactor = redactor = self.settings.redactor()
        self.timeline = Timeline(store, notifiers, clock, redactor)
        self.agents = LLMDiagnosers(
            self.settings.agents, self.settings.llm, clock=clock, redactor=redactor
        )
        self.guard = Guard(store, clock, settings=self._safety(), inhibitor=self._inhibitor())
        self.responder = Responder(
            store=store,
            timeline=self.timeline,
            guard=self.guard,
            clock=clock,
            records=store.path.with_name(store.path.name + ".records"),
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
        self._saved: dict[str, bool] = {}  # playbook → whether its last saved state had series
        self._scheduler: object | None = None

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self, *, schedule: bool = True) -> None:
        """Pick up open incidents from the log, then start polling."""
        if self.responder.records is not None:
            before = self.clock.now() - RECORDS_KEPT
            await asyncio.to_thread(prune_records, self.responder.records, before=before)
        await self.recover()
        if schedule:
            self._start_scheduler()

    async def recover(self) -> None:
        for loaded in self.runtimes.values():
            self._restore(loaded)
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
            if incident.status is Status.OPEN:
                log.info("incident %s: resuming after restart", incident.id)
                self._spawn(runtime, incident, None, resume=True)

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler = scheduler
        for name, runtime in self.runtimes.items():
            self._schedule(name, runtime)
        scheduler.start()

    def _schedule(self, name: str, runtime: PlaybookRuntime) -> None:
        if self._scheduler is None:
            return
        from apscheduler.triggers.interval import IntervalTrigger

        every = runtime.playbook.probe_config.every
        self._scheduler.add_job(  # type: ignore[attr-defined]
            self.tick,
            IntervalTrigger(seconds=every, jitter=min(self.settings.jitter, every / 4)),
            args=[name],
            id=name,
            name=f"probe {name}",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(every)),
            next_run_time=datetime.now(UTC),  # first check at once, then every `every`
            replace_existing=True,
        )

    async def reload(self, settings: Settings, playbooks: Sequence[LoadedPlaybook]) -> None:
        """Apply a new, valid config and playbooks while running (SIGHUP, a changed file).
        Changed playbooks get a new probe (keeping their series' state when the probe itself
        is unchanged); a removed playbook stops and its open incidents are escalated; guard
        rails and diagnosis settings apply at once. The incident log, notifiers and agents stay
        as started: changing those needs a restart, which the log says."""
        old = self.settings
        fixed = [
            k
            for k in ("database", "notify", "agents", "llm", "redact")
            if getattr(settings, k) != getattr(old, k)
        ]
        if fixed:
            log.warning("reload: %s changed; restart the daemon to apply it", ", ".join(fixed))
        self.settings = settings
        reconnect = (settings.prometheus, settings.kubernetes) != (old.prometheus, old.kubernetes)
        if reconnect:  # every probe gets the new clients
            self.context = connect(settings, self.clock)
            self.responder.prometheus = dict(self.context.prometheus)
            self.responder.kubernetes = dict(self.context.kubernetes)
        wanted = {lp.playbook.name: lp for lp in playbooks}
        for name in [n for n in self.runtimes if n not in wanted]:
            del self.runtimes[name]
            if self._scheduler is not None:
                self._scheduler.remove_job(name)  # type: ignore[attr-defined]
            await self._orphaned(name)
        for name, lp in wanted.items():
            current = self.runtimes.get(name)
            same = current is not None and (current.playbook, current.path) == (
                lp.playbook,
                lp.path,
            )
            if same and not reconnect:
                continue
            runtime = PlaybookRuntime.build(lp.playbook, lp.path, self.context)
            if current is not None and current.playbook.probe_config == lp.playbook.probe_config:
                runtime = replace(runtime, detector=current.detector)
            else:
                self._restore(runtime)
            self.runtimes[name] = runtime
            self._schedule(name, runtime)
        self.guard.settings = self._safety()
        self.guard.inhibitor = self._inhibitor()
        self.responder.diagnosis = settings.diagnosis
        log.info("reloaded: %d playbook(s)", len(self.runtimes))

    async def _orphaned(self, playbook: str) -> None:
        """A playbook was removed: stop working its incidents and hand them to humans."""
        for incident in self.store.open_incidents():
            if incident.playbook != playbook:
                continue
            task = self._responses.get(incident.id)
            if task is not None:
                task.cancel(msg=f"playbook {playbook!r} was removed")
                await asyncio.gather(task, return_exceptions=True)
            current = self.store.get(incident.id) or incident
            await self.timeline.escalate(
                current,
                f"playbook {playbook!r} was removed from the config; opsmedic no longer "
                "watches this target: a human must close this",
            )

    def _restore(self, runtime: PlaybookRuntime) -> None:
        """Seed a new detector with its saved pending and firing series (as Prometheus
        restores `for` state), and with the series that open incidents say are firing."""
        saved = self.store.alert_state(runtime.playbook.name)
        runtime.detector.restore(saved, now=self.clock.now())
        self._saved[runtime.playbook.name] = bool(saved)  # so a now-empty state is written
        open_ones = {i.fingerprint for i in self.store.open_incidents()}
        for state in saved:  # firing without an incident: the fire never reached the log
            if state.phase is Phase.FIRING and state.fingerprint not in open_ones:
                runtime.detector.forget(state.fingerprint)
        for incident in self.store.open_incidents():
            if incident.playbook == runtime.playbook.name:
                runtime.detector.restore_firing(
                    incident.fingerprint, incident.labels, incident.opened_at
                )

    async def stop(self, grace: float | None = None) -> None:
        """Stop polling; let in-flight responses finish within `grace`, then interrupt them
        (they are recorded as interrupted and resume on the next start)."""
        self.responder.stop()  # from now on no new diagnosis or action starts
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
            self._save_state(runtime)  # after the incidents it fired are in the log
        except Exception:  # noqa: BLE001 - one bad cycle must not stop the daemon
            log.exception("playbook %s: probe cycle failed; next try on schedule", name)
        finally:
            if task is not None:
                self._ticks.discard(task)

    def _safety(self) -> SafetySettings:
        safety = self.settings.safety
        return safety.model_copy(update={"shadow": True}) if self.settings.dry_run else safety

    def _inhibitor(self) -> Inhibitor:
        return Inhibitor(
            self.store,
            self.clock,
            rules={name: r.playbook.inhibits for name, r in self.runtimes.items()},
            sources={
                name: dep.name
                for name, r in self.runtimes.items()
                if (dep := _dependency(r)) is not None
            },
            silences=self.settings.safety.silences,
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
        incident, _ = await self.timeline.open(
            fingerprint=fingerprint(SOURCE_UNAVAILABLE, labels),
            playbook=SOURCE_UNAVAILABLE,
            labels=labels,
            severity="critical",
            summary=failed.message,
            value=None,
            at=self.clock.now(),
        )
        self._down[name] = incident.id
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
            incident, created = await self.timeline.open(
                fingerprint=t.fingerprint,
                playbook=t.playbook,
                labels=t.labels,
                severity=runtime.playbook.severity,
                summary=reading.message if reading else "no data",
                value=reading.value if reading else None,
                at=t.at,
                data={
                    "value": reading.value if reading else None,
                    "evidence": dict(reading.evidence) if reading else {},
                },
            )
            if created:
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

    def _save_state(self, runtime: PlaybookRuntime) -> None:
        """Keep the detector's series in the log when they changed, for a restart."""
        states = runtime.detector.snapshot()
        name = runtime.playbook.name
        if states or self._saved.get(name):
            self.timeline.alert_state(name, states)
        self._saved[name] = bool(states)

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
            self._save_state(runtime)

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


Loader = Callable[[], tuple[Settings, list[LoadedPlaybook]]]
WATCH_EVERY = 2.0  # seconds between looks at the config and playbook files


async def serve(
    settings: Settings,
    playbooks: Sequence[LoadedPlaybook],
    *,
    reload: Loader | None = None,
    watch: Sequence[Path] = (),
) -> None:
    """Run the daemon until SIGTERM or SIGINT. SIGHUP, or a change to a file in `watch`,
    reloads through `reload`; a new config that does not load is refused with its errors
    logged, and the running one goes on."""
    clock = SystemClock()
    store = IncidentStore(settings.database, lock=True)
    engine = Engine(
        playbooks=playbooks,
        store=store,
        notifiers=build_notifiers(settings, clock),
        clock=clock,
        settings=settings,
    )
    redact_logs(engine.redactor)
    stop, hup = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, hup.set)
    await engine.start()
    log.info("opsmedic running: %d playbook(s), incident log %s", len(playbooks), settings.database)
    systemd.notify(f"READY=1\nSTATUS=watching {len(playbooks)} playbook(s)")
    watcher = asyncio.create_task(_watch(watch, hup, clock))
    try:
        while not stop.is_set():
            await _first(stop.wait(), hup.wait())
            if hup.is_set() and not stop.is_set():
                hup.clear()
                systemd.notify("RELOADING=1")
                await _reload(engine, reload)
                systemd.notify(f"READY=1\nSTATUS=watching {len(engine.runtimes)} playbook(s)")
    finally:
        watcher.cancel()
    log.info("stopping: finishing in-flight steps (up to %.0fs)", engine.settings.shutdown_grace)
    systemd.notify("STOPPING=1")
    await engine.stop()
    store.close()
    log.info("stopped")


async def _reload(engine: Engine, load: Loader | None) -> None:
    if load is None:
        log.warning("reload requested, but this daemon was started without a config to reload")
        return
    log.info("reloading the config and playbooks")
    try:
        settings, playbooks = await asyncio.to_thread(load)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("reload refused: %s", problem)
        log.error(
            "reload refused: the running config (%d playbook(s)) goes on", len(engine.runtimes)
        )
        return
    except Exception:  # noqa: BLE001 - a bad reload must never stop the daemon
        log.exception("reload failed; the running config goes on")
        return
    await engine.reload(settings, playbooks)


def _signature(paths: Sequence[Path]) -> list[tuple[str, int, int]]:
    found = []
    for path in paths:
        files = sorted(path.rglob("*.y*ml")) if path.is_dir() else [path]
        for file in files:
            try:
                st = file.stat()
            except OSError:
                continue
            found.append((str(file), st.st_mtime_ns, st.st_size))
    return found


async def _watch(paths: Sequence[Path], changed: asyncio.Event, clock: Clock) -> None:
    """Set `changed` when a file under `paths` is added, removed or modified."""
    if not paths:
        return
    last = await asyncio.to_thread(_signature, paths)
    while True:
        await clock.sleep(WATCH_EVERY)
        now = await asyncio.to_thread(_signature, paths)
        if now != last:
            log.info("a config or playbook file changed")
            last = now
            changed.set()


async def _first(*waits: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


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
