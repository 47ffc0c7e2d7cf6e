"""The whole loop on a fake clock: probe → detector → incident → rules → act → verify."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from daemon.agents import AGENTS, Decision, DiagnosisRequest
from daemon.clock import FakeClock, settle
from daemon.config import Settings
from daemon.engine import Engine
from daemon.incidents import IncidentStore, Resolution, Status
from daemon.notify.slack import SlackNotifier
from daemon.playbook import load_playbooks
from daemon.sandbox.web import ToyWebService

NAME = "web-health"


def playbook(
    tmp_path: Path,
    web: ToyWebService,
    *,
    actions: list[dict[str, Any]],
    policy: dict[str, Any],
    **extra: Any,
) -> Path:
    path = tmp_path / "pb" / f"{NAME}.yaml"
    path.parent.mkdir(exist_ok=True)
    document = {
        "name": NAME,
        "probe": {"kind": "http", "url": f"{web.url}/health", "every": "10s"},
        "actions": actions,
        "policy": policy,
        **extra,
    }
    path.write_text(yaml.safe_dump(document))
    return path.parent


def counter_action(tmp_path: Path, action_id: str = "fix") -> dict[str, Any]:
    """A real command that appends a line to a file each time it runs."""
    marker = tmp_path / f"{action_id}.runs"
    code = f"open({str(marker)!r}, 'a').write('ran\\n')"
    return {"id": action_id, "uses": "command", "with": {"argv": [sys.executable, "-c", code]}}


def runs(tmp_path: Path, action_id: str = "fix") -> int:
    marker = tmp_path / f"{action_id}.runs"
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def engine_for(pb_dir: Path, store: IncidentStore, clock: FakeClock, **settings: object) -> Engine:
    return Engine(
        playbooks=load_playbooks([pb_dir]),
        store=store,
        notifiers=[],
        clock=clock,
        settings=Settings(probe_retries=0, **settings),  # type: ignore[arg-type]
    )


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for real I/O (a subprocess, a loopback request) to finish; never for clock time."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def kinds(store: IncidentStore, incident_id: int) -> list[str]:
    return [e.kind for e in store.events(incident_id)]


async def test_action_that_heals_resolves_as_auto_remediated(
    tmp_path: Path, web: ToyWebService, store: IncidentStore, clock: FakeClock
) -> None:
    repair = {
        "id": "repair",
        "uses": "http",
        "with": {"url": f"{web.url}/admin/fault", "json": {"dependency_down": False}},
    }
    pb = playbook(tmp_path, web, policy={"verify_after": "1m"}, actions=[repair])
    engine = engine_for(pb, store, clock)
    await engine.start(schedule=False)
    web.break_dependency()
    await engine.tick(NAME)
    await until(lambda: clock.sleepers == 1, "the responder to wait for verify_after")
    assert web.dependency_down is False
    [incident] = store.incidents()
    assert incident.status is Status.OPEN
    await clock.advance(60)
    await engine.idle()
    incident = store.get(incident.id)
    assert incident is not None and incident.status is Status.RESOLVED
    assert incident.resolution == Resolution.AUTO_REMEDIATED
    assert kinds(store, incident.id) == [
        "opened",
        "diagnosed",
        "action_started",
        "action_finished",
        "verifying",
        "resolved",
    ]


async def test_unfixable_fault_exhausts_actions_and_escalates(
    tmp_path: Path, web: ToyWebService, store: IncidentStore, clock: FakeClock
) -> None:
    actions = [counter_action(tmp_path, "first"), counter_action(tmp_path, "second")]
    pb = playbook(tmp_path, web, policy={"verify_after": "30s"}, actions=actions)
    engine = engine_for(pb, store, clock)
    await engine.start(schedule=False)
    web.break_dependency()
    await engine.tick(NAME)
    for _ in range(2):
        await until(lambda: clock.sleepers == 1, "verify wait")
        await clock.advance(30)
    await engine.idle()
    [incident] = store.incidents()
    assert incident.status is Status.ESCALATED
    assert (runs(tmp_path, "first"), runs(tmp_path, "second")) == (1, 1)
    assert kinds(store, incident.id)[-2:] == ["diagnosed", "escalated"]


async def test_repeated_firing_does_not_open_a_second_incident(
    tmp_path: Path, web: ToyWebService, store: IncidentStore, clock: FakeClock
) -> None:
    pb = playbook(tmp_path, web, policy={}, actions=[])
    engine = engine_for(pb, store, clock)
    await engine.start(schedule=False)
    web.break_dependency()
    for _ in range(5):
        await engine.tick(NAME)
        await engine.idle()
        await clock.advance(10)
    [incident] = store.incidents()
    assert incident.status is Status.ESCALATED
    web.break_dependency(False)
    await engine.tick(NAME)
    resolved = store.get(incident.id)
    assert resolved is not None and resolved.resolution == Resolution.RECOVERED_AFTER_ESCALATION


async def test_restart_mid_incident_keeps_incident_attempts_and_cooldown(
    tmp_path: Path, web: ToyWebService, clock: FakeClock
) -> None:
    db = tmp_path / "incidents.db"
    pb = playbook(
        tmp_path,
        web,
        policy={"verify_after": "2m", "cooldown": "30m"},
        # the history cause `repeated_failure` would escalate first: this tests the guard
        actions=[{**counter_action(tmp_path), "ignore_causes": ["repeated_failure"]}],
    )
    store = IncidentStore(db)
    first = engine_for(pb, store, clock)
    await first.start(schedule=False)
    web.break_dependency()
    await first.tick(NAME)
    await until(lambda: clock.sleepers == 1, "the action to finish and verify to wait")
    await first.stop(grace=0)  # SIGTERM while waiting to verify
    store.close()
    assert runs(tmp_path) == 1

    store = IncidentStore(db)  # the daemon starts again
    second = engine_for(pb, store, clock)
    await second.start(schedule=False)
    await until(lambda: clock.sleepers == 1, "the landed fix's verification to resume")
    await clock.advance(120)
    await second.idle()
    [incident] = store.incidents()
    assert "interrupted" in kinds(store, incident.id) and "resumed" in kinds(store, incident.id)
    assert "verify_failed" in kinds(store, incident.id)  # verified as if it never stopped
    assert incident.status is Status.ESCALATED  # fix was tried once already: not run again
    assert runs(tmp_path) == 1
    assert store.action_attempts(incident.id) == {"fix": 1}

    web.break_dependency(False)
    await second.tick(NAME)
    assert store.get(incident.id).status is Status.RESOLVED  # type: ignore[union-attr]
    await clock.advance(600)
    web.break_dependency()
    await second.tick(NAME)
    await second.idle()
    newest = store.incidents()[0]
    assert newest.id != incident.id and newest.status is Status.ESCALATED
    assert "cooldown" in store.events(newest.id)[-1].message
    assert runs(tmp_path) == 1
    store.close()


async def test_dry_run_decides_but_never_acts(
    tmp_path: Path, web: ToyWebService, store: IncidentStore, clock: FakeClock
) -> None:
    pb = playbook(tmp_path, web, policy={"dry_run": True}, actions=[counter_action(tmp_path)])
    engine = engine_for(pb, store, clock)
    await engine.start(schedule=False)
    web.break_dependency()
    await engine.tick(NAME)
    await engine.idle()
    [incident] = store.incidents()
    assert kinds(store, incident.id)[-2:] == ["shadow", "escalated"]
    assert "would run fix" in store.events(incident.id)[-2].message
    assert runs(tmp_path) == 0


async def test_global_dry_run_overrides_playbook(
    tmp_path: Path, web: ToyWebService, store: IncidentStore, clock: FakeClock
) -> None:
    pb = playbook(tmp_path, web, policy={}, actions=[counter_action(tmp_path)])
    engine = engine_for(pb, store, clock, dry_run=True)
    await engine.start(schedule=False)
    web.break_dependency()
    await engine.tick(NAME)
    await engine.idle()
    assert runs(tmp_path) == 0


class RogueAgent:
    """An agent that names an action the playbook does not list."""

    name = "test-rogue"

    async def diagnose(self, request: DiagnosisRequest) -> Decision:
        return Decision(action="delete-everything", reason="trust me", agent=self.name)


if "test-rogue" not in AGENTS:
    AGENTS.register("test-rogue", RogueAgent)


async def test_decision_outside_playbook_is_rejected_and_rules_decide(
    tmp_path: Path, web: ToyWebService, store: IncidentStore, clock: FakeClock
) -> None:
    pb = playbook(
        tmp_path,
        web,
        policy={"verify_after": "1s"},
        actions=[counter_action(tmp_path)],
        diagnose={"agent": "test-rogue"},
    )
    engine = engine_for(pb, store, clock)
    await engine.start(schedule=False)
    web.break_dependency()
    await engine.tick(NAME)
    await until(lambda: clock.sleepers == 1, "verify wait")
    await clock.advance(1)
    await engine.idle()
    [incident] = store.incidents()
    events = store.events(incident.id)
    assert [e.kind for e in events][:3] == ["opened", "decision_rejected", "diagnosed"]
    assert events[2].data["agent"] == "rules" and events[2].data["action"] == "fix"
    assert runs(tmp_path) == 1


async def test_notifier_down_loses_nothing(
    tmp_path: Path, web: ToyWebService, store: IncidentStore, clock: FakeClock
) -> None:
    pb = playbook(tmp_path, web, policy={}, actions=[])
    slack = SlackNotifier(
        token="xoxb-test",  # noqa: S106
        channel="#ops",
        clock=clock,
        base_url="http://127.0.0.1:9/api/",
        retries=0,
    )
    engine = Engine(
        playbooks=load_playbooks([pb]),
        store=store,
        notifiers=[slack],
        clock=clock,
        settings=Settings(probe_retries=0),
    )
    await engine.start(schedule=False)
    web.break_dependency()
    await engine.tick(NAME)
    await engine.idle()
    await settle()
    [incident] = store.incidents()
    assert incident.status is Status.ESCALATED
    assert kinds(store, incident.id)[-2:] == ["escalated", "notify_failed"]
