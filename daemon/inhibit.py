"""Inhibition and silences, Alertmanager-style: when must an incident not be acted on?

- A **source incident** suppresses the actions of others: a data source that is unavailable
  (the daemon's own `source-unavailable` incidents) inhibits every playbook that reads from it,
  and an open incident of a playbook with `inhibits:` rules (a warehouse down, a namespace
  unavailable) inhibits the incidents its rules match, when the `equal:` labels agree.
- A **silence** (maintenance window) holds back the actions on incidents whose labels match it
  while it is in force. Silences come from the config (`safety.silences`) or from
  `opsmedic silence add`, which records them in the incident log.

Matchers are Alertmanager's: `label=value`, `label!=value`, `label=~regex`, `label!~regex`
(regexes are anchored); the pseudo-label `playbook` is the incident's playbook.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from daemon.clock import Clock
from daemon.incidents import Control, Incident, IncidentStore

SOURCE_UNAVAILABLE = "source-unavailable"
"""The playbook name of the incidents the daemon opens for a data source that stopped
answering; their `source` label names it."""

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        found = _MATCHER.match(text)
        if found is None:
            raise ValueError(
                f"invalid matcher {text!r}: use label=value, label!=value, label=~regex or "
                "label!~regex"
            )
        label, op, value = found.groups()
        value = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex in matcher {text!r}: {exc}") from None
        return cls(label, op, value)  # type: ignore[arg-type]

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.label, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        found = re.fullmatch(self.value, have) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.value}"


def matches_all(matchers: Sequence[str], labels: Mapping[str, str]) -> bool:
    return all(Matcher.parse(m).matches(labels) for m in matchers)


def target_labels(incident: Incident) -> dict[str, str]:
    """What matchers see: the incident's labels plus its playbook."""
    return {**incident.labels, "playbook": incident.playbook}


def _valid_matchers(value: list[str]) -> list[str]:
    for text in value:
        Matcher.parse(text)
    return value


class InhibitRule(BaseModel):
    """`inhibits:` in a playbook: while one of its incidents is open, do not act on incidents
    that match `match`, where the labels listed in `equal` have the same value in both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: list[str] = Field(
        min_length=1,
        description="Matchers of the incidents to inhibit, e.g. ['playbook=~orders-.*']",
    )
    equal: list[str] = Field(
        default_factory=list,
        description="Labels that must be equal in the source and the inhibited incident",
    )

    _check = field_validator("match")(_valid_matchers)


class SilenceSettings(BaseModel):
    """A maintenance window from the config: no action on matching incidents while it lasts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matchers: list[str] = Field(min_length=1, description="e.g. ['namespace=shop']")
    starts: datetime | None = Field(None, description="ISO 8601 with zone (default: always)")
    ends: datetime = Field(description="ISO 8601 with zone, e.g. 2026-12-24T06:00:00Z")
    comment: str = ""

    _check = field_validator("matchers")(_valid_matchers)

    def control(self) -> Control:
        return Control(
            kind="silence",
            matchers=tuple(self.matchers),
            starts=self.starts.timestamp() if self.starts else 0.0,
            ends=self.ends.timestamp(),
            comment=self.comment,
            created_by="config",
            created_at=0.0,
        )


class Inhibitor:
    """Answers, from the incident log, whether an incident is inhibited or silenced now."""

    def __init__(
        self,
        store: IncidentStore,
        clock: Clock,
        *,
        rules: Mapping[str, Sequence[InhibitRule]] | None = None,
        sources: Mapping[str, str] | None = None,
        silences: Sequence[SilenceSettings] = (),
    ) -> None:
        self.store = store
        self.clock = clock
        self.rules = {k: list(v) for k, v in (rules or {}).items() if v}
        self.sources = dict(sources or {})  # playbook → the data source it reads
        self.silences = [s.control() for s in silences]

    def inhibited_by(self, incident: Incident) -> tuple[Incident, str] | None:
        """The open source incident that inhibits this one, and why."""
        source = self.sources.get(incident.playbook)
        target = target_labels(incident)
        for other in self.store.open_incidents():
            if other.id == incident.id:
                continue
            if other.playbook == SOURCE_UNAVAILABLE:
                if source is not None and other.labels.get("source") == source:
                    return other, f"{source} is unavailable"
                continue
            for rule in self.rules.get(other.playbook, ()):
                if matches_all(rule.match, target) and all(
                    other.labels.get(label) == incident.labels.get(label) for label in rule.equal
                ):
                    return other, f"{other.playbook} is firing"
        return None

    def silence(self, incident: Incident) -> Control | None:
        """The silence in force on this incident that ends last, if any."""
        now = self.clock.now()
        active = [
            s
            for s in [*self.silences, *self.store.controls("silence", at=now)]
            if s.starts <= now and (s.ends is None or s.ends > now)
        ]
        target = target_labels(incident)
        hits = [s for s in active if matches_all(s.matchers, target)]
        return max(hits, key=lambda s: s.ends or float("inf"), default=None)
