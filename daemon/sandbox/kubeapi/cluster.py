"""``FakeCluster``: the API semantics (verbs, defaulting, validation, preconditions, RBAC, fault
injection, request log) over the store and the simulated world, plus the Python test controls."""

from __future__ import annotations

import builtins
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs

from . import errors
from .controllers import World, controller_ref, meta, pod_ready
from .defaults import DecodeError, check_types, default_object, validate
from .errors import ApiError
from .patch import PATCH_TYPES, apply_patch
from .pods import ImageBehavior
from .resources import (
    BY_KIND,
    BY_PATH,
    GENERATION_KINDS,
    GROUPS,
    KUBE_VERSION,
    STATUS_KINDS,
    Resource,
    clone,
    discovery_resources,
    resource_for_kind,
    ts,
    ts_nano,
)
from .selectors import (
    FieldReq,
    Requirement,
    field_matches,
    field_value,
    matches,
    parse_field_selector,
    parse_label_selector,
    selector_string,
)
from .store import Obj, Store, key_of

WATCH_POLL_SECONDS = 0.05
DEFAULT_WATCH_TIMEOUT = 1800.0
CREATE_ON_UPDATE = frozenset({"Lease", "Event"})
INITIAL_STATUS: dict[str, dict[str, Any]] = {
    "ReplicaSet": {"replicas": 0},
    "StatefulSet": {"replicas": 0, "availableReplicas": 0},
    "DaemonSet": {
        "currentNumberScheduled": 0,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 0,
        "numberReady": 0,
    },
}
JOB_ORPHAN_WARNING = (
    '299 - "child pods are preserved by default when jobs are deleted; set '
    "propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress "
    'this warning"'
)


@dataclass(frozen=True)
class Request:
    """One API call, as the server saw it (after authentication)."""

    verb: str
    group: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None
    body: Any
    status: int


@dataclass
class WatchCursor:
    resource: Resource
    namespace: str | None
    labels: list[Requirement]
    fields: list[FieldReq]
    rv: int
    deadline: float
    pending: list[bytes] = field(default_factory=list)
    done: bool = False


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    watch: WatchCursor | None = None
    gate: Gate | None = None


@dataclass(frozen=True)
class Gate:
    """Holds the answer to a request after the server has done its work: `reached` is set when
    a matching request has been handled, and the answer waits until `release` is set. Lets a
    test stop a client between "the change is made" and "the client hears about it"."""

    verb: str
    resource: str
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Route:
    resource: Resource
    group: str
    namespace: str | None
    name: str | None
    subresource: str | None


@dataclass
class _Fault:
    verb: str
    resource: str
    status: int
    times: int
    retry_after: int | None
    namespace: str | None
    name: str | None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


# --------------------------------------------------------------------------- manifest builders


def _container(name: str, image: str) -> dict[str, Any]:
    return {"name": name, "image": image}


def deployment_manifest(
    namespace: str,
    name: str,
    image: str,
    *,
    replicas: int = 2,
    labels: Mapping[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    labels = dict(labels or {"app": name})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": containers or [_container(name, image)]},
            },
        },
    }


def statefulset_manifest(
    namespace: str,
    name: str,
    image: str,
    *,
    replicas: int = 2,
    labels: Mapping[str, str] | None = None,
    service_name: str | None = None,
    parallel: bool = False,
) -> dict[str, Any]:
    labels = dict(labels or {"app": name})
    spec: dict[str, Any] = {
        "replicas": replicas,
        "serviceName": service_name or name,
        "selector": {"matchLabels": dict(labels)},
        "template": {
            "metadata": {"labels": dict(labels)},
            "spec": {"containers": [_container(name, image)]},
        },
    }
    if parallel:
        spec["podManagementPolicy"] = "Parallel"
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": spec,
    }


def daemonset_manifest(
    namespace: str, name: str, image: str, *, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    labels = dict(labels or {"app": name})
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [_container(name, image)]},
            },
        },
    }


def _job_spec(
    name: str,
    image: str,
    backoff_limit: int | None,
    restart_policy: str,
    labels: Mapping[str, str] | None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {
            "metadata": {"labels": dict(labels)} if labels else {},
            "spec": {"containers": [_container(name, image)], "restartPolicy": restart_policy},
        }
    }
    if backoff_limit is not None:
        spec["backoffLimit"] = backoff_limit
    return spec


def job_manifest(
    namespace: str,
    name: str,
    image: str,
    *,
    backoff_limit: int | None = None,
    restart_policy: str = "Never",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": _job_spec(name, image, backoff_limit, restart_policy, labels),
    }


def cronjob_manifest(
    namespace: str,
    name: str,
    image: str,
    *,
    schedule: str = "*/5 * * * *",
    backoff_limit: int | None = None,
    restart_policy: str = "Never",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {"spec": _job_spec(name, image, backoff_limit, restart_policy, labels)},
        },
    }


def pod_manifest(
    namespace: str, name: str, image: str, *, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        md["labels"] = dict(labels)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": md,
        "spec": {"containers": [_container(name, image)]},
    }


def lease_manifest(
    namespace: str, name: str, holder: str | None = None, *, duration: int = 15
) -> dict[str, Any]:
    spec: dict[str, Any] = {"leaseDurationSeconds": duration}
    if holder:
        spec["holderIdentity"] = holder
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def event_manifest(
    namespace: str,
    involved: tuple[str, str],
    reason: str,
    message: str,
    *,
    name: str,
    last_seen: str,
    count: int = 1,
    type: str = "Warning",  # noqa: A002 - the Event field's name
) -> dict[str, Any]:
    """An Event about the object (kind, name) in `namespace`, as a test plants one."""
    kind, obj = involved
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {"kind": kind, "name": obj, "namespace": namespace},
        "type": type,
        "reason": reason,
        "message": message,
        "count": count,
        "lastTimestamp": last_seen,
    }


