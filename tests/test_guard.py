"""Guard rails: blast radius, rate limit, flap guard, pause, shadow mode, inhibition and
silences, on a real incident log and (for whole responses) the sandbox Kubernetes API."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.actions import ACTIONS
from daemon.agents import AGENTS, Decision, DiagnosisRequest
from daemon.clock import FakeClock
from daemon.config import Settings
from daemon.engine import Engine
from daemon.guard import Guard, Rule, SafetySettings
from daemon.incidents import Control, EventKind, Incident, IncidentStore, Resolution, Status
from daemon.inhibit import Inhibitor, InhibitRule, Matcher, SilenceSettings
from daemon.kube.cluster import KubernetesCluster
from daemon.playbook import load_playbooks
from daemon.sandbox.kubeapi import FakeCluster, ImageBehavior, KubeApiServer
from tests.fakes.http import ScriptedServer

MUTATING = {"create", "update", "patch", "delete", "deletecollection"}


# --- the guard on a real log -----------------------------------------------------------------


def open_incident(
    store: IncidentStore, at: float, *, fp: str = "fp-web", playbook: str = "web", **labels: str
) -> Incident:
    incident, _ = store.open(
        fingerprint=fp,
        playbook=playbook,
        labels=labels or {"namespace": "shop", "deployment": "web"},
        severity="warning",
        summary="down",
        value=None,
        at=at,
    )
    return incident


def started(store: IncidentStore, incident: Incident, at: float, attempt: int = 1) -> None:
    store.append(
        incident.id,
        EventKind.ACTION_STARTED,
        "restart",
        at=at,
        data={"action": "restart", "uses": "kubernetes.restart", "attempt": attempt},
    )


def step_playbook(tmp_path: Path, **extra: Any) -> Any:
    document = {
        "name": "web",
        "probe": {"kind": "http", "url": "http://127.0.0.1:9/health"},
        "actions": [{"id": "restart", "uses": "command", "with": {"argv": ["true"]}}],
        "policy": {"max_attempts": 10, "cooldown": "0s"},
        **extra,
    }
    (tmp_path / "web.yaml").write_text(yaml.safe_dump(document))
    [loaded] = load_playbooks([tmp_path / "web.yaml"])
    return loaded.playbook


def test_flap_guard_trips_at_the_burst_and_holds_until_healthy_long_enough(
    tmp_path: Path, store: IncidentStore, clock: FakeClock
) -> None:
    pb = step_playbook(tmp_path)
    guard = Guard(store, clock, settings=SafetySettings())  # burst 3 per hour, healthy 30m
    t0 = clock.now()
    for n in range(3):  # three incidents, each restarted once and resolved 5 minutes later
        incident = open_incident(store, t0 + n * 600)
        started(store, incident, t0 + n * 600 + 10)
        store.set_status(incident.id, Status.RESOLVED, at=t0 + n * 600 + 300)
    clock._now = t0 + 1900  # noqa: SLF001 - the fourth failure, 10 minutes after the third
    fourth = open_incident(store, clock.now())
    verdict = guard.check(pb, fourth, pb.step("restart"))
    assert verdict.rule is Rule.FLAP
    assert "ran 3 time(s)" in verdict.reason
    store.append(
        fourth.id, EventKind.GUARD_DENIED, verdict.reason, at=clock.now(),
        data={"action": "restart", "rule": verdict.rule},
    )  # fmt: skip
    store.set_status(fourth.id, Status.RESOLVED, at=clock.now() + 60)

    healthy = clock.now() + 60  # the fourth resolved; then two more failures, each after
    fifth = open_incident(store, healthy + 1200)  # only 20 healthy minutes
    store.set_status(fifth.id, Status.RESOLVED, at=healthy + 1260)
    clock._now = healthy + 2460  # noqa: SLF001 - over an hour after the three runs
    sixth = open_incident(store, clock.now())
    assert guard.check(pb, sixth, pb.step("restart")).rule is Rule.FLAP  # still tripped

    store.set_status(sixth.id, Status.RESOLVED, at=clock.now() + 60)
    clock._now += 60 + 1860  # noqa: SLF001 - healthy 31 minutes
    seventh = open_incident(store, clock.now())
    assert guard.check(pb, seventh, pb.step("restart")).allowed


def test_rate_limit_counts_every_target_and_says_when_it_lifts(
    tmp_path: Path, store: IncidentStore, clock: FakeClock
) -> None:
    pb = step_playbook(tmp_path)
    settings = SafetySettings.model_validate({"rate_limit": {"actions": 3, "per": "10m"}})
    guard = Guard(store, clock, settings=settings)
    t0 = clock.now()
    for n in range(3):
        incident = open_incident(store, t0 + n, fp=f"fp-{n}", deployment=f"d{n}")
        started(store, incident, t0 + 60 * n)
    clock._now = t0 + 300  # noqa: SLF001
    other = open_incident(store, clock.now(), fp="fp-new", deployment="new")
    verdict = guard.check(pb, other, pb.step("restart"))
    assert verdict.rule is Rule.RATE and verdict.waits
    assert verdict.until == t0 + 600  # the oldest of the three leaves the window then
    clock._now = t0 + 600  # noqa: SLF001
    assert guard.check(pb, other, pb.step("restart")).allowed


def test_an_attempt_that_never_landed_counts_nowhere(
    tmp_path: Path, store: IncidentStore, clock: FakeClock
) -> None:
    incident = open_incident(store, clock.now())
    started(store, incident, clock.now())
    store.append(
        incident.id, EventKind.ACTION_RECONCILED, "never landed", at=clock.now(),
        data={"action": "restart", "attempt": 1, "landed": False},
    )  # fmt: skip
    assert store.action_attempts(incident.id) == {}
    assert store.action_starts(since=0) == []
    assert store.last_action(incident.fingerprint, other_than=0) is None
    assert store.attempts_started(incident.id) == 1  # the next attempt gets a new key


def test_blast_radius_admits_by_severity_then_age(
    tmp_path: Path, store: IncidentStore, clock: FakeClock
) -> None:
    warning = step_playbook(tmp_path)
    critical = warning.model_copy(update={"severity": "critical"})
    settings = SafetySettings.model_validate({"blast_radius": {"total": 2, "per_group": 2}})
    guard = Guard(store, clock, settings=settings)
    a, b, c, d = (
        open_incident(store, clock.now() + n, fp=f"fp{n}", namespace="shop", deployment=f"d{n}")
        for n in range(4)
    )
    for incident in (a, b):
        assert guard.check(warning, incident, warning.step("restart")).allowed
        guard.admit(incident)
    held = guard.check(warning, c, warning.step("restart"))
    assert held.rule is Rule.BLAST and "2 remediations in flight" in held.reason
    guard._waiting[c.id] = guard._waiter(warning, c)  # noqa: SLF001 - c waits, as wait() does
    guard._waiting[d.id] = guard._waiter(critical, d)  # noqa: SLF001 - d is critical
    guard.release(a.id)
    assert guard.check(warning, c, warning.step("restart")).rule is Rule.BLAST  # d goes first
    assert guard.check(critical, d, critical.step("restart")).allowed
    guard.admit(d)
    assert guard.in_flight == [b.id, d.id]


def test_blast_radius_per_group_leaves_other_groups_free(
    tmp_path: Path, store: IncidentStore, clock: FakeClock
) -> None:
    pb = step_playbook(tmp_path)
    settings = SafetySettings.model_validate({"blast_radius": {"total": 10, "per_group": 1}})
    guard = Guard(store, clock, settings=settings)
    shop = open_incident(store, clock.now(), fp="1", namespace="shop", deployment="a")
    shop2 = open_incident(store, clock.now(), fp="2", namespace="shop", deployment="b")
    pay = open_incident(store, clock.now(), fp="3", namespace="pay", deployment="a")
    guard.admit(shop)
    assert guard.check(pb, shop2, pb.step("restart")).rule is Rule.BLAST
    assert guard.check(pb, pay, pb.step("restart")).allowed
    assert guard.group(pay) == "namespace=pay"


def test_pause_from_the_log_and_from_the_config(
    tmp_path: Path, store: IncidentStore, clock: FakeClock
) -> None:
    pb = step_playbook(tmp_path)
    incident = open_incident(store, clock.now())
    guard = Guard(store, clock)
    store.add_control(
        Control(kind="pause", playbook="web", starts=clock.now(), ends=clock.now() + 3600,
                created_at=clock.now(), created_by="alice")
    )  # fmt: skip
    verdict = guard.check(pb, incident, pb.step("restart"))
    assert verdict.rule is Rule.PAUSED and verdict.would_run and "by alice" in verdict.reason
    clock._now += 3601  # noqa: SLF001 - the pause ran out
    assert guard.check(pb, incident, pb.step("restart")).allowed
    paused = Guard(store, clock, settings=SafetySettings(paused=["web"]))
    assert paused.check(pb, incident, pb.step("restart")).rule is Rule.PAUSED
    other = Guard(store, clock, settings=SafetySettings(paused=["billing"]))
    assert other.check(pb, incident, pb.step("restart")).allowed


def test_silence_matches_labels_and_waits_until_it_ends(
    tmp_path: Path, store: IncidentStore, clock: FakeClock
) -> None:
    pb = step_playbook(tmp_path)
    incident = open_incident(store, clock.now())
    store.add_control(
        Control(kind="silence", matchers=("namespace=shop", "deployment=~w.*"),
                starts=clock.now() - 1, ends=clock.now() + 7200, created_at=clock.now())
    )  # fmt: skip
    verdict = Guard(store, clock).check(pb, incident, pb.step("restart"))
    assert verdict.rule is Rule.SILENCED and verdict.until == clock.now() + 7200
    store.expire_controls("silence", at=clock.now())
    assert Guard(store, clock).check(pb, incident, pb.step("restart")).allowed
    elsewhere = SilenceSettings.model_validate(
        {"matchers": ["namespace!=shop"], "ends": "2100-01-01T00:00:00Z"}
    )
    guard = Guard(store, clock, inhibitor=Inhibitor(store, clock, silences=[elsewhere]))
    assert guard.check(pb, incident, pb.step("restart")).allowed


def test_inhibition_needs_the_equal_labels_to_agree(
    tmp_path: Path, store: IncidentStore, clock: FakeClock
) -> None:
    pb = step_playbook(tmp_path)
    rule = InhibitRule(match=["playbook=web"], equal=["namespace"])
    inhibitor = Inhibitor(store, clock, rules={"namespace-down": [rule]})
    guard = Guard(store, clock, inhibitor=inhibitor)
    source = open_incident(store, clock.now(), fp="ns", playbook="namespace-down", namespace="shop")
    same = open_incident(store, clock.now(), fp="a", namespace="shop", deployment="web")
    other = open_incident(store, clock.now(), fp="b", namespace="pay", deployment="web")
    verdict = guard.check(pb, same, pb.step("restart"))
    assert verdict.rule is Rule.INHIBITED and verdict.source == source.id
    assert guard.check(pb, other, pb.step("restart")).allowed
    store.set_status(source.id, Status.RESOLVED, at=clock.now())
    assert guard.check(pb, same, pb.step("restart")).allowed


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("namespace=shop", {"namespace": "shop"}, True),
        ("namespace!=shop", {"namespace": "shop"}, False),
        ('deployment=~"web-.*"', {"deployment": "web-1"}, True),
        ("deployment=~web", {"deployment": "web-1"}, False),  # anchored, as in Alertmanager
        ("deployment!~web-.*", {"deployment": "api"}, True),
        ("team=", {}, True),  # a missing label is the empty string
    ],
)
def test_matchers_follow_alertmanager(text: str, labels: dict[str, str], expected: bool) -> None:
    assert Matcher.parse(text).matches(labels) is expected


def test_a_bad_matcher_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="invalid matcher 'namespace'"):
        Matcher.parse("namespace")
    with pytest.raises(ValueError, match="invalid regex"):
        Matcher.parse("a=~(")


# --- whole responses on the sandbox Kubernetes API ---------------------------------------


def crash_loops(cluster: FakeCluster, namespaces: dict[str, int]) -> None:
    """Crash-looping deployments: `count` per namespace."""
    cluster.behave("shop/web:1", ImageBehavior(crash_after=1))
    for ns, count in namespaces.items():
        for n in range(count):
            cluster.apply(cluster.deployment_manifest(ns, f"web-{n}", "shop/web:1"))


def kube_engine(
    tmp_path: Path,
    server: KubeApiServer,
    store: IncidentStore,
    clock: FakeClock,
    namespaces: list[str],
    actions: list[dict[str, Any]],
    agent: str = "rules",
    **settings: Any,
) -> Engine:
    pb = tmp_path / "pb"
    pb.mkdir(exist_ok=True)
    for ns in namespaces:
        document = {
            "name": f"workloads-{ns}",
            "probe": {"kind": "kubernetes", "namespace": ns, "every": "30s"},
            "actions": actions,
            "policy": {"verify_after": "1m", "max_attempts": 1},
            "diagnose": {"agent": agent},
        }
        (pb / f"{ns}.yaml").write_text(yaml.safe_dump(document))
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", context="test")
    return Engine(
        playbooks=load_playbooks([pb]),
        store=store,
        notifiers=[],
        clock=clock,
        settings=Settings(
            probe_retries=0,
            kubernetes={"default": KubernetesCluster(kubeconfig=kubeconfig, context="test")},
            **settings,
        ),
    )


RESTART = {
    "id": "restart",
    "uses": "kubernetes.restart",
    "with": {"namespace": "{{ labels.namespace }}", "deployment": "{{ labels.name }}"},
    "ignore_causes": True,  # a restart cannot heal a crash loop: here that is the point
}


async def drive(engine: Engine, clock: FakeClock, step: float = 10.0) -> None:
    """Advance the fake clock until no response is left (never sleeping on real time for the
    time logic; real I/O to the loopback API server gets a moment between steps)."""
    import asyncio

    for _ in range(2000):
        if not engine.responding:
            return
        await clock.advance(step)
        await asyncio.sleep(0.005)
    raise AssertionError("responses never finished")


def kinds_of(store: IncidentStore, incident: Incident) -> list[EventKind]:
    return [e.kind for e in store.events(incident.id)]


async def until(condition: Any, what: str) -> None:
    """Wait for real I/O (the loopback API server answers in a thread); never for clock time."""
    import asyncio

    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def peak_overlap(store: IncidentStore) -> int:
    """Most remediations in flight at once: from each action_started to the end of its
    verification (verify_failed, resolved, escalated or a failed action)."""
    spans = []
    ends = {EventKind.VERIFY_FAILED, EventKind.RESOLVED, EventKind.ESCALATED,
            EventKind.ACTION_FAILED}  # fmt: skip
    for incident in store.incidents(limit=10_000):
        begin = None
        for event in store.events(incident.id):
            if event.kind is EventKind.ACTION_STARTED:
                begin = (event.at, event.id)
            elif begin is not None and event.kind in ends:
                spans.append((begin, (event.at, event.id)))
                begin = None
    points = sorted([(b, 1) for b, _ in spans] + [(e, -1) for _, e in spans])
    peak = current = 0
    for _, delta in points:
        current += delta
        peak = max(peak, current)
    return peak


@pytest.mark.slow
async def test_a_burst_of_120_crash_loops_respects_blast_radius_and_rate_limit(
    tmp_path: Path, cluster: FakeCluster, server: KubeApiServer, store: IncidentStore,
    clock: FakeClock,
) -> None:  # fmt: skip
    namespaces = {f"team-{n}": 20 for n in range(6)}
    crash_loops(cluster, namespaces)
    await clock.advance(60)
    safety = {
        "blast_radius": {"total": 8, "per_group": 3},
        "rate_limit": {"actions": 25, "per": "10m"},
        "max_wait": "15m",
        "flap": {"burst": 3},
    }
    engine = kube_engine(
        tmp_path, server, store, clock, list(namespaces), [RESTART],
        safety=SafetySettings.model_validate(safety),
    )  # fmt: skip
    await engine.start(schedule=False)
    cluster.clear_requests()
    for ns in namespaces:
        await engine.tick(f"workloads-{ns}")
    assert len(store.open_incidents()) == 120
    await drive(engine, clock)

    starts = sorted(
        e.at for i in store.incidents(limit=1000) for e in store.events(i.id)
        if e.kind is EventKind.ACTION_STARTED
    )  # fmt: skip
    patches = [r for r in cluster.requests if r.verb == "patch" and r.resource == "deployments"]
    assert len(patches) == len(starts) > 0  # every started restart reached the API once
    assert peak_overlap(store) <= 8
    for n, at in enumerate(starts):  # no 10-minute window holds more than 25 starts
        assert sum(1 for t in starts[n:] if t < at + 600) <= 25
    waited = [i for i in store.incidents(limit=1000)
              if any(e.kind is EventKind.GUARD_WAITING for e in store.events(i.id))]  # fmt: skip
    assert waited, "the burst must have held some actions back"
    assert all(i.status is Status.ESCALATED for i in store.incidents(limit=1000))
    denied = [
        e for i in store.incidents(limit=1000) for e in store.events(i.id)
        if e.kind is EventKind.GUARD_DENIED and e.message.startswith("waited 15m")
    ]  # fmt: skip
    assert denied, "past max_wait a held action escalates instead of acting"
    assert len(starts) + len(denied) == 120
    print(  # the figures for the closing note  # noqa: T201
        f"\n120 targets: {len(starts)} restarts, peak in flight {peak_overlap(store)} (limit 8), "
        f"{len(waited)} waited, {len(denied)} escalated after waiting 15m"
    )


# --- shadow mode: no kind may act ---------------------------------------------------------


class ActAgent:
    """Always picks the playbook's first action: shadow mode, not a cause, must stop it."""

    name = "test-act"

    async def diagnose(self, request: DiagnosisRequest) -> Decision:
        return Decision(
            action=request.playbook.steps[0].id, reason="act", confidence=1.0, agent=self.name
        )


