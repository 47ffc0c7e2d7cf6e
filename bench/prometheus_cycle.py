"""Benchmark: one `prometheus` probe whose query returns N series, evaluated by the daemon.

Per N (default 1,000 and 10,000), in a fresh process: backfill N gauge series into a real
Prometheus (promtool), then run the daemon's evaluation cycle (query → readings → detector →
incident store) repeatedly on a fake clock positioned inside the data, and print wall time
per cycle, CPU time per cycle and the process's peak RSS.

    python -m bench.prometheus_cycle [--series 1000 10000] [--cycles 10] [--breaching 0.01]

`--breaching` makes that share of series breach, so the first cycle opens incidents (reported
separately); the steady-state cycles then dedupe them.
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

T0 = (int(time.time()) // 3600) * 3600 - 4 * 3600


def backfill(series: int, breaching: float) -> str:
    from tests.promserver import openmetrics

    bad = int(series * breaching)
    return openmetrics(
        (
            "bench_ratio",
            {"series": f"s{i:05d}", "team": f"t{i % 20}"},
            [(T0 + s, 0.9 if i < bad else 0.001) for s in range(0, 3601, 60)],
        )
        for i in range(series)
    )


def measure(url: str, series: int, cycles: int) -> dict[str, float]:
    """The daemon's side only, in its own process: what `peak RSS` reports."""
    from daemon.clock import FakeClock
    from daemon.config import Settings
    from daemon.engine import Engine
    from daemon.incidents import IncidentStore
    from daemon.playbook import load_playbooks
    from probes.prometheus_source import PrometheusSource

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pb").mkdir()
        (root / "pb" / "bench.yaml").write_text(
            yaml.safe_dump(
                {
                    "name": "bench",
                    "probe": {"kind": "prometheus", "query": "bench_ratio", "above": 0.5},
                    "actions": [],
                }
            )
        )
        clock = FakeClock(start=T0 + 1800)
        store = IncidentStore(root / "incidents.db")
        settings = Settings(
            probe_retries=0, prometheus={"default": PrometheusSource(url=url, timeout=60)}
        )
        engine = Engine(
            playbooks=load_playbooks([root / "pb"]),
            store=store,
            notifiers=[],
            clock=clock,
            settings=settings,
        )

        figures = asyncio.run(
            time_cycles(engine, "bench", cycles, between=lambda: clock.advance(30))
        )
        incidents = len(store.incidents(limit=series + 1))
        store.close()
    return {"series": series, "incidents": incidents, **figures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--breaching", type=float, default=0.01)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.url, args.one, args.cycles)))
        return 0

    header = (
        f"{'series':>7} {'opened':>6} {'1st cycle':>10} {'median':>8} {'max':>8} "
        f"{'cpu/cycle':>9} {'peak RSS':>9}"
    )
    print(header)
    from tests.promserver import PrometheusServer

    for n in args.series:
        with tempfile.TemporaryDirectory() as tmp:
            server = PrometheusServer(Path(tmp), backfill=backfill(n, args.breaching))
            with server.start():
                child = [
                    sys.executable,
                    "-m",
                    "bench.prometheus_cycle",
                    "--one",
                    str(n),
                    "--cycles",
                    str(args.cycles),
                    "--url",
                    server.url,
                ]
                out = subprocess.run(child, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{r['series']:>7} {r['incidents']:>6} {r['first_cycle_s']:>9.3f}s "
            f"{r['cycle_median_s']:>7.3f}s {r['cycle_max_s']:>7.3f}s "
            f"{r['cpu_per_cycle_s']:>8.3f}s {r['peak_rss_mib']:>6.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
