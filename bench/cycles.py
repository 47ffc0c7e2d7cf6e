"""Shared by the benchmarks: time the daemon's evaluation cycles of one playbook."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.engine import Engine


async def time_cycles(
    engine: Engine,
    playbook: str,
    cycles: int,
    *,
    between: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Start the engine, run a first cycle (which opens incidents) to completion, then
    `cycles` steady-state cycles; wall and CPU time per cycle and the process's peak RSS."""
    await engine.start(schedule=False)
    started = time.perf_counter()
    await engine.tick(playbook)
    await engine.idle()
    first = time.perf_counter() - started
    walls, cpus = [], []
    for _ in range(cycles):
        if between is not None:
            await between()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await engine.tick(playbook)
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    return {
        "first_cycle_s": first,
        "cycle_median_s": statistics.median(walls),
        "cycle_max_s": max(walls),
        "cpu_per_cycle_s": statistics.mean(cpus),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
