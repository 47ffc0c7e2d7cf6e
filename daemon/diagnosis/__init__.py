"""Causes: pure functions from an incident's evidence and its target's history to normalized
facts (`evidence.causes`), one module per source of facts. See causes.py for the vocabulary
and the Remedy each action kind declares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.diagnosis import history, kubernetes, patterns, probes
from daemon.diagnosis.causes import CAUSES, Cause, Remedy, unique
from daemon.diagnosis.history import PastAction, PastIncident
from daemon.diagnosis.patterns import Patterns
from daemon.diagnosis.settings import CausePatterns, DiagnosisSettings

__all__ = [
    "CAUSES",
    "Cause",
    "CausePatterns",
    "DiagnosisSettings",
    "PastAction",
    "PastIncident",
    "Patterns",
    "Remedy",
    "examine",
    "find_causes",
    "timing",
]


def timing(evidence: Mapping[str, Any], breach_age: float) -> dict[str, Any]:
    """Evidence derived from when the breach began (now − opened + the probe's `for`)."""
    return kubernetes.rollout_timing(evidence, breach_age)


def find_causes(
    evidence: Mapping[str, Any],
    *,
    past: Sequence[PastIncident] = (),
    attempts: Mapping[str, int] | None = None,
    now: float,
    settings: DiagnosisSettings,
    user_patterns: Patterns = patterns.DEFAULT,
) -> tuple[Cause, ...]:
    """Every cause the evidence and history support, the first of each name, in order:
    structured facts (states, exit codes, events) before text patterns, then history."""
    from_text = list(patterns.causes(evidence, user_patterns))
    found = [
        *kubernetes.causes(evidence, fresh_release_window=settings.fresh_release),
        *probes.canary(evidence),
        *probes.freshness(evidence),
        *probes.http(evidence, {c.cause for c in from_text}),
        *from_text,
        *history.causes(past, attempts=attempts or {}, now=now, limits=settings.history_limits()),
    ]
    return unique(found)


def views(causes: Sequence[Cause]) -> list[dict[str, Any]]:
    return [c.view() for c in causes]


@dataclass(frozen=True, kw_only=True)
class Examination:
    evidence: Mapping[str, Any]  # the evidence plus what was derived: timing, `causes`
    causes: tuple[Cause, ...]

    def into(self, context: dict[str, Any]) -> None:
        """Give templates and agents what was found: `evidence` (with `evidence.causes`) and
        `causes`, the names."""
        context["evidence"] = dict(self.evidence)
        context["causes"] = [c.cause for c in self.causes]


def examine(
    evidence: Mapping[str, Any],
    *,
    breach_age: float,
    past: Sequence[PastIncident],
    attempts: Mapping[str, int],
    now: float,
    settings: DiagnosisSettings,
    playbook_patterns: CausePatterns | None = None,
) -> Examination:
    """What the daemon (and `opsmedic eval`) know before any agent is asked: the evidence with
    its derived timing, and the causes it and the target's history support."""
    full = {**evidence, **timing(evidence, breach_age)}
    full.pop("causes", None)  # derived here, never taken from the probe or a scenario
    causes = find_causes(
        full,
        past=past,
        attempts=attempts,
        now=now,
        settings=settings,
        user_patterns=Patterns.build(settings.causes, playbook_patterns or {}),
    )
    return Examination(evidence={**full, "causes": views(causes)}, causes=causes)
