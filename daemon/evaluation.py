"""`opsmedic eval`: score a diagnosing agent on recorded scenarios.

A scenario (one YAML file) holds an incident as an agent would see it — the playbook, the
incident's labels and summary, the evidence gathered, recorded outputs of the read-only tools
an LLM agent may call, the attempts made so far — and the set of acceptable decisions. The
harness asks the agent for a decision and scores it; a decision outside the playbook is a
failure of its own kind. Nothing is executed: no probe runs and no action is taken.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daemon.agents import AGENTS, ESCALATE, Decision, Diagnoser, DiagnosisRequest
from daemon.agents.chain import LLMDiagnosers
from daemon.agents.settings import TOOL_NAMES
from daemon.agents.tools import RecordedTools
from daemon.diagnosis import DiagnosisSettings, PastAction, PastIncident, examine
from daemon.durations import Duration
from daemon.errors import ConfigError
from daemon.incidents import Incident, Status
from daemon.playbook import NAME, PlaybookBase, parse_playbook
from daemon.registry import did_you_mean
from daemon.responder import before_diagnosis, template_context
from daemon.yamlsource import read_yaml, validation_problems


class IncidentView(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: dict[str, str] = Field(default_factory=dict)
    value: float | None = None
    summary: str = ""
    actionable: bool = Field(
        True, description="False for an inconclusive reading (e.g. a canary without traffic)"
    )


class PastActionView(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str = Field(pattern=NAME, description="The action id that ran")
    uses: str | None = Field(None, description="Its kind; default: the playbook's action's")
    ok: bool = Field(True, description="Whether the action itself succeeded")


class PastIncidentView(BaseModel):
    """An earlier incident of the same target, for history causes (flapping, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ago: Duration = Field(description="How long before this incident it opened")
    resolution: Literal["auto-remediated", "recovered", "recovered-after-escalation"] | None = (
        Field(None, description="How it ended; none: escalated and still open")
    )
    lasted: Duration | None = Field(None, description="How long it was open")
    actions: list[PastActionView] = Field(default_factory=list)


class ScenarioFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME)
    category: Literal["deployment", "pipeline"]
    description: str
    playbook: dict[str, Any]
    incident: IncidentView
    attempts: dict[str, int] = Field(default_factory=dict)
    evidence: dict[str, Any] = Field(default_factory=dict)
    tools: dict[str, Any] = Field(
        default_factory=dict, description="Recorded outputs of read-only tools, by tool name"
    )
    history: list[PastIncidentView] = Field(
        default_factory=list, description="Earlier incidents of this target, newest first"
    )
    accept: list[str] = Field(min_length=1, description="Acceptable action ids or `escalate`")


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    category: str
    description: str
    path: Path
    playbook: PlaybookBase
    incident: Incident
    attempts: Mapping[str, int]
    evidence: Mapping[str, Any]
    tools: Mapping[str, Any]
    accept: frozenset[str]
    actionable: bool = True
    history: tuple[PastIncident, ...] = ()

    @property
    def must_escalate(self) -> bool:
        return self.accept == {ESCALATE}

    def request(self, settings: DiagnosisSettings | None = None) -> DiagnosisRequest:
        """The request an agent gets, prepared as the daemon prepares it when the incident
        opens (causes found, timing derived); its tools answer with the recorded outputs."""
        seen = examine(
            self.evidence,
            breach_age=self.playbook.probe_config.for_,
            past=self.history,
            attempts=self.attempts,
            now=self.incident.opened_at,
            settings=settings or DiagnosisSettings(),
            playbook_patterns=self.playbook.causes,
        )
        context = template_context(self.incident, None)
        seen.into(context)
        return DiagnosisRequest(
            incident=self.incident,
            playbook=self.playbook,
            context=context,
            attempts=self.attempts,
            tools=RecordedTools(self.tools),
            causes=seen.causes,
        )


def load_scenario(path: Path) -> Scenario:
    source = read_yaml(path)
    try:
        raw = ScenarioFile.model_validate(source.data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(source, ScenarioFile, exc)) from None
    playbook = parse_playbook(source.part("playbook"))
    allowed = {s.id for s in playbook.steps} | {ESCALATE}
    problems = [
        source.problem(("accept", i), f"{a!r} is neither an action of the playbook nor escalate")
        for i, a in enumerate(raw.accept)
        if a not in allowed
    ]
    problems += [
        source.problem(("attempts", a), f"{a!r} is not an action of the playbook")
        for a in raw.attempts
        if a not in allowed
    ]
    problems += [
        source.problem(
            ("history", i, "actions", j, "action"),
            f"{a.action!r} is not an action of the playbook; give its kind with `uses:`",
        )
        for i, past in enumerate(raw.history)
        for j, a in enumerate(past.actions)
        if a.uses is None and playbook.step(a.action) is None
    ]
    problems += [
        source.problem(
            ("tools", t),
            f"no tool named {t!r}{did_you_mean(t, TOOL_NAMES)}; tools: " + ", ".join(TOOL_NAMES),
        )
        for t in raw.tools
        if t not in TOOL_NAMES
    ]
    if problems:
        raise ConfigError(problems)
    incident = Incident(
        id=0,
        fingerprint=f"eval-{raw.name}",
        playbook=playbook.name,
        labels=raw.incident.labels,
        severity=playbook.severity,
        status=Status.OPEN,
        summary=raw.incident.summary,
        value=raw.incident.value,
        opened_at=0.0,
        updated_at=0.0,
    )
    return Scenario(
        name=raw.name,
        category=raw.category,
        description=raw.description,
        path=path,
        playbook=playbook,
        incident=incident,
        attempts=raw.attempts,
        evidence=raw.evidence,
        tools=_with_history(raw.tools, raw.history),
        accept=frozenset(raw.accept),
        actionable=raw.incident.actionable,
        history=tuple(_past(raw.history, playbook, now=incident.opened_at)),
    )


