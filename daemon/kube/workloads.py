"""Read-only views of workloads, shared by the `kubernetes` probe, the Kubernetes actions and
incident evidence. Pure functions over the API's JSON objects, plus a few async gatherers."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from daemon.errors import PermanentError, TemporaryError
from daemon.kube.cluster import API, KubeClient, parse_time
from daemon.redact import Redactor

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
TEMPLATE_HASH = "pod-template-hash"
BAD_WAITING = (
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
    "RunContainerError",
)

RESOURCES: dict[str, tuple[API, str]] = {
    # kind → (API group client, SDK method suffix: read_namespaced_<suffix>, ...)
    "Deployment": ("apps", "deployment"),
    "StatefulSet": ("apps", "stateful_set"),
    "DaemonSet": ("apps", "daemon_set"),
    "ReplicaSet": ("apps", "replica_set"),
    "Job": ("batch", "job"),
    "CronJob": ("batch", "cron_job"),
    "Pod": ("core", "pod"),
}


async def _object_call(
    kube: KubeClient, verb: str, kind: str, namespace: str, name: str, **kwargs: Any
) -> dict[str, Any]:
    api, suffix = RESOURCES[kind]
    found: dict[str, Any] = await kube.call(
        api,
        f"{verb}_namespaced_{suffix}",
        f"{verb} {kind.lower()} {namespace}/{name}",
        name=name,
        namespace=namespace,
        **kwargs,
    )
    return found


async def read_object(kube: KubeClient, kind: str, namespace: str, name: str) -> dict[str, Any]:
    return await _object_call(kube, "read", kind, namespace, name)


async def patch_object(
    kube: KubeClient, kind: str, namespace: str, name: str, body: Any
) -> dict[str, Any]:
    """A dict body is a strategic merge patch, a list a JSON patch (the SDK's choice)."""
    return await _object_call(kube, "patch", kind, namespace, name, body=body)


async def list_objects(
    kube: KubeClient,
    kind: str,
    namespace: str,
    *,
    selector: str | None = None,
    field_selector: str | None = None,
) -> list[dict[str, Any]]:
    """Objects of one kind in a namespace (each with its `kind` set, as lists omit it)."""
    api, suffix = RESOURCES[kind]
    kwargs: dict[str, Any] = {"namespace": namespace}
    if selector:
        kwargs["label_selector"] = selector
    if field_selector:
        kwargs["field_selector"] = field_selector
    found = await kube.call(
        api, f"list_namespaced_{suffix}", f"list {kind.lower()}s in {namespace}", **kwargs
    )
    items = list(found.get("items") or [])
    for item in items:
        item.setdefault("kind", kind)
    return items


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector object as the query-string form (`a=b,c in (x,y)`)."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(meta(obj).get("annotations") or {})


def revision(obj: Mapping[str, Any]) -> int:
    try:
        return int(annotations_of(obj).get(REVISION, "0"))
    except ValueError:
        return 0


def comparable_template(template: Mapping[str, Any]) -> dict[str, Any]:
    """A pod template without the controller-added `pod-template-hash` label."""
    result = copy.deepcopy(dict(template))
    labels = (result.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(TEMPLATE_HASH, None)
    return result


def images(template: Mapping[str, Any]) -> dict[str, str]:
    spec = template.get("spec") or {}
    return {c["name"]: c.get("image", "") for c in spec.get("containers") or []}


def owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    uid = meta(owner).get("uid")
    return any(ref.get("uid") == uid for ref in meta(obj).get("ownerReferences") or [])


@dataclass(frozen=True, kw_only=True)
class Revision:
    number: int
    replicaset: str
    images: Mapping[str, str]
    change_cause: str
    created_at: float | None
    replicas: int
    template: Mapping[str, Any]
    template_hash: str

    def view(self, now: float, current: bool) -> dict[str, Any]:
        return {
            "revision": self.number,
            "replicaset": self.replicaset,
            "images": dict(self.images),
            "change_cause": self.change_cause,
            "age_seconds": None if self.created_at is None else round(now - self.created_at),
            "replicas": self.replicas,
            "current": current,
        }


def history(
    deployment: Mapping[str, Any], replicasets: Iterable[Mapping[str, Any]]
) -> list[Revision]:
    """The deployment's revisions (its ReplicaSets), newest first."""
    revisions = [
        Revision(
            number=revision(rs),
            replicaset=meta(rs).get("name", ""),
            images=images(rs["spec"]["template"]),
            change_cause=annotations_of(rs).get(CHANGE_CAUSE, ""),
            created_at=parse_time(meta(rs).get("creationTimestamp")),
            replicas=int((rs.get("status") or {}).get("replicas") or 0),
            template=rs["spec"]["template"],
            template_hash=(meta(rs).get("labels") or {}).get(TEMPLATE_HASH, ""),
        )
        for rs in replicasets
        if owned_by(rs, deployment)
    ]
    return sorted(revisions, key=lambda r: r.number, reverse=True)


def current_revision(deployment: Mapping[str, Any], revisions: list[Revision]) -> Revision | None:
    """The revision whose template the deployment runs now (None while it is not rolled out)."""
    template = comparable_template(deployment["spec"]["template"])
    return next((r for r in revisions if comparable_template(r.template) == template), None)


async def replicasets_of(kube: KubeClient, deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
    return await list_objects(
        kube,
        "ReplicaSet",
        meta(deployment)["namespace"],
        selector=selector_string(deployment["spec"].get("selector")),
    )


# --- pods ---------------------------------------------------------------------------------


def container_view(status: Mapping[str, Any]) -> dict[str, Any]:
    state = status.get("state") or {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    name, detail = next(iter(state.items()), ("unknown", None))
    detail = detail or {}
    view: dict[str, Any] = {
        "name": status.get("name"),
        "image": status.get("image"),
        "ready": bool(status.get("ready")),
        "restarts": int(status.get("restartCount") or 0),
        "state": name,
    }
    if detail.get("reason"):
        view["reason"] = detail["reason"]
    if name == "terminated":
        view["exit_code"] = detail.get("exitCode")
    if last:
        view["last_termination"] = {
            "reason": last.get("reason"),
            "exit_code": last.get("exitCode"),
            "finished_at": last.get("finishedAt"),
        }
    return view


def pod_view(pod: Mapping[str, Any]) -> dict[str, Any]:
    status = pod.get("status") or {}
    containers = [container_view(c) for c in status.get("containerStatuses") or []]
    return {
        "name": meta(pod).get("name"),
        "phase": status.get("phase"),
        "ready": bool(containers) and all(c["ready"] for c in containers),
        "node": (pod.get("spec") or {}).get("nodeName"),
        "restarts": sum(c["restarts"] for c in containers),
        "containers": containers,
    }


def pod_problems(pod: Mapping[str, Any], *, now: float, oom_window: float) -> list[str]:
    """What is wrong with one pod: bad waiting reasons, recent OOM kills, a failed phase."""
    problems = []
    name = meta(pod).get("name")
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in BAD_WAITING:
            problems.append(f"pod {name} container {c['name']}: {waiting['reason']}")
        for terminated in (
            (c.get("state") or {}).get("terminated") or {},
            (c.get("lastState") or {}).get("terminated") or {},
        ):
            finished = parse_time(terminated.get("finishedAt"))
            if terminated.get("reason") == "OOMKilled" and (
                finished is None or now - finished <= oom_window
            ):
                problems.append(f"pod {name} container {c['name']}: OOMKilled")
                break
    return problems


def failing_containers(pod: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """(container, previous) pairs worth reading logs of: not ready, or restarted."""
    result = []
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        restarted = int(c.get("restartCount") or 0) > 0
        if not c.get("ready") or restarted:
            running = "running" in (c.get("state") or {})
            result.append((c["name"], restarted and not running))
    return result


def ended(pod: Mapping[str, Any], container: str, previous: bool) -> dict[str, Any]:
    """How the logged instance of a container ended (exit code and reason), if it did."""
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        if c.get("name") == container:
            state = (c.get("lastState") if previous else c.get("state")) or {}
            terminated = state.get("terminated") or {}
            if terminated:
                return {"exit_code": terminated.get("exitCode"), "reason": terminated.get("reason")}
    return {}


async def pod_logs(
    kube: KubeClient,
    pods: Iterable[Mapping[str, Any]],
    *,
    lines: int,
    max_bytes: int,
    redactor: Redactor,
    max_containers: int = 5,
) -> list[dict[str, Any]]:
    """The last `lines` log lines of failing containers (of the crashed instance when it
    restarted), size-capped and redacted."""
    logs: list[dict[str, Any]] = []
    for pod in pods:
        for container, previous in failing_containers(pod):
            if len(logs) >= max_containers:
                return logs
            ns, name = meta(pod)["namespace"], meta(pod)["name"]
            try:
                text = await kube.call(
                    "core",
                    "read_namespaced_pod_log",
                    f"logs of {ns}/{name}/{container}",
                    name=name,
                    namespace=ns,
                    container=container,
                    tail_lines=lines,
                    limit_bytes=max_bytes,
                    previous=previous,
                )
            except (TemporaryError, PermanentError) as exc:  # evidence is best effort
                text, error = "", str(exc)
            else:
                error = ""
            entry: dict[str, Any] = {
                "pod": name,
                "container": container,
                "previous": previous,
                **ended(pod, container, previous),
                "lines": redactor.text(text[-max_bytes:]).splitlines()[-lines:],
            }
            if error:
                entry["error"] = redactor.text(error)
            logs.append(entry)
    return logs


def event_view(event: Mapping[str, Any]) -> dict[str, Any]:
    involved = event.get("involvedObject") or {}
    return {
        "type": event.get("type"),
        "reason": event.get("reason"),
        "object": f"{involved.get('kind')}/{involved.get('name')}",
        "message": event.get("message"),
        "count": event.get("count") or 1,
        "last_seen": event.get("lastTimestamp") or event.get("eventTime"),
    }


async def warning_events(
    kube: KubeClient, namespace: str, names: set[str], *, limit: int, redactor: Redactor
) -> list[dict[str, Any]]:
    """Recent Warning events about these objects, newest first, redacted."""
    found = await kube.call(
        "core",
        "list_namespaced_event",
        f"list warning events in {namespace}",
        namespace=namespace,
        field_selector="type=Warning",
    )
    events = [
        e for e in found.get("items") or [] if (e.get("involvedObject") or {}).get("name") in names
    ]
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "", reverse=True)
    return [redactor.value(event_view(e)) for e in events[:limit]]
