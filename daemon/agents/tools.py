"""Read-only evidence tools an LLM agent may call while it investigates an incident.

`LiveTools` answers from the daemon's own clients (Prometheus, Kubernetes, the incident log),
scoped to the incident: Kubernetes tools only read the incident's namespace when it has one.
`RecordedTools` answers from recorded outputs (the eval harness's scenarios). Nothing here can
change anything; the only way an agent acts is the `decide` tool, checked by the agent loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from daemon.clock import Clock
from daemon.errors import PermanentError, TemporaryError
from daemon.incidents import ACTION_ENDS, EventKind, Incident, IncidentStore
from daemon.kube.cluster import KubeClient
from daemon.kube.workloads import (
    RESOURCES,
    current_revision,
    history,
    list_objects,
    meta,
    owned_by,
    pod_view,
    read_object,
    replicasets_of,
    selector_string,
    warning_events,
)
from daemon.redact import DEFAULT as REDACTOR
from daemon.redact import Redactor
from probes.prometheus_source import PrometheusClient

MAX_SERIES = 50
MAX_LOG_LINES = 200
MAX_LOG_BYTES = 64_000  # read at most this much of a log; the agent loop caps it further
MAX_POINTS = 30
MAX_HISTORY = 20


class ToolError(Exception):
    """A tool could not answer (bad arguments, out of scope, or its source failed); the model
    sees the message and may try something else."""


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Any]  # JSON Schema of the arguments object


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_NS = {"type": "string", "description": "Kubernetes namespace"}
_KIND = {
    "type": "string",
    "enum": ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"],
    "description": "Workload kind",
}

SPECS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            name="promql",
            description="Run a PromQL query on the incident's Prometheus. minutes=0 gives the "
            "value now; minutes>0 gives up to 30 points over that many past minutes.",
            parameters=_object(
                {
                    "query": {"type": "string"},
                    "minutes": {"type": "integer", "minimum": 0, "maximum": 1440},
                },
                ["query"],
            ),
        ),
        ToolSpec(
            name="rollout_history",
            description="A Deployment's revisions, newest first: images, change cause, age, "
            "and which one runs now.",
            parameters=_object({"namespace": _NS, "deployment": {"type": "string"}}, []),
        ),
        ToolSpec(
            name="pods",
            description="Pods of a workload: phase, readiness, restarts, container states and "
            "last termination (reason, exit code).",
            parameters=_object({"namespace": _NS, "kind": _KIND, "name": {"type": "string"}}, []),
        ),
        ToolSpec(
            name="events",
            description="Recent Warning events about a workload and its pods, newest first.",
            parameters=_object({"namespace": _NS, "kind": _KIND, "name": {"type": "string"}}, []),
        ),
        ToolSpec(
            name="logs",
            description="The last lines of a pod's container log; previous=true reads the "
            "instance that crashed before the current one.",
            parameters=_object(
                {
                    "namespace": _NS,
                    "pod": {"type": "string"},
                    "container": {"type": "string"},
                    "previous": {"type": "boolean"},
                    "lines": {"type": "integer", "minimum": 1, "maximum": MAX_LOG_LINES},
                },
                ["pod"],
            ),
        ),
        ToolSpec(
            name="incident_history",
            description="Earlier incidents of this same target (same fingerprint): when, how "
            "they ended, which actions ran and what was diagnosed.",
            parameters=_object(
                {"limit": {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY}}, []
            ),
        ),
    )
}


class ToolBox(Protocol):
    async def call(self, name: str, arguments: Mapping[str, Any]) -> Any:
        """The tool's answer as JSON-able data; raises ToolError."""
        ...


@dataclass(frozen=True)
class RecordedTools:
    """Answers recorded in an eval scenario, by tool name, whatever the arguments."""

    outputs: Mapping[str, Any] = field(default_factory=dict)

    async def call(self, name: str, arguments: Mapping[str, Any]) -> Any:
        if name not in self.outputs:
            raise ToolError(f"no data available from {name} for this incident")
        return self.outputs[name]