def _past(
    history: Sequence[PastIncidentView], playbook: PlaybookBase, *, now: float
) -> Iterator[PastIncident]:
    """Earlier incidents at their times before this one; actions ran when each opened."""
    for number, view in enumerate(history, start=1):
        at = now - view.ago
        yield PastIncident(
            id=-number,
            opened_at=at,
            resolution=view.resolution,
            actions=tuple(
                PastAction(
                    action=a.action,
                    uses=a.uses or playbook.step(a.action).uses,  # type: ignore[union-attr]
                    ok=a.ok,
                    at=at,
                )
                for a in view.actions
            ),
        )


def _with_history(tools: Mapping[str, Any], history: Sequence[PastIncidentView]) -> dict[str, Any]:
    """The incident_history tool answers from `history:` unless a scenario records it."""
    if not history or "incident_history" in tools:
        return dict(tools)
    return {**tools, "incident_history": [h.model_dump(mode="json") for h in history]}


def load_scenarios(directory: Path) -> list[Scenario]:
    paths = sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    if not paths:
        raise ConfigError([f"{directory}:0: (directory): no scenario files (*.yaml) found"])
    scenarios, problems = [], []
    for path in paths:
        try:
            scenarios.append(load_scenario(path))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return scenarios


@dataclass(frozen=True, kw_only=True)
class Outcome:
    scenario: str
    category: str
    accept: tuple[str, ...]
    decision: str
    reason: str
    passed: bool
    outside_playbook: bool
    harmful: bool  # acted where escalate was the only acceptable answer
    latency_s: float
    decided_by: str = ""  # the agent that decided (after handoffs or fallbacks)
    llm_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0


def agent_names(llm_agents: LLMDiagnosers | None) -> list[str]:
    return sorted({*AGENTS.names(), *(llm_agents.settings if llm_agents else ())})


async def evaluate(
    scenarios: Sequence[Scenario],
    agent: str,
    llm_agents: LLMDiagnosers | None = None,
    settings: DiagnosisSettings | None = None,
) -> list[Outcome]:
    """Ask the named agent (registered in code, or configured under `agents:`) for a decision
    on each scenario, after the checks the daemon makes before any agent is asked; score it
    against `accept`."""
    settings = settings or DiagnosisSettings()
    outcomes = []
    for scenario in scenarios:
        diagnoser: Diagnoser = (
            llm_agents.diagnoser(agent)
            if llm_agents is not None and agent in llm_agents
            else AGENTS.get(agent)()
        )
        started = time.perf_counter()
        inconclusive = before_diagnosis(scenario.actionable, scenario.incident.summary)
        decision: Decision = (
            Decision(action=ESCALATE, reason=inconclusive, agent="opsmedic")
            if inconclusive is not None
            else await diagnoser.diagnose(scenario.request(settings))
        )
        latency = time.perf_counter() - started
        listed = {s.id for s in scenario.playbook.steps} | {ESCALATE}
        outside = decision.action not in listed
        outcomes.append(
            Outcome(
                scenario=scenario.name,
                category=scenario.category,
                accept=tuple(sorted(scenario.accept)),
                decision=decision.action,
                reason=decision.reason,
                passed=not outside and decision.action in scenario.accept,
                outside_playbook=outside,
                harmful=scenario.must_escalate and decision.action != ESCALATE,
                latency_s=latency,
                decided_by=decision.agent,
                llm_calls=len(decision.calls),
                tokens=decision.tokens,
                cost_usd=decision.cost_usd,
            )
        )
    return outcomes


def summary(outcomes: Sequence[Outcome], agent: str) -> dict[str, Any]:
    passed = sum(o.passed for o in outcomes)
    latencies = [o.latency_s for o in outcomes]
    by_category: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_category.setdefault(o.category, []).append(o)
    return {
        "agent": agent,
        "scenarios": len(outcomes),
        "passed": passed,
        "pass_rate": passed / len(outcomes) if outcomes else math.nan,
        "harmful": sum(o.harmful for o in outcomes),
        "must_escalate": sum(o.accept == (ESCALATE,) for o in outcomes),
        "by_category": {
            c: {
                "scenarios": len(os),
                "passed": sum(o.passed for o in os),
                "harmful": sum(o.harmful for o in os),
            }
            for c, os in sorted(by_category.items())
        },
        "outside_playbook": sum(o.outside_playbook for o in outcomes),
        "fell_back_to_rules": sum(o.decided_by == "rules" and agent != "rules" for o in outcomes),
        "mean_tokens": statistics.fmean(o.tokens for o in outcomes) if outcomes else 0.0,
        "total_cost_usd": sum(o.cost_usd for o in outcomes),
        "mean_latency_s": statistics.fmean(latencies) if latencies else 0.0,
        "p95_latency_s": sorted(latencies)[max(0, math.ceil(0.95 * len(latencies)) - 1)]
        if latencies
        else 0.0,
    }
