"""A faithful fake Kubernetes API server for tests, the demo and benchmarks.

``FakeCluster`` holds the objects and simulates the control plane (deployment, replicaset,
statefulset, daemonset and job controllers, scheduler, kubelets) lazily and deterministically
up to ``now()``; ``KubeApiServer`` serves it over HTTP so the official ``kubernetes`` client can
talk to it through a generated kubeconfig::

    cluster = FakeCluster(clock.now)
    cluster.behave("shop:v2", ImageBehavior(crash_after=3))
    with KubeApiServer(cluster) as server:
        path = server.write_kubeconfig(tmp_path / "kubeconfig")
        api = kubernetes.config.new_client_from_config(config_file=str(path))

Standard library only (PyYAML for the kubeconfig); never imports ``kubernetes``.
"""

from __future__ import annotations

from .cluster import (
    FakeCluster,
    Request,
    cronjob_manifest,
    daemonset_manifest,
    deployment_manifest,
    event_manifest,
    job_manifest,
    lease_manifest,
    pod_manifest,
    statefulset_manifest,
)
from .errors import ApiError
from .pods import ImageBehavior
from .server import KubeApiServer

__all__ = [
    "ApiError",
    "FakeCluster",
    "ImageBehavior",
    "KubeApiServer",
    "Request",
    "cronjob_manifest",
    "daemonset_manifest",
    "deployment_manifest",
    "event_manifest",
    "job_manifest",
    "lease_manifest",
    "pod_manifest",
    "statefulset_manifest",
]