# --------------------------------------------------------------------------- the cluster


class FakeCluster:
    """A fake Kubernetes control plane + kubelets, advanced lazily to ``now()``."""

    USER = errors.USER

    deployment_manifest = staticmethod(deployment_manifest)
    statefulset_manifest = staticmethod(statefulset_manifest)
    daemonset_manifest = staticmethod(daemonset_manifest)
    job_manifest = staticmethod(job_manifest)
    cronjob_manifest = staticmethod(cronjob_manifest)
    pod_manifest = staticmethod(pod_manifest)
    lease_manifest = staticmethod(lease_manifest)
    event_manifest = staticmethod(event_manifest)

    def __init__(
        self, now: Callable[[], float], *, restart_backoff: float = 10.0, nodes: int = 2
    ) -> None:
        self.lock = threading.RLock()
        self.store = Store()
        self.world = World(self.store, now, restart_backoff, nodes)
        self.requests: list[Request] = []
        self._rules: list[dict[str, Any]] | None = None
        self._denied: list[tuple[str, str, str]] = []
        self._faults: list[_Fault] = []
        self._gates: list[Gate] = []
        self._touches = 0
        with self.lock:
            for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                self._ensure_namespace(ns)
            for index, node in enumerate(self.world.node_names, start=1):
                self.store.put(self._node(node, index))

    @property
    def now(self) -> float:
        return self.world.t

    def _node(self, name: str, index: int) -> Obj:
        t = ts(self.world.t)
        return {
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "uid": self.world.new_uid(),
                "creationTimestamp": t,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64",
                },
            },
            "spec": {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"]},
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": t,
                        "lastTransitionTime": t,
                    },
                ],
                "addresses": [
                    {"type": "InternalIP", "address": f"172.18.0.{index + 1}"},
                    {"type": "Hostname", "address": name},
                ],
                "capacity": {
                    "cpu": "8",
                    "memory": "16331512Ki",
                    "pods": "110",
                    "ephemeral-storage": "102626232Ki",
                },
                "allocatable": {
                    "cpu": "8",
                    "memory": "16331512Ki",
                    "pods": "110",
                    "ephemeral-storage": "102626232Ki",
                },
                "nodeInfo": {
                    "machineID": f"{index:032x}",
                    "systemUUID": f"{index:032x}",
                    "bootID": f"{index:032x}",
                    "kernelVersion": "6.1.0-28-amd64",
                    "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "containerRuntimeVersion": "containerd://1.7.24",
                    "kubeletVersion": KUBE_VERSION["gitVersion"],
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            },
        }

    def _ensure_namespace(self, ns: str) -> None:
        if not ns or self.store.get("Namespace", "", ns) is not None:
            return
        self.store.put(
            {
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {
                    "name": ns,
                    "uid": self.world.new_uid(),
                    "creationTimestamp": ts(self.world.t),
                    "labels": {"kubernetes.io/metadata.name": ns},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
        )

    # ================================================================== test controls
    def reconcile(self) -> None:
        with self.lock:
            self.world.reconcile()

    def behave(self, image: str, behavior: ImageBehavior) -> None:
        """Script how containers running ``image`` behave (retroactively, from their start)."""
        with self.lock:
            self.world.reconcile()
            self.world.behaviors[image] = behavior
            for pod in list(self.store.unordered("Pod")):
                images = {c.get("image") for c in (pod.get("spec") or {}).get("containers") or []}
                if image in images:
                    self.world.refresh_pod(meta(pod)["uid"])

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace an object, like ``kubectl apply`` (through API validation)."""
        with self.lock:
            self.world.reconcile()
            body = clone(dict(manifest))
            res = resource_for_kind(str(body.get("kind", "")))
            md = body.setdefault("metadata", {})
            ns = (md.get("namespace") or "default") if res.namespaced else None
            md.pop("resourceVersion", None)
            existing = (
                self.store.get(res.kind, ns or "", str(md.get("name", "")))
                if md.get("name")
                else None
            )
            if existing is None:
                return clone(self._create(res, ns, body, dry_run=False))
            md["annotations"] = {
                **(meta(existing).get("annotations") or {}),
                **(md.get("annotations") or {}),
            }
            return clone(self._replace(res, existing, body, dry_run=False))

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        with self.lock:
            self.world.reconcile()
            res = resource_for_kind(kind)
            obj = self.store.get(res.kind, (namespace or "") if res.namespaced else "", name)
            return clone(obj) if obj is not None else None

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        selector: str | Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        with self.lock:
            self.world.reconcile()
            res = resource_for_kind(kind)
            if isinstance(selector, Mapping):
                reqs: list[Requirement] = [(k, "=", (v,)) for k, v in selector.items()]
            else:
                reqs = parse_label_selector(selector)
            return [
                clone(o)
                for o in self.store.items(res.kind, namespace if res.namespaced else None)
                if matches(reqs, meta(o).get("labels"))
            ]

    def delete(
        self, kind: str, namespace: str | None, name: str, *, propagation: str = "Background"
    ) -> bool:
        with self.lock:
            self.world.reconcile()
            res = resource_for_kind(kind)
            obj = self.store.get(res.kind, (namespace or "") if res.namespaced else "", name)
            if obj is None:
                return False
            self._delete_obj(res, obj, propagation)
            return True

    def set_image(
        self,
        namespace: str,
        name: str,
        image: str,
        *,
        container: str | None = None,
        kind: str = "Deployment",
        change_cause: str | None = None,
    ) -> dict[str, Any]:
        """Like ``kubectl set image`` (all containers when ``container`` is None)."""
        with self.lock:
            self.world.reconcile()
            res = resource_for_kind(kind)
            current = self.store.get(res.kind, namespace, name)
            if current is None:
                raise errors.not_found(res, name)
            obj = clone(current)
            spec = _pod_spec_of(obj)
            hit = False
            for c in spec.get("containers") or []:
                if container is None or c.get("name") == container:
                    c["image"] = image
                    hit = True
            if not hit:
                raise ValueError(f"unable to find container named {container!r}")
            if change_cause is not None:
                obj["metadata"].setdefault("annotations", {})["kubernetes.io/change-cause"] = (
                    change_cause
                )
            return clone(self._replace(res, current, obj, dry_run=False))

    def wedge(self, namespace: str, name: str, *, kind: str = "Deployment") -> builtins.list[str]:
        """Wedge the workload's current pods: their containers keep running but fail the
        readiness probe from now on (kubelet ``Unhealthy`` events, Ready False), until the pods
        are replaced, e.g. by a rolling restart or a pod delete. Returns the wedged pod names."""
        with self.lock:
            self.world.reconcile()
            res = resource_for_kind(kind)
            target = self.store.get(res.kind, namespace, name)
            if target is None:
                raise errors.not_found(res, name)
            pods = [target] if res.kind == "Pod" else self._pods_of(target)
            for pod in pods:
                self.world.wedge_pod(meta(pod)["uid"])
            return sorted(meta(p)["name"] for p in pods)

    def _pods_of(self, owner: Obj) -> builtins.list[Obj]:
        """Pods controlled by ``owner``, through ReplicaSets for a Deployment."""
        uid = meta(owner)["uid"]
        owners = [uid]
        if owner["kind"] == "Deployment":
            owners = [meta(rs)["uid"] for rs in self.store.children(uid, "ReplicaSet")]
        return [
            p
            for o in owners
            for p in self.store.children(o, "Pod")
            if (controller_ref(p) or {}).get("uid") == o
        ]

    def touch(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Simulate another writer: bump the object's resourceVersion via an annotation."""
        with self.lock:
            self.world.reconcile()
            res = resource_for_kind(kind)
            current = self.store.get(res.kind, (namespace or "") if res.namespaced else "", name)
            if current is None:
                raise errors.not_found(res, name)
            self._touches += 1
            obj = clone(current)
            obj["metadata"].setdefault("annotations", {})["opsmedic.dev/touched"] = str(
                self._touches
            )
            return clone(self._replace(res, current, obj, dry_run=False))

    def authorize(self, rules: builtins.list[dict[str, Any]] | None) -> None:
        """Restrict requests to these RBAC PolicyRules (None: allow everything)."""
        with self.lock:
            self._rules = clone(rules) if rules is not None else None

    def deny(self, verb: str, resource: str, group: str = "") -> None:
        with self.lock:
            self._denied.append((verb, resource, group))

    def fail_next(
        self,
        verb: str,
        resource: str,
        status: int,
        *,
        times: int = 1,
        retry_after: int | None = None,
        namespace: str | None = None,
        name: str | None = None,
    ) -> None:
        """Make the next ``times`` matching requests fail with ``status`` (no side effects)."""
        with self.lock:
            self._faults.append(_Fault(verb, resource, status, times, retry_after, namespace, name))

    def hold(self, verb: str, resource: str) -> Gate:
        """Hold the answer to the next matching request (after it took effect) until released."""
        gate = Gate(verb, resource)
        with self.lock:
            self._gates.append(gate)
        return gate

    def clear_requests(self) -> None:
        with self.lock:
            self.requests.clear()

    # ================================================================== HTTP entry point
    def handle(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        with self.lock:
            self.world.reconcile()
            discovery = self._discovery(path, headers)
            if discovery is not None:
                return Response(200, _dumps(discovery))
            parsed: Any = None
            record: tuple[str, str, str, str | None, str | None, str | None] | None = None
            try:
                route = self._route(path)
                verb = self._verb(method, route, params)
                record = (
                    verb,
                    route.group,
                    route.resource.plural,
                    route.subresource,
                    route.namespace,
                    route.name,
                )
                if body:
                    try:
                        parsed = json.loads(body)
                    except ValueError:
                        ctype = headers.get("content-type", "")
                        if "yaml" in ctype:
                            parsed = _load_yaml(body)
                        else:
                            raise errors.bad_request(
                                "the object provided is unrecognized or malformed"
                            ) from None
                self._authorize(verb, route)
                self._inject(verb, route)
                response = self._dispatch(method, verb, route, params, headers, parsed)
            except ApiError as err:
                response = Response(err.code, _dumps(err.status()), headers=dict(err.headers))
            if record is not None:
                self.requests.append(Request(*record, body=parsed, status=response.status))
                gate = next(
                    (g for g in self._gates if (g.verb, g.resource) == (record[0], record[2])), None
                )
                if gate is not None:
                    self._gates.remove(gate)
                    response = replace(response, gate=gate)
            return response

    def watch_poll(self, cursor: WatchCursor) -> builtins.list[bytes]:
        """New watch event lines since the cursor (called by the server while streaming)."""
        with self.lock:
            if cursor.done:
                return []
            self.world.reconcile()
            lines, cursor.pending = cursor.pending, []
            log = self.store.log
            if cursor.rv < self.store.rv:
                oldest = self.store.oldest_logged_rv()
                if cursor.rv + 1 < oldest:
                    status = errors.gone(f"too old resource version: {cursor.rv} ({oldest - 1})")
                    lines.append(_dumps({"type": "ERROR", "object": status.status()}) + b"\n")
                    cursor.done = True
                    return lines
                fresh = []
                for rv, etype, obj in reversed(log):
                    if rv <= cursor.rv:
                        break
                    fresh.append((etype, obj))
                for etype, obj in reversed(fresh):
                    if self._watch_match(cursor, obj):
                        lines.append(_dumps({"type": etype, "object": obj}) + b"\n")
                cursor.rv = self.store.rv
            if time.monotonic() >= cursor.deadline:
                cursor.done = True
            return lines

    # ================================================================== routing
    def _discovery(self, path: str, headers: Mapping[str, str]) -> Any:
        parts = [p for p in path.split("/") if p]
        if not parts:
            return {
                "paths": [
                    "/api",
                    "/api/v1",
                    "/apis",
                    "/version",
                    *[f"/apis/{g}/{v}" for g, v in sorted(GROUPS.items())],
                ]
            }
        if parts == ["version"]:
            return KUBE_VERSION
        if parts == ["api"]:
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": headers.get("host", "127.0.0.1")}
                ],
            }
        if parts == ["apis"]:
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [_group(g, v) for g, v in sorted(GROUPS.items())],
            }
        if parts == ["api", "v1"]:
            return {
                "kind": "APIResourceList",
                "groupVersion": "v1",
                "resources": discovery_resources(""),
            }
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in GROUPS:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(parts[1], GROUPS[parts[1]])}
        if len(parts) == 3 and parts[0] == "apis" and GROUPS.get(parts[1]) == parts[2]:
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{parts[1]}/{parts[2]}",
                "resources": discovery_resources(parts[1]),
            }
        return None

    def _route(self, path: str) -> Route:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.path_not_found()
        namespace: str | None = None
        if (
            rest[:1] == ["namespaces"]
            and len(rest) >= 3
            and not (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise errors.path_not_found()
        res = BY_PATH.get((group, version, rest[0]))
        if res is None:
            raise errors.path_not_found()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if namespace is not None and not res.namespaced:
            raise errors.path_not_found()
        if namespace is None and res.namespaced and name is not None:
            raise errors.path_not_found()
        if sub is not None and sub not in res.subresources:
            raise errors.path_not_found()
        return Route(res, group, namespace, name, sub)

    @staticmethod
    def _verb(method: str, route: Route, params: Mapping[str, str]) -> str:
        if method == "GET":
            if route.name is not None:
                return "get"
            return "watch" if _truthy(params.get("watch")) else "list"
        if method == "POST":
            if route.name is not None and route.subresource is None:
                raise errors.method_not_allowed()
            return "create"
        if method in ("PUT", "PATCH"):
            if route.name is None:
                raise errors.method_not_allowed()
            return "update" if method == "PUT" else "patch"
        if method == "DELETE":
            return "delete" if route.name is not None else "deletecollection"
        raise errors.method_not_allowed()

    # ================================================================== RBAC and faults
    def _authorize(self, verb: str, route: Route) -> None:
        resource = route.resource.plural + (f"/{route.subresource}" if route.subresource else "")
        allowed = True
        for d_verb, d_resource, d_group in self._denied:
            if (
                d_verb in (verb, "*")
                and d_resource in (resource, "*")
                and d_group in (route.group, "*")
            ):
                allowed = False
        if allowed and self._rules is not None:
            allowed = any(self._rule_allows(rule, verb, route, resource) for rule in self._rules)
        if not allowed:
            raise errors.forbidden(
                route.resource, route.name, verb, resource, route.group, route.namespace
            )

    @staticmethod
    def _rule_allows(rule: Mapping[str, Any], verb: str, route: Route, resource: str) -> bool:
        groups = rule.get("apiGroups") or []
        resources = rule.get("resources") or []
        verbs = rule.get("verbs") or []
        names = rule.get("resourceNames") or []
        if "*" not in groups and route.group not in groups:
            return False
        sub_wildcard = f"*/{route.subresource}" if route.subresource else None
        if "*" not in resources and resource not in resources and sub_wildcard not in resources:
            return False
        if "*" not in verbs and verb not in verbs:
            return False
        return not names or (route.name is not None and route.name in names)

    def _inject(self, verb: str, route: Route) -> None:
        resource = route.resource.plural + (f"/{route.subresource}" if route.subresource else "")
        for fault in self._faults:
            if fault.times <= 0:
                continue
            if fault.verb not in (verb, "*") or fault.resource not in (resource, "*"):
                continue
            if fault.namespace is not None and fault.namespace != route.namespace:
                continue
            if fault.name is not None and fault.name != route.name:
                continue
            fault.times -= 1
            self._faults = [f for f in self._faults if f.times > 0]
            raise errors.injected(fault.status, route.resource, route.name, fault.retry_after)

    # ================================================================== dispatch
    def _dispatch(
        self,
        method: str,
        verb: str,
        route: Route,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        body: Any,
    ) -> Response:
        res, ns, name, sub = route.resource, route.namespace, route.name, route.subresource
        dry_run = params.get("dryRun") == "All"
        if verb in ("list", "watch"):
            return self._list(res, ns, params, watch=verb == "watch")
        if verb == "deletecollection":
            return self._delete_collection(res, ns, params, body, dry_run)
        if verb == "create" and sub is None:
            if not isinstance(body, dict):
                raise errors.bad_request("the object provided is unrecognized or malformed")
            return Response(201, _dumps(self._create(res, ns, body, dry_run)))
        if verb == "create" and sub == "eviction":
            return self._evict(res, ns or "", str(name))
        if (
            (sub == "eviction")
            or (sub == "log" and verb != "get")
            or (verb == "create" and sub is not None)
            or (verb == "delete" and sub is not None)
        ):
            raise errors.method_not_allowed()
        if name is None:
            raise errors.method_not_allowed()
        current = self.store.get(res.kind, ns or "", name)
        if verb == "update" and current is None and sub is None and res.kind in CREATE_ON_UPDATE:
            if not isinstance(body, dict):
                raise errors.bad_request("the object provided is unrecognized or malformed")
            return Response(201, _dumps(self._create(res, ns, body, dry_run)))
        if verb == "patch" and current is None and "apply-patch" in headers.get("content-type", ""):
            if not isinstance(body, dict):
                raise errors.bad_request("the object provided is unrecognized or malformed")
            body = {**body, "metadata": {**(body.get("metadata") or {}), "name": name}}
            return Response(201, _dumps(self._create(res, ns, body, dry_run)))
        if current is None:
            raise errors.not_found(res, name)
        if sub == "log":
            return self._logs(current, params)
        if sub == "scale":
            return self._scale(verb, res, current, headers, body, dry_run)
        if verb == "get":
            return Response(200, _dumps(current))
        if verb == "delete":
            return self._delete(res, current, params, body, dry_run)
        if verb == "update":
            if not isinstance(body, dict):
                raise errors.bad_request("the object provided is unrecognized or malformed")
            new = self._check_update_body(res, current, body)
        else:
            ctype = headers.get("content-type", "").split(";", 1)[0].strip()
            if ctype not in PATCH_TYPES:
                raise errors.unsupported_media(ctype, list(PATCH_TYPES))
            new = apply_patch(ctype, clone(current), body)
            if not isinstance(new, dict):
                raise errors.unprocessable("the patched object is not an object")
            raw_md = new.get("metadata")
            new_md: dict[str, Any] = raw_md if isinstance(raw_md, dict) else {}
            if new_md.get("resourceVersion") not in (None, meta(current).get("resourceVersion")):
                raise errors.conflict(res, name)
            new = {**new, "kind": res.kind, "apiVersion": res.api_version}
        if sub == "status":
            return Response(200, _dumps(self._write_status(res, current, new, dry_run)))
        return Response(200, _dumps(self._replace(res, current, new, dry_run)))

    def _check_update_body(self, res: Resource, current: Obj, body: dict[str, Any]) -> Obj:
        new = clone(body)
        md = new.get("metadata")
        if not isinstance(md, dict):
            md = new["metadata"] = {}
        if md.get("name") not in (None, meta(current)["name"]):
            raise errors.bad_request(
                f"the name of the object ({md.get('name')}) does not match the name on the URL "
                f"({meta(current)['name']})"
            )
        if res.namespaced and md.get("namespace") not in (None, "", meta(current).get("namespace")):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        rv = md.get("resourceVersion")
        if rv and rv != meta(current).get("resourceVersion"):
            raise errors.conflict(res, meta(current)["name"])
        return new

    # ================================================================== create / update
    def _decode(self, res: Resource, obj: Obj) -> None:
        if obj.get("kind") not in (None, res.kind) or obj.get("apiVersion") not in (
            None,
            res.api_version,
        ):
            raise errors.bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the "
                f"expected API version ({res.api_version})"
                if obj.get("apiVersion") not in (None, res.api_version)
                else f"the kind in the data ({obj.get('kind')}) does not match the expected "
                f"kind ({res.kind})"
            )
        try:
            check_types(res.kind, obj)
        except DecodeError as exc:
            raise errors.bad_request(
                f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: {exc}'
            ) from None

    def _create(self, res: Resource, ns: str | None, body: dict[str, Any], dry_run: bool) -> Obj:
        obj = clone(body)
        self._decode(res, obj)
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        md = obj.get("metadata")
        if not isinstance(md, dict):
            md = obj["metadata"] = {}
        if res.namespaced:
            ns = ns or md.get("namespace") or "default"
            if md.get("namespace") not in (None, "", ns):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        if md.get("resourceVersion"):
            raise errors.internal("resourceVersion should not be set on objects to be created")
        if not md.get("name") and md.get("generateName"):
            while True:
                candidate = f"{md['generateName']}{self.world.suffix()}"
                if self.store.get(res.kind, ns or "", candidate) is None:
                    md["name"] = candidate
                    break
        for server_field in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "selfLink",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            md.pop(server_field, None)
        if res.kind in STATUS_KINDS:
            obj.pop("status", None)
        default_object(res.kind, obj)
        _omit_empty_meta(md)
        uid = self.world.new_uid() if not dry_run else "00000000-0000-4000-8000-000000000000"
        self._prepare_create(res, obj, uid)
        errs = validate(res.kind, obj, None)
        if errs:
            raise errors.invalid(res, str(md.get("name") or ""), errs)
        name = str(md["name"])
        if self.store.get(res.kind, ns or "", name) is not None:
            raise errors.already_exists(res, name)
        md["uid"] = uid
        md["creationTimestamp"] = ts(self.world.t)
        if res.kind in GENERATION_KINDS:
            md["generation"] = 1
        if dry_run:
            return obj
        if ns:
            self._ensure_namespace(ns)
        stored = self.store.put(obj)
        self.world.api_written(stored, None)
        return stored

    def _prepare_create(self, res: Resource, obj: Obj, uid: str) -> None:
        md = obj["metadata"]
        if res.kind == "Namespace":
            md.setdefault("labels", {})["kubernetes.io/metadata.name"] = md.get("name", "")
            obj["status"] = {"phase": "Active"}
        elif res.kind == "Pod":
            from .controllers import qos_class

            obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}
        elif res.kind == "Job":
            spec = obj.get("spec")
            if isinstance(spec, dict) and not spec.get("manualSelector"):
                if spec.get("selector"):
                    raise errors.invalid(
                        res,
                        str(md.get("name") or ""),
                        [
                            errors.FieldErr(
                                "Invalid",
                                "spec.selector",
                                errors.Raw(json.dumps(spec["selector"])),
                                "`selector` not auto-generated",
                            )
                        ],
                    )
                job_labels = {
                    "batch.kubernetes.io/controller-uid": uid,
                    "batch.kubernetes.io/job-name": str(md.get("name", "")),
                    "controller-uid": uid,
                    "job-name": str(md.get("name", "")),
                }
                spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
                template = spec.get("template")
                if isinstance(template, dict):
                    tmd = template.setdefault("metadata", {})
                    tmd["labels"] = {**(tmd.get("labels") or {}), **job_labels}
                    if not md.get("labels"):
                        md["labels"] = dict(tmd["labels"])
            obj["status"] = {}
        elif res.kind in STATUS_KINDS:
            # fields without omitempty serialize even when zero
            obj["status"] = clone(INITIAL_STATUS.get(res.kind, {}))

    def _replace(self, res: Resource, current: Obj, new: Obj, dry_run: bool) -> Obj:
        """Update ``current`` to ``new`` (a user write through the main endpoint)."""
        obj = clone(new)
        self._decode(res, obj)
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        md = obj.get("metadata")
        if not isinstance(md, dict):
            md = obj["metadata"] = {}
        old_md = meta(current)
        if md.get("uid") not in (None, "", old_md.get("uid")):
            raise errors.conflict(
                res,
                old_md["name"],
                f"Precondition failed: UID in precondition: {md.get('uid')}, UID in object meta: "
                f"{old_md.get('uid')}",
            )
        for fixed in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "resourceVersion",
        ):
            if fixed in old_md:
                md[fixed] = old_md[fixed]
            else:
                md.pop(fixed, None)
        if res.kind in STATUS_KINDS:
            if "status" in current:
                obj["status"] = current["status"]
            else:
                obj.pop("status", None)
        default_object(res.kind, obj)
        _omit_empty_meta(md)
        errs = validate(res.kind, obj, current)
        if errs:
            raise errors.invalid(res, old_md["name"], errs)
        if res.kind in GENERATION_KINDS:
            changed = obj.get("spec") != current.get("spec")
            if res.kind == "Deployment":
                changed = changed or md.get("annotations") != old_md.get("annotations")
            if changed:
                md["generation"] = int(old_md.get("generation") or 1) + 1
        if obj == current or dry_run:
            return obj
        stored = self.store.put(obj)
        self.world.api_written(stored, current)
        return stored

    def _write_status(self, res: Resource, current: Obj, new: Obj, dry_run: bool) -> Obj:
        obj = {**current, "metadata": dict(current["metadata"]), "status": new.get("status")}
        if obj.get("status") is None:
            obj.pop("status")
        if obj == current or dry_run:
            return obj
        stored = self.store.put(obj)
        self.world.api_written(stored, current)
        return stored

    # ================================================================== reads
    def _list(
        self, res: Resource, ns: str | None, params: Mapping[str, str], *, watch: bool
    ) -> Response:
        labels = parse_label_selector(params.get("labelSelector"))
        fields = parse_field_selector(res.kind, params.get("fieldSelector"))
        if ns is None and res.namespaced:
            pinned = field_value(fields, "metadata.namespace")
            scope: str | None = pinned
        else:
            scope = ns if res.namespaced else None
        items = [
            o
            for o in self.store.items(res.kind, scope)
            if matches(labels, meta(o).get("labels")) and field_matches(res.kind, fields, o)
        ]
        if watch:
            timeout = params.get("timeoutSeconds")
            cursor = WatchCursor(
                res,
                scope,
                labels,
                fields,
                self.store.rv,
                time.monotonic() + (float(timeout) if timeout else DEFAULT_WATCH_TIMEOUT),
            )
            rv_param = params.get("resourceVersion")
            if rv_param not in (None, "", "0"):
                try:
                    cursor.rv = int(str(rv_param))
                except ValueError:
                    raise errors.bad_request(f"invalid resource version: {rv_param}") from None
            else:
                cursor.pending = [_dumps({"type": "ADDED", "object": o}) + b"\n" for o in items]
            return Response(200, b"", headers={}, watch=cursor)
        return self._list_response(res, items)

    def _watch_match(self, cursor: WatchCursor, obj: Obj) -> bool:
        if obj.get("kind") != cursor.resource.kind:
            return False
        if cursor.namespace is not None and meta(obj).get("namespace") != cursor.namespace:
            return False
        return matches(cursor.labels, meta(obj).get("labels")) and field_matches(
            cursor.resource.kind, cursor.fields, obj
        )

    def _logs(self, pod: Obj, params: Mapping[str, str]) -> Response:
        md = meta(pod)
        name = md["name"]
        spec = pod.get("spec") or {}
        names = [c.get("name") for c in spec.get("containers") or []]
        init_names = [c.get("name") for c in spec.get("initContainers") or []]
        container = params.get("container")
        if not container:
            if len(names) != 1:
                msg = (
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(str(n) for n in names)}]"
                )
                if init_names:
                    msg += f" or one of the init containers: [{' '.join(map(str, init_names))}]"
                raise errors.bad_request(msg)
            container = str(names[0])
        if container not in names and container not in init_names:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        image = next(
            (
                str(c.get("image"))
                for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
                if c.get("name") == container
            ),
            "",
        )
        rt = self.world.pods.get(md.get("uid", ""))
        if rt is None:
            raise errors.bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
            )
        if container in init_names:
            start: float | None = rt.start
        else:
            view = next(v for v in self.world.container_views(pod, rt) if v.name == container)
            if _truthy(params.get("previous")):
                start = view.instance_start if view.category == "backoff" else view.previous_start
                if start is None:
                    raise errors.bad_request(
                        f'previous terminated container "{container}" in pod "{name}" not found'
                    )
            else:
                if view.instance_start is None:
                    reason = (view.state.get("waiting") or {}).get("reason", "ContainerCreating")
                    detail = {
                        "ErrImagePull": "image can't be pulled",
                        "ImagePullBackOff": "trying and failing to pull image",
                    }.get(reason, reason)
                    raise errors.bad_request(
                        f'container "{container}" in pod "{name}" is waiting to start: {detail}'
                    )
                start = view.instance_start
        if start is None:
            raise errors.bad_request(f'container "{container}" in pod "{name}" has no logs')
        lines = [
            (start + i * 0.001, text) for i, text in enumerate(self.world.behavior(image).logs)
        ]
        lines = [(t, text) for t, text in lines if t <= self.world.t]
        since = params.get("sinceSeconds")
        if since:
            lines = [(t, text) for t, text in lines if t >= self.world.t - float(since)]
        tail = params.get("tailLines")
        if tail not in (None, ""):
            count = int(str(tail))
            lines = lines[-count:] if count > 0 else []
        stamp = _truthy(params.get("timestamps"))
        text = "".join(f"{ts_nano(t) + ' ' if stamp else ''}{line}\n" for t, line in lines)
        data = text.encode()
        limit = params.get("limitBytes")
        if limit:
            data = data[: int(limit)]
        return Response(200, data, content_type="text/plain")

    # ================================================================== scale
    def _scale_view(self, res: Resource, obj: Obj) -> Obj:
        md = meta(obj)
        selector = (obj.get("spec") or {}).get("selector")
        status: dict[str, Any] = {"replicas": int((obj.get("status") or {}).get("replicas") or 0)}
        if selector:
            status["selector"] = selector_string(selector)
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: md[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in md
            },
            "spec": {"replicas": int((obj.get("spec") or {}).get("replicas") or 0)},
            "status": status,
        }

    def _scale(
        self,
        verb: str,
        res: Resource,
        current: Obj,
        headers: Mapping[str, str],
        body: Any,
        dry_run: bool,
    ) -> Response:
        view = self._scale_view(res, current)
        if verb == "get":
            return Response(200, _dumps(view))
        if verb == "update":
            if not isinstance(body, dict):
                raise errors.bad_request("the object provided is unrecognized or malformed")
            new = body
        elif verb == "patch":
            ctype = headers.get("content-type", "").split(";", 1)[0].strip()
            if ctype not in PATCH_TYPES:
                raise errors.unsupported_media(ctype, list(PATCH_TYPES))
            new = apply_patch(ctype, clone(view), body)
        else:
            raise errors.method_not_allowed()
        name = meta(current)["name"]
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if rv and rv != meta(current).get("resourceVersion"):
            raise errors.conflict(res, name)
        replicas = (new.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            replicas = 0 if replicas is None else replicas
        if not isinstance(replicas, int) or replicas < 0:
            scale_res = Resource("Scale", "scale", "scale", "autoscaling")
            raise errors.invalid(
                scale_res,
                name,
                [
                    errors.FieldErr(
                        "Invalid", "spec.replicas", replicas, "must be greater than or equal to 0"
                    )
                ],
            )
        updated = clone(current)
        updated["spec"]["replicas"] = replicas
        stored = self._replace(res, current, updated, dry_run)
        return Response(200, _dumps(self._scale_view(res, stored)))

    # ================================================================== delete
    def _delete_options(
        self, res: Resource, params: Mapping[str, str], body: Any
    ) -> dict[str, Any]:
        opts = dict(body) if isinstance(body, dict) else {}
        if params.get("propagationPolicy"):
            opts["propagationPolicy"] = params["propagationPolicy"]
        if params.get("gracePeriodSeconds"):
            opts["gracePeriodSeconds"] = int(params["gracePeriodSeconds"])
        if params.get("orphanDependents") and "propagationPolicy" not in opts:
            opts["propagationPolicy"] = (
                "Orphan" if _truthy(params["orphanDependents"]) else ("Background")
            )
        if "propagationPolicy" not in opts and "orphanDependents" in opts:
            opts["propagationPolicy"] = "Orphan" if opts["orphanDependents"] else "Background"
        policy = opts.get("propagationPolicy")
        if policy is None:
            opts["propagationPolicy"] = "Orphan" if res.kind == "Job" else "Background"
            opts["defaulted"] = True
        elif policy not in ("Orphan", "Background", "Foreground"):
            raise errors.invalid(
                res,
                "",
                [
                    errors.FieldErr(
                        "NotSupported",
                        "propagationPolicy",
                        policy,
                        'supported values: "Foreground", "Background", "Orphan", "nil"',
                    )
                ],
                kind="DeleteOptions.meta.k8s.io",
            )
        return opts

    def _delete(
        self, res: Resource, current: Obj, params: Mapping[str, str], body: Any, dry_run: bool
    ) -> Response:
        opts = self._delete_options(res, params, body)
        md = meta(current)
        pre = opts.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != md.get("uid"):
            raise errors.conflict(
                res,
                md["name"],
                (
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                    f"{md.get('uid')}"
                ),
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != md.get("resourceVersion"):
            raise errors.conflict(
                res,
                md["name"],
                (
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                    f"{md.get('resourceVersion')}"
                ),
            )
        if dry_run:
            opts["propagationPolicy"] = "dry-run"
            return self._deleted_response(res, current, opts)
        self._delete_obj(res, current, str(opts["propagationPolicy"]))
        return self._deleted_response(res, current, opts)

    def _deleted_response(self, res: Resource, obj: Obj, opts: Mapping[str, Any]) -> Response:
        headers: dict[str, str] = {}
        if res.kind == "Job" and opts.get("defaulted"):
            headers["Warning"] = JOB_ORPHAN_WARNING
        policy = opts.get("propagationPolicy")
        md = meta(obj)
        if res.kind == "Namespace":
            body = {
                **obj,
                "metadata": {**md, "deletionTimestamp": ts(self.world.t)},
                "status": {"phase": "Terminating"},
            }
            return Response(200, _dumps(body), headers=headers)
        if res.kind == "Pod":
            grace = int(
                opts.get(
                    "gracePeriodSeconds",
                    (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30),
                )
            )
            body = {
                **obj,
                "metadata": {
                    **md,
                    "deletionTimestamp": ts(self.world.t + grace),
                    "deletionGracePeriodSeconds": grace,
                },
            }
            return Response(200, _dumps(body), headers=headers)
        if policy in ("Orphan", "Foreground"):
            finalizer = "orphan" if policy == "Orphan" else "foregroundDeletion"
            body = {
                **obj,
                "metadata": {
                    **md,
                    "deletionTimestamp": ts(self.world.t),
                    "deletionGracePeriodSeconds": 0,
                    "finalizers": [*(md.get("finalizers") or []), finalizer],
                },
            }
            return Response(200, _dumps(body), headers=headers)
        details: dict[str, Any] = {"name": md["name"]}
        if res.group:
            details["group"] = res.group
        details["kind"] = res.plural
        details["uid"] = md.get("uid")
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }
        return Response(200, _dumps(status), headers=headers)

    def _delete_obj(self, res: Resource, obj: Obj, propagation: str) -> None:
        if res.kind == "Namespace":
            ns = meta(obj)["name"]
            for other in BY_KIND.values():
                if other.namespaced:
                    for child in list(self.store.items(other.kind, ns)):
                        if self.store.get(*key_of(child)) is not None:
                            self.world.delete_tree(child, "Background")
        self.world.delete_tree(obj, propagation)

    def _delete_collection(
        self, res: Resource, ns: str | None, params: Mapping[str, str], body: Any, dry_run: bool
    ) -> Response:
        opts = self._delete_options(res, params, body)
        labels = parse_label_selector(params.get("labelSelector"))
        fields = parse_field_selector(res.kind, params.get("fieldSelector"))
        victims = [
            o
            for o in self.store.items(res.kind, ns if res.namespaced else None)
            if matches(labels, meta(o).get("labels")) and field_matches(res.kind, fields, o)
        ]
        if not dry_run:
            for obj in victims:
                if self.store.get(*key_of(obj)) is not None:
                    self._delete_obj(res, obj, str(opts["propagationPolicy"]))
        return self._list_response(res, victims)

    def _list_response(self, res: Resource, items: builtins.list[Obj]) -> Response:
        """A `<Kind>List` as the API server sends it: items without kind and apiVersion."""
        body = {
            "kind": res.list_kind,
            "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(self.store.rv)},
            "items": [
                {k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items
            ],
        }
        return Response(200, _dumps(body))

    def _evict(self, res: Resource, ns: str, name: str) -> Response:
        pod = self.store.get("Pod", ns, name)
        if pod is None:
            raise errors.not_found(res, name)
        self._delete_obj(res, pod, "Background")
        return Response(
            201,
            _dumps(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "code": 201,
                }
            ),
        )


def _omit_empty_meta(md: dict[str, Any]) -> None:
    """Empty maps and lists in ObjectMeta are omitted on the wire (omitempty)."""
    for key in ("labels", "annotations", "finalizers", "ownerReferences", "managedFields"):
        if key in md and not md[key]:
            del md[key]


def _group(name: str, version: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{name}/{version}", "version": version}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


def _pod_spec_of(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    if obj["kind"] == "Pod":
        return spec
    if obj["kind"] == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def _load_yaml(body: bytes) -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a project dependency
        raise errors.unsupported_media("application/yaml", ["application/json"]) from None
    try:
        return yaml.safe_load(body)
    except yaml.YAMLError:
        raise errors.bad_request("the object provided is unrecognized or malformed") from None


__all__ = [
    "FakeCluster",
    "Request",
    "Response",
    "WatchCursor",
    "controller_ref",
    "cronjob_manifest",
    "daemonset_manifest",
    "deployment_manifest",
    "event_manifest",
    "job_manifest",
    "lease_manifest",
    "pod_manifest",
    "pod_ready",
    "statefulset_manifest",
]