if "test-act" not in AGENTS:
    AGENTS.register("test-act", ActAgent)


@pytest.fixture
def hook() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


def shadow_params(kind: str, tmp_path: Path, hook: ScriptedServer) -> dict[str, Any]:
    marker = tmp_path / "command-ran"
    ns, name = "{{ labels.namespace }}", "{{ labels.name }}"
    return {
        "kubernetes.restart": {"namespace": ns, "deployment": name},
        "kubernetes.rollback": {"namespace": ns, "deployment": name},
        "kubernetes.scale": {"namespace": ns, "deployment": name, "by": 1, "max": 5},
        "kubernetes.delete_pod": {"namespace": ns, "selector": "app=web-0"},
        "kubernetes.rerun_job": {"namespace": ns, "cronjob": "nightly"},
        "command": {"argv": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]},
        "http": {"url": f"{hook.url}/fix"},
        "backoff": {"initial": "1s"},
    }[kind]


@pytest.mark.parametrize("kind", ACTIONS.names())
async def test_shadow_mode_never_acts_whatever_the_kind(
    kind: str, tmp_path: Path, cluster: FakeCluster, server: KubeApiServer,
    store: IncidentStore, clock: FakeClock, hook: ScriptedServer,
) -> None:  # fmt: skip
    crash_loops(cluster, {"shop": 1})
    await clock.advance(60)
    action = {"id": "fix", "uses": kind, "with": shadow_params(kind, tmp_path, hook),
              "ignore_causes": True}  # fmt: skip
    engine = kube_engine(
        tmp_path, server, store, clock, ["shop"], [action], agent="test-act",
        safety=SafetySettings(shadow=True),
    )  # fmt: skip
    await engine.start(schedule=False)
    cluster.clear_requests()
    await engine.tick("workloads-shop")
    await drive(engine, clock)
    [incident] = store.incidents()
    kinds = [e.kind for e in store.events(incident.id)]
    assert EventKind.SHADOW in kinds and EventKind.ACTION_STARTED not in kinds
    shadow = next(e for e in store.events(incident.id) if e.kind is EventKind.SHADOW)
    assert "would run fix" in shadow.message and shadow.data["action"] == "fix"
    assert incident.status is Status.ESCALATED
    assert not [r for r in cluster.requests if r.verb in MUTATING]
    assert not (tmp_path / "command-ran").exists()
    assert hook.requests == []


