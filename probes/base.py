"""The Probe protocol, the Reading it yields, and the registry of probe kinds."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from daemon.clock import Clock
from daemon.durations import Duration
from daemon.errors import PermanentError, TemporaryError
from daemon.registry import Registry
from daemon.retry import with_retries


class Outcome(StrEnum):
    OK = "ok"
    BREACH = "breach"
    NO_DATA = "no_data"
    ERROR = "error"


@dataclass(frozen=True, kw_only=True, slots=True)
class Reading:
    """One observation of one series/target. Its labels identify the series."""

    outcome: Outcome
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float | None = None
    message: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    actionable: bool = True
    """False for an inconclusive breach: it opens an incident that escalates, never acts."""


class ProbeConfig(BaseModel):
    """Settings every probe kind shares: scheduling and detection."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: str
    every: Duration = Field(30.0, description="How often the probe runs")
    for_: Duration = Field(
        0.0, alias="for", description="How long a breach must hold before it fires"
    )
    keep_firing_for: Duration = Field(
        0.0, description="How long a firing series stays firing after it stops breaching"
    )
    no_data: Literal["ok", "breach", "hold"] = Field(
        "ok", description="What a reading without data means"
    )
    timeout: Duration = Field(10.0, description="Time limit for one check")


class Threshold(BaseModel):
    """`above` / `below` / `outside` conditions on a value. NaN is no data; +Inf and -Inf
    compare like numbers (+Inf is above any threshold)."""

    above: float | None = Field(None, description="Breach when the value is above this")
    below: float | None = Field(None, description="Breach when the value is below this")
    outside: tuple[float, float] | None = Field(
        None, description="Breach when the value is outside [low, high]"
    )

    @model_validator(mode="after")
    def _one_condition(self) -> Threshold:
        if self.above is None and self.below is None and self.outside is None:
            raise ValueError("set `above`, `below` or `outside`")
        if self.outside is not None and self.outside[0] > self.outside[1]:
            raise ValueError("`outside` is [low, high] with low <= high")
        return self

    def judge(self, value: float) -> Outcome:
        if math.isnan(value):
            return Outcome.NO_DATA
        if self.above is not None and value > self.above:
            return Outcome.BREACH
        if self.below is not None and value < self.below:
            return Outcome.BREACH
        if self.outside is not None and not self.outside[0] <= value <= self.outside[1]:
            return Outcome.BREACH
        return Outcome.OK

    def describe(self) -> str:
        parts = []
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.below is not None:
            parts.append(f"< {self.below:g}")
        if self.outside is not None:
            parts.append(f"outside [{self.outside[0]:g}, {self.outside[1]:g}]")
        return " or ".join(parts)


class FreshnessLimits(BaseModel):
    """dbt-style freshness: older than `warn_after` warns, older than `error_after` breaches."""

    warn_after: Duration | None = Field(None, description="Older than this: warn (no incident)")
    error_after: Duration = Field(description="Older than this: breach")


def freshness_reading(
    limits: FreshnessLimits,
    labels: Mapping[str, str],
    loaded_at: float | None,
    now: float,
    *,
    missing: str,
    what: str = "newest row",
) -> Reading:
    """Judge one timestamp; None (NULL, no rows, missing series) is infinitely stale."""
    age = math.inf if loaded_at is None else max(0.0, now - loaded_at)
    status = "pass"
    if age > limits.error_after:
        status = "error"
    elif limits.warn_after is not None and age > limits.warn_after:
        status = "warn"
    return Reading(
        outcome=Outcome.BREACH if status == "error" else Outcome.OK,
        labels=labels,
        value=age,
        message=missing if loaded_at is None else f"{what} is {age:.1f}s old ({status})",
        evidence={"freshness": status, "age_seconds": age, "max_loaded_at": loaded_at},
    )


@dataclass(frozen=True, kw_only=True)
class ProbeContext:
    clock: Clock
    prometheus: Mapping[str, Any] = field(default_factory=dict)
    """Prometheus sources by name (PrometheusClient), from the daemon config."""
    kubernetes: Mapping[str, Any] = field(default_factory=dict)
    """Kubernetes clusters by name (KubeClient), from the daemon config."""

    def prometheus_client(self, name: str) -> Any:
        try:
            return self.prometheus[name]
        except KeyError:
            known = ", ".join(sorted(self.prometheus)) or "none configured"
            raise PermanentError(f"unknown Prometheus source {name!r} (known: {known})") from None

    def kube_client(self, name: str) -> Any:
        try:
            return self.kubernetes[name]
        except KeyError:
            known = ", ".join(sorted(self.kubernetes)) or "none configured"
            raise PermanentError(f"unknown Kubernetes cluster {name!r} (known: {known})") from None


class Probe(Protocol):
    async def check(self) -> list[Reading]:
        """Observe now. Raise TemporaryError/PermanentError when the source cannot answer."""
        ...


@dataclass(frozen=True)
class ProbeKind:
    config: type[ProbeConfig]
    create: Callable[[Any, ProbeContext], Probe]


PROBES: Registry[ProbeKind] = Registry("probe kind")


def probe_failure(readings: list[Reading]) -> Reading | None:
    """The probe-level error reading (an error without labels) of a scan, if the probe failed."""
    return next((r for r in readings if r.outcome is Outcome.ERROR and not r.labels), None)


async def check_once(
    probe: Probe, config: ProbeConfig, *, clock: Clock, retries: int
) -> list[Reading]:
    """Run a probe with retries; a failure becomes one probe-level `error` reading (no labels),
    which holds the state of every series of the probe."""
    try:
        return await with_retries(
            lambda: asyncio.wait_for(probe.check(), timeout=config.timeout),
            retries=retries,
            clock=clock,
            what=f"{config.kind} probe",
        )
    except TimeoutError:
        message = f"probe timed out after {config.timeout:g}s"
    except (TemporaryError, PermanentError) as exc:
        message = str(exc)
    return [Reading(outcome=Outcome.ERROR, message=message)]


@runtime_checkable
class EvidenceProbe(Protocol):
    """A probe that can gather extra read-only evidence for one series when an incident opens."""

    async def evidence(self, labels: Mapping[str, str]) -> dict[str, Any]: ...
