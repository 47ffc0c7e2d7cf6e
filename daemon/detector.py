"""Per-series alert state machine: ok → pending → firing → resolved. Pure: time is passed in.

Semantics are those of a Prometheus alerting rule (rules/alerting.go `AlertingRule.Eval`), one
scan of the probe standing for one rule evaluation:

- a series that breaches becomes pending at that scan (`active_since`, Prometheus `ActiveAt`)
  and fires at the first breaching scan with `at - active_since >= for` (so `for: 0` fires at
  once); a pending series that stops breaching is dropped without a transition;
- a firing series that stops breaching keeps firing for `keep_firing_for`, counted from the
  FIRST scan without a breach (`keep_firing_since`, Prometheus `KeepFiringSince`): it resolves
  at the first non-breaching scan with `at - keep_firing_since >= keep_firing_for`, and a
  breach in between clears `keep_firing_since`;
- a series missing from a scan is not breaching (an empty vector resolves), as a series absent
  from a rule's result, unless `no_data` says otherwise;
- an `error` reading holds its series' state, and a probe-level error (no labels) holds every
  series, as a failed rule evaluation changes nothing.

tests/test_detector_promtool.py checks all of this against `promtool test rules`.

Deliberate differences from Prometheus (the `no_data:` policy and restarts):

- `no_data: ok` (the default) is Prometheus, no difference: a `no_data` reading (NaN) is not
  breaching, as every comparison with NaN is false, nor is a series missing from a scan.
- `no_data: breach`: a `no_data` reading breaches (Prometheus never alerts on NaN), and a
  tracked series missing from a scan keeps breaching (Prometheus would resolve it). A scan with
  no reading at all, while no labelled series is tracked, breaches one label-less "absent"
  series, like an alert on `absent(...)`; it stops breaching (so it resolves, after
  `keep_firing_for`) at the first scan with any reading, even an ok or a labelled error one,
  and it is never started while a labelled series is tracked (that series already stands for
  the missing data), where Prometheus would run both alerts.
- `no_data: hold`: a `no_data` reading or a missing series neither advances nor resets the
  series (no Prometheus equivalent; like a failed evaluation, limited to that series).
- A labelled `error` reading holds only its own series (Prometheus has no per-series error).
- Restarts (`Detector.restore`): pending series are restored with Prometheus's rule for
  `ALERTS_FOR_STATE` (see `restore`); firing series always stay firing with their
  `keep_firing_since`, whereas Prometheus re-pends them when `for` < the grace period or the
  outage exceeded its tolerance, and forgets them if they do not breach at its first
  evaluation: here an open incident resolves through a transition, never silently.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from probes.base import Outcome, Reading

FOR_GRACE_PERIOD = 600.0
"""Prometheus `--rules.alert.for-grace-period` (10m): after a restart a restored pending
series fires no sooner than this, unless its `for` is shorter (then it starts over)."""

OUTAGE_TOLERANCE = 3600.0
"""Prometheus `--rules.alert.for-outage-tolerance` (1h): pending state older is not restored."""

ABSENT_MESSAGE = "the probe returned no data"


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


@dataclass(frozen=True, kw_only=True)
class SeriesState:
    """One tracked series' alert state, as saved to survive a restart (`Detector.snapshot`)."""

    fingerprint: str
    labels: Mapping[str, str]
    phase: Phase
    """PENDING or FIRING (a series that keeps firing for `keep_firing_for` is FIRING)."""
    active_since: float
    """When the breach began (Prometheus `ActiveAt`)."""
    evaluated_at: float
    """The scan this state reflects; after a restart the daemon was down since then."""
    keep_firing_since: float | None = None
    """The first scan without a breach while firing (Prometheus `KeepFiringSince`)."""
    absent: bool = False
    """The label-less series that an empty scan breaches under `no_data: breach`."""