# --- pause, silence and inhibition in whole responses ------------------------------------


async def one_crash_loop(
    tmp_path: Path, cluster: FakeCluster, server: KubeApiServer, store: IncidentStore,
    clock: FakeClock,
) -> Engine:  # fmt: skip
    """shop/web-0 crash-looping, and an engine whose playbook restarts it."""
    crash_loops(cluster, {"shop": 1})
    await clock.advance(60)
    return kube_engine(tmp_path, server, store, clock, ["shop"], [RESTART])


def silence_shop(store: IncidentStore, clock: FakeClock, seconds: float, comment: str = "") -> None:
    store.add_control(
        Control(kind="silence", matchers=("namespace=shop",), starts=clock.now(),
                ends=clock.now() + seconds, created_at=clock.now(), comment=comment)
    )  # fmt: skip


async def test_a_silence_holds_the_action_until_it_ends_then_acts(
    tmp_path: Path, cluster: FakeCluster, server: KubeApiServer, store: IncidentStore,
    clock: FakeClock,
) -> None:  # fmt: skip
    engine = await one_crash_loop(tmp_path, cluster, server, store, clock)
    silence_shop(store, clock, 900, comment="node upgrade")
    await engine.start(schedule=False)
    await engine.tick("workloads-shop")
    [incident] = store.incidents()
    await until(lambda: EventKind.GUARD_WAITING in kinds_of(store, incident), "the silence")
    await clock.advance(600)
    kinds = kinds_of(store, incident)
    assert EventKind.GUARD_WAITING in kinds and EventKind.ACTION_STARTED not in kinds
    waiting = next(e for e in store.events(incident.id) if e.kind is EventKind.GUARD_WAITING)
    assert "node upgrade" in waiting.message and waiting.data["rule"] == Rule.SILENCED
    await drive(engine, clock)
    starts = [e for e in store.events(incident.id) if e.kind is EventKind.ACTION_STARTED]
    assert len(starts) == 1 and starts[0].at >= clock.now() - 3600  # after the silence


