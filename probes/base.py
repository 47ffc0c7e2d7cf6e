"""The Probe protocol, the Reading it yields, and the registry of probe kinds."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

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
    """`above` / `below` conditions on a reading's value (NaN is no data)."""

    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> Threshold:
        if self.above is None and self.below is None:
            raise ValueError("set `above` or `below`")
        return self

    def judge(self, value: float) -> Outcome:
        if math.isnan(value):
            return Outcome.NO_DATA
        if self.above is not None and value > self.above:
            return Outcome.BREACH
        if self.below is not None and value < self.below:
            return Outcome.BREACH
        return Outcome.OK

    def describe(self) -> str:
        parts = []
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.below is not None:
            parts.append(f"< {self.below:g}")
        return " or ".join(parts)


@dataclass(frozen=True, kw_only=True)
class ProbeContext:
    clock: Clock


class Probe(Protocol):
    async def check(self) -> list[Reading]:
        """Observe now. Raise TemporaryError/PermanentError when the source cannot answer."""
        ...


@dataclass(frozen=True)
class ProbeKind:
    config: type[ProbeConfig]
    create: Callable[[Any, ProbeContext], Probe]


PROBES: Registry[ProbeKind] = Registry("probe kind")


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
