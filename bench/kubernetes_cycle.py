"""Benchmark: one `kubernetes` probe watching a namespace of N Deployments (3 pods each),
evaluated by the daemon against the sandbox Kubernetes API server.

Per N (default 100 and 1,000), the API server runs in this process and the daemon in a fresh
child process, so the figures are the daemon's own: wall time per cycle (list deployments,
ReplicaSets and pods → readings → detector → incident store), CPU time per cycle and peak RSS.

    python -m bench.kubernetes_cycle [--deployments 100 1000] [--cycles 10] [--breaching 0.01]

`--breaching` makes that share of deployments run a crash-looping image, so the first cycle
opens (and, with no actions, escalates) incidents; later cycles dedupe them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.cycles import time_cycles

NS = "bench"


def measure(kubeconfig: str, deployments: int, cycles: int) -> dict[str, float]:
    from daemon.clock import SystemClock
    from daemon.config import Settings
    from daemon.engine import Engine
    from daemon.incidents import IncidentStore
    from daemon.kube.cluster import KubernetesCluster
    from daemon.playbook import load_playbooks

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pb").mkdir()
        probe = {"kind": "kubernetes", "namespace": NS, "timeout": "60s"}
        document = {"name": "bench", "probe": probe, "actions": []}
        (root / "pb" / "bench.yaml").write_text(yaml.safe_dump(document))
        store = IncidentStore(root / "incidents.db")
        cluster = KubernetesCluster(kubeconfig=Path(kubeconfig), timeout=60)
        engine = Engine(
            playbooks=load_playbooks([root / "pb"]),
            store=store,
            notifiers=[],
            clock=SystemClock(),
            settings=Settings(probe_retries=0, kubernetes={"default": cluster}),
        )

        figures = asyncio.run(time_cycles(engine, "bench", cycles))
        incidents = len(store.incidents(limit=deployments + 1))
        store.close()
    return {"deployments": deployments, "incidents": incidents, **figures}


def world(deployments: int, breaching: float) -> object:
    from daemon.sandbox.kubeapi import FakeCluster, ImageBehavior

    cluster = FakeCluster(time.time)
    cluster.behave("bench/bad:1", ImageBehavior(crash_after=0.2, ready_after=0.1))
    bad = int(deployments * breaching)
    for i in range(deployments):
        image = "bench/bad:1" if i < bad else "bench/app:1"
        cluster.apply(cluster.deployment_manifest(NS, f"app-{i:04d}", image, replicas=3))
    time.sleep(1.5)  # pods become ready (and the bad ones crash) in real time
    cluster.reconcile()
    return cluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--breaching", type=float, default=0.01)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.kubeconfig, args.one, args.cycles)))
        return 0

    from daemon.sandbox.kubeapi import KubeApiServer

    print(
        f"{'deploys':>7} {'pods':>5} {'opened':>6} {'1st cycle':>10} {'median':>8} {'max':>8} "
        f"{'cpu/cycle':>9} {'peak RSS':>9}"
    )
    for n in args.deployments:
        cluster = world(n, args.breaching)
        with tempfile.TemporaryDirectory() as tmp, KubeApiServer(cluster).start() as server:  # type: ignore[arg-type]
            kubeconfig = server.write_kubeconfig(Path(tmp) / "kubeconfig")
            child = [
                sys.executable,
                "-m",
                "bench.kubernetes_cycle",
                "--one",
                str(n),
                "--cycles",
                str(args.cycles),
                "--kubeconfig",
                str(kubeconfig),
            ]
            out = subprocess.run(child, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{r['deployments']:>7} {3 * n:>5} {r['incidents']:>6} {r['first_cycle_s']:>9.3f}s "
            f"{r['cycle_median_s']:>7.3f}s {r['cycle_max_s']:>7.3f}s "
            f"{r['cpu_per_cycle_s']:>8.3f}s {r['peak_rss_mib']:>6.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
