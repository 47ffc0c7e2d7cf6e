"""Kubernetes: connection settings, the client adapter (the only place the `kubernetes` SDK is
imported, lazily) and read-only workload queries shared by the probe, actions and evidence."""

from daemon.kube.cluster import (
    Conflict,
    Forbidden,
    KubeClient,
    KubernetesCluster,
    NotFound,
    rfc3339,
)

__all__ = [
    "Conflict",
    "Forbidden",
    "KubeClient",
    "KubernetesCluster",
    "NotFound",
    "rfc3339",
]
