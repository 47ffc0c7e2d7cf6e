"""The agent's read-only evidence tools (daemon/agents/tools.py) against real components: the
sandbox Kubernetes API server through the official client, a real Prometheus (Debian's
package) with backfilled series, and an IncidentStore on disk; time is a FakeClock."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.agents.tools import SPECS, LiveTools, ToolError
from daemon.clock import FakeClock
from daemon.incidents import Incident, IncidentStore, Resolution, Status
from daemon.kube.cluster import KubeClient, KubernetesCluster
from daemon.redact import DEFAULT, Redactor
from daemon.sandbox.kubeapi import FakeCluster, ImageBehavior
from probes.prometheus_source import PrometheusClient, PrometheusSource
from tests.promserver import PrometheusServer, openmetrics, prometheus_available

NS = "shop"
WEB = {"namespace": NS, "kind": "Deployment", "name": "web"}
RBAC = Path(__file__).parent.parent / "deploy" / "kubernetes" / "rbac.yaml"
TOKEN = "opaque-8f3KzQ2vLm9Xa1Bc7Yd"
DB_SECRET = "hunter2-prod-db-9f8e"
CRASH_LOGS = (
    "starting web 2",
    f"GET /orders Authorization: Bearer {TOKEN}",
    f"connecting to postgres with {DB_SECRET}",
    "panic: config key orders.url missing",
)


# --- Kubernetes: the sandbox API server --------------------------------------------------


def open_incident(
    store: IncidentStore,
    clock: FakeClock,
    labels: Mapping[str, str] = WEB,
    *,
    fingerprint: str | None = None,
) -> Incident:
    """An open incident (the same one again for the same fingerprint, by default its labels)."""
    incident, _ = store.open(
        fingerprint=fingerprint or json.dumps(dict(labels), sort_keys=True),
        playbook="shop",
        labels=labels,
        severity="critical",
        summary="web is unhealthy",
        value=None,
        at=clock.now(),
    )
    return incident


def live(
    store: IncidentStore,
    clock: FakeClock,
    *,
    labels: Mapping[str, str] = WEB,
    fingerprint: str | None = None,
    kube: KubeClient | None = None,
    prometheus: PrometheusClient | None = None,
    redactor: Redactor = DEFAULT,
) -> LiveTools:
    return LiveTools(
        incident=open_incident(store, clock, labels, fingerprint=fingerprint),
        store=store,
        clock=clock,
        prometheus=prometheus,
        kube=kube,
        redactor=redactor,
    )


async def bad_rollout(cluster: FakeCluster, clock: FakeClock) -> None:
    """web runs shop/web:1 for a minute, then shop/web:2 (crash-loops) for two."""
    cluster.behave("shop/web:1", ImageBehavior(logs=("starting web 1", "listening on :8080")))
    cluster.behave("shop/web:2", ImageBehavior(crash_after=1, logs=CRASH_LOGS))
    cluster.apply(cluster.deployment_manifest(NS, "web", "shop/web:1"))
    await clock.advance(60)
    cluster.set_image(NS, "web", "shop/web:2", change_cause="deploy web 2")
    await clock.advance(120)


def pods_by_image(cluster: FakeCluster, image: str, app: str = "web") -> list[dict[str, Any]]:
    return [
        p
        for p in cluster.list("Pod", NS, {"app": app})
        if p["spec"]["containers"][0]["image"] == image
    ]


def crashing_pod(cluster: FakeCluster) -> str:
    return str(min(p["metadata"]["name"] for p in pods_by_image(cluster, "shop/web:2")))


async def test_rollout_history_lists_revisions_newest_first_with_current(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    await bad_rollout(cluster, clock)
    tools = live(store, clock, kube=kube)
    history = await tools.call("rollout_history", {})
    assert [h["revision"] for h in history] == [2, 1]
    assert [h["images"] for h in history] == [{"web": "shop/web:2"}, {"web": "shop/web:1"}]
    assert [h["current"] for h in history] == [True, False]
    assert history[0]["change_cause"] == "deploy web 2"
    assert [h["age_seconds"] for h in history] == [120, 180]
    assert history[0]["replicaset"].startswith("web-")
    assert await tools.call("rollout_history", {"namespace": NS, "deployment": "web"}) == history
    json.dumps(history)  # JSON-able as it is


async def test_after_a_rollback_the_current_revision_is_the_old_template(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    await bad_rollout(cluster, clock)
    cluster.set_image(NS, "web", "shop/web:1")  # back to the first template: a new revision 3
    await clock.advance(30)
    history = await live(store, clock, kube=kube).call("rollout_history", {})
    assert [(h["revision"], h["images"]["web"], h["current"]) for h in history] == [
        (3, "shop/web:1", True),
        (2, "shop/web:2", False),
    ]


async def test_pods_show_the_crash_looping_container(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    await bad_rollout(cluster, clock)
    pods = await live(store, clock, kube=kube).call("pods", {})
    by_name = {p["name"]: p for p in pods}
    assert set(by_name) == {p["metadata"]["name"] for p in cluster.list("Pod", NS)}
    bad = pods_by_image(cluster, "shop/web:2")
    assert bad  # the sandbox starts the new ReplicaSet's pods while the old ones still run
    for pod in bad:
        view = by_name[pod["metadata"]["name"]]
        [container] = view["containers"]
        assert not view["ready"] and view["phase"] == "Running"
        assert container["image"] == "shop/web:2" and container["state"] == "waiting"
        assert container["reason"] == "CrashLoopBackOff"
        restarts = pod["status"]["containerStatuses"][0]["restartCount"]
        assert container["restarts"] == view["restarts"] == restarts >= 2
        assert container["last_termination"]["reason"] == "Error"
        assert container["last_termination"]["exit_code"] == 1
    good = [by_name[p["metadata"]["name"]] for p in pods_by_image(cluster, "shop/web:1")]
    assert len(good) == 2 and all(p["ready"] and p["restarts"] == 0 for p in good)


async def test_events_are_the_warnings_of_this_workload_newest_first(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    cluster.behave("shop/cart:1", ImageBehavior(crash_after=1))
    cluster.apply(cluster.deployment_manifest(NS, "cart", "shop/cart:1"))  # crash-loops too
    await bad_rollout(cluster, clock)
    events = await live(store, clock, kube=kube).call("events", {})
    assert events and all(e["type"] == "Warning" for e in events)
    crashing = {f"Pod/{p['metadata']['name']}" for p in pods_by_image(cluster, "shop/web:2")}
    assert {e["object"] for e in events} == crashing
    backoffs = [e for e in events if e["reason"] == "BackOff"]
    assert {e["object"] for e in backoffs} == crashing
    assert all("Back-off restarting failed container web" in e["message"] for e in backoffs)
    assert all(e["count"] >= 2 for e in backoffs)
    seen = [e["last_seen"] for e in events]
    assert seen == sorted(seen, reverse=True)
    cart = await live(store, clock, kube=kube, labels={**WEB, "name": "cart"}).call("events", {})
    assert cart and all(e["object"].startswith("Pod/cart-") for e in cart)


async def test_events_include_those_of_the_deployments_replicasets(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    """A ReplicaSet that cannot create its pods (quota, admission) says so in its own events."""
    await bad_rollout(cluster, clock)
    [rs] = [
        r["metadata"]["name"]
        for r in cluster.list("ReplicaSet", NS)
        if r["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:2"
    ]
    message = f'pods "{rs}-x" is forbidden: exceeded quota: compute, requested: cpu=2'
    cluster.apply(
        cluster.event_manifest(
            NS,
            ("ReplicaSet", rs),
            "FailedCreate",
            message,
            name=f"{rs}.quota",
            count=3,
            last_seen="2099-01-01T00:00:00Z",
        )
    )
    [newest, *_] = await live(store, clock, kube=kube).call("events", {})
    assert newest["object"] == f"ReplicaSet/{rs}" and newest["reason"] == "FailedCreate"
    assert newest["message"] == message and newest["count"] == 3


async def test_pods_list_failing_pods_first_when_there_are_many(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    cluster.behave("shop/web:2", ImageBehavior(crash_after=1))
    cluster.apply(cluster.deployment_manifest(NS, "web", "shop/web:1", replicas=12))
    await clock.advance(60)
    cluster.set_image(NS, "web", "shop/web:2")
    await clock.advance(60)
    assert len(cluster.list("Pod", NS)) == 24
    pods = await live(store, clock, kube=kube).call("pods", {})
    assert len(pods) == 20
    assert [p["ready"] for p in pods] == [False] * 12 + [True] * 8
    assert all(p["containers"][0]["image"] == "shop/web:2" for p in pods[:12])


async def test_logs_are_the_last_lines_and_previous_reads_the_crashed_instance(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    await bad_rollout(cluster, clock)
    tools = live(store, clock, kube=kube)
    pod = crashing_pod(cluster)
    found = await tools.call("logs", {"pod": pod, "lines": 2})
    assert found["pod"] == pod
    assert len(found["lines"]) == 2
    assert found["lines"][-1] == "panic: config key orders.url missing"
    previous = await tools.call("logs", {"pod": pod, "previous": True, "container": "web"})
    assert len(previous["lines"]) == len(CRASH_LOGS)
    assert previous["lines"][0] == "starting web 2"
    healthy = str(pods_by_image(cluster, "shop/web:1")[0]["metadata"]["name"])
    lines = (await tools.call("logs", {"pod": healthy}))["lines"]
    assert lines == ["starting web 1", "listening on :8080"]
    with pytest.raises(ToolError, match="previous terminated container"):
        await tools.call("logs", {"pod": healthy, "previous": True})


async def test_secrets_in_pod_logs_are_redacted(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    await bad_rollout(cluster, clock)
    tools = live(store, clock, kube=kube, redactor=Redactor(secrets=(DB_SECRET,)))
    found = await tools.call("logs", {"pod": crashing_pod(cluster), "previous": True})
    text = json.dumps(found)
    assert TOKEN not in text and DB_SECRET not in text
    assert "GET /orders Authorization: Bearer [REDACTED:bearer]" in found["lines"]
    assert "connecting to postgres with [REDACTED:secret]" in found["lines"]
    assert "panic: config key orders.url missing" in found["lines"]  # the rest is kept


async def test_arguments_default_to_the_incidents_labels(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    await bad_rollout(cluster, clock)
    from_labels = live(store, clock, kube=kube)
    explicit = {"namespace": NS, "kind": "Deployment", "name": "web"}
    assert await from_labels.call("pods", {}) == await from_labels.call("pods", explicit)
    assert await from_labels.call("events", {}) == await from_labels.call("events", explicit)
    # a Prometheus incident names its workload with a `deployment` label
    prom_labels = {"namespace": NS, "deployment": "web"}
    from_prom = live(store, clock, kube=kube, labels=prom_labels)
    assert await from_prom.call("pods", {}) == await from_labels.call("pods", {})
    assert await from_prom.call("rollout_history", {}) == await from_labels.call(
        "rollout_history", {}
    )
    # an incident without labels: the model has to name what it wants
    bare = LiveTools(
        incident=open_incident(store, clock, {}, fingerprint="bare"),
        store=store,
        clock=clock,
        kube=kube,
    )
    with pytest.raises(ToolError, match="name the namespace"):
        await bare.call("pods", {})
    with pytest.raises(ToolError, match="name the workload"):
        await bare.call("pods", {"namespace": NS})
    assert await bare.call("pods", explicit) == await from_labels.call("pods", {})


async def test_kinds_other_than_deployments(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    cluster.behave("shop/db:1", ImageBehavior(crash_after=1))
    cluster.apply(cluster.statefulset_manifest(NS, "db", "shop/db:1"))
    await clock.advance(60)
    tools = live(store, clock, kube=kube, labels={"namespace": NS, "kind": "StatefulSet"})
    pods = await tools.call("pods", {"name": "db"})
    assert pods and all(p["name"].startswith("db-") for p in pods)
    assert any(c.get("reason") == "CrashLoopBackOff" for p in pods for c in p["containers"])
    with pytest.raises(ToolError, match="unsupported kind 'Service'"):
        await tools.call("pods", {"kind": "Service", "name": "db"})
    db = live(
        store, clock, kube=kube, labels={"namespace": NS, "kind": "StatefulSet", "name": "db"}
    )
    with pytest.raises(ToolError, match="rollout_history reads a Deployment"):
        await db.call("rollout_history", {})  # not "deployment db not found"
    with pytest.raises(ToolError, match="not found"):
        await db.call("rollout_history", {"deployment": "db"})


async def test_a_cronjobs_pods_and_events_are_those_of_its_jobs(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    """A Job's selector is generated from its own uid, so a CronJob's job template has none:
    its pods are found through the Jobs it owns."""
    cluster.behave("etl/load:1", ImageBehavior(exit_code=1, run_for=1))
    cron = cluster.apply(cluster.cronjob_manifest(NS, "nightly", "etl/load:1", backoff_limit=1))
    job = cluster.job_manifest(NS, "nightly-29000000", "etl/load:1", backoff_limit=1)
    job["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": "nightly",
            "uid": cron["metadata"]["uid"],
            "controller": True,
        }
    ]
    cluster.apply(job)
    await clock.advance(120)
    tools = live(
        store, clock, kube=kube, labels={"namespace": NS, "kind": "CronJob", "name": "nightly"}
    )
    pods = await tools.call("pods", {})
    assert pods and all(p["name"].startswith("nightly-29000000-") for p in pods)
    assert all(p["phase"] == "Failed" for p in pods)
    events = await tools.call("events", {})
    assert {"BackoffLimitExceeded"} <= {e["reason"] for e in events}
    assert "Job/nightly-29000000" in {e["object"] for e in events}


# --- scope and errors --------------------------------------------------------------------


async def test_other_namespaces_are_off_limits(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    await bad_rollout(cluster, clock)
    cluster.apply(cluster.deployment_manifest("payments", "web", "pay/web:1"))
    await clock.advance(10)
    tools = live(store, clock, kube=kube)
    cluster.clear_requests()
    calls: list[tuple[str, dict[str, Any]]] = [
        ("pods", {"namespace": "payments"}),
        ("events", {"namespace": "payments", "kind": "Deployment", "name": "web"}),
        ("rollout_history", {"namespace": "payments", "deployment": "web"}),
        ("logs", {"namespace": "payments", "pod": "web-1"}),
    ]
    for name, arguments in calls:
        with pytest.raises(ToolError, match="incident is in namespace 'shop'"):
            await tools.call(name, arguments)
    assert cluster.requests == []  # refused before asking the cluster
    # an incident without a namespace label may look anywhere
    anywhere = live(store, clock, kube=kube, labels={"kind": "Deployment", "name": "web"})
    [revision] = await anywhere.call("rollout_history", {"namespace": "payments"})
    assert revision["images"] == {"web": "pay/web:1"}


async def test_unknown_tools_and_bad_arguments_are_tool_errors(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    await bad_rollout(cluster, clock)
    tools = live(store, clock, kube=kube)
    with pytest.raises(ToolError, match="no tool named 'delete_pod'"):
        await tools.call("delete_pod", {"pod": "web-1"})
    for internal in ("namespace", "cluster", "workload_pods", "call", "decide"):
        with pytest.raises(ToolError, match="no tool named"):
            await tools.call(internal, {})
    with pytest.raises(ToolError, match="pods takes no argument label_selector"):
        await tools.call("pods", {"label_selector": "app=web"})
    with pytest.raises(ToolError, match="bad arguments for logs"):
        await tools.call("logs", {})  # `pod` is required
    with pytest.raises(ToolError, match="bad arguments for logs"):
        await tools.call("logs", {"pod": crashing_pod(cluster), "lines": "many"})
    with pytest.raises(ToolError, match="not found"):
        await tools.call("pods", {"name": "nosuch"})
    with pytest.raises(ToolError, match="container nosuch is not valid"):
        await tools.call("logs", {"pod": crashing_pod(cluster), "container": "nosuch"})


async def test_every_tool_is_described_and_dispatched(
    store: IncidentStore, clock: FakeClock
) -> None:
    tools = live(store, clock)
    for name, spec in SPECS.items():
        assert callable(getattr(tools, f"_{name}")), name
        assert spec.parameters["additionalProperties"] is False
        assert set(spec.parameters["required"]) <= set(spec.parameters["properties"])


async def test_a_403_is_a_tool_error_naming_the_permission(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    await bad_rollout(cluster, clock)
    tools = live(store, clock, kube=kube)
    cluster.deny("list", "pods")
    with pytest.raises(ToolError, match="pods failed: .*may not `list` pods") as info:
        await tools.call("pods", {})
    assert "in namespace shop" in str(info.value)
    cluster.deny("get", "pods/log")
    with pytest.raises(ToolError, match="logs failed: .*may not `get` pods/log"):
        await tools.call("logs", {"pod": crashing_pod(cluster)})
    cluster.authorize([])  # nothing at all is allowed now
    with pytest.raises(ToolError, match="may not `get` deployments"):
        await tools.call("rollout_history", {})


async def test_the_shipped_rbac_allows_every_kubernetes_tool(
    cluster: FakeCluster, kube: KubeClient, store: IncidentStore, clock: FakeClock
) -> None:
    [role] = [d for d in yaml.safe_load_all(RBAC.read_text()) if d and d["kind"] == "ClusterRole"]
    await bad_rollout(cluster, clock)
    cluster.authorize(role["rules"])
    tools = live(store, clock, kube=kube)
    assert await tools.call("rollout_history", {})
    assert await tools.call("pods", {})
    assert await tools.call("events", {})
    assert (await tools.call("logs", {"pod": crashing_pod(cluster), "previous": True}))["lines"]
    assert not [r for r in cluster.requests if r.status == 403]


async def test_without_a_cluster_or_a_prometheus_the_tools_say_so(
    store: IncidentStore, clock: FakeClock
) -> None:
    tools = live(store, clock)
    for name, arguments in [
        ("rollout_history", {}),
        ("pods", {}),
        ("events", {}),
        ("logs", {"pod": "web-1"}),
    ]:
        with pytest.raises(ToolError, match="no Kubernetes cluster is configured"):
            await tools.call(name, arguments)
    with pytest.raises(ToolError, match="no Prometheus source is configured"):
        await tools.call("promql", {"query": "up"})


async def test_an_unreachable_cluster_is_a_tool_error(
    store: IncidentStore, clock: FakeClock
) -> None:
    kube = KubeClient("default", KubernetesCluster(host="http://127.0.0.1:9", timeout=2))
    with pytest.raises(ToolError, match="pods failed: .*unreachable"):
        await live(store, clock, kube=kube).call("pods", {})


# --- incident_history: the incident log --------------------------------------------------


def past_incident(
    store: IncidentStore, clock: FakeClock, fingerprint: str, action: str, ok: bool
) -> Incident:
    incident = open_incident(store, clock, fingerprint=fingerprint)
    at = clock.now()
    store.append(incident.id, "diagnosed", f"{action}: bad image", at=at + 1)
    store.append(incident.id, "action_started", action, at=at + 2, data={"action": action})
    store.append(
        incident.id,
        "action_finished" if ok else "action_failed",
        f"{action}: done",
        at=at + 3,
        data={"action": action, "attempt": 1, "ok": ok},
    )
    resolution = Resolution.AUTO_REMEDIATED if ok else Resolution.RECOVERED
    return store.set_status(incident.id, Status.RESOLVED, at=at + 4, resolution=resolution)


async def test_incident_history_lists_earlier_incidents_of_the_same_target(
    store: IncidentStore, clock: FakeClock
) -> None:
    first = past_incident(store, clock, "shop/web", "restart", ok=False)
    await clock.advance(3600)
    past_incident(store, clock, "shop/cart", "restart", ok=True)  # another target
    await clock.advance(3600)
    second = past_incident(store, clock, "shop/web", "rollback", ok=True)
    await clock.advance(3600)
    tools = live(store, clock, fingerprint="shop/web")  # the current incident, still open
    history = await tools.call("incident_history", {})
    assert [h["id"] for h in history] == [second.id, first.id]  # newest first, not the current
    assert history[0] == {
        "id": second.id,
        "opened_at": second.opened_at,
        "status": "resolved",
        "resolution": "auto-remediated",
        "actions": [{"action": "rollback", "ok": True}],
        "diagnoses": ["rollback: bad image"],
    }
    assert history[1]["actions"] == [{"action": "restart", "ok": False}]
    assert history[1]["resolution"] == "recovered"
    assert [h["id"] for h in await tools.call("incident_history", {"limit": 1})] == [second.id]
    assert json.loads(json.dumps(history)) == history


async def test_incident_history_of_a_first_incident_is_empty(
    store: IncidentStore, clock: FakeClock
) -> None:
    past_incident(store, clock, "shop/cart", "restart", ok=True)
    tools = live(store, clock, fingerprint="shop/web")
    assert await tools.call("incident_history", {"limit": 20}) == []


async def test_incident_history_limit_is_kept_within_its_bounds(
    store: IncidentStore, clock: FakeClock
) -> None:
    for _ in range(25):
        past_incident(store, clock, "shop/web", "restart", ok=True)
        await clock.advance(60)
    tools = live(store, clock, fingerprint="shop/web")
    assert len(await tools.call("incident_history", {"limit": 1000})) == 20
    assert len(await tools.call("incident_history", {"limit": 0})) == 1


# --- promql: a real Prometheus -----------------------------------------------------------

T0 = (int(time.time()) // 3600) * 3600 - 4 * 3600  # start of the backfilled hour
STEP = 15


def counter(rate: float, start_after: float = 0.0) -> list[tuple[float, float]]:
    return [(T0 + s, max(0.0, s - start_after) * rate) for s in range(0, 3600 + 1, STEP)]


SERIES = [
    ("http_requests_total", {"app": "web", "namespace": NS, "code": "200"}, counter(100)),
    ("http_requests_total", {"app": "web", "namespace": NS, "code": "500"}, counter(5, 1800)),
    ("http_requests_total", {"app": "cart", "namespace": NS, "code": "200"}, counter(10)),
]
ERRORS = 'sum by (app) (rate(http_requests_total{code="500"}[2m]))'


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    if not prometheus_available():
        pytest.skip("needs prometheus and promtool (Debian's prometheus package)")
    server = PrometheusServer(tmp_path_factory.mktemp("prom"), backfill=openmetrics(SERIES))
    with server.start():
        yield server


def prom_tools(prom: PrometheusServer, store: IncidentStore, at: float) -> LiveTools:
    client = PrometheusClient("default", PrometheusSource(url=prom.url))
    return live(store, FakeClock(start=at), prometheus=client)


async def test_promql_instant_query_gives_labels_and_values(
    prom: PrometheusServer, store: IncidentStore
) -> None:
    tools = prom_tools(prom, store, T0 + 2700)
    [web] = await tools.call("promql", {"query": ERRORS})
    assert web["labels"] == {"app": "web"} and web["value"] == pytest.approx(5.0)
    by_app = {
        s["labels"]["app"]: s["value"]
        for s in await tools.call(
            "promql", {"query": "sum by (app) (rate(http_requests_total[2m]))"}
        )
    }
    assert by_app == {"web": pytest.approx(105.0), "cart": pytest.approx(10.0)}
    assert await tools.call("promql", {"query": "scalar(vector(7))"}) == [
        {"labels": {}, "value": 7.0}
    ]
    assert await tools.call("promql", {"query": 'up{job="nosuch"}'}) == []
    before = prom_tools(prom, store, T0 + 1200)  # before the errors started
    [quiet] = await before.call("promql", {"query": ERRORS, "minutes": 0})
    assert quiet["value"] == 0


async def test_promql_over_minutes_gives_at_most_30_points(
    prom: PrometheusServer, store: IncidentStore
) -> None:
    at = T0 + 2700
    tools = prom_tools(prom, store, at)
    [web] = await tools.call("promql", {"query": ERRORS, "minutes": 30})
    points = web["points"]
    assert web["labels"] == {"app": "web"}
    assert 20 <= len(points) <= 30
    assert points[-1][0] <= at and points[0][0] >= at - 30 * 60
    assert [t for t, _ in points] == sorted(t for t, _ in points)
    assert points[0][1] == 0 and points[-1][1] == pytest.approx(5.0)  # the errors began at 1800
    [short] = await tools.call("promql", {"query": ERRORS, "minutes": 5})
    assert len(short["points"]) == 21  # every 15 s: the step never goes below it
    assert json.loads(json.dumps(points)) == points


async def test_a_bad_query_is_a_tool_error_with_prometheus_own_message(
    prom: PrometheusServer, store: IncidentStore
) -> None:
    tools = prom_tools(prom, store, T0 + 2700)
    with pytest.raises(ToolError, match="promql failed: .*parse error"):
        await tools.call("promql", {"query": "sum(rate(x[5m])"})
    with pytest.raises(ToolError, match="range vector"):
        await tools.call("promql", {"query": "http_requests_total[5m]"})
    with pytest.raises(ToolError, match="promql takes no argument step"):
        await tools.call("promql", {"query": "up", "step": 30})


async def test_an_unreachable_prometheus_is_a_tool_error(
    store: IncidentStore, clock: FakeClock
) -> None:
    client = PrometheusClient("default", PrometheusSource(url="http://127.0.0.1:9", timeout=2))
    with pytest.raises(ToolError, match="promql failed: .*unreachable"):
        await live(store, clock, prometheus=client).call("promql", {"query": "up"})
