"""`freshness.prometheus` probe: the age of a timestamp metric (for example
`last_success_timestamp_seconds`) per series, with `warn_after` / `error_after`. A series that
is missing (listed in `expect`, or seen before and gone now) is infinitely stale."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from probes.base import (
    PROBES,
    FreshnessLimits,
    ProbeConfig,
    ProbeContext,
    ProbeKind,
    Reading,
    freshness_reading,
)
from probes.prometheus import FromPrometheus, PrometheusProbeBase

Key = tuple[tuple[str, str], ...]


class FreshnessPrometheusConfig(ProbeConfig, FromPrometheus, FreshnessLimits):
    kind: Literal["freshness.prometheus"] = "freshness.prometheus"
    query: str = Field(min_length=1, description="PromQL whose values are epoch-second timestamps")
    expect: list[dict[str, str]] = Field(
        default_factory=list, description="Label sets that must be present; missing = stale"
    )


class FreshnessPrometheusProbe(PrometheusProbeBase):
    def __init__(self, config: FreshnessPrometheusConfig, context: ProbeContext) -> None:
        super().__init__(config, context)
        self.config = config
        self._known: dict[Key, dict[str, str]] = {
            tuple(sorted(e.items())): dict(e) for e in config.expect
        }

    async def check(self) -> list[Reading]:
        now = self.clock.now()
        samples = await self.client.instant(self.config.query, now)
        readings = []
        present: set[Key] = set()
        for sample in samples:
            key = tuple(sorted(sample.labels.items()))
            present.add(key)
            self._known.setdefault(key, dict(sample.labels))
            stamp = sample.value if sample.value == sample.value else None  # NaN: no timestamp
            readings.append(
                freshness_reading(
                    self.config,
                    sample.labels,
                    stamp,
                    now,
                    missing="timestamp is NaN: infinitely stale",
                    what="last timestamp",
                )
            )
        for key, labels in self._known.items():
            if key not in present:
                readings.append(
                    freshness_reading(
                        self.config,
                        labels,
                        None,
                        now,
                        missing="series missing: infinitely stale",
                        what="last timestamp",
                    )
                )
        if not readings:
            readings.append(
                freshness_reading(self.config, {}, None, now, missing="no series: infinitely stale")
            )
        return readings


PROBES.register(
    "freshness.prometheus", ProbeKind(FreshnessPrometheusConfig, FreshnessPrometheusProbe)
)
