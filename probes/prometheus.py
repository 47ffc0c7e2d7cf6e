"""`prometheus` probe: a PromQL instant query. A vector yields one reading per series (its
labels become `labels.*` for the playbook's templates); a scalar yields one reading."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from daemon.errors import PermanentError, TemporaryError
from daemon.templating import check_template, is_template, render
from probes.base import PROBES, ProbeConfig, ProbeContext, ProbeKind, Reading, Threshold
from probes.prometheus_source import Dependency, PrometheusClient

EVIDENCE_SERIES_CAP = 20


class FromPrometheus(BaseModel):
    """Settings of every probe kind that reads a Prometheus source."""

    source: str = Field("default", description="Prometheus source name from the daemon config")
    evidence: dict[str, str] = Field(
        default_factory=dict,
        description="Extra PromQL evaluated when an incident opens, by name; may use "
        "{{ labels.x }} templates",
    )

    @field_validator("evidence")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        for query in value.values():
            if is_template(query):
                check_template(query)
        return value


class PrometheusProbeConfig(ProbeConfig, FromPrometheus, Threshold):
    kind: Literal["prometheus"] = "prometheus"
    query: str = Field(min_length=1, description="PromQL instant query")


async def evidence_queries(
    client: PrometheusClient, queries: Mapping[str, str], labels: Mapping[str, str], at: float
) -> dict[str, Any]:
    """Evaluate each named query for one series: a number, a list of series, or an error."""
    found: dict[str, Any] = {}
    for name, template in queries.items():
        query = render(template, {"labels": dict(labels)})
        try:
            samples = await client.instant(query, at)
        except (TemporaryError, PermanentError) as exc:
            found[name] = {"error": str(exc)}
            continue
        if len(samples) == 1 and not samples[0].labels:
            found[name] = samples[0].value
        else:
            found[name] = [
                {"labels": dict(s.labels), "value": s.value} for s in samples[:EVIDENCE_SERIES_CAP]
            ]
    return found


class PrometheusProbeBase:
    """Shared by the Prometheus probe kinds: the client, the dependency, evidence queries."""

    def __init__(self, config: Any, context: ProbeContext) -> None:
        self.clock = context.clock
        self.client: PrometheusClient = context.prometheus_client(config.source)
        self.evidence_queries: dict[str, str] = config.evidence

    @property
    def dependency(self) -> Dependency:
        return self.client.dependency

    async def evidence(self, labels: Mapping[str, str]) -> dict[str, Any]:
        return await evidence_queries(self.client, self.evidence_queries, labels, self.clock.now())


class PrometheusProbe(PrometheusProbeBase):
    def __init__(self, config: PrometheusProbeConfig, context: ProbeContext) -> None:
        super().__init__(config, context)
        self.config = config

    async def check(self) -> list[Reading]:
        cfg = self.config
        samples = await self.client.instant(cfg.query, self.clock.now())
        readings = []
        for sample in samples:
            value = sample.value
            outcome = cfg.judge(value)
            message = (
                "value is NaN (no data)"
                if math.isnan(value)
                else f"value {value:.4g} (breach when {cfg.describe()})"
            )
            readings.append(
                Reading(outcome=outcome, labels=sample.labels, value=value, message=message)
            )
        return readings  # empty: resolves, as in Prometheus (unless no_data: breach)


PROBES.register("prometheus", ProbeKind(PrometheusProbeConfig, PrometheusProbe))
