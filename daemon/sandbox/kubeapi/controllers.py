"""The lazy, deterministic world: the scheduler, the kubelet (pod status from scripted image
behaviour), the event recorder and the deployment / replicaset / statefulset / daemonset / job
controllers.

Nothing runs in the background. ``World.reconcile()`` replays everything that happened between
the last call and ``now()`` as a discrete-event simulation: pod status changes are scheduled at
the exact instant they happen (a container becoming Ready, crashing, restarting), controllers
react at that instant, and so every timestamp and count is a pure function of the API writes and
the clock.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .defaults import default_object, deployment_fenceposts, resolve_int_or_percent
from .pods import HEALTHY, ContainerView, ImageBehavior, image_id, simulate_container
from .resources import (
    WORKLOAD_KINDS,
    clone,
    det_uid,
    parse_ts,
    safe_encode,
    template_hash,
    ts,
)
from .selectors import from_label_selector, matches
from .store import Key, Obj, Store, key_of

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
SKIP_COPY = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
JOB_MAX_BACKOFF_FACTOR = 60  # the job controller caps pod-failure back-off at 10m = 60 x 10s
MAX_STEPS = 1_000_000


# --------------------------------------------------------------------------- helpers


def meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def controller_ref(obj: Obj) -> dict[str, Any] | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def is_controlled_by(obj: Obj, uid: str) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == uid


def owner_ref(owner: Obj) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta(owner)["name"],
        "uid": meta(owner)["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pod_phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def pod_ready(pod: Obj) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def pod_terminal(pod: Obj) -> bool:
    return pod_phase(pod) in ("Succeeded", "Failed")


def revision(rs: Obj) -> int:
    try:
        return int((meta(rs).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def strip_hash(template: Obj) -> Obj:
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.pop("pod-template-hash", None)
    md = dict(template.get("metadata") or {})
    if labels:
        md["labels"] = labels
    else:
        md.pop("labels", None)
    return {**template, "metadata": md}


def _normalized_template(template: Obj) -> Obj:
    md = dict(template.get("metadata") or {})
    for k in ("labels", "annotations"):
        if not md.get(k):
            md.pop(k, None)
    return {**template, "metadata": md}


def templates_equal(rs_template: Obj, d_template: Obj) -> bool:
    return _normalized_template(strip_hash(rs_template)) == _normalized_template(
        strip_hash(d_template)
    )


def _omit_zero(status: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k in keep or v not in (0, None)}


def dcondition(ctype: str, status: str, reason: str, message: str, t: float) -> dict[str, Any]:
    now = ts(t)
    return {
        "type": ctype,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def get_condition(conds: list[dict[str, Any]], ctype: str) -> dict[str, Any] | None:
    return next((c for c in conds if c.get("type") == ctype), None)


def set_dcondition(conds: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    """SetDeploymentCondition: no-op for the same status+reason; keeps lastTransitionTime when the
    status is unchanged; the condition moves to the end of the list."""
    cur = get_condition(conds, new["type"])
    if (
        cur is not None
        and cur.get("status") == new["status"]
        and cur.get("reason") == new["reason"]
    ):
        return conds
    if cur is not None and cur.get("status") == new["status"]:
        new = {**new, "lastTransitionTime": cur.get("lastTransitionTime")}
    return [c for c in conds if c.get("type") != new["type"]] + [new]


@dataclass
class PodRuntime:
    uid: str
    start: float
    node: str
    host_ip: str
    ip: str
    epochs: dict[str, tuple[float, int]] = field(default_factory=dict)
    counters: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    hints: dict[str, tuple[Any, float, tuple[Any, ...]]] = field(default_factory=dict)
    ready_since: float | None = None
    wedged_since: float | None = None
    probe_failures: int = 0
    wakeup: float | None = None


@dataclass
class JobTrack:
    counted: set[str] = field(default_factory=set)
    succeeded: int = 0
    failed: int = 0
    last_failure: float | None = None


# --------------------------------------------------------------------------- the world


class World:
    def __init__(self, store: Store, now: Callable[[], float], restart_backoff: float, nodes: int):
        if restart_backoff <= 0:
            raise ValueError("restart_backoff must be > 0")
        if nodes < 1:
            raise ValueError("nodes must be >= 1")
        self.store = store
        self._now = now
        self.backoff = float(restart_backoff)
        self.t = float(now())
        self.behaviors: dict[str, ImageBehavior] = {}
        self._heap: list[tuple[float, int, str, Any]] = []
        self._heap_seq = itertools.count()
        self._dirty: dict[Key, None] = {}
        self.pods: dict[str, PodRuntime] = {}
        self.jobs: dict[str, JobTrack] = {}
        self.node_names = [f"node-{i}" for i in range(1, nodes + 1)]
        self._node_load = dict.fromkeys(self.node_names, 0)
        self._node_ip_seq = dict.fromkeys(self.node_names, 0)
        self._seq = itertools.count(1)
        self._event_seq = itertools.count(1)
        self._events: dict[tuple[Any, ...], str] = {}
        self._timers: dict[Any, float] = {}

    # ------------------------------------------------------------------ ids
    def new_uid(self) -> str:
        return det_uid(f"uid-{next(self._seq)}")

    def suffix(self) -> str:
        return safe_encode(f"name-{next(self._seq)}".encode(), 5)

    def behavior(self, image: str) -> ImageBehavior:
        return self.behaviors.get(image, HEALTHY)

    # ------------------------------------------------------------------ the event loop
    def mark(self, key: Key) -> None:
        if key[0] in WORKLOAD_KINDS:
            self._dirty[key] = None

    def wake_at(self, when: float, tag: str, payload: Any) -> None:
        if tag == "sync":
            if self._timers.get(payload) == when:
                return
            self._timers[payload] = when
        heapq.heappush(self._heap, (when, next(self._heap_seq), tag, payload))

    def reconcile(self) -> None:
        """Bring every controller and pod status up to ``now()``."""
        now = max(self.t, float(self._now()))
        for _ in range(MAX_STEPS):
            if self._dirty:
                key = next(iter(self._dirty))
                del self._dirty[key]
                self._sync(key)
                continue
            if self._heap and self._heap[0][0] <= now:
                when, _, tag, payload = heapq.heappop(self._heap)
                self.t = max(self.t, when)
                if tag == "pod":
                    rt = self.pods.get(payload)
                    if rt is not None and rt.wakeup is not None and rt.wakeup <= self.t:
                        rt.wakeup = None
                        self.refresh_pod(payload)
                else:
                    if self._timers.get(payload) == when:
                        del self._timers[payload]
                    self.mark(payload)
                continue
            break
        self.t = now

    def _sync(self, key: Key) -> None:
        obj = self.store.get(*key)
        if obj is None:
            return
        kind = key[0]
        if kind == "Deployment":
            self.sync_deployment(obj)
        elif kind == "ReplicaSet":
            self.sync_replicaset(obj)
        elif kind == "StatefulSet":
            self.sync_statefulset(obj)
        elif kind == "DaemonSet":
            self.sync_daemonset(obj)
        elif kind == "Job":
            self.sync_job(obj)

    # ------------------------------------------------------------------ writes
    def save(self, obj: Obj, *, requeue: bool = False) -> Obj:
        """A controller write. ``requeue`` re-syncs the written object (e.g. a scaled RS)."""
        stored = self.store.put(obj)
        if requeue:
            self.mark(key_of(stored))
        self._mark_owner(stored)
        return stored

    def _mark_owner(self, obj: Obj) -> None:
        ref = controller_ref(obj)
        if ref is None:
            return
        owner = self.store.by_uid(str(ref.get("uid", "")))
        if owner is not None:
            self.mark(key_of(owner))

    def api_written(self, obj: Obj, old: Obj | None) -> None:
        """Hook for writes through the API (users, tests): controllers see them."""
        self.mark(key_of(obj))
        self._mark_owner(obj)
        if old is not None:
            self._mark_owner(old)
        if obj["kind"] == "Pod":
            uid = meta(obj)["uid"]
            if old is None or uid not in self.pods:
                self.bind_pod(obj)
            else:
                self._pod_images_changed(obj, old)

    def api_deleted(self, obj: Obj) -> None:
        self.forget(obj)

    def forget(self, obj: Obj) -> None:
        """Clean up after a removed object."""
        uid = meta(obj).get("uid", "")
        if obj["kind"] == "Pod":
            rt = self.pods.pop(uid, None)
            if rt is not None:
                self._node_load[rt.node] = max(0, self._node_load.get(rt.node, 0) - 1)
                for cs in (obj.get("status") or {}).get("containerStatuses") or []:
                    if "running" in (cs.get("state") or {}):
                        self.record(
                            obj,
                            "Normal",
                            "Killing",
                            f"Stopping container {cs['name']}",
                            "kubelet",
                            field_path=f"spec.containers{{{cs['name']}}}",
                            host=rt.node,
                        )
            ref = controller_ref(obj)
            track = self.jobs.get(str(ref.get("uid"))) if ref and ref.get("kind") == "Job" else None
            if track is not None and uid not in track.counted:
                track.counted.add(uid)
                if pod_phase(obj) == "Succeeded":
                    track.succeeded += 1
                else:
                    track.failed += 1
                    track.last_failure = self.t
        elif obj["kind"] == "Job":
            self.jobs.pop(uid, None)
        self._mark_owner(obj)

    def delete_tree(self, obj: Obj, propagation: str) -> Obj | None:
        """Delete ``obj``; Background/Foreground delete dependents too, Orphan detaches them."""
        uid = meta(obj).get("uid", "")
        for child in self.store.children(uid):
            if propagation == "Orphan":
                c = clone(child)
                refs = [r for r in meta(c).get("ownerReferences") or [] if r.get("uid") != uid]
                if refs:
                    c["metadata"]["ownerReferences"] = refs
                else:
                    c["metadata"].pop("ownerReferences", None)
                self.store.put(c)
            else:
                self.delete_tree(child, "Background")
        removed = self.store.remove(*key_of(obj))
        if removed is not None:
            self.forget(removed)
        return removed

    def delete_pod(self, pod: Obj) -> None:
        self.delete_tree(pod, "Background")

    # ------------------------------------------------------------------ events
    def record(
        self,
        obj: Obj,
        etype: str,
        reason: str,
        message: str,
        component: str,
        *,
        field_path: str | None = None,
        host: str | None = None,
        count: int = 1,
    ) -> None:
        if count <= 0:
            return
        md = meta(obj)
        ns = md.get("namespace") or "default"
        key = (ns, md.get("uid"), field_path, component, etype, reason, message)
        existing_name = self._events.get(key)
        existing = self.store.get("Event", ns, existing_name) if existing_name else None
        now = ts(self.t)
        if existing is not None:
            ev = {
                **existing,
                "count": int(existing.get("count") or 1) + count,
                "lastTimestamp": now,
            }
            self.store.put(ev)
            return
        involved: dict[str, Any] = {
            "kind": obj["kind"],
            "namespace": ns,
            "name": md.get("name"),
            "uid": md.get("uid"),
            "apiVersion": obj["apiVersion"],
            "resourceVersion": md.get("resourceVersion"),
        }
        if field_path:
            involved["fieldPath"] = field_path
        name = f"{md.get('name')}.{int(self.t * 1e9) + next(self._event_seq):x}"
        source: dict[str, str] = {"component": component}
        if host:
            source["host"] = host
        event = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": self.new_uid(),
                "creationTimestamp": now,
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": count,
            "type": etype,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": host or "",
        }
        self.store.put(event)
        self._events[key] = name

    # ------------------------------------------------------------------ scheduler + kubelet
    def _pick_node(self, pod: Obj) -> str:
        wanted = (pod.get("spec") or {}).get("nodeName")
        if wanted:
            return str(wanted)
        return min(self.node_names, key=lambda n: (self._node_load.get(n, 0), n))

    def bind_pod(self, pod: Obj) -> Obj:
        """Schedule a stored pod onto a node and start its containers now."""
        uid = meta(pod)["uid"]
        node = self._pick_node(pod)
        index = self.node_names.index(node) + 1 if node in self.node_names else 0
        self._node_ip_seq[node] = self._node_ip_seq.get(node, 0) + 1
        n = self._node_ip_seq[node]
        ip = f"10.244.{index}.{(n - 1) % 253 + 2}"
        rt = PodRuntime(uid=uid, start=self.t, node=node, host_ip=f"172.18.0.{index + 1}", ip=ip)
        self.pods[uid] = rt
        self._node_load[node] = self._node_load.get(node, 0) + 1
        bound = pod
        if (pod.get("spec") or {}).get("nodeName") != node:
            bound = {
                **pod,
                "metadata": dict(pod["metadata"]),
                "spec": {**pod["spec"], "nodeName": node},
            }
            bound = self.store.put(bound)
        self.record(
            bound,
            "Normal",
            "Scheduled",
            f"Successfully assigned {meta(bound).get('namespace')}/{meta(bound)['name']} to {node}",
            "default-scheduler",
        )
        self.refresh_pod(uid)
        return self.store.by_uid(uid) or bound

    def _pod_images_changed(self, pod: Obj, old: Obj) -> None:
        rt = self.pods.get(meta(pod)["uid"])
        if rt is None:
            return
        old_images = {
            c.get("name"): c.get("image") for c in (old.get("spec") or {}).get("containers") or []
        }
        views = {v.name: v for v in self.container_views(old, rt)}
        for c in (pod.get("spec") or {}).get("containers") or []:
            name = c.get("name")
            if old_images.get(name) != c.get("image") and name in views:
                view = views[name]
                base = view.restart_count + (1 if view.starts > 0 else 0)
                rt.epochs[name] = (self.t, base)
                rt.counters.pop(name, None)
        self.refresh_pod(rt.uid)

    def container_views(
        self, pod: Obj, rt: PodRuntime, at: float | None = None
    ) -> list[ContainerView]:
        spec = pod.get("spec") or {}
        policy = spec.get("restartPolicy") or "Always"
        md = meta(pod)
        ref = f"{md.get('name')}_{md.get('namespace')}({md.get('uid')})"
        views = []
        for c in spec.get("containers") or []:
            name = str(c.get("name"))
            image = str(c.get("image"))
            start, base = rt.epochs.get(name, (rt.start, 0))
            behavior = self.behavior(image)
            when = self.t if at is None else at
            key = (start, base, behavior, policy, image)
            cached = rt.hints.get(name)
            resume = cached[2] if cached and cached[0] == key and cached[1] <= when else None
            view = simulate_container(
                name=name,
                image=image,
                behavior=behavior,
                policy=policy,
                start=start,
                base_restarts=base,
                now=when,
                backoff=self.backoff,
                pod_ref=ref,
                pod_uid=rt.uid,
                resume=resume,
            )
            if view.resume is not None:
                rt.hints[name] = (key, when, view.resume)
            views.append(view)
        return views

    def refresh_pod(self, uid: str) -> None:
        rt = self.pods.get(uid)
        pod = self.store.by_uid(uid)
        if rt is None or pod is None or pod.get("kind") != "Pod":
            return
        views = self.container_views(pod, rt)
        probe_at = self._wedged_probes(pod, rt, views)
        status = self._pod_status(pod, rt, views)
        self._kubelet_events(pod, rt, views)
        if status != pod.get("status"):
            self.save({**pod, "metadata": dict(pod["metadata"]), "status": status})
        upcoming = [v.next_change for v in views if v.next_change is not None]
        if probe_at is not None:
            upcoming.append(probe_at)
        nxt = min(upcoming) if upcoming else None
        if nxt is not None and nxt <= self.t:
            nxt = self.t + 1e-6
        if nxt is not None and nxt != rt.wakeup:
            rt.wakeup = nxt
            self.wake_at(nxt, "pod", uid)

    def wedge_pod(self, uid: str) -> None:
        """From now on the pod's running containers fail their readiness probe."""
        rt = self.pods.get(uid)
        if rt is not None and rt.wedged_since is None:
            rt.wedged_since = self.t
            self.refresh_pod(uid)

    def _wedged_probes(self, pod: Obj, rt: PodRuntime, views: list[ContainerView]) -> float | None:
        """Mark a wedged pod's running containers unready; record the kubelet's failed probes
        (one per probe period). Returns when the next probe fails."""
        if rt.wedged_since is None or self.t < rt.wedged_since:
            return None
        running = [v for v in views if v.category == "running"]
        for v in running:
            v.ready = False
        containers = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
        period = 10.0
        for v in running:
            probe = containers.get(v.name, {}).get("readinessProbe") or {}
            period = float(probe.get("periodSeconds") or 10)
            http = probe.get("httpGet") or {}
            port, path = http.get("port", 8080), http.get("path", "/")
            failures = int((self.t - rt.wedged_since) // period) + 1
            if failures > rt.probe_failures:
                self.record(
                    pod,
                    "Warning",
                    "Unhealthy",
                    f'Readiness probe failed: Get "http://{rt.ip}:{port}{path}": context deadline '
                    "exceeded (Client.Timeout exceeded while awaiting headers)",
                    "kubelet",
                    field_path=f"spec.containers{{{v.name}}}",
                    host=rt.node,
                    count=failures - rt.probe_failures,
                )
                rt.probe_failures = failures
        if not running:
            return None
        return rt.wedged_since + period * (rt.probe_failures)

    def _pod_status(self, pod: Obj, rt: PodRuntime, views: list[ContainerView]) -> dict[str, Any]:
        spec = pod.get("spec") or {}
        policy = spec.get("restartPolicy") or "Always"
        waiting = running = stopped = succeeded = 0
        for v in views:
            if v.category == "waiting":
                waiting += 1
            elif v.category == "running":
                running += 1
            else:
                stopped += 1
                if v.category == "succeeded":
                    succeeded += 1
        if waiting > 0:
            phase = "Pending"
        elif running > 0:
            phase = "Running"
        elif stopped > 0:
            if policy == "Always":
                phase = "Running"
            elif stopped == succeeded:
                phase = "Succeeded"
            elif policy == "Never":
                phase = "Failed"
            else:
                phase = "Running"
        else:
            phase = "Pending"
        terminal = phase in ("Succeeded", "Failed")
        all_ready = bool(views) and all(v.ready for v in views) and not terminal
        if all_ready:
            if rt.ready_since is None:
                rt.ready_since = self.t
        else:
            rt.ready_since = None
        old_conds = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}

        def cond(
            ctype: str, ok: bool, reason: str | None = None, message: str | None = None
        ) -> dict[str, Any]:
            value = "True" if ok else "False"
            old = old_conds.get(ctype)
            since = old.get("lastTransitionTime") if old and old.get("status") == value else None
            c: dict[str, Any] = {
                "type": ctype,
                "status": value,
                "lastProbeTime": None,
                "lastTransitionTime": since or ts(self.t),
            }
            if reason:
                c["reason"] = reason
            if message:
                c["message"] = message
            return c

        unready = [v.name for v in views if not v.ready]
        if terminal:
            ready_reason: str | None = "PodCompleted"
            ready_msg: str | None = None
        else:
            ready_reason = "ContainersNotReady" if unready else None
            ready_msg = (
                f"containers with unready status: [{' '.join(unready)}]" if unready else None
            )
        conditions = [
            cond("PodReadyToStartContainers", not terminal),
            cond("Initialized", True, "PodCompleted" if terminal else None),
            cond("Ready", all_ready, ready_reason, ready_msg),
            cond("ContainersReady", all_ready, ready_reason, ready_msg),
            cond("PodScheduled", True),
        ]
        statuses = []
        for v in views:
            entry: dict[str, Any] = {
                "name": v.name,
                "state": v.state,
                "lastState": v.last_state,
                "ready": v.ready,
                "restartCount": v.restart_count,
                "image": v.image,
                "imageID": "" if v.container_id is None else image_id(v.image),
                "started": v.started,
            }
            if v.container_id is not None:
                entry["containerID"] = v.container_id
            statuses.append(entry)
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": rt.host_ip,
            "hostIPs": [{"ip": rt.host_ip}],
            "podIP": rt.ip,
            "podIPs": [{"ip": rt.ip}],
            "startTime": ts(rt.start),
        }
        init = spec.get("initContainers") or []
        if init:
            status["initContainerStatuses"] = [
                {
                    "name": c.get("name"),
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": ts(rt.start),
                            "finishedAt": ts(rt.start),
                            "containerID": f"containerd://{det_uid(rt.uid + str(i))}",
                        }
                    },
                    "lastState": {},
                    "ready": True,
                    "restartCount": 0,
                    "image": c.get("image"),
                    "imageID": image_id(str(c.get("image"))),
                    "started": False,
                }
                for i, c in enumerate(init)
            ]
        status["containerStatuses"] = statuses
        status["qosClass"] = qos_class(spec)
        return status

    def _kubelet_events(self, pod: Obj, rt: PodRuntime, views: list[ContainerView]) -> None:
        md = meta(pod)
        for v in views:
            old = rt.counters.get(v.name, (0, 0, 0, 0))
            new = (v.starts, v.backoffs, v.pull_attempts, v.pull_backoffs)
            if new == old:
                continue
            rt.counters[v.name] = (
                max(old[0], new[0]),
                max(old[1], new[1]),
                max(old[2], new[2]),
                max(old[3], new[3]),
            )
            fp = f"spec.containers{{{v.name}}}"

            def emit(etype: str, reason: str, message: str, n: int, fp: str = fp) -> None:
                self.record(
                    pod, etype, reason, message, "kubelet", field_path=fp, host=rt.node, count=n
                )

            pulls = new[2] - old[2]
            if pulls > 0:
                message = v.extra.get("pull_message") or (
                    f"rpc error: code = NotFound desc = failed to pull and unpack image "
                    f'"{v.image}": not found'
                )
                emit("Normal", "Pulling", f'Pulling image "{v.image}"', pulls)
                emit("Warning", "Failed", f'Failed to pull image "{v.image}": {message}', pulls)
                emit("Warning", "Failed", "Error: ErrImagePull", pulls)
            pull_backoffs = new[3] - old[3]
            if pull_backoffs > 0:
                emit("Normal", "BackOff", f'Back-off pulling image "{v.image}"', pull_backoffs)
                emit("Warning", "Failed", "Error: ImagePullBackOff", pull_backoffs)
            starts = new[0] - old[0]
            if starts > 0:
                emit(
                    "Normal",
                    "Pulled",
                    f'Container image "{v.image}" already present on machine',
                    starts,
                )
                emit("Normal", "Created", f"Created container: {v.name}", starts)
                emit("Normal", "Started", f"Started container {v.name}", starts)
            backoffs = new[1] - old[1]
            if backoffs > 0:
                ref = f"{md.get('name')}_{md.get('namespace')}({md.get('uid')})"
                emit(
                    "Warning",
                    "BackOff",
                    f"Back-off restarting failed container {v.name} in pod {ref}",
                    backoffs,
                )

    def pod_available(self, pod: Obj, min_ready: int, owner: Obj | None = None) -> bool:
        if not pod_ready(pod):
            return False
        if min_ready <= 0:
            return True
        rt = self.pods.get(meta(pod).get("uid", ""))
        since = rt.ready_since if rt is not None and rt.ready_since is not None else self.t
        if self.t - since >= min_ready:
            return True
        if owner is not None:
            self.wake_at(since + min_ready, "sync", key_of(owner))
        return False

    def create_pod(
        self,
        owner: Obj,
        template: Obj,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        spec_extra: dict[str, Any] | None = None,
        generated: bool = True,
    ) -> Obj:
        tmeta = template.get("metadata") or {}
        md: dict[str, Any] = {
            "name": name,
            "generateName": f"{meta(owner)['name']}-",
            "namespace": meta(owner).get("namespace"),
            "uid": self.new_uid(),
            "creationTimestamp": ts(self.t),
            "labels": {**(tmeta.get("labels") or {}), **(labels or {})},
            "ownerReferences": [owner_ref(owner)],
        }
        if not generated:
            del md["generateName"]
        if tmeta.get("annotations"):
            md["annotations"] = dict(tmeta["annotations"])
        if not md["labels"]:
            del md["labels"]
        pod: Obj = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": md,
            "spec": {**clone(template.get("spec") or {}), **(spec_extra or {})},
            "status": {"phase": "Pending", "qosClass": qos_class(template.get("spec") or {})},
        }
        default_object("Pod", pod)
        stored = self.save(pod)
        return self.bind_pod(stored)

    # ------------------------------------------------------------------ replicaset
    def _active_pods(self, owner: Obj) -> list[Obj]:
        uid = meta(owner)["uid"]
        return [
            p
            for p in self.store.children(uid, "Pod")
            if is_controlled_by(p, uid) and not pod_terminal(p)
        ]

    def sync_replicaset(self, rs: Obj) -> None:
        spec = rs.get("spec") or {}
        name = meta(rs)["name"]
        want = int(spec.get("replicas") or 0)
        pods = self._active_pods(rs)
        template = spec.get("template") or {}
        if len(pods) < want:
            for _ in range(want - len(pods)):
                pod_name = self._free_name("Pod", meta(rs).get("namespace", ""), f"{name}-")
                self.create_pod(rs, template, pod_name)
                self.record(
                    rs,
                    "Normal",
                    "SuccessfulCreate",
                    f"Created pod: {pod_name}",
                    "replicaset-controller",
                )
        elif len(pods) > want:
            for pod in sorted(pods, key=self._deletion_rank)[: len(pods) - want]:
                self.delete_pod(pod)
                self.record(
                    rs,
                    "Normal",
                    "SuccessfulDelete",
                    f"Deleted pod: {meta(pod)['name']}",
                    "replicaset-controller",
                )
        rs = self.store.get(*key_of(rs)) or rs
        pods = self._active_pods(rs)
        selector = from_label_selector(
            template.get("metadata", {}).get("labels")
            and {"matchLabels": (template.get("metadata") or {}).get("labels")}
        )
        min_ready = int(spec.get("minReadySeconds") or 0)
        status = _omit_zero(
            {
                "replicas": len(pods),
                "fullyLabeledReplicas": sum(
                    1 for p in pods if matches(selector, meta(p).get("labels"))
                ),
                "readyReplicas": sum(1 for p in pods if pod_ready(p)),
                "availableReplicas": sum(1 for p in pods if self.pod_available(p, min_ready, rs)),
                "observedGeneration": meta(rs).get("generation", 1),
            },
            keep=("replicas",),
        )
        if status != rs.get("status"):
            self.save({**rs, "metadata": dict(rs["metadata"]), "status": status})

    def _deletion_rank(self, pod: Obj) -> tuple[Any, ...]:
        phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(pod_phase(pod), 0)
        restarts = sum(
            int(cs.get("restartCount") or 0)
            for cs in (pod.get("status") or {}).get("containerStatuses") or []
        )
        rt = self.pods.get(meta(pod).get("uid", ""))
        start = rt.start if rt is not None else 0.0
        return (
            0 if (pod.get("spec") or {}).get("nodeName") else -1,
            phase_rank,
            pod_ready(pod),
            -restarts,
            -start,
            meta(pod)["name"],
        )

    def _free_name(self, kind: str, namespace: str, prefix: str) -> str:
        while True:
            name = f"{prefix}{self.suffix()}"
            if self.store.get(kind, namespace, name) is None:
                return name

    # ------------------------------------------------------------------ deployment
    def _owned_rss(self, d: Obj) -> list[Obj]:
        uid = meta(d)["uid"]
        rss = [rs for rs in self.store.children(uid, "ReplicaSet") if is_controlled_by(rs, uid)]
        return sorted(rss, key=lambda r: (meta(r).get("creationTimestamp", ""), meta(r)["name"]))

    def sync_deployment(self, d: Obj) -> None:
        d = clone(d)
        md, spec = d["metadata"], d.get("spec") or {}
        status_before = d.get("status") or {}
        conds: list[dict[str, Any]] = clone(status_before.get("conditions") or [])
        pds = spec.get("progressDeadlineSeconds")
        has_deadline = pds is not None and pds != 2**31 - 1
        paused = bool(spec.get("paused"))
        template = spec.get("template") or {}
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        replicas = int(spec.get("replicas") or 0)
        surge, _ = deployment_fenceposts(d)

        # checkPausedConditions
        cur = get_condition(conds, "Progressing")
        if has_deadline and not (
            cur is not None and cur.get("reason") == "ProgressDeadlineExceeded"
        ):
            paused_cond = cur is not None and cur.get("reason") == "DeploymentPaused"
            if paused and not paused_cond:
                conds = set_dcondition(
                    conds,
                    dcondition(
                        "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", self.t
                    ),
                )
            elif not paused and paused_cond:
                conds = set_dcondition(
                    conds,
                    dcondition(
                        "Progressing",
                        "Unknown",
                        "DeploymentResumed",
                        "Deployment is resumed",
                        self.t,
                    ),
                )

        rss = self._owned_rss(d)
        new_rs = next(
            (
                rs
                for rs in rss
                if templates_equal((rs.get("spec") or {}).get("template") or {}, template)
            ),
            None,
        )
        old_rss = [rs for rs in rss if rs is not new_rs]
        max_old = max((revision(rs) for rs in old_rss), default=0)

        if new_rs is not None:
            new_rs = self._sync_rs_annotations(d, new_rs, max_old, surge)
            if has_deadline and get_condition(conds, "Progressing") is None:
                conds = set_dcondition(
                    conds,
                    dcondition(
                        "Progressing",
                        "True",
                        "FoundNewReplicaSet",
                        f'Found new replica set "{meta(new_rs)["name"]}"',
                        self.t,
                    ),
                )
        elif not paused:
            old_pods = sum(len(self._active_pods(rs)) for rs in old_rss)
            if not recreate or (
                old_pods == 0
                and all(int((rs.get("spec") or {}).get("replicas") or 0) == 0 for rs in old_rss)
            ):
                new_rs = self._create_rs(d, template, max_old + 1, replicas, surge)
                if has_deadline:
                    conds = set_dcondition(
                        conds,
                        dcondition(
                            "Progressing",
                            "True",
                            "NewReplicaSetCreated",
                            f'Created new replica set "{meta(new_rs)["name"]}"',
                            self.t,
                        ),
                    )

        if new_rs is not None:
            annotations = md.setdefault("annotations", {})
            annotations[REVISION] = str(revision(new_rs))
            if not annotations:
                md.pop("annotations", None)

        # scaling
        if paused:
            active = [
                rs
                for rs in old_rss + ([new_rs] if new_rs else [])
                if int((rs.get("spec") or {}).get("replicas") or 0) > 0
            ]
            target = new_rs
            if target is None:
                candidates = active or old_rss
                target = max(candidates, key=revision) if candidates else None
            if target is not None and len([a for a in active if a is not target]) == 0:
                self._scale_rs(d, target, replicas, surge)
        elif recreate:
            for rs in old_rss:
                if int((rs.get("spec") or {}).get("replicas") or 0) > 0:
                    self._scale_rs(d, rs, 0, surge)
            if new_rs is not None:
                old_pods = sum(len(self._active_pods(rs)) for rs in old_rss)
                if old_pods == 0:
                    new_rs = self._scale_rs(d, new_rs, replicas, surge)
        elif new_rs is not None:
            new_rs = self._scale_rs(d, new_rs, replicas, surge)
            rs_status = new_rs.get("status") or {}
            synced = rs_status.get("observedGeneration", 0) >= meta(new_rs).get("generation", 1)
            if (
                synced
                and int(rs_status.get("availableReplicas") or 0) >= replicas
                and int(rs_status.get("replicas") or 0) == replicas
            ):
                for rs in old_rss:
                    if int((rs.get("spec") or {}).get("replicas") or 0) > 0:
                        self._scale_rs(d, rs, 0, surge)

        # status
        rss = self._owned_rss(d)
        new_rs = next(
            (rs for rs in rss if new_rs is not None and meta(rs)["uid"] == meta(new_rs)["uid"]),
            None,
        )
        status = self._deployment_status(d, rss, new_rs, conds)
        if not paused:
            status = self._rollout_status(d, status_before, status, new_rs, has_deadline)
            if self._complete(d, status):
                self._cleanup(d, [rs for rs in rss if rs is not new_rs])
        else:
            self._cleanup(d, [rs for rs in rss if rs is not new_rs])
        d["status"] = status
        stored = self.store.get(*key_of(d))
        if stored is not None and (
            stored.get("status") != status
            or meta(stored).get("annotations") != md.get("annotations")
        ):
            self.save(d)
        self._schedule_deadline(d, status, has_deadline)

    def _complete(self, d: Obj, status: dict[str, Any]) -> bool:
        replicas = int((d.get("spec") or {}).get("replicas") or 0)
        return (
            int(status.get("updatedReplicas") or 0) == replicas
            and int(status.get("replicas") or 0) == replicas
            and int(status.get("availableReplicas") or 0) == replicas
            and int(status.get("observedGeneration") or 0) >= int(meta(d).get("generation") or 0)
        )

    def _deployment_status(
        self, d: Obj, rss: list[Obj], new_rs: Obj | None, conds: list[dict[str, Any]]
    ) -> dict[str, Any]:
        def st(rs: Obj, field_name: str) -> int:
            return int((rs.get("status") or {}).get(field_name) or 0)

        replicas = sum(st(rs, "replicas") for rs in rss)
        available = sum(st(rs, "availableReplicas") for rs in rss)
        total_spec = sum(int((rs.get("spec") or {}).get("replicas") or 0) for rs in rss)
        spec_replicas = int((d.get("spec") or {}).get("replicas") or 0)
        _, max_unavailable = deployment_fenceposts(d)
        if available >= spec_replicas - max_unavailable:
            conds = set_dcondition(
                conds,
                dcondition(
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                    self.t,
                ),
            )
        else:
            conds = set_dcondition(
                conds,
                dcondition(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                    self.t,
                ),
            )
        status = _omit_zero(
            {
                "observedGeneration": meta(d).get("generation", 1),
                "replicas": replicas,
                "updatedReplicas": st(new_rs, "replicas") if new_rs is not None else 0,
                "readyReplicas": sum(st(rs, "readyReplicas") for rs in rss),
                "availableReplicas": available,
                "unavailableReplicas": max(total_spec - available, 0),
            }
        )
        status["conditions"] = conds
        return status

    def _rollout_status(
        self,
        d: Obj,
        before: dict[str, Any],
        status: dict[str, Any],
        new_rs: Obj | None,
        has_deadline: bool,
    ) -> dict[str, Any]:
        conds = status["conditions"]
        current = get_condition(conds, "Progressing")
        complete_already = (
            status.get("replicas", 0) == status.get("updatedReplicas", 0)
            and current is not None
            and current.get("reason") == "NewReplicaSetAvailable"
        )
        if not has_deadline or complete_already:
            return status
        name = meta(new_rs)["name"] if new_rs is not None else None
        what = f'ReplicaSet "{name}"' if name else f'Deployment "{meta(d)["name"]}"'

        def g(s: dict[str, Any], k: str) -> int:
            return int(s.get(k) or 0)

        progressing = (
            g(status, "updatedReplicas") > g(before, "updatedReplicas")
            or g(status, "replicas") - g(status, "updatedReplicas")
            < g(before, "replicas") - g(before, "updatedReplicas")
            or g(status, "readyReplicas") > g(before, "readyReplicas")
            or g(status, "availableReplicas") > g(before, "availableReplicas")
        )
        if self._complete(d, status):
            conds = set_dcondition(
                conds,
                dcondition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f"{what} has successfully progressed.",
                    self.t,
                ),
            )
        elif progressing:
            cond = dcondition(
                "Progressing", "True", "ReplicaSetUpdated", f"{what} is progressing.", self.t
            )
            if current is not None and current.get("status") == "True":
                cond["lastTransitionTime"] = current.get("lastTransitionTime")
            conds = [c for c in conds if c.get("type") != "Progressing"] + [cond]
        elif self._timed_out(d, current):
            conds = set_dcondition(
                conds,
                dcondition(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f"{what} has timed out progressing.",
                    self.t,
                ),
            )
        return {**status, "conditions": conds}

    def _timed_out(self, d: Obj, cond: dict[str, Any] | None) -> bool:
        if cond is None or cond.get("reason") == "NewReplicaSetAvailable":
            return False
        if cond.get("reason") == "ProgressDeadlineExceeded":
            return True
        pds = int((d.get("spec") or {}).get("progressDeadlineSeconds") or 0)
        since = parse_ts(str(cond.get("lastUpdateTime")))
        return since + pds < self.t

    def _schedule_deadline(self, d: Obj, status: dict[str, Any], has_deadline: bool) -> None:
        if not has_deadline or (d.get("spec") or {}).get("paused"):
            return
        cond = get_condition(status.get("conditions") or [], "Progressing")
        if cond is None or cond.get("reason") in (
            "NewReplicaSetAvailable",
            "ProgressDeadlineExceeded",
        ):
            return
        pds = int((d.get("spec") or {}).get("progressDeadlineSeconds") or 0)
        when = parse_ts(str(cond.get("lastUpdateTime"))) + pds + 0.001
        self.wake_at(max(when, self.t), "sync", key_of(d))

    def _rs_annotations(
        self, d: Obj, base: dict[str, str], replicas: int, surge: int
    ) -> dict[str, str]:
        out = dict(base)
        for k, v in (meta(d).get("annotations") or {}).items():
            if k not in SKIP_COPY:
                out[k] = v
        out[DESIRED_REPLICAS] = str(replicas)
        out[MAX_REPLICAS] = str(replicas + surge)
        return out

    def _sync_rs_annotations(self, d: Obj, rs: Obj, max_old: int, surge: int) -> Obj:
        replicas = int((d.get("spec") or {}).get("replicas") or 0)
        annotations = self._rs_annotations(d, meta(rs).get("annotations") or {}, replicas, surge)
        current = revision(rs)
        if current <= max_old:
            if current > 0:
                history = annotations.get(REVISION_HISTORY)
                annotations[REVISION_HISTORY] = f"{history},{current}" if history else str(current)
            annotations[REVISION] = str(max_old + 1)
        if annotations == (meta(rs).get("annotations") or {}):
            return rs
        updated = {**rs, "metadata": {**rs["metadata"], "annotations": annotations}}
        return self.save(updated, requeue=True)

    def _create_rs(self, d: Obj, template: Obj, rev: int, replicas: int, surge: int) -> Obj:
        md = meta(d)
        ns = md.get("namespace", "")
        collision = 0
        while True:
            seed = template if collision == 0 else {**template, "__collision": collision}
            pod_hash = template_hash(seed)
            name = f"{md['name']}-{pod_hash}"
            if self.store.get("ReplicaSet", ns, name) is None:
                break
            collision += 1
        t_meta = clone(template.get("metadata") or {})
        t_meta["labels"] = {**(t_meta.get("labels") or {}), "pod-template-hash": pod_hash}
        selector = clone((d.get("spec") or {}).get("selector") or {})
        selector["matchLabels"] = {
            **(selector.get("matchLabels") or {}),
            "pod-template-hash": pod_hash,
        }
        spec: dict[str, Any] = {
            "replicas": replicas,
            "selector": selector,
            "template": {**clone(template), "metadata": t_meta},
        }
        min_ready = (d.get("spec") or {}).get("minReadySeconds")
        if min_ready:
            spec["minReadySeconds"] = min_ready
        rs: Obj = {
            "kind": "ReplicaSet",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": self.new_uid(),
                "generation": 1,
                "creationTimestamp": ts(self.t),
                "labels": dict(t_meta["labels"]),
                "annotations": {**self._rs_annotations(d, {}, replicas, surge), REVISION: str(rev)},
                "ownerReferences": [owner_ref(d)],
            },
            "spec": spec,
            "status": {"replicas": 0},
        }
        stored = self.save(rs, requeue=True)
        if replicas > 0:
            self.record(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled up replica set {name} to {replicas}",
                "deployment-controller",
            )
        return stored

    def _scale_rs(self, d: Obj, rs: Obj, replicas: int, surge: int) -> Obj:
        current = int((rs.get("spec") or {}).get("replicas") or 0)
        annotations = dict(meta(rs).get("annotations") or {})
        d_replicas = int((d.get("spec") or {}).get("replicas") or 0)
        annotations[DESIRED_REPLICAS] = str(d_replicas)
        annotations[MAX_REPLICAS] = str(d_replicas + surge)
        if current == replicas and annotations == (meta(rs).get("annotations") or {}):
            return rs
        md = {**rs["metadata"], "annotations": annotations}
        if current != replicas:
            md["generation"] = int(md.get("generation") or 1) + 1
        updated = {**rs, "metadata": md, "spec": {**rs["spec"], "replicas": replicas}}
        stored = self.save(updated, requeue=True)
        if current != replicas:
            direction = "up" if replicas > current else "down"
            self.record(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {direction} replica set {meta(rs)['name']} to {replicas} from {current}",
                "deployment-controller",
            )
        return stored

    def _cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        diff = len(old_rss) - int(limit)
        if diff <= 0:
            return
        for rs in sorted(old_rss, key=revision)[:diff]:
            status = rs.get("status") or {}
            if (
                int(status.get("replicas") or 0) != 0
                or int((rs.get("spec") or {}).get("replicas") or 0) != 0
            ):
                continue
            if int(status.get("observedGeneration") or 0) < int(meta(rs).get("generation") or 0):
                continue
            self.delete_tree(rs, "Background")

    # ------------------------------------------------------------------ statefulset
    def sync_statefulset(self, s: Obj) -> None:
        md, spec = meta(s), s.get("spec") or {}
        name, uid = md["name"], md["uid"]
        template = spec.get("template") or {}
        update_rev = f"{name}-{template_hash(template)}"
        status_before = s.get("status") or {}
        current_rev = status_before.get("currentRevision") or update_rev
        replicas = int(spec.get("replicas") or 0)
        ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        min_ready = int(spec.get("minReadySeconds") or 0)

        def owned() -> dict[int, Obj]:
            out: dict[int, Obj] = {}
            for p in self.store.children(uid, "Pod"):
                pname = meta(p)["name"]
                suffix = pname[len(name) + 1 :]
                if is_controlled_by(p, uid) and pname.startswith(f"{name}-") and suffix.isdigit():
                    out[int(suffix)] = p
            return out

        pods = owned()
        for ordinal, existing in sorted(pods.items()):
            if pod_terminal(existing) or ordinal >= replicas:
                self.delete_pod(existing)
                self.record(
                    s,
                    "Normal",
                    "SuccessfulDelete",
                    f"delete Pod {meta(existing)['name']} in StatefulSet {name} successful",
                    "statefulset-controller",
                )
        pods = owned()
        blocked = False
        for ordinal in range(replicas):
            pod = pods.get(ordinal)
            if pod is None:
                pod_name = f"{name}-{ordinal}"
                extra: dict[str, Any] = {"hostname": pod_name}
                if spec.get("serviceName"):
                    extra["subdomain"] = spec["serviceName"]
                pods[ordinal] = self.create_pod(
                    s,
                    template,
                    pod_name,
                    labels={
                        "controller-revision-hash": update_rev,
                        "statefulset.kubernetes.io/pod-name": pod_name,
                        "apps.kubernetes.io/pod-index": str(ordinal),
                    },
                    spec_extra=extra,
                    generated=False,
                )
                self.record(
                    s,
                    "Normal",
                    "SuccessfulCreate",
                    f"create Pod {pod_name} in StatefulSet {name} successful",
                    "statefulset-controller",
                )
                if ordered:
                    blocked = True
                    break
                continue
            if ordered and not (pod_phase(pod) == "Running" and pod_ready(pod)):
                blocked = True
                break
        strategy = spec.get("updateStrategy") or {}
        if not blocked and strategy.get("type", "RollingUpdate") == "RollingUpdate":
            partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
            for ordinal in range(replicas - 1, partition - 1, -1):
                pod = pods.get(ordinal)
                if pod is None:
                    break
                if (meta(pod).get("labels") or {}).get("controller-revision-hash") != update_rev:
                    self.delete_pod(pod)
                    self.record(
                        s,
                        "Normal",
                        "SuccessfulDelete",
                        f"delete Pod {meta(pod)['name']} in StatefulSet {name} successful",
                        "statefulset-controller",
                    )
                    break
                if not self.pod_available(pod, min_ready, s):
                    break
        pods = {o: p for o, p in owned().items() if not pod_terminal(p)}

        def rev(p: Obj) -> str | None:
            return (meta(p).get("labels") or {}).get("controller-revision-hash")

        ready = sum(1 for p in pods.values() if pod_ready(p))
        updated = sum(1 for p in pods.values() if rev(p) == update_rev)
        if updated == len(pods) == replicas and ready == replicas:
            current_rev = update_rev
        status = _omit_zero(
            {
                "observedGeneration": md.get("generation", 1),
                "replicas": len(pods),
                "readyReplicas": ready,
                "currentReplicas": sum(1 for p in pods.values() if rev(p) == current_rev),
                "updatedReplicas": updated,
                "currentRevision": current_rev,
                "updateRevision": update_rev,
                "collisionCount": 0,
                "availableReplicas": sum(
                    1 for p in pods.values() if self.pod_available(p, min_ready, s)
                ),
            },
            keep=("replicas", "availableReplicas", "collisionCount"),
        )
        s = self.store.get(*key_of(s)) or s
        if status != s.get("status"):
            self.save({**s, "metadata": dict(s["metadata"]), "status": status})

    # ------------------------------------------------------------------ daemonset
    def _node_eligible(self, node: str, pod_spec: dict[str, Any]) -> bool:
        labels = {
            "kubernetes.io/hostname": node,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        }
        selector = pod_spec.get("nodeSelector") or {}
        return all(labels.get(k) == v for k, v in selector.items())

    def sync_daemonset(self, ds: Obj) -> None:
        md, spec = meta(ds), ds.get("spec") or {}
        name, uid = md["name"], md["uid"]
        template = spec.get("template") or {}
        pod_hash = template_hash(template)
        min_ready = int(spec.get("minReadySeconds") or 0)
        nodes = [n for n in self.node_names if self._node_eligible(n, template.get("spec") or {})]
        strategy = spec.get("updateStrategy") or {}
        max_unavailable = (
            resolve_int_or_percent(
                (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1),
                len(nodes),
                round_up=True,
            )
            or 1
        )

        def by_node() -> dict[str, list[Obj]]:
            out: dict[str, list[Obj]] = {}
            for p in self.store.children(uid, "Pod"):
                if is_controlled_by(p, uid):
                    out.setdefault(str((p.get("spec") or {}).get("nodeName")), []).append(p)
            return out

        def h(p: Obj) -> str | None:
            return (meta(p).get("labels") or {}).get("controller-revision-hash")

        pods = by_node()
        for node, on_node in pods.items():
            for i, p in enumerate(on_node):
                if pod_terminal(p) or node not in nodes or i > 0:
                    self.delete_pod(p)
                    self.record(
                        ds,
                        "Normal",
                        "SuccessfulDelete",
                        f"Deleted pod: {meta(p)['name']}",
                        "daemonset-controller",
                    )
        pods = by_node()
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            unavailable = sum(
                1
                for n in nodes
                if not pods.get(n) or not self.pod_available(pods[n][0], min_ready, ds)
            )
            for n in nodes:
                plist = pods.get(n)
                if not plist or h(plist[0]) == pod_hash:
                    continue
                if not self.pod_available(plist[0], min_ready, ds):
                    self.delete_pod(plist[0])
                elif unavailable < max_unavailable:
                    self.delete_pod(plist[0])
                    unavailable += 1
                else:
                    continue
                self.record(
                    ds,
                    "Normal",
                    "SuccessfulDelete",
                    f"Deleted pod: {meta(plist[0])['name']}",
                    "daemonset-controller",
                )
        pods = by_node()
        for n in nodes:
            if pods.get(n):
                continue
            pod_name = self._free_name("Pod", md.get("namespace", ""), f"{name}-")
            tolerations = list((template.get("spec") or {}).get("tolerations") or [])
            for key, effect in (
                ("node.kubernetes.io/not-ready", "NoExecute"),
                ("node.kubernetes.io/unreachable", "NoExecute"),
                ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                ("node.kubernetes.io/pid-pressure", "NoSchedule"),
                ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ):
                if not any(t.get("key") == key for t in tolerations):
                    tolerations.append({"key": key, "operator": "Exists", "effect": effect})
            affinity = {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchFields": [
                                    {"key": "metadata.name", "operator": "In", "values": [n]}
                                ]
                            }
                        ]
                    }
                }
            }
            self.create_pod(
                ds,
                template,
                pod_name,
                labels={
                    "controller-revision-hash": pod_hash,
                    "pod-template-generation": str(md.get("generation", 1)),
                },
                spec_extra={"nodeName": n, "tolerations": tolerations, "affinity": affinity},
            )
            self.record(
                ds, "Normal", "SuccessfulCreate", f"Created pod: {pod_name}", "daemonset-controller"
            )
        pods = by_node()
        scheduled = [pods[n][0] for n in nodes if pods.get(n)]
        available = sum(1 for p in scheduled if self.pod_available(p, min_ready, ds))
        status = _omit_zero(
            {
                "currentNumberScheduled": len(scheduled),
                "numberMisscheduled": 0,
                "desiredNumberScheduled": len(nodes),
                "numberReady": sum(1 for p in scheduled if pod_ready(p)),
                "observedGeneration": md.get("generation", 1),
                "updatedNumberScheduled": sum(1 for p in scheduled if h(p) == pod_hash),
                "numberAvailable": available,
                "numberUnavailable": len(nodes) - available,
            },
            keep=(
                "currentNumberScheduled",
                "numberMisscheduled",
                "desiredNumberScheduled",
                "numberReady",
            ),
        )
        ds = self.store.get(*key_of(ds)) or ds
        if status != ds.get("status"):
            self.save({**ds, "metadata": dict(ds["metadata"]), "status": status})

    # ------------------------------------------------------------------ job
    def sync_job(self, job: Obj) -> None:
        md, spec = meta(job), job.get("spec") or {}
        uid = md["uid"]
        status: dict[str, Any] = clone(job.get("status") or {})
        conds: list[dict[str, Any]] = status.get("conditions") or []
        if any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conds
        ):
            return
        track = self.jobs.setdefault(uid, JobTrack())
        suspended = bool(spec.get("suspend"))
        if "startTime" not in status and not suspended:
            status["startTime"] = ts(self.t)
        pods = [p for p in self.store.children(uid, "Pod") if is_controlled_by(p, uid)]
        for p in pods:
            puid = meta(p)["uid"]
            if puid in track.counted:
                continue
            if pod_phase(p) == "Succeeded":
                track.counted.add(puid)
                track.succeeded += 1
            elif pod_phase(p) == "Failed":
                track.counted.add(puid)
                track.failed += 1
                track.last_failure = self.t
        active = [p for p in pods if not pod_terminal(p)]
        template = spec.get("template") or {}
        policy = (template.get("spec") or {}).get("restartPolicy", "Never")
        raw_limit, raw_parallelism = spec.get("backoffLimit"), spec.get("parallelism")
        backoff_limit = int(raw_limit) if raw_limit is not None else 6
        completions = int(spec.get("completions") or 1)
        parallelism = int(raw_parallelism) if raw_parallelism is not None else 1
        now = ts(self.t)

        def job_cond(ctype: str, reason: str, message: str) -> dict[str, Any]:
            return {
                "type": ctype,
                "status": "True",
                "lastProbeTime": now,
                "lastTransitionTime": now,
                "reason": reason,
                "message": message,
            }

        exceeded = track.failed > backoff_limit
        if policy == "OnFailure":
            restarts = sum(
                int(cs.get("restartCount") or 0)
                for p in active
                for cs in (p.get("status") or {}).get("containerStatuses") or []
            )
            exceeded = exceeded or (
                restarts > 0 if backoff_limit == 0 else restarts >= backoff_limit
            )
        deadline = spec.get("activeDeadlineSeconds")
        started = parse_ts(status["startTime"]) if status.get("startTime") else self.t
        overdue = deadline is not None and not suspended and self.t >= started + int(deadline)
        if deadline is not None and not overdue and not suspended:
            self.wake_at(started + int(deadline), "sync", key_of(job))
        if exceeded or overdue:
            for p in active:
                self.delete_pod(p)  # counted as failed when it goes
            active = []
            if overdue and not exceeded:
                reason, message = (
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
            else:
                reason, message = (
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )
            conds = [c for c in conds if c.get("type") != "Suspended"]
            conds += [
                job_cond("FailureTarget", reason, message),
                job_cond("Failed", reason, message),
            ]
            self.record(job, "Warning", reason, message, "job-controller")
        elif track.succeeded >= completions:
            for p in active:
                track.counted.add(meta(p)["uid"])
                self.delete_pod(p)
            active = []
            conds += [
                job_cond(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                ),
                job_cond(
                    "Complete", "CompletionsReached", "Reached expected number of succeeded pods"
                ),
            ]
            status["completionTime"] = now
            self.record(job, "Normal", "Completed", "Job completed", "job-controller")
        elif suspended:
            for p in active:
                track.counted.add(meta(p)["uid"])
                self.delete_pod(p)
            active = []
            current = get_condition(conds, "Suspended")
            if current is None or current.get("status") != "True":
                conds = [c for c in conds if c.get("type") != "Suspended"]
                conds.append(job_cond("Suspended", "JobSuspended", "Job suspended"))
                self.record(job, "Normal", "Suspended", "Job suspended", "job-controller")
        else:
            current = get_condition(conds, "Suspended")
            if current is not None and current.get("status") == "True":
                resumed = {**job_cond("Suspended", "JobResumed", "Job resumed"), "status": "False"}
                conds = [resumed if c.get("type") == "Suspended" else c for c in conds]
                self.record(job, "Normal", "Resumed", "Job resumed", "job-controller")
            want = min(parallelism, completions - track.succeeded) - len(active)
            if want > 0 and track.failed > 0 and track.last_failure is not None:
                delay = min(
                    self.backoff * 2 ** min(track.failed - 1, 30),
                    self.backoff * JOB_MAX_BACKOFF_FACTOR,
                )
                ready_at = track.last_failure + delay
                if self.t < ready_at:
                    self.wake_at(ready_at, "sync", key_of(job))
                    want = 0
            for _ in range(max(0, want)):
                pod_name = self._free_name("Pod", md.get("namespace", ""), f"{md['name']}-")
                active.append(self.create_pod(job, template, pod_name))
                self.record(
                    job, "Normal", "SuccessfulCreate", f"Created pod: {pod_name}", "job-controller"
                )
            active = [self.store.get(*key_of(p)) or p for p in active]
        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if pod_ready(p))
        status["succeeded"] = track.succeeded
        status["failed"] = track.failed
        status["terminating"] = 0
        status["uncountedTerminatedPods"] = {}
        if conds:
            status["conditions"] = conds
        else:
            status.pop("conditions", None)
        status = _omit_zero(status, keep=("ready", "terminating"))
        job = self.store.get(*key_of(job)) or job
        if status != job.get("status"):
            self.save({**job, "metadata": dict(job["metadata"]), "status": status})


def qos_class(spec: dict[str, Any]) -> str:
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    requests_any = False
    guaranteed = bool(containers)
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            requests_any = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
    if guaranteed and requests_any:
        return "Guaranteed"
    return "Burstable" if requests_any else "BestEffort"
