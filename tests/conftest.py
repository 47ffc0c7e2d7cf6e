from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.clock import FakeClock
from daemon.incidents import IncidentStore
from daemon.kube.cluster import KubeClient, KubernetesCluster
from daemon.sandbox.kubeapi import FakeCluster, KubeApiServer
from daemon.sandbox.web import ToyWebService


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IncidentStore]:
    s = IncidentStore(tmp_path / "incidents.db")
    yield s
    s.close()


@pytest.fixture
def web() -> Iterator[ToyWebService]:
    """The sandbox's toy web service on a free loopback port."""
    service = ToyWebService().start()
    yield service
    service.stop()


# --- the sandbox Kubernetes API server, spoken to through the official client ----------------


@pytest.fixture
def cluster(clock: FakeClock) -> FakeCluster:
    return FakeCluster(clock.now, restart_backoff=10.0)


@pytest.fixture
def server(cluster: FakeCluster) -> Iterator[KubeApiServer]:
    with KubeApiServer(cluster).start() as api:
        yield api


@pytest.fixture
def kube(server: KubeApiServer, tmp_path: Path) -> KubeClient:
    config = server.write_kubeconfig(tmp_path / "kubeconfig", context="test")
    return KubeClient("default", KubernetesCluster(kubeconfig=config, context="test"))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Any]:
    """The fault-injection world of tests/crashworld.py (a real `opsmedic run` subprocess
    against the sandbox); every process it started is killed afterwards."""
    from tests.crashworld import CrashWorld

    w = CrashWorld(tmp_path)
    try:
        yield w
    finally:
        w.close()