async def test_an_inhibiting_incident_stops_actions_and_says_which(
    tmp_path: Path, cluster: FakeCluster, server: KubeApiServer, store: IncidentStore,
    clock: FakeClock,
) -> None:  # fmt: skip
    engine = await one_crash_loop(tmp_path, cluster, server, store, clock)
    rule = InhibitRule(match=["playbook=~workloads-.*"], equal=["namespace"])
    engine.guard.inhibitor = Inhibitor(store, clock, rules={"namespace-down": [rule]})
    source = open_incident(store, clock.now(), fp="ns", playbook="namespace-down", namespace="shop")
    await engine.start(schedule=False)
    await engine.tick("workloads-shop")
    await drive(engine, clock)
    incident = next(i for i in store.incidents() if i.id != source.id)
    denied = next(e for e in store.events(incident.id) if e.kind is EventKind.GUARD_DENIED)
    assert denied.data["rule"] == Rule.INHIBITED and denied.data["source"] == source.id
    assert f"incident #{source.id}" in denied.message
    assert incident.status is Status.ESCALATED
    assert not [r for r in cluster.requests if r.verb == "patch"]


async def test_a_target_healthy_again_after_waiting_is_recovered_not_acted_on(
    tmp_path: Path, cluster: FakeCluster, server: KubeApiServer, store: IncidentStore,
    clock: FakeClock,
) -> None:  # fmt: skip
    engine = await one_crash_loop(tmp_path, cluster, server, store, clock)
    silence_shop(store, clock, 300)
    await engine.start(schedule=False)
    await engine.tick("workloads-shop")
    cluster.behave("shop/web:1", ImageBehavior())  # it heals by itself during the silence
    for pod in cluster.list("Pod", "shop"):
        cluster.delete("Pod", "shop", pod["metadata"]["name"])
    await drive(engine, clock)
    [incident] = store.incidents()
    assert incident.status is Status.RESOLVED
    assert incident.resolution == Resolution.RECOVERED
    assert EventKind.ACTION_STARTED not in [e.kind for e in store.events(incident.id)]


def test_incident_show_says_which_attempt_landed_and_shows_output(
    store: IncidentStore, clock: FakeClock
) -> None:
    from daemon.report import incident_detail

    incident = open_incident(store, clock.now())
    started(store, incident, clock.now(), attempt=1)
    store.append(
        incident.id, EventKind.ACTION_RECONCILED, "restart: attempt 1 never landed",
        at=clock.now(), data={"action": "restart", "attempt": 1, "landed": False, "ok": False},
    )  # fmt: skip
    started(store, incident, clock.now() + 5, attempt=2)
    store.append(
        incident.id, EventKind.ACTION_FAILED, "restart: killed after timeout 30s",
        at=clock.now() + 35,
        data={"action": "restart", "attempt": 2, "ok": False, "output": "step 1\nstep 2 hung\n"},
    )  # fmt: skip
    text = incident_detail(store.get(incident.id), store.events(incident.id))  # type: ignore[arg-type]
    assert "never landed: not counted" in text
    assert "output of attempt 2 (restart):\n  step 1\n  step 2 hung" in text
