"""The vocabulary of causes, the Cause value object, and what each action kind can help with.

A cause is a normalized fact about an incident (`oom`, `schema_change`, `flapping`, ...) found
in its evidence or history, quoting the line that supports it. Action kinds declare a Remedy:
which causes they can help and which they cannot; the rules never run a catch-all action that a
cause says cannot help."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DETAIL_CHARS = 240

CAUSES: Mapping[str, str] = {
    # Kubernetes: container states, exit codes, events and the rollout
    "bad_image": "the image cannot be pulled (not found, unauthorized, invalid name)",
    "config_error": "missing Secret/ConfigMap/key, or a crash on start with a config error",
    "crashloop": "a container keeps exiting on its own; the kubelet already restarts it",
    "oom": "a container was killed for using too much memory (OOMKilled, exit 137)",
    "no_capacity": "pods cannot be scheduled: insufficient cpu/memory, taints, affinity",
    "quota_exceeded": "a ResourceQuota or LimitRange refuses new pods",
    "volume_error": "a volume cannot be attached or mounted, or its claim is unbound",
    "node_lost": "the node running the pods is NotReady or unreachable",
    "disrupted": "pods were evicted, preempted, or stopped by a node shutdown",
    "fresh_release": "the image changed and the breach began soon after that rollout",
    # log and event patterns (daemon/diagnosis/patterns.py)
    "auth_failed": "credentials were refused or have expired",
    "cert_expired": "a TLS certificate has expired or is not valid yet",
    "disk_full": "no space left on a device",
    "schema_change": "a column, table or type is not what the code expects",
    "data_error": "the input data is invalid (bad values, duplicates, constraint violations)",
    "dependency_down": "a service this target depends on cannot be reached",
    "lock_held": "another writer holds a lock this target needs",
    "rate_limited": "a dependency is throttling this target (429, quota per time)",
    "transient": "a one-off network or infrastructure hiccup that a retry usually clears",
    # pipelines
    "upstream_stale": "the upstream has nothing newer than what was loaded: no data to load yet",
    # history (the incident log)
    "flapping": "this target needed too many actions within a short window",
    "did_not_stick": "the same action healed this target recently and the fault came back",
    "repeated_failure": "the same job failed on consecutive runs, reruns included",
    # canary analysis
    "canary_inconclusive": "the canary analysis had too little data to judge",
    "canary_weak": "the canary failed only per-step limits; the statistical test disagrees",
}

NEEDS_A_HUMAN = frozenset(
    {
        "auth_failed",
        "cert_expired",
        "disk_full",
        "quota_exceeded",
        "no_capacity",
        "volume_error",
        "schema_change",
        "data_error",
        "config_error",
        "bad_image",
        "flapping",
        "did_not_stick",
        "repeated_failure",
        "canary_inconclusive",
        "canary_weak",
    }
)
"""Causes no automatic action fixes: someone has to change a credential, the data, the
config, the cluster or the code."""

SYMPTOMS = frozenset({"crashloop"})
"""Causes that say what happens rather than why: named after the others when both are found."""

WAIT = frozenset({"dependency_down", "lock_held", "rate_limited", "upstream_stale"})
"""Causes outside the target that time may clear: acting on the target cannot."""


@dataclass(frozen=True, kw_only=True)
class Cause:
    cause: str  # a name from CAUSES, or one a config/playbook defines
    source: str  # where it was found: "event Failed Pod/x", "logs pod/container", "history"
    detail: str  # the quoted line, event message or fact
    uses: str | None = None  # only this action kind (did_not_stick: the action that healed)

    def concerns(self, uses: str) -> bool:
        return self.uses is None or self.uses == uses

    def view(self) -> dict[str, Any]:
        view = {"cause": self.cause, "source": self.source, "detail": self.detail}
        if self.uses is not None:
            view["uses"] = self.uses
        return view

    @classmethod
    def of(cls, cause: str, source: str, detail: Any, uses: str | None = None) -> Cause:
        text = " ".join(str(detail).split())
        if len(text) > DETAIL_CHARS:
            text = text[: DETAIL_CHARS - 1] + "…"
        return cls(cause=cause, source=source, detail=text, uses=uses)


def unique(causes: Iterable[Cause]) -> tuple[Cause, ...]:
    """The first cause of each name (per action kind), in order."""
    seen: dict[tuple[str, str | None], Cause] = {}
    for c in causes:
        seen.setdefault((c.cause, c.uses), c)
    return tuple(seen.values())


@dataclass(frozen=True, kw_only=True)
class Remedy:
    """What one action kind can do about causes (declared where the kind registers)."""

    helps: frozenset[str] = frozenset()
    cannot_help: frozenset[str] = frozenset()
    unless: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """cause → causes that lift its veto (rollback: `bad_image` unless `fresh_release`)."""
    requires: frozenset[str] = frozenset()
    """Used as a catch-all (no `when`), the kind runs only when one of these was found."""

    def vetoes(self, causes: Iterable[Cause], uses: str) -> list[Cause]:
        """The causes that say this kind cannot help. A cause a config or playbook defines
        (not in CAUSES) is one no kind can help."""
        found = list(causes)
        names = {c.cause for c in found}
        return [
            c
            for c in found
            if (c.cause in self.cannot_help or c.cause not in CAUSES)
            and c.concerns(uses)
            and not names & self.unless.get(c.cause, frozenset())
        ]

    def missing(self, causes: Iterable[Cause]) -> str | None:
        """Why a catch-all of this kind has nothing to act on, if it requires a cause."""
        if not self.requires or self.requires & {c.cause for c in causes}:
            return None
        return " or ".join(sorted(self.requires))


# The tables of the built-in kinds, named once here and referenced where each kind registers.
ACT_ON_TARGET = Remedy(
    helps=frozenset({"transient", "disrupted", "oom"}),
    cannot_help=NEEDS_A_HUMAN | WAIT | {"crashloop", "node_lost"},
)
"""kubernetes.restart: a rolling restart clears leaks and wedged processes; the kubelet
already restarts a crash-looping container, and the pods come back on the same lost node."""

RERUN = Remedy(
    helps=frozenset({"transient", "disrupted", "node_lost"}),
    cannot_help=NEEDS_A_HUMAN | WAIT | {"oom", "crashloop"},
)
"""kubernetes.rerun_job, command, http: run the job (or the hook) again, unchanged: it fails
again the same way for anything but a one-off hiccup."""

ROLLBACK = Remedy(
    helps=frozenset({"bad_image", "config_error", "crashloop"}),
    cannot_help=NEEDS_A_HUMAN | WAIT | {"crashloop", "node_lost", "disrupted", "oom"},
    unless={
        c: frozenset({"fresh_release"}) for c in ("bad_image", "config_error", "crashloop", "oom")
    },
    requires=frozenset({"fresh_release"}),
)
"""kubernetes.rollback undoes the last rollout: it helps only what that rollout broke."""

SCALE = Remedy(
    cannot_help=NEEDS_A_HUMAN | WAIT | {"crashloop", "oom", "node_lost"},
)
"""kubernetes.scale: more (or no) replicas of the same pods."""

DELETE_POD = Remedy(
    helps=frozenset({"node_lost", "disrupted"}),
    cannot_help=NEEDS_A_HUMAN | WAIT | {"crashloop", "oom"},
)
"""kubernetes.delete_pod: the controller recreates the pod, elsewhere if its node is lost."""

WAIT_AND_SEE = Remedy(
    helps=WAIT | {"transient"},
    cannot_help=NEEDS_A_HUMAN | {"crashloop"},
)
"""backoff: wait and re-check; time heals what is outside the target, nothing else."""
