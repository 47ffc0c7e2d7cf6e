"""`opsmedic demo`: the real engine against the sandbox world (a toy ETL loader and the
sandbox Kubernetes API server with a `shop` namespace), with four injected faults."""

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
from daemon.kube.cluster import KubernetesCluster
from daemon.playbook import load_playbooks
from daemon.report import summary_table
from daemon.sandbox.etl import ToyLoader
from daemon.sandbox.kubeapi import FakeCluster, ImageBehavior, KubeApiServer

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    title: str
    playbook: str
    inject: Callable[[], object]
    expect: str  # "auto-remediated" or "escalated"
    target: str | None = None  # the incident's `name` label, when a playbook has several


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


def _found(store: IncidentStore, scenario: Scenario, since: float) -> list[Incident]:
    return [
        i
        for i in store.incidents(playbook=scenario.playbook)
        if i.opened_at >= since and scenario.target in (None, i.labels.get("name"))
    ]


async def _await_outcome(
    store: IncidentStore, engine: Engine, scenario: Scenario, since: float, deadline: float
) -> Incident | None:
    while time.monotonic() < deadline:
        found = _found(store, scenario, since)
        if found:
            incident = store.get(found[-1].id)
            if (
                incident
                and incident.status is not Status.OPEN
                and incident.id not in engine.responding
            ):
                return incident
        await asyncio.sleep(0.2)
    found = _found(store, scenario, since)
    return found[-1] if found else None


SHOP = "shop"


def shop_cluster() -> FakeCluster:
    """The sandbox cluster: three healthy deployments in `shop`, fast kubelet back-off."""
    cluster = FakeCluster(time.time, restart_backoff=1.0)
    for name, image in (
        ("cart", "shop/cart:1.4"),
        ("checkout", "shop/checkout:2.0"),
        ("payments", "shop/payments:3.1"),
    ):
        cluster.apply(cluster.deployment_manifest(SHOP, name, image, replicas=2))
    return cluster


def bad_checkout_release(cluster: FakeCluster) -> None:
    """A new checkout image that crashes on start, rolled out like `kubectl set image`."""
    cluster.behave(
        "shop/checkout:2.1",
        ImageBehavior(
            crash_after=0.5, logs=("checkout 2.1 starting", "panic: nil pointer in PriceCache")
        ),
    )
    cluster.set_image(SHOP, "checkout", "shop/checkout:2.1", change_cause="release 2.1")


def bad_payments_config(cluster: FakeCluster) -> None:
    """The payments pods read a broken config: they crash whatever is restarted."""
    cluster.behave(
        "shop/payments:3.1",
        ImageBehavior(crash_after=0.5, logs=("config error: PAYMENTS_GATEWAY_URL is empty",)),
    )


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
        cluster = shop_cluster()
        server = KubeApiServer(cluster).start()
        try:
            kubeconfig = server.write_kubeconfig(root / "kubeconfig", context="opsmedic-demo")
            return await _run(
                root, db, loader, cluster, kubeconfig, out, scenario_timeout, slack_channel
            )
        finally:
            server.stop()
            loader.stop()


async def _run(
    root: Path,
    db: Path,
    loader: ToyLoader,
    cluster: FakeCluster,
    kubeconfig: Path,
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
        kubernetes={"default": KubernetesCluster(kubeconfig=kubeconfig, context="opsmedic-demo")},
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
    workloads = "demo-shop-workloads"
    scenarios = [
        Scenario(
            title="the ETL loader stalls",
            playbook="demo-etl-freshness",
            inject=loader.stall,
            expect="auto-remediated",
        ),
        Scenario(
            title="checkout 2.1 is rolled out and crashes on start (bad image)",
            playbook=workloads,
            target="checkout",
            inject=lambda: bad_checkout_release(cluster),
            expect="auto-remediated",
        ),
        Scenario(
            title="the cart pods wedge and stop answering their readiness probe",
            playbook=workloads,
            target="cart",
            inject=lambda: cluster.wedge(SHOP, "cart"),
            expect="auto-remediated",
        ),
        Scenario(
            title="payments reads a broken config and crash-loops (no action can fix it)",
            playbook=workloads,
            target="payments",
            inject=lambda: bad_payments_config(cluster),
            expect="escalated",
        ),
    ]
    out.write(f"opsmedic demo: sandbox Kubernetes API at {kubeconfig} (namespace {SHOP}), ")
    out.write(f"warehouse {loader.database}\nincident log: {db}\n\n")
    outcomes: list[Outcome] = []
    await engine.start()
    try:
        await asyncio.sleep(2.5)  # the pods become ready; the loader lands its first rows
        for number, scenario in enumerate(scenarios, 1):
            out.write(f"--- fault {number}: {scenario.title}\n")
            out.flush()
            injected = clock.now()
            scenario.inject()
            incident = await _await_outcome(
                store, engine, scenario, injected, time.monotonic() + scenario_timeout
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
        f"\ndemo passed: all {len(outcomes)} outcomes as expected\n"
        if not failed
        else "\ndemo failed\n"
    )
    return 0 if not failed else 1
