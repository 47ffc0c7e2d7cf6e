"""`kubernetes` probe: workload health per object (labels namespace, kind, name).

A workload breaches when replicas are unavailable, a pod waits in CrashLoopBackOff /
ImagePullBackOff (and similar), a container was OOMKilled recently, restarts rise faster than
`restarts.limit` per `restarts.window`, a rollout passed its progress deadline, or a Job
(or a CronJob's latest Job) failed. `for:` decides how long it must hold before firing.
One check lists each kind, the pods and the ReplicaSets of the namespace once (a handful of
API calls, however many objects). Evidence for an incident: rollout history, pod states,
recent Warning events and the last log lines of failing containers (size-capped, redacted).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from daemon.durations import Duration
from daemon.errors import PermanentError, TemporaryError
from daemon.kube.cluster import KubeClient, parse_time
from daemon.kube.workloads import (
    current_revision,
    history,
    list_objects,
    meta,
    owned_by,
    pod_logs,
    pod_problems,
    pod_view,
    read_object,
    replicasets_of,
    selector_string,
    warning_events,
)
from daemon.redact import DEFAULT as REDACTOR
from probes.base import PROBES, Outcome, ProbeConfig, ProbeContext, ProbeKind, Reading
from probes.prometheus_source import Dependency

Kind = Literal["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"]
PODS_IN_EVIDENCE = 20
DEPLOYMENT: Kind = "Deployment"


class RestartLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(3, ge=1, description="Breach when restarts rise by more than this…")
    window: Duration = Field(600.0, description="…within this window")


class EvidenceLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    log_lines: int = Field(50, ge=0, le=1000, description="Last log lines per failing container")
    log_bytes: int = Field(8192, ge=256, le=1_000_000, description="Cap per container log")
    events: int = Field(20, ge=0, le=200, description="Most recent Warning events")
    revisions: int = Field(5, ge=1, le=50, description="Rollout history entries")


class KubernetesProbeConfig(ProbeConfig):
    kind: Literal["kubernetes"] = "kubernetes"
    cluster: str = Field("default", description="Cluster name from the daemon config")
    namespace: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    workloads: list[Kind] = Field(
        default_factory=lambda: [DEPLOYMENT], min_length=1, description="Kinds to watch"
    )
    name: str | None = Field(None, description="Only the object with this name")
    selector: str | None = Field(None, description="Only objects matching this label selector")
    restarts: RestartLimit = Field(default_factory=RestartLimit)
    oom_window: Duration = Field(600.0, description="An OOM kill this recent is a breach")
    evidence: EvidenceLimits = Field(default_factory=EvidenceLimits)


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def _failed(job: Mapping[str, Any]) -> Mapping[str, Any] | None:
    cond = _condition(job, "Failed")
    return cond if cond.get("status") == "True" else None


def replica_problems(kind: str, obj: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Unavailable replicas and rollout conditions of one workload, with its counts."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    problems: list[str] = []
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        available = int(status.get("numberAvailable") or 0)
    else:
        desired = int(spec.get("replicas", 1))
        field = "availableReplicas" if kind == "Deployment" else "readyReplicas"
        available = int(status.get(field) or 0)
    if available < desired:
        problems.append(f"{desired - available} of {desired} replicas unavailable")
    progressing = _condition(obj, "Progressing")
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        problems.append(f"rollout stalled: {progressing.get('message', 'progress deadline')}")
    return problems, {"replicas": desired, "available": available}


class KubernetesProbe:
    def __init__(self, config: KubernetesProbeConfig, context: ProbeContext) -> None:
        self.config = config
        self.clock = context.clock
        self.kube: KubeClient = context.kube_client(config.cluster)
        self._restarts: dict[str, deque[tuple[float, dict[str, int]]]] = {}

    @property
    def dependency(self) -> Dependency:
        return Dependency(f"kubernetes/{self.kube.name}", self.kube.cluster.consecutive_error_limit)

    async def check(self) -> list[Reading]:
        now = self.clock.now()
        ns, kinds = self.config.namespace, self.config.workloads
        by_name = f"metadata.name={self.config.name}" if self.config.name else None
        pods = await list_objects(self.kube, "Pod", ns)
        replicasets = (
            await list_objects(self.kube, "ReplicaSet", ns) if "Deployment" in kinds else []
        )
        runs = await list_objects(self.kube, "Job", ns) if "CronJob" in kinds else []
        children = by_owner([*pods, *replicasets, *runs])
        readings = []
        for kind in kinds:
            objects = await list_objects(
                self.kube, kind, ns, selector=self.config.selector, field_selector=by_name
            )
            for obj in objects:
                if kind == "Job" and any(
                    r.get("kind") == "CronJob" for r in meta(obj).get("ownerReferences") or []
                ):
                    continue  # a CronJob's run: watched through its CronJob
                readings.append(self._judge(kind, obj, children, now))
        self._forget_gone({f"{r.labels['kind']}/{r.labels['name']}" for r in readings})
        return readings

    def _judge(
        self,
        kind: str,
        obj: Mapping[str, Any],
        children: Mapping[str, list[dict[str, Any]]],
        now: float,
    ) -> Reading:
        name, uid = meta(obj)["name"], meta(obj).get("uid", "")
        labels = {"namespace": self.config.namespace, "kind": kind, "name": name}
        evidence: dict[str, Any] = {}
        problems: list[str] = []
        replicasets = [c for c in children.get(uid, []) if c.get("kind") == "ReplicaSet"]
        if kind == "Deployment":
            mine = [p for rs in replicasets for p in children.get(meta(rs).get("uid", ""), [])]
        elif kind == "CronJob":
            mine = []
        else:
            mine = [c for c in children.get(uid, []) if c.get("kind") == "Pod"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet"):
            problems, counts = replica_problems(kind, obj)
            evidence.update(counts)
        elif kind == "Job":
            failed = _failed(obj)
            if failed is not None:
                problems.append(f"job failed: {failed.get('reason')}: {failed.get('message', '')}")
        else:  # CronJob: judged by its latest Job
            runs = sorted(
                (c for c in children.get(uid, []) if c.get("kind") == "Job"),
                key=lambda j: meta(j).get("creationTimestamp", ""),
            )
            if runs:
                latest = runs[-1]
                evidence["latest_job"] = meta(latest)["name"]
                mine = children.get(meta(latest).get("uid", ""), [])
                failed = _failed(latest)
                if failed is not None:
                    problems.append(
                        f"latest job {meta(latest)['name']} failed: {failed.get('reason')}"
                    )
        if kind == "Deployment" and (obj.get("spec") or {}).get("paused"):
            evidence["paused"] = True
        for pod in mine:
            problems.extend(pod_problems(pod, now=now, oom_window=self.config.oom_window))
        rise = self._restart_rise(f"{kind}/{name}", mine, now)
        evidence["restarts_in_window"] = rise
        if rise > self.config.restarts.limit:
            problems.append(
                f"{rise} container restarts in the last {self.config.restarts.window:g}s "
                f"(limit {self.config.restarts.limit})"
            )
        if kind == "Deployment":
            revisions = history(obj, replicasets)
            current = current_revision(obj, revisions)
            if current is not None:
                evidence["revision"] = current.number
                evidence["images"] = dict(current.images)
                if current.created_at is not None:
                    evidence["last_rollout_age_seconds"] = round(now - current.created_at)
                previous = next((r for r in revisions if r.number < current.number), None)
                # a restart is a rollout too: only a changed image makes a rollback worth it
                evidence["image_changed"] = previous is not None and dict(previous.images) != dict(
                    current.images
                )
        problems = list(dict.fromkeys(problems))
        evidence["problems"] = problems
        where = f"{kind} {self.config.namespace}/{name}"
        return Reading(
            outcome=Outcome.BREACH if problems else Outcome.OK,
            labels=labels,
            value=float(len(problems)),
            message=f"{where}: {'; '.join(problems)}" if problems else f"{where}: healthy",
            evidence=evidence,
        )

    def _restart_rise(self, key: str, pods: list[dict[str, Any]], now: float) -> int:
        """Restarts within the window, per pod (a replaced pod's count starts over)."""
        window = self.config.restarts.window
        counts = {meta(p)["uid"]: pod_view(p)["restarts"] for p in pods if meta(p).get("uid")}
        samples = self._restarts.setdefault(key, deque())
        while samples and samples[0][0] < now - window:
            samples.popleft()
        rise = 0
        for pod in pods:
            uid = meta(pod).get("uid")
            if not uid:
                continue
            baseline = next((s[uid] for _, s in samples if uid in s), None)
            if baseline is None:
                started = parse_time((pod.get("status") or {}).get("startTime"))
                baseline = 0 if started is not None and now - started <= window else counts[uid]
            rise += max(0, counts[uid] - baseline)
        samples.append((now, counts))
        return rise

    def _forget_gone(self, present: set[str]) -> None:
        for key in list(self._restarts):
            if key not in present:
                del self._restarts[key]

    async def evidence(self, labels: Mapping[str, str]) -> dict[str, Any]:
        """Read-only evidence for one workload; failures are reported, never raised."""
        try:
            return await self._evidence(labels)
        except (TemporaryError, PermanentError) as exc:
            return {"evidence_error": str(exc)}

    async def _evidence(self, labels: Mapping[str, str]) -> dict[str, Any]:
        kind, ns, name = labels["kind"], labels["namespace"], labels["name"]
        limits = self.config.evidence
        now = self.clock.now()
        obj = await read_object(self.kube, kind, ns, name)
        found: dict[str, Any] = {}
        names = {name}
        selector = (obj.get("spec") or {}).get("selector")
        if kind == "Deployment":
            replicasets = await replicasets_of(self.kube, obj)
            revisions = history(obj, replicasets)
            current = current_revision(obj, revisions)
            found["rollout_history"] = [
                r.view(now, current=r is current) for r in revisions[: limits.revisions]
            ]
            names |= {r.replicaset for r in revisions}
        elif kind == "CronJob":
            jobs = [j for j in await list_objects(self.kube, "Job", ns) if owned_by(j, obj)]
            jobs.sort(key=lambda j: meta(j).get("creationTimestamp", ""))
            found["recent_jobs"] = [
                {
                    "name": meta(j)["name"],
                    "created": meta(j).get("creationTimestamp"),
                    "succeeded": (j.get("status") or {}).get("succeeded", 0),
                    "failed": (j.get("status") or {}).get("failed", 0),
                }
                for j in jobs[-limits.revisions :]
            ]
            selector = (jobs[-1].get("spec") or {}).get("selector") if jobs else None
            names |= {meta(j)["name"] for j in jobs}
        pods = []
        if selector:  # the API server filters; an empty selector would match every pod
            pods = await list_objects(self.kube, "Pod", ns, selector=selector_string(selector))
        pods.sort(key=lambda p: pod_view(p)["ready"])
        found["pods"] = [pod_view(p) for p in pods[:PODS_IN_EVIDENCE]]
        names |= {meta(p)["name"] for p in pods}
        if limits.events:
            found["warning_events"] = await warning_events(
                self.kube, ns, names, limit=limits.events, redactor=REDACTOR
            )
        if limits.log_lines:
            found["logs"] = await pod_logs(
                self.kube,
                pods,
                lines=limits.log_lines,
                max_bytes=limits.log_bytes,
                redactor=REDACTOR,
            )
        return found


def by_owner(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Objects by the uid of their controller (the ownerReference with `controller: true`)."""
    index: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        for ref in meta(obj).get("ownerReferences") or []:
            if ref.get("controller"):
                index.setdefault(ref.get("uid", ""), []).append(obj)
    return index


PROBES.register("kubernetes", ProbeKind(KubernetesProbeConfig, KubernetesProbe))
