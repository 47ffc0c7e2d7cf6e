"""`opsmedic demo`: the real engine against the toy world, with three injected faults."""

from __future__ import annotations

import asyncio
import logging
import os
import string
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TextIO

from daemon.clock import SystemClock
from daemon.config import NotifySettings, Settings, SlackSettings
from daemon.engine import Engine, build_notifiers
from daemon.incidents import Incident, IncidentStore, Status
from daemon.playbook import load_playbooks
from daemon.report import summary_table
from daemon.sandbox.etl import ToyLoader
from daemon.sandbox.web import ToyWebService

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    title: str
    playbook: str
    inject: Callable[[], None]
    expect: str  # "auto-remediated" or "escalated"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    scenario: Scenario
    injected_at: float
    incident: Incident | None

    @property
    def outcome(self) -> str:
        if self.incident is None:
            return "no incident"
        if self.incident.status is Status.RESOLVED:
            return self.incident.resolution or "resolved"
        return self.incident.status.value

    @property
    def passed(self) -> bool:
        return self.outcome == self.scenario.expect


def render_playbooks(target: Path, values: dict[str, str]) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for item in resources.files("daemon.sandbox").joinpath("playbooks").iterdir():
        if item.name.endswith(".yaml"):
            text = string.Template(item.read_text(encoding="utf-8")).substitute(values)
            (target / item.name).write_text(text, encoding="utf-8")
    return target


async def _await_outcome(
    store: IncidentStore, engine: Engine, playbook: str, since: float, deadline: float
) -> Incident | None:
    while time.monotonic() < deadline:
        found = [i for i in store.incidents(playbook=playbook) if i.opened_at >= since]
        if found:
            incident = store.get(found[-1].id)
            if (
                incident
                and incident.status is not Status.OPEN
                and incident.id not in engine.responding
            ):
                return incident
        await asyncio.sleep(0.2)
    found = [i for i in store.incidents(playbook=playbook) if i.opened_at >= since]
    return found[-1] if found else None


async def run_demo(
    *,
    workdir: Path | None = None,
    out: TextIO | None = None,
    scenario_timeout: float = 25.0,
    slack_channel: str | None = None,
) -> int:
    out = out or sys.stdout
    with tempfile.TemporaryDirectory(prefix="opsmedic-demo-") as tmp:
        root = workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        db = root / "incidents.db"
        db.unlink(missing_ok=True)
        loader = ToyLoader(root / "etl").start()
        web = ToyWebService().start()
        try:
            return await _run(root, db, loader, web, out, scenario_timeout, slack_channel)
        finally:
            web.stop()
            loader.stop()


async def _run(
    root: Path,
    db: Path,
    loader: ToyLoader,
    web: ToyWebService,
    out: TextIO,
    scenario_timeout: float,
    slack_channel: str | None,
) -> int:
    playbook_dir = render_playbooks(
        root / "playbooks",
        {
            "warehouse_db": str(loader.database),
            "etl_dir": str(loader.directory),
            "python": sys.executable,
            "web_url": web.url,
        },
    )
    settings = Settings(
        playbooks=[playbook_dir],
        database=db,
        jitter=0.05,
        probe_retries=0,
        shutdown_grace=5.0,
        notify=NotifySettings(
            slack=SlackSettings(channel=slack_channel or os.environ.get("OPSMEDIC_SLACK_CHANNEL"))
        ),
    )
    clock = SystemClock()
    store = IncidentStore(db)
    engine = Engine(
        playbooks=load_playbooks([playbook_dir]),
        store=store,
        clock=clock,
        settings=settings,
        notifiers=build_notifiers(settings, clock),
    )
    scenarios = [
        Scenario(
            title="the ETL loader stalls",
            playbook="demo-etl-freshness",
            inject=loader.stall,
            expect="auto-remediated",
        ),
        Scenario(
            title="the web service's error ratio spikes",
            playbook="demo-web-error-rate",
            inject=web.spike_errors,
            expect="auto-remediated",
        ),
        Scenario(
            title="the web service's database goes down (no action can fix it)",
            playbook="demo-web-health",
            inject=web.break_dependency,
            expect="escalated",
        ),
    ]
    out.write(f"opsmedic demo: toy web service at {web.url}, warehouse {loader.database}\n")
    out.write(f"incident log: {db}\n\n")
    outcomes: list[Outcome] = []
    await engine.start()
    try:
        await asyncio.sleep(2.5)  # baselines: rates need two scrapes
        for number, scenario in enumerate(scenarios, 1):
            out.write(f"--- fault {number}: {scenario.title}\n")
            out.flush()
            injected = clock.now()
            scenario.inject()
            incident = await _await_outcome(
                store, engine, scenario.playbook, injected, time.monotonic() + scenario_timeout
            )
            outcomes.append(Outcome(scenario=scenario, injected_at=injected, incident=incident))
    finally:
        await engine.stop(grace=5.0)
    rows = [(o.incident, o.injected_at, o.outcome, o.scenario.expect) for o in outcomes]
    out.write("\n" + summary_table(store, rows) + "\n")
    store.close()
    failed = [o for o in outcomes if not o.passed]
    for o in failed:
        out.write(f"FAILED: {o.scenario.title}: expected {o.scenario.expect}, got {o.outcome}\n")
    out.write(
        "\ndemo passed: all three outcomes as expected\n" if not failed else "\ndemo failed\n"
    )
    return 0 if not failed else 1
