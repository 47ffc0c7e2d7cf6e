"""Kubernetes actions, the workload probe and evidence, through the official client against
the sandbox's Kubernetes API server (daemon/sandbox/kubeapi), on a fake clock."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from daemon.actions.base import ACTIONS, ActionContext, ActionResult, run_with_retries
from daemon.actions.kubernetes import CHANGE
from daemon.clock import FakeClock
from daemon.config import Settings
from daemon.engine import Engine
from daemon.errors import PermanentError
from daemon.incidents import IncidentStore, Status
from daemon.kube.cluster import Forbidden, KubeClient, KubernetesCluster, NotFound, rfc3339
from daemon.playbook import load_playbooks
from daemon.sandbox.kubeapi import FakeCluster, ImageBehavior, KubeApiServer
from probes.base import Outcome, ProbeContext, Reading
from probes.kubernetes import KubernetesProbe, KubernetesProbeConfig

NS = "shop"
RBAC = Path(__file__).parent.parent / "deploy" / "kubernetes" / "rbac.yaml"


def deploy(cluster: FakeCluster, name: str = "web", image: str = "shop/web:1", **kw: Any) -> None:
    cluster.apply(cluster.deployment_manifest(NS, name, image, **kw))


def context(
    clock: FakeClock, kube: KubeClient, *, incident_id: int = 7, attempt: int = 1
) -> ActionContext:
    return ActionContext(
        incident_id=incident_id,
        attempt=attempt,
        action_attempt=1,
        clock=clock,
        kubernetes={"default": kube},
    )


async def act(
    uses: str, clock: FakeClock, kube: KubeClient, *, retries: int = 0, **params: Any
) -> ActionResult:
    kind = ACTIONS.get(uses)
    ctx = context(
        clock, kube, **{k: params.pop(k) for k in ("incident_id", "attempt") if k in params}
    )
    return await run_with_retries(
        kind.create(), kind.params.model_validate({"namespace": NS, **params}), ctx, retries=retries
    )


def requests(cluster: FakeCluster, verb: str, resource: str) -> int:
    return sum(1 for r in cluster.requests if (r.verb, r.resource) == (verb, resource))


def current_image(cluster: FakeCluster, name: str = "web") -> str:
    dep = cluster.get("Deployment", NS, name)
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def revisions(cluster: FakeCluster, name: str = "web") -> dict[int, str]:
    """revision → image, from the deployment's ReplicaSets."""
    return {
        int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]): rs["spec"][
            "template"
        ]["spec"]["containers"][0]["image"]
        for rs in cluster.list("ReplicaSet", NS)
        if rs["metadata"]["name"].startswith(f"{name}-")
    }


async def three_revisions(cluster: FakeCluster, clock: FakeClock) -> None:
    deploy(cluster, image="shop/web:1")
    for image in ("shop/web:2", "shop/web:3"):
        await clock.advance(30)
        cluster.set_image(NS, "web", image)
    await clock.advance(30)


# --- restart --------------------------------------------------------------------------------