@dataclass(kw_only=True)
class _Series:
    labels: Mapping[str, str]
    phase: Phase
    active_since: float
    evaluated_at: float
    keep_firing_since: float | None = None
    absent: bool = False


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
        """Seed a series that an open incident says is firing (after a daemon restart). A
        series already firing (from `restore`) keeps its state."""
        current = self._series.get(fp)
        if current is not None and current.phase is Phase.FIRING:
            return
        self._series[fp] = _Series(
            labels=labels,
            phase=Phase.FIRING,
            active_since=since,
            evaluated_at=since,
            absent=not labels and self.no_data == "breach",
        )

    def forget(self, fp: str) -> None:
        self._series.pop(fp, None)

    def snapshot(self) -> list[SeriesState]:
        """Every pending or firing series, to save after each scan and `restore` on start-up."""
        return [
            SeriesState(
                fingerprint=fp,
                labels=s.labels,
                phase=s.phase,
                active_since=s.active_since,
                evaluated_at=s.evaluated_at,
                keep_firing_since=s.keep_firing_since,
                absent=s.absent,
            )
            for fp, s in self._series.items()
        ]

    def restore(
        self,
        states: Iterable[SeriesState],
        *,
        now: float,
        grace: float = FOR_GRACE_PERIOD,
        outage_tolerance: float = OUTAGE_TOLERANCE,
    ) -> None:
        """Take back a `snapshot` saved before a restart; call it before the first scan.

        Firing series stay firing, with their `active_since` and `keep_firing_since` (time
        without a breach counts across the downtime: the next scan breaches, clearing it, or
        resolves the series once `keep_firing_for` has passed).

        Pending series follow Prometheus's restore of `ALERTS_FOR_STATE` (rules/group.go
        `RestoreForState`), with `down_at` = the state's `evaluated_at`:

        - if `for` < `grace`, or the daemon was down longer than `outage_tolerance`, the
          series is not restored: its next breach starts pending afresh;
        - else, with `remaining = for - (down_at - active_since)`:
          `remaining <= 0`: `active_since` is kept (it fires at its next breach);
          `remaining < grace`: `active_since = now + grace - for`, so it fires no sooner than
          `grace` after the restart;
          otherwise the downtime does not count as pending:
          `active_since += now - down_at`.

        A restored pending series that does not breach at the next scan is dropped, as usual.
        """
        for state in states:
            active_since = state.active_since
            if state.phase is Phase.PENDING:
                down_for = max(0.0, now - state.evaluated_at)
                if self.for_ < grace or down_for > outage_tolerance:
                    continue
                remaining = self.for_ - (state.evaluated_at - state.active_since)
                if remaining <= 0:
                    pass
                elif remaining < grace:
                    active_since = now + grace - self.for_
                else:
                    active_since += down_for
            elif state.phase is not Phase.FIRING:
                continue
            self._series[state.fingerprint] = _Series(
                labels=dict(state.labels),
                phase=state.phase,
                active_since=active_since,
                evaluated_at=now,
                keep_firing_since=state.keep_firing_since if state.phase is Phase.FIRING else None,
                absent=state.absent,
            )

    def observe(self, readings: list[Reading], at: float) -> list[Transition]:
        """Feed one complete scan of the probe; return the transitions it causes."""
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
            breach = outcome is Outcome.BREACH
            self._step(fp, reading.labels, breach, at, reading, transitions, absent=False)
        if probe_error:
            self._evaluated(at)
            return transitions
        self._absent(readings, seen, at, transitions)
        missing = effective(Outcome.NO_DATA, self.no_data)
        if missing is not Outcome.ERROR:
            for fp in [fp for fp in self._series if fp not in seen]:
                series = self._series[fp]
                breach = missing is Outcome.BREACH
                self._step(fp, series.labels, breach, at, None, transitions)
        self._evaluated(at)
        return transitions

    def _absent(
        self, readings: list[Reading], seen: set[str], at: float, out: list[Transition]
    ) -> None:
        """Step the label-less absent series (see the module docstring, `no_data: breach`)."""
        fp = fingerprint(self.playbook, {})
        if fp in seen:
            return  # a label-less reading: a real series, stepped with the others
        series = self._series.get(fp)
        labelled = any(not s.absent for s in self._series.values())
        if not readings and self.no_data == "breach" and not labelled:
            reading = Reading(outcome=Outcome.NO_DATA, message=ABSENT_MESSAGE)
            self._step(fp, {}, True, at, reading, out, absent=True)
        elif series is not None and series.absent:
            self._step(fp, {}, False, at, None, out)
        else:
            return
        seen.add(fp)

    def _evaluated(self, at: float) -> None:
        for series in self._series.values():
            series.evaluated_at = at

    def _step(
        self,
        fp: str,
        labels: Mapping[str, str],
        breach: bool,
        at: float,
        reading: Reading | None,
        out: list[Transition],
        *,
        absent: bool | None = None,
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
                    labels=labels, phase=Phase.PENDING, active_since=at, evaluated_at=at
                )
                self._series[fp] = series
                emit(Phase.PENDING)
            series.keep_firing_since = None
            if absent is not None:
                series.absent = absent
            if series.phase is Phase.PENDING and at - series.active_since >= self.for_:
                series.phase = Phase.FIRING
                emit(Phase.FIRING)
            return
        if series is None:
            return
        if absent is not None:
            series.absent = absent
        if series.phase is Phase.PENDING:
            del self._series[fp]
            return
        if self.keep_firing_for > 0:
            if series.keep_firing_since is None:
                series.keep_firing_since = at
            if at - series.keep_firing_since < self.keep_firing_for:
                return
        del self._series[fp]
        emit(Phase.RESOLVED)