@dataclass(frozen=True, kw_only=True)
class LiveTools:
    incident: Incident
    store: IncidentStore
    clock: Clock
    prometheus: PrometheusClient | None = None
    kube: KubeClient | None = None
    redactor: Redactor = REDACTOR

    async def call(self, name: str, arguments: Mapping[str, Any]) -> Any:
        handler = getattr(self, f"_{name}", None)
        if name not in SPECS or handler is None:
            raise ToolError(f"no tool named {name!r}")
        unknown = set(arguments) - set(SPECS[name].parameters["properties"])
        if unknown:
            raise ToolError(f"{name} takes no argument {', '.join(sorted(unknown))}")
        try:
            return self.redactor.value(await handler(**arguments))
        except (TypeError, ValueError) as exc:  # a missing argument, or one of the wrong type
            raise ToolError(f"bad arguments for {name}: {exc}") from None
        except (TemporaryError, PermanentError) as exc:
            raise ToolError(f"{name} failed: {exc}") from None

    # --- scope ---------------------------------------------------------------------------

    def _namespace(self, asked: str | None) -> str:
        own = self.incident.labels.get("namespace")
        if asked and own and asked != own:
            raise ToolError(
                f"this incident is in namespace {own!r}; other namespaces are off limits"
            )
        namespace = asked or own
        if not namespace:
            raise ToolError("name the namespace")
        return namespace

    def _workload(self, kind: str | None, name: str | None) -> tuple[str, str]:
        labels = self.incident.labels
        kind = kind or labels.get("kind") or ("Deployment" if labels.get("deployment") else None)
        name = name or labels.get("name") or labels.get("deployment")
        if not kind or not name:
            raise ToolError("name the workload (kind and name)")
        if kind not in RESOURCES:
            raise ToolError(f"unsupported kind {kind!r}")
        return kind, name

    def _cluster(self) -> KubeClient:
        if self.kube is None:
            raise ToolError("no Kubernetes cluster is configured for this playbook")
        return self.kube

    async def _workload_pods(
        self, namespace: str, kind: str, name: str
    ) -> tuple[set[str], list[dict[str, Any]]]:
        """The workload's pods, and the names of the objects between it and them (a
        Deployment's ReplicaSets, a CronJob's Jobs), whose events are about the workload too."""
        kube = self._cluster()
        obj = await read_object(kube, kind, namespace, name)
        selector = (obj.get("spec") or {}).get("selector")
        owners: list[dict[str, Any]] = []
        if kind == "Deployment":
            owners = [rs for rs in await replicasets_of(kube, obj) if owned_by(rs, obj)]
        elif kind == "CronJob":  # a Job's selector is generated: its template has none
            owners = [j for j in await list_objects(kube, "Job", namespace) if owned_by(j, obj)]
            owners.sort(key=lambda j: (meta(j).get("creationTimestamp") or "", meta(j)["name"]))
            selector = (owners[-1].get("spec") or {}).get("selector") if owners else None
        names = {meta(o)["name"] for o in owners}
        if not selector:  # an empty selector would match every pod of the namespace
            return names, []
        pods = await list_objects(kube, "Pod", namespace, selector=selector_string(selector))
        return names, pods

    # --- tools (each named `_<tool>`) ----------------------------------------------------

    async def _promql(self, query: str, minutes: int = 0) -> Any:
        if self.prometheus is None:
            raise ToolError("no Prometheus source is configured for this playbook")
        now = self.clock.now()
        window = min(float(minutes), 1440.0) * 60
        if window <= 0:
            samples = await self.prometheus.instant(query, now)
            return [{"labels": dict(s.labels), "value": s.value} for s in samples[:MAX_SERIES]]
        step = max(15.0, math.ceil(window / (MAX_POINTS - 1)))  # both ends are points
        series = await self.prometheus.range(query, now - window, now, step)
        return [
            {"labels": dict(s.labels), "points": [[round(t), v] for t, v in s.points]}
            for s in series[:MAX_SERIES]
        ]

    async def _rollout_history(
        self, namespace: str | None = None, deployment: str | None = None
    ) -> Any:
        namespace = self._namespace(namespace)
        if not deployment and self.incident.labels.get("kind", "Deployment") != "Deployment":
            raise ToolError("rollout_history reads a Deployment: name the deployment")
        _, name = self._workload("Deployment", deployment)
        kube = self._cluster()
        obj = await read_object(kube, "Deployment", namespace, name)
        revisions = history(obj, await replicasets_of(kube, obj))
        current = current_revision(obj, revisions)
        now = self.clock.now()
        return [r.view(now, current=r is current) for r in revisions[:10]]

    async def _pods(
        self, namespace: str | None = None, kind: str | None = None, name: str | None = None
    ) -> Any:
        namespace = self._namespace(namespace)
        _, pods = await self._workload_pods(namespace, *self._workload(kind, name))
        views = sorted((pod_view(p) for p in pods), key=lambda v: v["ready"])  # failing first
        return views[:20]

    async def _events(
        self, namespace: str | None = None, kind: str | None = None, name: str | None = None
    ) -> Any:
        namespace = self._namespace(namespace)
        kind, name = self._workload(kind, name)
        owners, pods = await self._workload_pods(namespace, kind, name)
        names = {name} | owners | {meta(p)["name"] for p in pods}
        return await warning_events(
            self._cluster(), namespace, names, limit=20, redactor=self.redactor
        )

    async def _logs(
        self,
        pod: str,
        namespace: str | None = None,
        container: str | None = None,
        previous: bool = False,
        lines: int = 50,
    ) -> Any:
        namespace = self._namespace(namespace)
        kwargs: dict[str, Any] = {"container": container} if container else {}
        text = await self._cluster().call(
            "core",
            "read_namespaced_pod_log",
            f"logs of {namespace}/{pod}",
            name=pod,
            namespace=namespace,
            tail_lines=max(1, min(int(lines), MAX_LOG_LINES)),
            limit_bytes=MAX_LOG_BYTES,
            previous=bool(previous),
            **kwargs,
        )
        return {"pod": pod, "lines": self.redactor.text(str(text)).splitlines()}

    async def _incident_history(self, limit: int = 5) -> Any:
        limit = max(1, min(int(limit), MAX_HISTORY))
        found = []
        for past in self.store.incidents(fingerprint=self.incident.fingerprint, limit=limit + 1):
            if past.id == self.incident.id:
                continue
            events = self.store.events(past.id)
            found.append(
                {
                    "id": past.id,
                    "opened_at": past.opened_at,
                    "status": past.status.value,
                    "resolution": past.resolution,
                    "actions": [
                        {"action": e.data.get("action"), "ok": e.data.get("ok")}
                        for e in events
                        if e.kind in ACTION_ENDS and e.data.get("landed", True)
                    ],
                    "diagnoses": [e.message for e in events if e.kind is EventKind.DIAGNOSED][-3:],
                }
            )
        return found[:limit]
