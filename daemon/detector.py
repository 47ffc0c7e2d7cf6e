"""Per-series alert state machine: ok → pending → firing → resolved. Pure: time is passed in.

Semantics follow Prometheus alerting rules: a breach must hold for `for` before it fires; a
firing series keeps firing for `keep_firing_for` after its last breach; a series missing from
a scan is ok (an empty vector resolves) unless `no_data` says otherwise; an `error` reading
holds the series' state, and a probe-level error (no labels) holds every series.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from probes.base import Outcome, Reading


def fingerprint(playbook: str, labels: Mapping[str, str]) -> str:
    """Hash of the playbook name and a series' identifying labels."""
    blob = json.dumps([playbook, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def effective(outcome: Outcome, no_data: str) -> Outcome:
    """A `no_data` outcome read through the probe's policy: ok, breach, or hold (= error)."""
    if outcome is Outcome.NO_DATA:
        return {"ok": Outcome.OK, "breach": Outcome.BREACH, "hold": Outcome.ERROR}[no_data]
    return outcome


class Phase(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, kw_only=True)
class Transition:
    playbook: str
    fingerprint: str
    labels: Mapping[str, str]
    phase: Phase
    at: float
    reading: Reading | None = None


@dataclass(kw_only=True)
class _Series:
    labels: Mapping[str, str]
    phase: Phase
    active_since: float
    last_breach: float
    last_reading: Reading | None = field(default=None)


class Detector:
    def __init__(
        self,
        playbook: str,
        *,
        for_: float = 0.0,
        keep_firing_for: float = 0.0,
        no_data: Literal["ok", "breach", "hold"] = "ok",
    ) -> None:
        self.playbook = playbook
        self.for_ = for_
        self.keep_firing_for = keep_firing_for
        self.no_data = no_data
        self._series: dict[str, _Series] = {}

    def phase(self, fp: str) -> Phase | None:
        series = self._series.get(fp)
        return series.phase if series else None

    def restore_firing(self, fp: str, labels: Mapping[str, str], since: float) -> None:
        """Seed a series that an open incident says is firing (after a daemon restart)."""
        self._series[fp] = _Series(
            labels=labels, phase=Phase.FIRING, active_since=since, last_breach=since
        )

    def forget(self, fp: str) -> None:
        self._series.pop(fp, None)

    def observe(self, readings: list[Reading], at: float) -> list[Transition]:
        """Feed one complete scan of the probe; return the transitions it causes."""
        if not readings and self.no_data == "breach" and not self._series:
            readings = [Reading(outcome=Outcome.NO_DATA, message="the probe returned no data")]
        transitions: list[Transition] = []
        seen: set[str] = set()
        probe_error = False
        for reading in readings:
            fp = fingerprint(self.playbook, reading.labels)
            seen.add(fp)
            outcome = effective(reading.outcome, self.no_data)
            if outcome is Outcome.ERROR:
                probe_error = probe_error or not reading.labels
                continue
            self._step(fp, reading.labels, outcome is Outcome.BREACH, at, reading, transitions)
        if probe_error:
            return transitions
        missing = effective(Outcome.NO_DATA, self.no_data)
        if missing is not Outcome.ERROR:
            for fp in [fp for fp in self._series if fp not in seen]:
                series = self._series[fp]
                self._step(fp, series.labels, missing is Outcome.BREACH, at, None, transitions)
        return transitions

    def _step(
        self,
        fp: str,
        labels: Mapping[str, str],
        breach: bool,
        at: float,
        reading: Reading | None,
        out: list[Transition],
    ) -> None:
        series = self._series.get(fp)

        def emit(phase: Phase) -> None:
            out.append(
                Transition(
                    playbook=self.playbook,
                    fingerprint=fp,
                    labels=labels,
                    phase=phase,
                    at=at,
                    reading=reading,
                )
            )

        if breach:
            if series is None:
                series = _Series(
                    labels=labels, phase=Phase.PENDING, active_since=at, last_breach=at
                )
                self._series[fp] = series
                emit(Phase.PENDING)
            series.last_breach = at
            series.last_reading = reading
            if series.phase is Phase.PENDING and at - series.active_since >= self.for_:
                series.phase = Phase.FIRING
                emit(Phase.FIRING)
            return
        if series is None:
            return
        if series.phase is Phase.PENDING:
            del self._series[fp]
        elif at - series.last_breach >= self.keep_firing_for:
            del self._series[fp]
            emit(Phase.RESOLVED)
