"""The resource registry (kinds, plurals, groups, verbs) and small shared helpers: RFC 3339
timestamps, deterministic names and hashes, JSON-speed deep copies."""

from __future__ import annotations

import calendar
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

KUBE_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.1",
    "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
    "gitTreeState": "clean",
    "buildDate": "2025-05-15T08:19:08Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    kind: str
    plural: str
    singular: str
    group: str = ""
    version: str = "v1"
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``deployments.apps`` / ``pods`` — how errors name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``Deployment.apps`` / ``Pod`` — how validation errors name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


RESOURCES: tuple[Resource, ...] = (
    Resource(
        "Namespace",
        "namespaces",
        "namespace",
        namespaced=False,
        short_names=("ns",),
        subresources=("status",),
    ),
    Resource(
        "Node", "nodes", "node", namespaced=False, short_names=("no",), subresources=("status",)
    ),
    Resource("Pod", "pods", "pod", short_names=("po",), subresources=("status", "log", "eviction")),
    Resource("Event", "events", "event", short_names=("ev",)),
    Resource("ConfigMap", "configmaps", "configmap", short_names=("cm",)),
    Resource(
        "Deployment",
        "deployments",
        "deployment",
        "apps",
        short_names=("deploy",),
        subresources=("status", "scale"),
    ),
    Resource(
        "ReplicaSet",
        "replicasets",
        "replicaset",
        "apps",
        short_names=("rs",),
        subresources=("status", "scale"),
    ),
    Resource(
        "StatefulSet",
        "statefulsets",
        "statefulset",
        "apps",
        short_names=("sts",),
        subresources=("status", "scale"),
    ),
    Resource(
        "DaemonSet",
        "daemonsets",
        "daemonset",
        "apps",
        short_names=("ds",),
        subresources=("status",),
    ),
    Resource("Job", "jobs", "job", "batch", subresources=("status",)),
    Resource(
        "CronJob", "cronjobs", "cronjob", "batch", short_names=("cj",), subresources=("status",)
    ),
    Resource("Lease", "leases", "lease", "coordination.k8s.io"),
)

BY_KIND: dict[str, Resource] = {r.kind: r for r in RESOURCES}
BY_PATH: dict[tuple[str, str, str], Resource] = {
    (r.group, r.version, r.plural): r for r in RESOURCES
}
GROUPS: dict[str, str] = {r.group: r.version for r in RESOURCES if r.group}

WORKLOAD_KINDS = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"})
# kinds whose main endpoint ignores status writes (they have a status subresource)
STATUS_KINDS = frozenset(r.kind for r in RESOURCES if "status" in r.subresources)
# kinds whose spec changes bump metadata.generation
GENERATION_KINDS = frozenset(
    {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob"}
)


def resource_for_kind(kind: str) -> Resource:
    try:
        return BY_KIND[kind]
    except KeyError:
        lowered = {k.lower(): r for k, r in BY_KIND.items()}
        for r in RESOURCES:
            lowered.setdefault(r.plural, r)
        if kind.lower() in lowered:
            return lowered[kind.lower()]
        raise KeyError(f"unknown kind {kind!r}") from None


def discovery_resources(group: str) -> list[dict[str, Any]]:
    """An APIResourceList's ``resources`` for one group (core is "")."""
    out: list[dict[str, Any]] = []
    for r in RESOURCES:
        if r.group != group:
            continue
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(ALL_VERBS),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        out.append(entry)
        for sub in r.subresources:
            sub_entry: dict[str, Any] = {
                "name": f"{r.plural}/{sub}",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "log":
                sub_entry.update(kind="Pod", verbs=["get"])
            elif sub == "eviction":
                sub_entry.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
            out.append(sub_entry)
    return out


# --------------------------------------------------------------------------- time


def ts(t: float) -> str:
    """RFC 3339 UTC with second precision, like metav1.Time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))


def ts_micro(t: float) -> str:
    micros = int(round((t - int(t)) * 1_000_000)) % 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t))) + f".{micros:06d}Z"


def ts_nano(t: float) -> str:
    # float seconds carry ~0.1us of noise at today's epoch: round to the microsecond
    nanos = (int(round((t - int(t)) * 1_000_000)) % 1_000_000) * 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t))) + f".{nanos:09d}Z"


def parse_ts(text: str) -> float:
    """Parse an RFC 3339 timestamp (seconds precision or finer) to epoch seconds."""
    base, _, rest = text.partition(".")
    if not rest:
        base = text.rstrip("Z")
    frac = 0.0
    if rest:
        digits = "".join(ch for ch in rest if ch.isdigit())
        frac = float(f"0.{digits}") if digits else 0.0
    seconds = calendar.timegm(time.strptime(base.rstrip("Z")[:19], "%Y-%m-%dT%H:%M:%S"))
    return seconds + frac


def go_duration(seconds: float) -> str:
    """Format like Go's time.Duration.String(): 10s, 1m20s, 5m0s, 100ms."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        if ms >= 1:
            return f"{ms:g}ms"
        return f"{seconds * 1_000_000:g}µs"
    total = seconds
    hours = int(total // 3600)
    total -= hours * 3600
    minutes = int(total // 60)
    total -= minutes * 60
    secs = f"{round(total, 9):g}s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    if minutes:
        return f"{minutes}m{secs}"
    return secs


# --------------------------------------------------------------------------- names and hashes

SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(data: bytes, length: int) -> str:
    number = int.from_bytes(hashlib.sha256(data).digest(), "big")
    out = []
    for _ in range(length):
        number, idx = divmod(number, len(SAFE_ALPHABET))
        out.append(SAFE_ALPHABET[idx])
    return "".join(out)


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def template_hash(template: dict[str, Any]) -> str:
    """A 10-character hash of a pod template, ignoring its ``pod-template-hash`` label."""
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.pop("pod-template-hash", None)
    labels.pop("controller-revision-hash", None)
    meta = dict(template.get("metadata") or {})
    meta["labels"] = labels
    return safe_encode(canonical({**template, "metadata": meta}), 10)


def det_uid(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def sha_hex(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def clone(value: Any) -> Any:
    """A deep copy of JSON data (faster than copy.deepcopy for dicts and lists)."""
    return json.loads(json.dumps(value))