async def test_restart_stamps_the_pod_template_like_kubectl(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    deploy(cluster)
    await clock.advance(10)
    result = await act("kubernetes.restart", clock, kube, deployment="web")
    assert result.ok, result.message
    dep = cluster.get("Deployment", NS, "web")
    assert dep is not None
    template_notes = dep["spec"]["template"]["metadata"]["annotations"]
    assert template_notes["kubectl.kubernetes.io/restartedAt"] == rfc3339(clock.now())
    assert dep["metadata"]["annotations"][CHANGE] == "opsmedic-incident-7-attempt-1"
    assert dep["metadata"]["annotations"]["opsmedic.io/incident"] == "7"
    await clock.advance(10)
    assert sorted(revisions(cluster)) == [1, 2]  # the controller rolled a new ReplicaSet
    [event] = [e for e in cluster.list("Event", NS) if e["reason"] == "OpsmedicRestart"]
    assert event["involvedObject"]["name"] == "web" and "incident 7" in event["message"]


async def test_restart_of_a_paused_deployment_is_refused(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    manifest = cluster.deployment_manifest(NS, "web", "shop/web:1")
    manifest["spec"]["paused"] = True
    cluster.apply(manifest)
    result = await act("kubernetes.restart", clock, kube, deployment="web")
    assert not result.ok and "paused" in result.message
    assert requests(cluster, "patch", "deployments") == 0


@pytest.mark.parametrize("kind", ["statefulset", "daemonset"])
async def test_restart_works_for_statefulsets_and_daemonsets(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock, kind: str
) -> None:
    build = getattr(cluster, f"{kind}_manifest")
    cluster.apply(build(NS, "db", "shop/db:1"))
    result = await act("kubernetes.restart", clock, kube, **{kind: "db"})
    assert result.ok, result.message
    obj = cluster.get("StatefulSet" if kind == "statefulset" else "DaemonSet", NS, "db")
    assert obj is not None
    assert "kubectl.kubernetes.io/restartedAt" in obj["spec"]["template"]["metadata"]["annotations"]


async def test_conflict_is_reread_and_retried(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    deploy(cluster)
    cluster.fail_next("patch", "deployments", 409, times=2)
    result = await act("kubernetes.restart", clock, kube, deployment="web")
    assert result.ok, result.message
    assert requests(cluster, "patch", "deployments") == 3
    assert requests(cluster, "get", "deployments") == 3  # re-read before each try


async def test_changes_are_conditional_on_the_version_read(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    """Each patch carries the resourceVersion it was computed from, so a concurrent writer
    makes the server answer 409 rather than silently mixing two changes."""
    deploy(cluster)
    cluster.reconcile()
    read = cluster.get("Deployment", NS, "web")
    assert read is not None
    assert (await act("kubernetes.restart", clock, kube, deployment="web")).ok
    [patch] = [r for r in cluster.requests if r.verb == "patch"]
    assert patch.body["metadata"]["resourceVersion"] == read["metadata"]["resourceVersion"]


async def test_429_is_retried_after_the_servers_retry_after(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    deploy(cluster)
    cluster.fail_next("get", "deployments", 429, retry_after=7)
    start = clock.now()
    task = asyncio.create_task(act("kubernetes.restart", clock, kube, retries=2, deployment="web"))
    deadline = time.monotonic() + 10
    while not task.done():
        assert time.monotonic() < deadline
        if clock.sleepers:
            await clock.advance(1)
        else:
            await asyncio.sleep(0.01)
    assert task.result().ok
    assert clock.now() - start >= 7


async def test_forbidden_names_the_missing_permission(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    deploy(cluster)
    cluster.deny("patch", "deployments", group="apps")
    with pytest.raises(
        Forbidden, match=r"may not `patch` deployments \(API group apps\) in namespace shop"
    ):
        await act("kubernetes.restart", clock, kube, retries=3, deployment="web")
    assert requests(cluster, "patch", "deployments") == 1  # a 403 is not retried


async def test_missing_target_is_not_found(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    with pytest.raises(NotFound, match="not found"):
        await act("kubernetes.restart", clock, kube, retries=3, deployment="gone")


# --- rollback -------------------------------------------------------------------------------


async def test_rollback_picks_the_previous_revision_of_three(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    await three_revisions(cluster, clock)
    assert revisions(cluster) == {1: "shop/web:1", 2: "shop/web:2", 3: "shop/web:3"}
    result = await act("kubernetes.rollback", clock, kube, deployment="web")
    assert result.ok, result.message
    assert current_image(cluster) == "shop/web:2"
    assert result.data["from_revision"] == 3 and result.data["to_revision"] == 2
    assert result.data["from_images"] == {"web": "shop/web:3"}
    assert result.data["to_images"] == {"web": "shop/web:2"}
    await clock.advance(30)
    # like `kubectl rollout undo`: the old ReplicaSet is reused and becomes revision 4
    assert revisions(cluster) == {1: "shop/web:1", 3: "shop/web:3", 4: "shop/web:2"}
    [patch] = [r for r in cluster.requests if r.verb == "patch"]
    assert isinstance(patch.body, list)  # a JSON patch replacing the template, as kubectl sends


async def test_rollback_to_an_explicit_revision(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    await three_revisions(cluster, clock)
    result = await act("kubernetes.rollback", clock, kube, deployment="web", to_revision=1)
    assert result.ok and current_image(cluster) == "shop/web:1"


async def test_rollback_is_a_noop_when_already_on_that_template(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    await three_revisions(cluster, clock)
    result = await act("kubernetes.rollback", clock, kube, deployment="web", to_revision=3)
    assert not result.ok and "already runs revision 3" in result.message
    assert result.data["changed"] is False
    assert requests(cluster, "patch", "deployments") == 0


async def test_rollback_refuses_without_an_earlier_revision(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    deploy(cluster)
    await clock.advance(5)
    result = await act("kubernetes.rollback", clock, kube, deployment="web")
    assert not result.ok and "no earlier revision" in result.message
    assert requests(cluster, "patch", "deployments") == 0


async def test_rollback_refuses_a_paused_deployment(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    await three_revisions(cluster, clock)
    dep = cluster.get("Deployment", NS, "web")
    assert dep is not None
    dep["spec"]["paused"] = True
    cluster.apply(dep)
    result = await act("kubernetes.rollback", clock, kube, deployment="web")
    assert not result.ok and "paused" in result.message


async def test_a_second_rollback_never_returns_to_the_template_rolled_back_from(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    await three_revisions(cluster, clock)
    assert (await act("kubernetes.rollback", clock, kube, deployment="web")).ok
    await clock.advance(30)
    again = await act("kubernetes.rollback", clock, kube, deployment="web", attempt=2)
    assert not again.ok and "rolled back from" in again.message
    assert current_image(cluster) == "shop/web:2"


# --- scale, delete_pod, rerun_job ---------------------------------------------------------


async def test_scale_by_stays_within_the_playbooks_bounds(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    deploy(cluster, replicas=2)
    result = await act("kubernetes.scale", clock, kube, deployment="web", by=5, max=4)
    assert result.ok and result.data == {"changed": True, "from_replicas": 2, "to_replicas": 4}
    again = await act("kubernetes.scale", clock, kube, deployment="web", by=5, max=4, attempt=2)
    assert not again.ok and "already at 4" in again.message


def test_scale_outside_bounds_is_rejected_before_acting() -> None:
    params = ACTIONS.get("kubernetes.scale").params
    with pytest.raises(ValidationError, match=r"outside the playbook's bounds \[1, 3\]"):
        params.model_validate({"namespace": NS, "deployment": "web", "replicas": 9, "max": 3})
    with pytest.raises(ValidationError, match="exactly one of `replicas`, `by`"):
        params.model_validate({"namespace": NS, "deployment": "web", "max": 3})


async def test_delete_pod_deletes_at_most_max_pods_and_only_once(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    deploy(cluster, replicas=3, labels={"app": "web"})
    await clock.advance(5)
    before = {p["metadata"]["name"] for p in cluster.list("Pod", NS)}
    result = await act("kubernetes.delete_pod", clock, kube, selector="app=web", max_pods=2)
    assert result.ok and len(result.data["deleted"]) == 2 and result.data["matched"] == 3
    after = {p["metadata"]["name"] for p in cluster.list("Pod", NS)}
    assert len(after) == 3 and len(before & after) == 1  # the ReplicaSet replaced two pods
    replay = await act("kubernetes.delete_pod", clock, kube, selector="app=web", max_pods=2)
    assert replay.ok and replay.data["replayed"] is True
    assert {p["metadata"]["name"] for p in cluster.list("Pod", NS)} == after


def test_delete_pod_needs_a_selector() -> None:
    with pytest.raises(ValidationError):
        ACTIONS.get("kubernetes.delete_pod").params.model_validate(
            {"namespace": NS, "selector": ""}
        )


async def test_rerun_job_from_a_cronjob_like_kubectl_create_job_from(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    cluster.apply(cluster.cronjob_manifest(NS, "nightly", "etl/load:1"))
    result = await act("kubernetes.rerun_job", clock, kube, cronjob="nightly", suspend=True)
    assert result.ok, result.message
    job = cluster.get("Job", NS, "nightly-om7-1")
    assert job is not None
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    cronjob = cluster.get("CronJob", NS, "nightly")
    assert cronjob is not None and cronjob["spec"]["suspend"] is True
    replay = await act("kubernetes.rerun_job", clock, kube, cronjob="nightly")
    assert replay.ok and len(cluster.list("Job", NS)) == 1


async def test_rerun_job_recreates_only_a_failed_job(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    cluster.behave("etl/bad:1", ImageBehavior(exit_code=1, run_for=2))
    manifest = cluster.job_manifest(NS, "backfill", "etl/bad:1")
    manifest["spec"]["backoffLimit"] = 0
    cluster.apply(manifest)
    cluster.apply(cluster.job_manifest(NS, "running", "etl/slow:1"))
    not_failed = await act("kubernetes.rerun_job", clock, kube, job="running")
    assert not not_failed.ok and "has not failed" in not_failed.message
    await clock.advance(10)
    result = await act("kubernetes.rerun_job", clock, kube, job="backfill", attempt=2)
    assert result.ok and result.data["job"] == "backfill-om7-2"
    job = cluster.get("Job", NS, "backfill-om7-2")
    assert job is not None and job["metadata"]["annotations"]["opsmedic.io/rerun-of"] == "backfill"


# --- the probe ------------------------------------------------------------------------------


def probe(clock: FakeClock, kube: KubeClient, **config: Any) -> KubernetesProbe:
    cfg = KubernetesProbeConfig.model_validate({"kind": "kubernetes", "namespace": NS, **config})
    return KubernetesProbe(cfg, ProbeContext(clock=clock, kubernetes={"default": kube}))


def only(readings: list[Reading], name: str = "web") -> Reading:
    [reading] = [r for r in readings if r.labels["name"] == name]
    return reading


async def test_healthy_deployment_reads_ok_with_its_rollout_age(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    deploy(cluster)
    await clock.advance(60)
    reading = only(await probe(clock, kube).check())
    assert reading.outcome is Outcome.OK, reading.message
    assert dict(reading.labels) == {"namespace": NS, "kind": "Deployment", "name": "web"}
    assert reading.evidence["revision"] == 1
    assert reading.evidence["last_rollout_age_seconds"] == 60


async def test_bad_image_rollout_breaches_with_crash_loop(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    deploy(cluster)
    await clock.advance(60)
    cluster.behave("shop/web:2", ImageBehavior(crash_after=1))
    cluster.set_image(NS, "web", "shop/web:2")
    await clock.advance(30)
    reading = only(await probe(clock, kube).check())
    assert reading.outcome is Outcome.BREACH
    assert "CrashLoopBackOff" in reading.message
    assert reading.evidence["revision"] == 2 and reading.evidence["last_rollout_age_seconds"] == 30


async def test_progress_deadline_is_reported(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    deploy(cluster)
    await clock.advance(10)
    cluster.behave("shop/web:2", ImageBehavior(pull_error=True))
    cluster.set_image(NS, "web", "shop/web:2")
    await clock.advance(700)
    reading = only(await probe(clock, kube).check())
    assert "ImagePullBackOff" in reading.message and "rollout stalled" in reading.message


async def test_oom_kills_and_rising_restarts_breach(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    cluster.behave("shop/leaky:1", ImageBehavior(oom_after=30))
    deploy(cluster, name="leaky", image="shop/leaky:1", replicas=1)
    watcher = probe(clock, kube, restarts={"limit": 2, "window": "10m"}, oom_window="1m")
    await clock.advance(20)
    assert only(await watcher.check(), "leaky").outcome is Outcome.OK
    await clock.advance(15)
    first_oom = only(await watcher.check(), "leaky")
    assert first_oom.outcome is Outcome.BREACH and "OOMKilled" in first_oom.message
    await clock.advance(300)
    storm = only(await watcher.check(), "leaky")
    assert "container restarts in the last 600s" in storm.message


async def test_failed_cronjob_run_breaches_on_the_cronjob(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    cluster.behave("etl/load:1", ImageBehavior(exit_code=1, run_for=1))
    cluster.apply(cluster.cronjob_manifest(NS, "nightly", "etl/load:1"))
    assert (await act("kubernetes.rerun_job", clock, kube, cronjob="nightly")).ok
    await clock.advance(1800)  # 7 failed pods with the job controller's growing back-off
    readings = await probe(clock, kube, workloads=["CronJob", "Job"]).check()
    assert [dict(r.labels)["kind"] for r in readings] == ["CronJob"]  # its Job is not separate
    assert readings[0].outcome is Outcome.BREACH and "failed" in readings[0].message


async def test_evidence_has_history_pods_events_and_redacted_logs(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    cluster.behave(
        "shop/web:2",
        ImageBehavior(
            crash_after=1,
            logs=("starting", f"connecting with GITHUB_TOKEN={token}", "panic: bad config"),
        ),
    )
    deploy(cluster)
    await clock.advance(60)
    cluster.set_image(NS, "web", "shop/web:2", change_cause="deploy 2")
    await clock.advance(60)
    found = await probe(clock, kube).evidence(
        {"namespace": NS, "kind": "Deployment", "name": "web"}
    )
    history = found["rollout_history"]
    assert [h["revision"] for h in history] == [2, 1]
    assert history[0]["change_cause"] == "deploy 2" and history[0]["images"] == {
        "web": "shop/web:2"
    }
    assert any(p["containers"][0].get("reason") == "CrashLoopBackOff" for p in found["pods"])
    assert any(e["reason"] == "BackOff" for e in found["warning_events"])
    lines = [line for entry in found["logs"] for line in entry["lines"]]
    assert any("panic: bad config" in line for line in lines)
    assert token not in str(found) and any("[REDACTED" in line for line in lines)


# --- least privilege -------------------------------------------------------------------------


async def test_shipped_rbac_allows_every_probe_evidence_and_action_call(
    cluster: FakeCluster, kube: KubeClient, clock: FakeClock
) -> None:
    [role] = [d for d in yaml.safe_load_all(RBAC.read_text()) if d and d["kind"] == "ClusterRole"]
    cluster.authorize(role["rules"])
    await three_revisions(cluster, clock)
    cluster.apply(cluster.statefulset_manifest(NS, "db", "shop/db:1"))
    cluster.apply(cluster.cronjob_manifest(NS, "nightly", "etl/load:1"))
    watcher = probe(clock, kube, workloads=["Deployment", "StatefulSet", "CronJob", "Job"])
    await watcher.check()
    found = await watcher.evidence({"namespace": NS, "kind": "Deployment", "name": "web"})
    assert "evidence_error" not in found
    calls = [
        ("kubernetes.restart", {"statefulset": "db"}),
        ("kubernetes.rollback", {"deployment": "web"}),
        ("kubernetes.scale", {"deployment": "web", "by": 1, "max": 5}),
        ("kubernetes.delete_pod", {"selector": "app=web"}),
        ("kubernetes.rerun_job", {"cronjob": "nightly", "suspend": True}),
    ]
    for attempt, (uses, params) in enumerate(calls, start=1):
        result = await act(uses, clock, kube, attempt=attempt, **params)
        assert result.ok, f"{uses}: {result.message}"
    assert not [r for r in cluster.requests if r.status == 403]
    cluster.authorize([r for r in role["rules"] if "pods" not in r["resources"]])
    with pytest.raises(PermanentError, match="may not `list` pods"):
        await watcher.check()


# --- the whole loop ---------------------------------------------------------------------------


def engine(
    tmp_path: Path, server: KubeApiServer, store: IncidentStore, clock: FakeClock, **policy: Any
) -> Engine:
    document = {
        "name": "shop",
        "probe": {"kind": "kubernetes", "namespace": NS, "every": "10s"},
        "actions": [
            {
                "id": "restart",
                "uses": "kubernetes.restart",
                "with": {"namespace": "{{ labels.namespace }}", "deployment": "{{ labels.name }}"},
                # these tests need a restart of a crash-looping target, which the rules withhold
                "ignore_causes": ["crashloop"],
            },
            {"id": "wait", "uses": "backoff", "with": {"initial": "1s"}},
        ],
        "policy": {"verify_after": "30s", **policy},
    }
    pb = tmp_path / "pb"
    pb.mkdir(exist_ok=True)
    (pb / "shop.yaml").write_text(yaml.safe_dump(document))
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", context="test")
    return Engine(
        playbooks=load_playbooks([pb]),
        store=store,
        notifiers=[],
        clock=clock,
        settings=Settings(
            probe_retries=0,
            kubernetes={"default": KubernetesCluster(kubeconfig=kubeconfig, context="test")},
        ),
    )


async def crash_looping_web(cluster: FakeCluster, clock: FakeClock) -> None:
    cluster.behave("shop/web:1", ImageBehavior(crash_after=1))
    deploy(cluster)
    await clock.advance(60)


async def test_forbidden_action_escalates_at_once_naming_the_permission(
    tmp_path: Path,
    cluster: FakeCluster,
    server: KubeApiServer,
    store: IncidentStore,
    clock: FakeClock,
) -> None:
    await crash_looping_web(cluster, clock)
    cluster.deny("patch", "deployments", group="apps")
    loop = engine(tmp_path, server, store, clock)
    await loop.start(schedule=False)
    await loop.tick("shop")
    await loop.idle()
    [incident] = store.incidents()
    assert incident.status is Status.ESCALATED
    assert store.action_attempts(incident.id) == {"restart": 1}  # `wait` was never tried
    escalated = store.events(incident.id)[-1]
    assert escalated.kind == "escalated"
    assert "may not `patch` deployments (API group apps) in namespace shop" in escalated.message
    evidence = next(e for e in store.events(incident.id) if e.kind == "evidence")
    assert evidence.data["rollout_history"][0]["revision"] == 1


async def until(condition: Any, what: str) -> None:
    """Wait for real I/O (a loopback request in a worker thread); never for clock time."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def run_until_idle(loop: Engine, clock: FakeClock) -> None:
    for _ in range(100):
        if not loop.responding:
            return
        if clock.sleepers:
            await clock.advance(30)
        else:
            await asyncio.sleep(0.01)
    raise AssertionError("the responder never finished")


async def test_a_crash_between_sent_and_recorded_is_reconciled_not_repeated(
    tmp_path: Path, cluster: FakeCluster, server: KubeApiServer, clock: FakeClock
) -> None:
    await crash_looping_web(cluster, clock)  # a restart will not heal it
    db = tmp_path / "incidents.db"
    store = IncidentStore(db)
    first = engine(tmp_path, server, store, clock)
    await first.start(schedule=False)
    gate = cluster.hold("patch", "deployments")
    await first.tick("shop")
    await until(gate.reached.is_set, "the restart to reach the API server")
    await first.stop(grace=0)  # the daemon dies before it hears the answer
    gate.release.set()
    [incident] = store.incidents()
    assert [e.kind for e in store.events(incident.id)][-2:] == ["action_started", "interrupted"]
    store.close()

    store = IncidentStore(db)  # the daemon starts again
    second = engine(tmp_path, server, store, clock)
    await second.start(schedule=False)
    await run_until_idle(second, clock)
    events = store.events(incident.id)
    reconciled = next(e for e in events if e.kind == "action_reconciled")
    assert reconciled.data["attempt"] == 1 and reconciled.data["landed"] is True
    assert "verify_failed" in [e.kind for e in events]  # verified, not re-run
    applied = [r for r in cluster.requests if r.verb == "patch" and r.status == 200]
    assert len(applied) == 1  # one restart in the cluster, although the attempt ran twice
    assert store.action_attempts(incident.id) == {"restart": 1}  # waiting cannot fix a crashloop
    assert store.get(incident.id).status is Status.ESCALATED  # type: ignore[union-attr]
    store.close()
