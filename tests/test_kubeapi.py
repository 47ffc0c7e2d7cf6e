"""The fake Kubernetes API server, exercised only through the official ``kubernetes`` client."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from daemon.sandbox.kubeapi import FakeCluster, ImageBehavior, KubeApiServer

T0 = 1_700_000_000.0
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class Now:
    """A hand-cranked clock."""

    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def now() -> Now:
    return Now()


@pytest.fixture
def cluster(now: Now) -> FakeCluster:
    return FakeCluster(now)


@pytest.fixture
def server(cluster: FakeCluster) -> Iterator[KubeApiServer]:
    with KubeApiServer(cluster) as srv:
        yield srv


@pytest.fixture
def kubeconfig(server: KubeApiServer, tmp_path: Path) -> Path:
    return server.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def api(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api_client = kubernetes.config.new_client_from_config(
        config_file=str(kubeconfig), context="opsmedic-test"
    )
    yield api_client
    api_client.close()


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def batch(api: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api)


def body_of(exc: ApiException) -> dict[str, Any]:
    data = json.loads(exc.body)
    assert data["kind"] == "Status"
    assert data["apiVersion"] == "v1"
    assert data["status"] == "Failure"
    assert data["code"] == exc.status
    client.V1Status.from_dict(data)  # the client's own model accepts it
    return dict(data)


def pods_of(core: client.CoreV1Api, ns: str, selector: str | None = None) -> list[Any]:
    items = core.list_namespaced_pod(ns, label_selector=selector).items
    return list(items)


def rs_by_revision(apps: client.AppsV1Api, ns: str) -> dict[int, Any]:
    return {
        int(rs.metadata.annotations["deployment.kubernetes.io/revision"]): rs
        for rs in apps.list_namespaced_replica_set(ns).items
    }


def condition(obj: Any, ctype: str) -> Any:
    return next(c for c in obj.status.conditions if c.type == ctype)


def roll_image(apps: client.AppsV1Api, name: str, ns: str, image: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}}
    apps.patch_namespaced_deployment(name, ns, patch)


# --------------------------------------------------------------------------- deployments


def test_created_deployment_gets_ready_pods_after_ready_after(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    cluster.behave("shop:1", ImageBehavior(ready_after=5))
    created = apps.create_namespaced_deployment(
        "shop", cluster.deployment_manifest("shop", "web", "shop:1", replicas=3)
    )
    assert created.metadata.generation == 1
    assert created.metadata.uid and created.metadata.resource_version

    now.advance(1)
    pods = pods_of(core, "shop", "app=web")
    assert len(pods) == 3
    (rs,) = apps.list_namespaced_replica_set("shop").items
    assert re.fullmatch(r"web-[bcdfghjklmnpqrstvwxz2456789]{10}", rs.metadata.name)
    for pod in pods:
        assert re.fullmatch(rf"{rs.metadata.name}-[a-z0-9]{{5}}", pod.metadata.name)
        assert pod.status.phase == "Running"
        assert not condition(pod, "Ready").status == "True"
        assert condition(pod, "Ready").reason == "ContainersNotReady"
        assert pod.metadata.owner_references[0].kind == "ReplicaSet"
        assert pod.metadata.owner_references[0].uid == rs.metadata.uid
    deployment = apps.read_namespaced_deployment("web", "shop")
    assert deployment.status.available_replicas is None  # omitted when 0, like the real API
    assert deployment.status.unavailable_replicas == 3
    assert condition(deployment, "Available").status == "False"

    now.advance(4)
    pods = pods_of(core, "shop", "app=web")
    pod = pods[0]
    assert {c.type: c.status for c in pod.status.conditions} == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    assert pod.spec.node_name in {"node-1", "node-2"}
    assert pod.status.host_ip and pod.status.pod_ip and pod.status.start_time
    (cs,) = pod.status.container_statuses
    assert cs.ready and cs.started and cs.restart_count == 0
    assert cs.container_id.startswith("containerd://") and "@sha256:" in cs.image_id
    assert cs.state.running.started_at.timestamp() == T0
    deployment = apps.read_namespaced_deployment("web", "shop")
    status = deployment.status
    assert (status.replicas, status.ready_replicas, status.available_replicas) == (3, 3, 3)
    assert status.unavailable_replicas is None
    assert status.observed_generation == 1
    assert condition(deployment, "Available").reason == "MinimumReplicasAvailable"
    progressing = condition(deployment, "Progressing")
    assert progressing.reason == "NewReplicaSetAvailable"
    assert progressing.message == f'ReplicaSet "{rs.metadata.name}" has successfully progressed.'
    assert deployment.metadata.annotations["deployment.kubernetes.io/revision"] == "1"


def test_deployment_is_defaulted_like_the_api_server(
    cluster: FakeCluster, apps: client.AppsV1Api
) -> None:
    manifest = cluster.deployment_manifest(
        "default",
        "web",
        "x",
        containers=[{"name": "a", "image": "nginx:1.25"}, {"name": "b", "image": "busybox"}],
    )
    del manifest["metadata"]["namespace"]
    manifest["spec"].pop("replicas")
    d = apps.create_namespaced_deployment("default", manifest)
    assert d.metadata.namespace == "default"
    assert RFC3339.match(
        cluster.get("Deployment", "default", "web")["metadata"]["creationTimestamp"]
    )
    assert d.spec.replicas == 1
    assert d.spec.revision_history_limit == 10
    assert d.spec.progress_deadline_seconds == 600
    assert d.spec.strategy.type == "RollingUpdate"
    assert d.spec.strategy.rolling_update.max_surge == "25%"
    assert d.spec.strategy.rolling_update.max_unavailable == "25%"
    spec = d.spec.template.spec
    assert (spec.restart_policy, spec.termination_grace_period_seconds) == ("Always", 30)
    assert (spec.dns_policy, spec.scheduler_name) == ("ClusterFirst", "default-scheduler")
    assert spec.security_context is not None
    a, b = spec.containers
    assert (a.image_pull_policy, b.image_pull_policy) == ("IfNotPresent", "Always")
    assert a.termination_message_path == "/dev/termination-log"
    assert a.termination_message_policy == "File"


def test_template_change_creates_next_revision_and_rolls_over(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    apps.create_namespaced_deployment("shop", cluster.deployment_manifest("shop", "web", "v1"))
    now.advance(2)
    roll_image(apps, "web", "shop", "v2")
    d = apps.read_namespaced_deployment("web", "shop")
    assert d.metadata.generation == 2
    revisions = rs_by_revision(apps, "shop")
    assert set(revisions) == {1, 2}
    assert revisions[2].spec.replicas == 2
    assert revisions[1].spec.replicas == 2  # old pods keep serving until the new RS is available
    assert revisions[2].metadata.labels["pod-template-hash"] in revisions[2].metadata.name

    now.advance(2)
    revisions = rs_by_revision(apps, "shop")
    assert revisions[1].spec.replicas == 0
    assert {p.spec.containers[0].image for p in pods_of(core, "shop")} == {"v2"}
    d = apps.read_namespaced_deployment("web", "shop")
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert d.status.updated_replicas == d.status.available_replicas == 2
    events = core.list_namespaced_event(
        "shop", field_selector="involvedObject.kind=Deployment,reason=ScalingReplicaSet"
    ).items
    messages = {e.message for e in events}
    assert f"Scaled up replica set {revisions[2].metadata.name} to 2" in messages
    assert f"Scaled down replica set {revisions[1].metadata.name} to 0 from 2" in messages
    for e in events:
        assert e.source.component == "deployment-controller"
        assert e.involved_object.uid == d.metadata.uid
        assert e.metadata.name.startswith("web.")


def test_rollback_reuses_old_replicaset_and_bumps_its_revision(
    cluster: FakeCluster, now: Now, apps: client.AppsV1Api
) -> None:
    apps.create_namespaced_deployment("shop", cluster.deployment_manifest("shop", "web", "v1"))
    now.advance(2)
    first = rs_by_revision(apps, "shop")[1]
    roll_image(apps, "web", "shop", "v2")
    now.advance(2)
    cluster.set_image("shop", "web", "v3", change_cause="deploy v3")
    now.advance(2)
    assert set(rs_by_revision(apps, "shop")) == {1, 2, 3}
    assert rs_by_revision(apps, "shop")[3].metadata.annotations["kubernetes.io/change-cause"] == (
        "deploy v3"
    )

    roll_image(apps, "web", "shop", "v1")  # what `kubectl rollout undo --to-revision=1` does
    now.advance(2)
    revisions = rs_by_revision(apps, "shop")
    assert set(revisions) == {2, 3, 4}
    assert revisions[4].metadata.uid == first.metadata.uid
    assert revisions[4].metadata.annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert revisions[4].spec.replicas == 2 and revisions[3].spec.replicas == 0
    d = apps.read_namespaced_deployment("web", "shop")
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "4"
    assert condition(d, "Progressing").reason == "NewReplicaSetAvailable"


def test_rollout_restart_annotation_is_a_template_change(
    cluster: FakeCluster, now: Now, apps: client.AppsV1Api
) -> None:
    apps.create_namespaced_deployment("shop", cluster.deployment_manifest("shop", "web", "v1"))
    now.advance(2)
    restarted = {"kubectl.kubernetes.io/restartedAt": "2023-11-14T22:13:22Z"}
    apps.patch_namespaced_deployment(
        "web", "shop", {"spec": {"template": {"metadata": {"annotations": restarted}}}}
    )
    now.advance(2)
    revisions = rs_by_revision(apps, "shop")
    assert set(revisions) == {1, 2}
    assert revisions[2].spec.template.metadata.annotations == restarted


def test_paused_deployment_creates_no_replicaset_until_resumed(
    cluster: FakeCluster, now: Now, apps: client.AppsV1Api
) -> None:
    apps.create_namespaced_deployment("shop", cluster.deployment_manifest("shop", "web", "v1"))
    now.advance(2)
    apps.patch_namespaced_deployment("web", "shop", {"spec": {"paused": True}})
    roll_image(apps, "web", "shop", "v2")
    now.advance(5)
    assert set(rs_by_revision(apps, "shop")) == {1}
    progressing = condition(apps.read_namespaced_deployment("web", "shop"), "Progressing")
    assert (progressing.status, progressing.reason) == ("Unknown", "DeploymentPaused")

    apps.patch_namespaced_deployment("web", "shop", {"spec": {"paused": False}})
    now.advance(2)
    assert set(rs_by_revision(apps, "shop")) == {1, 2}


def test_crash_looping_rollout_keeps_old_pods_and_exceeds_progress_deadline(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    cluster.behave("web:bad", ImageBehavior(crash_after=2, ready_after=5))
    apps.create_namespaced_deployment("shop", cluster.deployment_manifest("shop", "web", "web:1"))
    now.advance(2)
    roll_image(apps, "web", "shop", "web:bad")
    started = now.t

    now.advance(13)  # instance 0 ran [0,2), back-off 10s, instance 1 running since 12
    bad = pods_of(core, "shop", "app=web")
    new = [p for p in bad if p.spec.containers[0].image == "web:bad"]
    old = [p for p in bad if p.spec.containers[0].image == "web:1"]
    assert len(new) == 2 and len(old) == 2
    assert all(condition(p, "Ready").status == "True" for p in old)
    cs = new[0].status.container_statuses[0]
    assert cs.restart_count == 1 and cs.state.running is not None
    assert cs.last_state.terminated.reason == "Error"
    assert cs.last_state.terminated.exit_code == 1

    now.advance(27)  # t=40: instance 2 ran [34,36), now in a 40s back-off
    pod = next(p for p in pods_of(core, "shop") if p.metadata.name == new[0].metadata.name)
    cs = pod.status.container_statuses[0]
    assert cs.state.waiting.reason == "CrashLoopBackOff"
    assert cs.state.waiting.message.startswith("back-off 40s restarting failed container=web")
    assert cs.restart_count == 2
    assert pod.status.phase == "Running"
    assert cs.last_state.terminated.started_at.timestamp() == started + 34
    assert cs.last_state.terminated.finished_at.timestamp() == started + 36
    warnings = core.list_namespaced_event(
        "shop",
        field_selector=f"involvedObject.name={pod.metadata.name},reason=BackOff,type=Warning",
    ).items
    (backoff,) = warnings
    assert backoff.count == 3
    assert backoff.message.startswith(
        f"Back-off restarting failed container web in pod {pod.metadata.name}"
    )
    assert (backoff.source.component, backoff.source.host) == ("kubelet", pod.spec.node_name)
    assert backoff.involved_object.field_path == "spec.containers{web}"
    assert backoff.last_timestamp.timestamp() == started + 36
    d = apps.read_namespaced_deployment("web", "shop")
    assert condition(d, "Available").status == "True"  # the old pods still serve
    assert condition(d, "Progressing").reason == "ReplicaSetUpdated"
    assert (d.status.replicas, d.status.updated_replicas, d.status.available_replicas) == (4, 2, 2)

    now.advance(started + 601 - now.t)
    d = apps.read_namespaced_deployment("web", "shop")
    progressing = condition(d, "Progressing")
    assert (progressing.status, progressing.reason) == ("False", "ProgressDeadlineExceeded")
    assert progressing.message.endswith("has timed out progressing.")
    assert len([p for p in pods_of(core, "shop") if p.spec.containers[0].image == "web:1"]) == 2


def test_oom_killed_container_restarts_with_last_state_oomkilled(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api
) -> None:
    cluster.behave("leaky:1", ImageBehavior(oom_after=30))
    core.create_namespaced_pod("default", cluster.pod_manifest("default", "leaky", "leaky:1"))
    now.advance(29)
    (cs,) = core.read_namespaced_pod("leaky", "default").status.container_statuses
    assert cs.ready and cs.restart_count == 0
    now.advance(2)
    (cs,) = core.read_namespaced_pod("leaky", "default").status.container_statuses
    assert cs.state.waiting.reason == "CrashLoopBackOff"
    assert (cs.last_state.terminated.reason, cs.last_state.terminated.exit_code) == (
        "OOMKilled",
        137,
    )
    now.advance(10)
    (cs,) = core.read_namespaced_pod("leaky", "default").status.container_statuses
    assert cs.state.running is not None and cs.restart_count == 1
    assert cs.last_state.terminated.reason == "OOMKilled"


def test_image_pull_error_goes_to_image_pull_backoff(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api
) -> None:
    cluster.behave("ghcr.io/acme/nope:9", ImageBehavior(pull_error=True))
    core.create_namespaced_pod(
        "default", cluster.pod_manifest("default", "p", "ghcr.io/acme/nope:9")
    )
    now.advance(1)
    pod = core.read_namespaced_pod("p", "default")
    assert pod.status.phase == "Pending"
    (cs,) = pod.status.container_statuses
    assert cs.state.waiting.reason == "ErrImagePull"
    assert cs.image_id == "" and not cs.started
    now.advance(10)
    (cs,) = core.read_namespaced_pod("p", "default").status.container_statuses
    assert cs.state.waiting.reason == "ImagePullBackOff"
    failed = core.list_namespaced_event("default", field_selector="reason=Failed").items
    assert any(e.message.startswith('Failed to pull image "ghcr.io/acme/nope:9"') for e in failed)
    assert all(e.type == "Warning" for e in failed)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod_log("p", "default")
    assert err.value.status == 400
    assert "is waiting to start: trying and failing to pull image" in body_of(err.value)["message"]


def test_deleted_pod_is_replaced_with_a_fresh_one(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api
) -> None:
    cluster.apply(cluster.deployment_manifest("shop", "web", "v1"))
    now.advance(5)
    victim = pods_of(core, "shop")[0]
    deleted = core.delete_namespaced_pod(victim.metadata.name, "shop")
    assert deleted.metadata.deletion_timestamp is not None
    pods = pods_of(core, "shop")
    assert len(pods) == 2
    assert victim.metadata.name not in {p.metadata.name for p in pods}
    (fresh,) = [p for p in pods if p.status.start_time.timestamp() == now.t]
    assert fresh.metadata.generate_name == victim.metadata.generate_name
    assert condition(fresh, "Ready").status == "False"  # a fresh start: not ready yet
    messages = {e.message for e in core.list_namespaced_event("shop").items}
    assert f"Deleted pod: {victim.metadata.name}" not in messages  # the user deleted it
    assert any(m.startswith("Created pod: ") for m in messages)


def test_scale_subresource_reads_and_scales(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    apps.create_namespaced_deployment("shop", cluster.deployment_manifest("shop", "web", "v1"))
    now.advance(2)
    scale = apps.read_namespaced_deployment_scale("web", "shop")
    assert scale.kind == "Scale" and scale.api_version == "autoscaling/v1"
    assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (2, 2, "app=web")
    patched = apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 4}})
    assert patched.spec.replicas == 4
    now.advance(2)
    assert len(pods_of(core, "shop")) == 4
    assert apps.read_namespaced_deployment("web", "shop").metadata.generation == 2

    stale = scale
    stale.spec.replicas = 1
    with pytest.raises(ApiException) as err:
        apps.replace_namespaced_deployment_scale("web", "shop", stale)
    assert err.value.status == 409
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": -1}})
    assert err.value.status == 422
    assert body_of(err.value)["message"] == (
        'Scale.autoscaling "web" is invalid: spec.replicas: Invalid value: -1: must be greater '
        "than or equal to 0"
    )


def test_recreate_strategy_replaces_all_pods_at_once(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    manifest = cluster.deployment_manifest("shop", "web", "v1", replicas=3)
    manifest["spec"]["strategy"] = {"type": "Recreate"}
    d = apps.create_namespaced_deployment("shop", manifest)
    assert d.spec.strategy.rolling_update is None
    now.advance(2)
    cluster.set_image("shop", "web", "v2")
    assert {p.spec.containers[0].image for p in pods_of(core, "shop")} == {"v2"}
    now.advance(2)
    d = apps.read_namespaced_deployment("web", "shop")
    assert (d.status.updated_replicas, d.status.available_replicas) == (3, 3)


def test_old_replicasets_are_pruned_to_revision_history_limit(
    cluster: FakeCluster, now: Now, apps: client.AppsV1Api
) -> None:
    manifest = cluster.deployment_manifest("shop", "web", "v0", replicas=1)
    manifest["spec"]["revisionHistoryLimit"] = 2
    cluster.apply(manifest)
    now.advance(2)
    for version in range(1, 6):
        cluster.set_image("shop", "web", f"v{version}")
        now.advance(2)
    revisions = rs_by_revision(apps, "shop")
    assert sorted(revisions) == [4, 5, 6]
    assert [revisions[r].spec.replicas for r in (4, 5, 6)] == [0, 0, 1]


def test_patching_a_pod_image_restarts_its_container(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api
) -> None:
    core.create_namespaced_pod("default", cluster.pod_manifest("default", "solo", "solo:1"))
    now.advance(5)
    patch = {"spec": {"containers": [{"name": "solo", "image": "solo:2"}]}}
    core.patch_namespaced_pod("solo", "default", patch)
    (cs,) = core.read_namespaced_pod("solo", "default").status.container_statuses
    assert (cs.image, cs.restart_count, cs.ready) == ("solo:2", 1, False)
    now.advance(1)
    (cs,) = core.read_namespaced_pod("solo", "default").status.container_statuses
    assert cs.ready
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod("solo", "default", {"spec": {"nodeName": "node-9"}})
    assert err.value.status == 422
    assert "pod updates may not change fields other than" in body_of(err.value)["message"]


def test_suspended_job_creates_no_pods_until_resumed(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, batch: client.BatchV1Api
) -> None:
    manifest = cluster.job_manifest("shop", "later", "task:1")
    manifest["spec"]["suspend"] = True
    batch.create_namespaced_job("shop", manifest)
    now.advance(5)
    job = batch.read_namespaced_job("later", "shop")
    assert pods_of(core, "shop") == [] and job.status.start_time is None
    assert condition(job, "Suspended").reason == "JobSuspended"
    batch.patch_namespaced_job("later", "shop", {"spec": {"suspend": False}})
    now.advance(2)
    job = batch.read_namespaced_job("later", "shop")
    assert job.status.succeeded == 1 and job.status.start_time.timestamp() == T0 + 5
    resumed = condition(job, "Suspended")
    assert (resumed.status, resumed.reason) == ("False", "JobResumed")


def test_wedged_pods_fail_readiness_until_a_rolling_restart(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    cluster.apply(cluster.deployment_manifest("shop", "cart", "cart:1"))
    now.advance(2)
    wedged = cluster.wedge("shop", "cart")
    assert wedged == sorted(p.metadata.name for p in pods_of(core, "shop"))
    now.advance(25)
    for pod in pods_of(core, "shop"):
        assert pod.status.phase == "Running"
        assert condition(pod, "Ready").status == "False"
        assert pod.status.container_statuses[0].restart_count == 0
    d = apps.read_namespaced_deployment("cart", "shop")
    assert condition(d, "Available").status == "False" and d.status.ready_replicas is None
    (unhealthy,) = core.list_namespaced_event(
        "shop", field_selector=f"reason=Unhealthy,involvedObject.name={wedged[0]}"
    ).items
    assert unhealthy.type == "Warning" and unhealthy.count == 3  # probes at +0, +10, +20
    assert unhealthy.message.startswith("Readiness probe failed: ")

    restarted = {"kubectl.kubernetes.io/restartedAt": "2023-11-14T22:14:00Z"}
    apps.patch_namespaced_deployment(
        "cart", "shop", {"spec": {"template": {"metadata": {"annotations": restarted}}}}
    )
    now.advance(2)
    pods = pods_of(core, "shop")
    assert len(pods) == 2 and not {p.metadata.name for p in pods} & set(wedged)
    assert condition(apps.read_namespaced_deployment("cart", "shop"), "Available").status == "True"


# --------------------------------------------------------------------------- other workloads


def test_statefulset_rolls_pods_highest_ordinal_first(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    apps.create_namespaced_stateful_set(
        "db", cluster.statefulset_manifest("db", "pg", "pg:15", replicas=3)
    )
    assert [p.metadata.name for p in pods_of(core, "db")] == ["pg-0"]  # OrderedReady
    now.advance(3)
    sts = apps.read_namespaced_stateful_set("pg", "db")
    assert (sts.status.replicas, sts.status.ready_replicas, sts.status.available_replicas) == (
        3,
        3,
        3,
    )
    assert sts.status.current_revision == sts.status.update_revision
    first_uids = {p.metadata.name: p.metadata.uid for p in pods_of(core, "db")}

    patch = {"spec": {"template": {"spec": {"containers": [{"name": "pg", "image": "pg:16"}]}}}}
    apps.patch_namespaced_stateful_set("pg", "db", patch)
    now.advance(0.5)
    sts = apps.read_namespaced_stateful_set("pg", "db")
    assert sts.status.update_revision != sts.status.current_revision
    assert sts.status.updated_replicas == 1
    images = {p.metadata.name: p.spec.containers[0].image for p in pods_of(core, "db")}
    assert images == {"pg-0": "pg:15", "pg-1": "pg:15", "pg-2": "pg:16"}
    now.advance(2.5)
    pods = pods_of(core, "db")
    assert {p.spec.containers[0].image for p in pods} == {"pg:16"}
    assert all(first_uids[p.metadata.name] != p.metadata.uid for p in pods)
    sts = apps.read_namespaced_stateful_set("pg", "db")
    assert sts.status.current_revision == sts.status.update_revision
    assert sts.status.current_replicas == 3
    deletes = core.list_namespaced_event("db", field_selector="reason=SuccessfulDelete").items
    order = sorted(deletes, key=lambda e: e.last_timestamp)
    assert [e.message for e in order] == [
        f"delete Pod pg-{i} in StatefulSet pg successful" for i in (2, 1, 0)
    ]


def test_daemonset_runs_one_pod_per_node_and_rolls_one_at_a_time(now: Now, tmp_path: Path) -> None:
    cluster = FakeCluster(now, nodes=3)
    with KubeApiServer(cluster) as server:
        api_client = kubernetes.config.new_client_from_config(
            config_file=str(server.write_kubeconfig(tmp_path / "kc"))
        )
        try:
            apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
            apps.create_namespaced_daemon_set(
                "kube-system", cluster.daemonset_manifest("kube-system", "agent", "agent:1")
            )
            now.advance(2)
            pods = pods_of(core, "kube-system")
            assert sorted(p.spec.node_name for p in pods) == ["node-1", "node-2", "node-3"]
            ds = apps.read_namespaced_daemon_set("agent", "kube-system")
            st = ds.status
            assert (st.desired_number_scheduled, st.current_number_scheduled) == (3, 3)
            assert (st.number_ready, st.number_available, st.updated_number_scheduled) == (3, 3, 3)
            assert st.number_unavailable is None and st.number_misscheduled == 0

            cluster.behave("agent:2", ImageBehavior(ready_after=10))
            patch = {
                "spec": {
                    "template": {"spec": {"containers": [{"name": "agent", "image": "agent:2"}]}}
                }
            }
            apps.patch_namespaced_daemon_set("agent", "kube-system", patch)
            now.advance(1)
            images = sorted(p.spec.containers[0].image for p in pods_of(core, "kube-system"))
            assert images == ["agent:1", "agent:1", "agent:2"]  # maxUnavailable 1
            assert (
                apps.read_namespaced_daemon_set("agent", "kube-system").status.number_unavailable
                == 1
            )
            now.advance(30)
            images = sorted(p.spec.containers[0].image for p in pods_of(core, "kube-system"))
            assert images == ["agent:2"] * 3
        finally:
            api_client.close()


def test_job_runs_to_completion(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, batch: client.BatchV1Api
) -> None:
    cluster.behave("migrate:1", ImageBehavior(run_for=3, logs=("migrating", "done")))
    job = batch.create_namespaced_job("shop", cluster.job_manifest("shop", "migrate", "migrate:1"))
    assert (job.spec.backoff_limit, job.spec.completions, job.spec.parallelism) == (6, 1, 1)
    uid = job.metadata.uid
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert job.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == "migrate"
    now.advance(1)
    job = batch.read_namespaced_job("migrate", "shop")
    assert job.status.active == 1 and job.status.start_time.timestamp() == T0
    now.advance(3)
    job = batch.read_namespaced_job("migrate", "shop")
    assert job.status.succeeded == 1 and not job.status.active
    assert job.status.completion_time.timestamp() == T0 + 3
    assert condition(job, "Complete").status == "True"
    (pod,) = pods_of(core, "shop", "job-name=migrate")
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.reason == "Completed"
    assert core.read_namespaced_pod_log(pod.metadata.name, "shop") == "migrating\ndone\n"
    completed = core.list_namespaced_event("shop", field_selector="reason=Completed").items
    assert [e.message for e in completed] == ["Job completed"]


def test_failing_job_stops_at_backoff_limit(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, batch: client.BatchV1Api
) -> None:
    cluster.behave("bad-job:1", ImageBehavior(run_for=2, exit_code=1))
    batch.create_namespaced_job(
        "shop", cluster.job_manifest("shop", "j", "bad-job:1", backoff_limit=2)
    )
    now.advance(5)  # first pod failed at 2; the retry waits 10s
    assert batch.read_namespaced_job("j", "shop").status.failed == 1
    assert len(pods_of(core, "shop", "job-name=j")) == 1
    now.advance(200)
    job = batch.read_namespaced_job("j", "shop")
    assert job.status.failed == 3  # backoffLimit 2 allows 2 retries
    failed = condition(job, "Failed")
    assert (failed.status, failed.reason) == ("True", "BackoffLimitExceeded")
    assert failed.message == "Job has reached the specified backoff limit"
    pods = pods_of(core, "shop", "job-name=j")
    assert [p.status.phase for p in pods] == ["Failed"] * 3
    assert {p.status.container_statuses[0].state.terminated.exit_code for p in pods} == {1}
    (event,) = core.list_namespaced_event(
        "shop", field_selector="reason=BackoffLimitExceeded"
    ).items
    assert event.type == "Warning" and event.source.component == "job-controller"


def test_deleting_a_job_cascades_or_orphans_its_pods(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, batch: client.BatchV1Api
) -> None:
    cluster.behave("long:1", ImageBehavior(run_for=1000))
    for name in ("a", "b"):
        batch.create_namespaced_job("shop", cluster.job_manifest("shop", name, "long:1"))
    now.advance(1)
    batch.delete_namespaced_job("a", "shop", propagation_policy="Background")
    assert pods_of(core, "shop", "job-name=a") == []
    batch.delete_namespaced_job("b", "shop", propagation_policy="Orphan")
    (orphan,) = pods_of(core, "shop", "job-name=b")
    assert orphan.metadata.owner_references is None


def test_cronjob_is_defaulted_and_a_job_can_be_created_from_its_template(
    cluster: FakeCluster, now: Now, batch: client.BatchV1Api
) -> None:
    cron = batch.create_namespaced_cron_job(
        "shop", cluster.cronjob_manifest("shop", "nightly", "report:1", schedule="0 3 * * *")
    )
    assert (cron.spec.concurrency_policy, cron.spec.suspend) == ("Allow", False)
    assert (cron.spec.successful_jobs_history_limit, cron.spec.failed_jobs_history_limit) == (3, 1)
    assert cron.spec.job_template.spec.backoff_limit == 6
    manual = client.V1Job(
        metadata=client.V1ObjectMeta(
            name="nightly-manual",
            annotations={"cronjob.kubernetes.io/instantiate": "manual"},
            owner_references=[
                client.V1OwnerReference(
                    api_version="batch/v1",
                    kind="CronJob",
                    name="nightly",
                    uid=cron.metadata.uid,
                    controller=True,
                )
            ],
        ),
        spec=client.V1JobSpec(template=cron.spec.job_template.spec.template),
    )
    batch.create_namespaced_job("shop", manual)
    now.advance(2)
    job = batch.read_namespaced_job("nightly-manual", "shop")
    assert job.status.succeeded == 1
    assert job.metadata.owner_references[0].uid == cron.metadata.uid


# --------------------------------------------------------------------------- API semantics


def test_stale_update_is_rejected_with_the_real_conflict_message(
    cluster: FakeCluster, apps: client.AppsV1Api
) -> None:
    cluster.apply(cluster.deployment_manifest("shop", "web", "v1"))
    mine = apps.read_namespaced_deployment("web", "shop")
    cluster.touch("Deployment", "shop", "web")
    mine.spec.replicas = 5
    with pytest.raises(ApiException) as err:
        apps.replace_namespaced_deployment("web", "shop", mine)
    assert err.value.status == 409
    body = body_of(err.value)
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert body["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    fresh = apps.read_namespaced_deployment("web", "shop")
    fresh.spec.replicas = 5
    assert apps.replace_namespaced_deployment("web", "shop", fresh).spec.replicas == 5


def test_patch_carrying_a_stale_resource_version_conflicts(
    cluster: FakeCluster, apps: client.AppsV1Api
) -> None:
    cluster.apply(cluster.deployment_manifest("shop", "web", "v1"))
    rv = apps.read_namespaced_deployment("web", "shop").metadata.resource_version
    cluster.touch("Deployment", "shop", "web")
    patch = {"metadata": {"resourceVersion": rv}, "spec": {"replicas": 3}}
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment("web", "shop", patch)
    assert err.value.status == 409
    assert cluster.get("Deployment", "shop", "web")["spec"]["replicas"] == 2
    current = apps.read_namespaced_deployment("web", "shop").metadata.resource_version
    patch["metadata"]["resourceVersion"] = current
    assert apps.patch_namespaced_deployment("web", "shop", patch).spec.replicas == 3


def test_strategic_merge_patch_merges_containers_by_name(
    cluster: FakeCluster, apps: client.AppsV1Api
) -> None:
    containers = [
        {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
        {"name": "sidecar", "image": "proxy:1"},
    ]
    cluster.apply(cluster.deployment_manifest("shop", "web", "", containers=containers))
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]}
                    ]
                }
            }
        }
    }
    d = apps.patch_namespaced_deployment("web", "shop", patch)
    app, sidecar = d.spec.template.spec.containers
    assert (app.image, sidecar.image) == ("app:2", "proxy:1")
    assert [(e.name, e.value) for e in app.env] == [("A", "1"), ("B", "2")]
    delete = {
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}
    }
    d = apps.patch_namespaced_deployment("web", "shop", delete)
    assert [c.name for c in d.spec.template.spec.containers] == ["app"]
    d = apps.patch_namespaced_deployment("web", "shop", {"metadata": {"labels": {"app": None}}})
    assert d.metadata.labels is None


def test_json_patch_applies_operations_and_a_failed_test_is_422(
    cluster: FakeCluster, apps: client.AppsV1Api
) -> None:
    cluster.apply(cluster.deployment_manifest("shop", "web", "v1"))
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 2},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/annotations", "value": {"team/owner": "ops"}},
        {"op": "add", "path": "/metadata/annotations/a~1b", "value": "slash"},
    ]
    d = apps.patch_namespaced_deployment("web", "shop", ops)
    assert d.spec.replicas == 3
    assert d.metadata.annotations["a/b"] == "slash"
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment(
            "web", "shop", [{"op": "test", "path": "/spec/replicas", "value": 9}]
        )
    assert err.value.status == 422
    assert body_of(err.value)["reason"] == "Invalid"


def test_merge_patch_replaces_lists_and_null_deletes(
    cluster: FakeCluster, apps: client.AppsV1Api
) -> None:
    containers = [{"name": "app", "image": "app:1"}, {"name": "sidecar", "image": "proxy:1"}]
    cluster.apply(cluster.deployment_manifest("shop", "web", "", containers=containers))
    patch = {
        "metadata": {"labels": {"tier": "front", "app": None}},
        "spec": {"template": {"spec": {"containers": [{"name": "only", "image": "one:1"}]}}},
    }
    d = apps.patch_namespaced_deployment(
        "web", "shop", patch, _content_type="application/merge-patch+json"
    )
    assert d.metadata.labels == {"tier": "front"}
    assert [c.name for c in d.spec.template.spec.containers] == ["only"]
    assert d.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"  # re-defaulted


def test_label_and_field_selectors_filter_lists(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    for name, tier in (("web", "front"), ("api", "back"), ("worker", "back")):
        manifest = cluster.deployment_manifest("shop", name, f"{name}:1", replicas=1)
        manifest["metadata"]["labels"]["tier"] = tier
        cluster.apply(manifest)
    cluster.apply(cluster.deployment_manifest("other", "web", "web:1", replicas=1))
    now.advance(2)

    def names(selector: str) -> list[str]:
        return [
            d.metadata.name
            for d in apps.list_namespaced_deployment("shop", label_selector=selector).items
        ]

    assert names("tier=back") == ["api", "worker"]
    assert names("tier==back,app!=api") == ["worker"]
    assert names("tier in (front, back),app notin (worker)") == ["api", "web"]
    assert names("tier") == ["api", "web", "worker"]
    assert names("!tier") == []
    everywhere = apps.list_deployment_for_all_namespaces(field_selector="metadata.name=web")
    assert sorted(d.metadata.namespace for d in everywhere.items) == ["other", "shop"]
    running = core.list_namespaced_pod("shop", field_selector="status.phase=Running").items
    assert len(running) == 3
    assert core.list_namespaced_pod("shop", field_selector="status.phase!=Running").items == []
    node = running[0].spec.node_name
    on_node = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
    assert running[0].metadata.name in {p.metadata.name for p in on_node}
    with pytest.raises(ApiException) as err:
        core.list_namespaced_pod("shop", field_selector="spec.bogus=1")
    assert err.value.status == 400
    assert body_of(err.value)["message"] == "field label not supported: spec.bogus"


def test_error_bodies_are_real_status_objects(
    cluster: FakeCluster,
    server: KubeApiServer,
    apps: client.AppsV1Api,
    batch: client.BatchV1Api,
    core: client.CoreV1Api,
) -> None:
    with pytest.raises(ApiException) as err:
        apps.read_namespaced_deployment("web", "shop")
    assert err.value.status == 404
    assert body_of(err.value)["message"] == 'deployments.apps "web" not found'
    assert body_of(err.value)["details"] == {"name": "web", "group": "apps", "kind": "deployments"}

    bad = cluster.deployment_manifest("shop", "web", "v1")
    bad["spec"]["replicas"] = -1
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment("shop", bad)
    body = body_of(err.value)
    assert err.value.status == 422 and body["reason"] == "Invalid"
    assert body["message"] == (
        'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than '
        "or equal to 0"
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: -1: must be greater than or equal to 0",
            "field": "spec.replicas",
        }
    ]
    mismatch = cluster.deployment_manifest("shop", "web", "v1")
    mismatch["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    mismatch["spec"]["template"]["spec"]["containers"].append({"name": "x"})
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment("shop", mismatch)
    message = body_of(err.value)["message"]
    assert "`selector` does not match template `labels`" in message
    assert "spec.template.spec.containers[1].image: Required value" in message

    batch.create_namespaced_job("shop", cluster.job_manifest("shop", "x", "j:1"))
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_job("shop", cluster.job_manifest("shop", "x", "j:1"))
    assert err.value.status == 409
    assert body_of(err.value)["reason"] == "AlreadyExists"
    assert body_of(err.value)["message"] == 'jobs.batch "x" already exists'

    cluster.authorize([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}])
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": 1}})
    assert err.value.status == 403
    assert body_of(err.value)["message"] == (
        'deployments.apps "web" is forbidden: User "system:serviceaccount:opsmedic:opsmedic" '
        'cannot patch resource "deployments" in API group "apps" in the namespace "shop"'
    )

    anonymous = client.Configuration(host=server.url)
    anonymous.api_key = {"BearerToken": "wrong"}
    anonymous.api_key_prefix = {"BearerToken": "Bearer"}
    with client.ApiClient(anonymous) as stranger:
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(stranger).list_namespaced_pod("shop")
    assert err.value.status == 401
    assert body_of(err.value)["reason"] == "Unauthorized"
    assert all(r.verb != "list" or r.resource != "pods" for r in cluster.requests)


def test_rbac_rules_cover_subresources_and_resource_names(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    cluster.apply(cluster.deployment_manifest("shop", "web", "v1"))
    now.advance(2)
    pod = pods_of(core, "shop")[0].metadata.name
    cluster.authorize(
        [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {
                "apiGroups": ["apps"],
                "resources": ["deployments/scale"],
                "verbs": ["patch"],
                "resourceNames": ["web"],
            },
        ]
    )
    assert core.read_namespaced_pod(pod, "shop").metadata.name == pod
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod_log(pod, "shop")
    assert err.value.status == 403
    assert body_of(err.value)["message"] == (
        f'pods "{pod}" is forbidden: User "system:serviceaccount:opsmedic:opsmedic" cannot get '
        'resource "pods/log" in API group "" in the namespace "shop"'
    )
    apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 3}})
    with pytest.raises(ApiException) as err:
        apps.list_deployment_for_all_namespaces()
    assert "at the cluster scope" in body_of(err.value)["message"]
    cluster.authorize(None)
    cluster.deny("delete", "pods")
    with pytest.raises(ApiException) as err:
        core.delete_namespaced_pod(pod, "shop")
    assert err.value.status == 403
    assert [r.status for r in cluster.requests if r.verb == "delete"] == [403]


def test_fail_next_429_has_retry_after_and_no_side_effect(
    cluster: FakeCluster, apps: client.AppsV1Api
) -> None:
    cluster.apply(cluster.deployment_manifest("shop", "web", "v1"))
    cluster.clear_requests()
    cluster.fail_next("patch", "deployments", 429, retry_after=7, namespace="shop")
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": 5}})
    assert err.value.status == 429
    assert err.value.headers["Retry-After"] == "7"
    body = body_of(err.value)
    assert body["reason"] == "TooManyRequests"
    assert body["details"]["retryAfterSeconds"] == 7
    assert cluster.get("Deployment", "shop", "web")["spec"]["replicas"] == 2
    apps.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": 5}})
    patches = [r for r in cluster.requests if (r.verb, r.resource) == ("patch", "deployments")]
    assert [r.status for r in patches] == [429, 200]
    assert patches[1].body == {"spec": {"replicas": 5}}
    assert (patches[1].group, patches[1].namespace, patches[1].name) == ("apps", "shop", "web")


@pytest.mark.parametrize(
    ("status", "reason"),
    [(409, "Conflict"), (500, "InternalError"), (503, "ServiceUnavailable")],
)
def test_fail_next_answers_with_a_proper_status(
    cluster: FakeCluster, apps: client.AppsV1Api, status: int, reason: str
) -> None:
    cluster.apply(cluster.deployment_manifest("shop", "web", "v1"))
    cluster.fail_next("update", "deployments", status, times=2)
    d = apps.read_namespaced_deployment("web", "shop")
    d.spec.replicas = 4
    d.metadata.resource_version = None  # unconditional: urllib3 must not see Retry-After
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            apps.replace_namespaced_deployment("web", "shop", d)
        assert err.value.status == status
        assert body_of(err.value)["reason"] == reason
    assert apps.replace_namespaced_deployment("web", "shop", d).spec.replicas == 4


def test_pod_logs_support_tail_timestamps_previous_and_reject_bad_containers(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api
) -> None:
    cluster.behave("app:1", ImageBehavior(logs=("boot", "listening", "GET /"), crash_after=5))
    manifest = cluster.pod_manifest("default", "two", "app:1")
    manifest["spec"]["containers"].append({"name": "side", "image": "proxy:1"})
    core.create_namespaced_pod("default", manifest)
    core.create_namespaced_pod("default", cluster.pod_manifest("default", "one", "app:1"))
    now.advance(1)
    assert core.read_namespaced_pod_log("one", "default") == "boot\nlistening\nGET /\n"
    assert core.read_namespaced_pod_log("one", "default", tail_lines=1) == "GET /\n"
    stamped = core.read_namespaced_pod_log("one", "default", timestamps=True, tail_lines=2)
    assert stamped.splitlines()[0] == "2023-11-14T22:13:20.001000000Z listening"
    assert core.read_namespaced_pod_log("one", "default", limit_bytes=4) == "boot"
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod_log("one", "default", previous=True)
    assert err.value.status == 400
    assert body_of(err.value)["message"] == (
        'previous terminated container "one" in pod "one" not found'
    )
    now.advance(20)  # crashed at 5, restarted at 15
    assert core.read_namespaced_pod_log("one", "default", previous=True).startswith("boot")
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod_log("two", "default")
    assert err.value.status == 400
    assert body_of(err.value)["message"] == (
        "a container name must be specified for pod two, choose one of: [two side]"
    )
    assert core.read_namespaced_pod_log("two", "default", container="side") == ""
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod_log("two", "default", container="nope")
    assert body_of(err.value)["message"] == "container nope is not valid for pod two"
    logs = [r for r in cluster.requests if r.subresource == "log"]
    assert {(r.verb, r.resource) for r in logs} == {("get", "pods")}


def test_events_can_be_posted_and_selected(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api
) -> None:
    cluster.apply(cluster.deployment_manifest("shop", "web", "v1"))
    now.advance(1)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="web.", labels={"source": "opsmedic"}),
        involved_object=client.V1ObjectReference(
            kind="Deployment", name="web", namespace="shop", api_version="apps/v1"
        ),
        reason="Remediated",
        message="rolled back",
        type="Normal",
        count=1,
        source=client.V1EventSource(component="opsmedic"),
    )
    created = core.create_namespaced_event("shop", event)
    assert created.metadata.name.startswith("web.") and len(created.metadata.name) == 9
    mine = core.list_namespaced_event("shop", label_selector="source=opsmedic").items
    assert [e.reason for e in mine] == ["Remediated"]
    about_web = core.list_namespaced_event(
        "shop", field_selector="involvedObject.name=web,involvedObject.kind=Deployment"
    ).items
    assert {e.reason for e in about_web} == {"ScalingReplicaSet", "Remediated"}
    normal = core.list_namespaced_event("shop", field_selector="type=Warning").items
    assert normal == []


def test_leases_support_crud(cluster: FakeCluster, api: client.ApiClient, now: Now) -> None:
    coordination = client.CoordinationV1Api(api)
    lease = client.V1Lease(
        metadata=client.V1ObjectMeta(name="opsmedic-leader"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
    )
    created = coordination.create_namespaced_lease("opsmedic", lease)
    assert created.spec.holder_identity == "a"
    now.advance(5)
    current = coordination.read_namespaced_lease("opsmedic-leader", "opsmedic")
    current.spec.holder_identity = "b"
    current.spec.lease_transitions = 1
    replaced = coordination.replace_namespaced_lease("opsmedic-leader", "opsmedic", current)
    assert replaced.spec.holder_identity == "b"
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    with pytest.raises(ApiException) as err:
        coordination.replace_namespaced_lease("opsmedic-leader", "opsmedic", current)
    assert err.value.status == 409
    patched = coordination.patch_namespaced_lease(
        "opsmedic-leader", "opsmedic", {"spec": {"leaseDurationSeconds": 30}}
    )
    assert patched.spec.lease_duration_seconds == 30
    assert [x.metadata.name for x in coordination.list_namespaced_lease("opsmedic").items] == [
        "opsmedic-leader"
    ]
    namespaces = {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
    assert {"default", "opsmedic"} <= namespaces
    coordination.delete_namespaced_lease("opsmedic-leader", "opsmedic")
    with pytest.raises(ApiException) as err:
        coordination.read_namespaced_lease("opsmedic-leader", "opsmedic")
    assert err.value.status == 404


def test_dry_run_validates_but_never_persists(cluster: FakeCluster, apps: client.AppsV1Api) -> None:
    manifest = cluster.deployment_manifest("shop", "web", "v1")
    preview = apps.create_namespaced_deployment("shop", manifest, dry_run="All")
    assert preview.metadata.name == "web" and preview.spec.replicas == 2
    assert cluster.get("Deployment", "shop", "web") is None
    bad = cluster.deployment_manifest("shop", "web", "v1")
    bad["spec"]["replicas"] = -3
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment("shop", bad, dry_run="All")
    assert err.value.status == 422
    cluster.apply(manifest)
    rv = cluster.get("Deployment", "shop", "web")["metadata"]["resourceVersion"]
    patched = apps.patch_namespaced_deployment(
        "web", "shop", {"spec": {"replicas": 9}}, dry_run="All"
    )
    assert patched.spec.replicas == 9
    apps.delete_namespaced_deployment("web", "shop", dry_run="All")
    stored = cluster.get("Deployment", "shop", "web")
    assert stored is not None and stored["spec"]["replicas"] == 2
    assert stored["metadata"]["resourceVersion"] == rv


def test_delete_preconditions_and_collection_delete(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    cluster.apply(cluster.deployment_manifest("shop", "web", "v1"))
    cluster.apply(cluster.deployment_manifest("shop", "api", "v1"))
    now.advance(2)
    d = apps.read_namespaced_deployment("web", "shop")
    stale = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(
            resource_version=str(int(d.metadata.resource_version) - 1)
        )
    )
    with pytest.raises(ApiException) as err:
        apps.delete_namespaced_deployment("web", "shop", body=stale)
    assert err.value.status == 409
    assert "Precondition failed: ResourceVersion in precondition" in body_of(err.value)["message"]
    status = apps.delete_namespaced_deployment(
        "web",
        "shop",
        body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=d.metadata.uid)),
    )
    assert status["kind"] == "Status" and status["status"] == "Success"
    assert status["details"] == {
        "name": "web",
        "group": "apps",
        "kind": "deployments",
        "uid": d.metadata.uid,
    }
    assert pods_of(core, "shop", "app=web") == []
    assert [rs.metadata.name for rs in apps.list_namespaced_replica_set("shop").items] == [
        rs.metadata.name
        for rs in apps.list_namespaced_replica_set("shop", label_selector="app=api").items
    ]
    raw = core.delete_collection_namespaced_pod(
        "shop", label_selector="app=api", _preload_content=False
    )
    removed = json.loads(raw.data)
    assert removed["kind"] == "PodList" and len(removed["items"]) == 2
    now.advance(1)
    assert len(pods_of(core, "shop", "app=api")) == 2  # the replicaset replaced them


def test_generate_name_and_already_exists_on_pods(
    cluster: FakeCluster, core: client.CoreV1Api
) -> None:
    manifest = cluster.pod_manifest("default", "debug", "debug:1")
    manifest["metadata"] = {"generateName": "debug-"}
    pod = core.create_namespaced_pod("default", manifest)
    assert re.fullmatch(r"debug-[a-z0-9]{5}", pod.metadata.name)
    assert pod.status.phase == "Pending" and pod.spec.service_account_name == "default"
    bound = core.read_namespaced_pod(pod.metadata.name, "default")
    assert bound.spec.node_name and bound.status.phase == "Running"


def test_watch_streams_existing_and_new_objects(
    cluster: FakeCluster, now: Now, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    cluster.apply(cluster.deployment_manifest("shop", "web", "v1", replicas=1))
    now.advance(2)
    watch = kubernetes.watch.Watch()
    seen: list[tuple[str, str]] = []
    for event in watch.stream(
        core.list_namespaced_pod, "shop", label_selector="app=web", timeout_seconds=10
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 1:
            apps.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": 2}})
        if len({name for kind, name in seen if kind == "ADDED"}) == 2:
            watch.stop()
    assert seen[0][0] == "ADDED"
    assert len({name for _, name in seen}) == 2


def test_kubeconfig_works_with_both_loaders_and_selects_contexts(now: Now, tmp_path: Path) -> None:
    alpha, beta = FakeCluster(now), FakeCluster(now)
    alpha.apply(alpha.deployment_manifest("default", "in-alpha", "a:1"))
    beta.apply(beta.deployment_manifest("default", "in-beta", "b:1"))
    path = tmp_path / "config"
    with KubeApiServer(alpha) as a, KubeApiServer(beta) as b:
        a.write_kubeconfig(path, context="alpha", namespace="default")
        b.write_kubeconfig(path, context="beta", namespace="shop")
        contexts, active = kubernetes.config.list_kube_config_contexts(str(path))
        assert {c["name"] for c in contexts} == {"alpha", "beta"}
        assert active["name"] == "beta" and active["context"]["namespace"] == "shop"

        def deployments(api_client: client.ApiClient) -> list[str]:
            with api_client:
                items = client.AppsV1Api(api_client).list_namespaced_deployment("default").items
            return [d.metadata.name for d in items]

        assert deployments(
            kubernetes.config.new_client_from_config(config_file=str(path), context="alpha")
        ) == ["in-alpha"]
        configuration = client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=str(path), context="alpha", client_configuration=configuration
        )
        assert deployments(client.ApiClient(configuration)) == ["in-alpha"]
        saved = client.Configuration.get_default_copy()
        try:
            kubernetes.config.load_kube_config(config_file=str(path))  # current-context: beta
            assert deployments(client.ApiClient()) == ["in-beta"]
        finally:
            client.Configuration.set_default(saved)


def test_discovery_serves_the_dynamic_client(cluster: FakeCluster, api: client.ApiClient) -> None:
    cluster.apply(cluster.deployment_manifest("shop", "web", "v1"))
    assert client.VersionApi(api).get_code().git_version.startswith("v1.")
    dynamic = kubernetes.dynamic.DynamicClient(api)
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    listed = deployments.get(namespace="shop")
    assert [item.metadata.name for item in listed.items] == ["web"]
    leases = dynamic.resources.get(api_version="coordination.k8s.io/v1", kind="Lease")
    assert leases.namespaced


def test_reconcile_is_cheap_when_nothing_changes(cluster: FakeCluster, now: Now) -> None:
    for i in range(200):
        cluster.apply(cluster.deployment_manifest(f"ns{i % 5}", f"d{i}", "svc:1", replicas=3))
    now.advance(5)
    assert len(cluster.list("Pod")) == 600
    started = time.perf_counter()
    for _ in range(1000):
        now.advance(1)
        cluster.reconcile()
    assert time.perf_counter() - started < 0.5
