"""Named LLM agents from the config, and what wraps every LLM decision: the decision cache,
budgets, handoffs, the fallback chain with a circuit breaker per provider, and the rules
diagnoser as the last resort. The result is always a Decision; how it was reached (cache hit,
handoff, fallback, budget stop) travels with it as notes for the timeline."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from daemon.agents.base import ESCALATE, Decision, DiagnosisRequest, LLMCall, Note
from daemon.agents.llm import PROVIDERS, AgentFailed, HandOff, Investigation, LLMAgent, OverBudget
from daemon.agents.rules import RulesDiagnoser
from daemon.agents.settings import AgentSettings, Breaker, LLMSettings
from daemon.clock import Clock
from daemon.redact import DEFAULT as REDACTOR
from daemon.redact import Redactor

log = logging.getLogger(__name__)


class CircuitBreaker:
    """Per provider endpoint: after `failures` failed calls in a row, skip it for `cooldown`;
    then let one call through (half-open) and close again if it succeeds."""

    def __init__(self, settings: Breaker, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}

    def open_reason(self, key: str) -> str | None:
        until = self._open_until.get(key)
        if until is None or self.clock.now() >= until:
            return None
        return (
            f"circuit open for {key} after {self._failures.get(key, 0)} failures in a row; "
            f"trying it again in {until - self.clock.now():.0f}s"
        )

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
        self._open_until.pop(key, None)

    def failed(self, key: str) -> None:
        self._failures[key] = self._failures.get(key, 0) + 1
        if self._failures[key] >= self.settings.failures:
            self._open_until[key] = self.clock.now() + self.settings.cooldown


def evidence_digest(request: DiagnosisRequest) -> str:
    """What a decision depends on besides the target: the evidence and the attempts so far."""
    payload = {
        "evidence": request.context.get("evidence", {}),
        "attempts": dict(request.attempts),
        "playbook": request.playbook.name,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class _Cached:
    decision: Decision
    at: float


class DecisionCache:
    def __init__(self, ttl: float, clock: Clock) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[tuple[str, str, str], _Cached] = {}

    def get(self, key: tuple[str, str, str]) -> _Cached | None:
        entry = self._entries.get(key)
        if entry is None or self.clock.now() - entry.at > self.ttl:
            self._entries.pop(key, None)
            return None
        return entry

    def put(self, key: tuple[str, str, str], decision: Decision) -> None:
        now = self.clock.now()
        self._entries = {k: e for k, e in self._entries.items() if now - e.at <= self.ttl}
        self._entries[key] = _Cached(decision=decision, at=now)


class _Trail:
    """Calls and notes gathered while one decision is being reached."""

    def __init__(self) -> None:
        self.calls: list[LLMCall] = []
        self.notes: list[Note] = []

    def note(self, kind: str, message: str, **data: object) -> None:
        self.notes.append(Note(kind=kind, message=message, data=data))

    def spent(self) -> float:
        return sum(c.cost_usd for c in self.calls)

    def finish(self, decision: Decision) -> Decision:
        return replace(decision, calls=tuple(self.calls), notes=tuple(self.notes))


class LLMDiagnosers:
    """The agents named in the config, sharing one cache, breaker and budget."""

    def __init__(
        self,
        agents: Mapping[str, AgentSettings],
        llm: LLMSettings,
        *,
        clock: Clock,
        redactor: Redactor = REDACTOR,
    ) -> None:
        self.settings = dict(agents)
        self.llm = llm
        self.clock = clock
        self.redactor = redactor
        self.breaker = CircuitBreaker(llm.breaker, clock)
        self.cache = DecisionCache(llm.cache_ttl, clock)
        self.rules = RulesDiagnoser()
        self._agents: dict[str, LLMAgent] = {}

    @property
    def default(self) -> str | None:
        return self.llm.default_agent

    def __contains__(self, name: object) -> bool:
        return name in self.settings

    def diagnoser(self, name: str) -> Named:
        if name not in self.settings:
            raise KeyError(f"no agent named {name!r} in the config")
        return Named(name=name, agents=self)

    async def aclose(self) -> None:
        """Close the providers' HTTP connections."""
        for agent in self._agents.values():
            await agent.provider.aclose()
        self._agents.clear()

    def agent(self, name: str) -> LLMAgent:
        if name not in self._agents:
            settings = self.settings[name]
            provider = PROVIDERS.get(settings.provider)(settings)
            self._agents[name] = LLMAgent(
                name, settings, self.llm, provider=provider, clock=self.clock,
                redactor=self.redactor,
            )  # fmt: skip
        return self._agents[name]

    async def diagnose(self, name: str, request: DiagnosisRequest) -> Decision:
        trail = _Trail()
        key = (name, request.incident.fingerprint, evidence_digest(request))
        cached = self.cache.get(key)
        if cached is not None:
            ago = self.clock.now() - cached.at
            trail.note(
                "decision_cached",
                f"same evidence as {ago:.0f}s ago: reusing {cached.decision.agent}'s decision",
                digest=key[2],
            )
            return trail.finish(cached.decision)
        for candidate in self._chain(name):
            if candidate == "rules":
                break
            try:
                decision = await self._run(candidate, request, trail)
            except OverBudget as exc:
                trail.note("budget_exceeded", f"{candidate}: {exc}; the rules diagnoser decides")
                return trail.finish(await self.rules.diagnose(request))
            if decision is not None:
                decision = self._confident(decision)
                self.cache.put(key, replace(decision, calls=(), notes=()))
                return trail.finish(decision)
        trail.note("agent_fallback", "no LLM agent gave a valid decision; the rules decide")
        return trail.finish(await self.rules.diagnose(request))

    def _chain(self, name: str) -> list[str]:
        chain = [name, *self.settings[name].fallback, "rules"]
        return list(dict.fromkeys(chain))

    def _budget_left(self, request: DiagnosisRequest, spent_now: float) -> tuple[float, str] | None:
        """What the tighter of the per-incident and per-day budgets leaves, and its account."""
        budget = self.llm.budget
        left = [
            (
                limit - spent - spent_now,
                f"per {what} spent (${spent + spent_now:.4f} of ${limit:g})",
            )
            for what, limit, spent in (
                ("incident", budget.per_incident_usd, request.spend.incident_usd),
                ("day", budget.per_day_usd, request.spend.today_usd),
            )
            if limit is not None
        ]
        return min(left) if left else None

    async def _run(self, name: str, request: DiagnosisRequest, trail: _Trail) -> Decision | None:
        """One agent of the fallback chain, following its handoffs; None when it failed."""
        current, handed_from, why, depth = name, None, "", 0
        while True:
            budget = self._budget_left(request, trail.spent())
            if budget is not None and budget[0] <= 0:  # before asking, or after a handoff
                raise OverBudget(f"LLM budget {budget[1]}")
            agent = self.agent(current)
            blocked = self.breaker.open_reason(agent.provider.key)
            if blocked:
                trail.note("agent_skipped", f"{current}: {blocked}", agent=current)
                return None
            can_hand_to = self.settings[current].handoffs if depth < self.llm.max_handoffs else []
            run = Investigation(
                handoff_targets=tuple(can_hand_to),
                handed_from=handed_from,
                handoff_reason=why,
                budget_left=None if budget is None else budget[0],
            )
            try:
                decision = await agent.investigate(request, run, trail.calls)
            except HandOff as handoff:
                self.breaker.succeeded(agent.provider.key)
                depth += 1
                trail.note(
                    "handoff",
                    f"{current} handed the incident to {handoff.target}: {handoff.reason}",
                    source=current,
                    target=handoff.target,
                    depth=depth,
                )
                current, handed_from, why = handoff.target, current, handoff.reason
                continue
            except AgentFailed as exc:
                if exc.provider_failed:
                    self.breaker.failed(agent.provider.key)
                else:
                    self.breaker.succeeded(agent.provider.key)
                log.warning("agent %s failed: %s; falling back", current, exc.reason)
                trail.note("agent_failed", f"{current}: {exc.reason}", agent=current)
                return None
            self.breaker.succeeded(agent.provider.key)
            if name != current:
                decision = replace(decision, agent=f"{name}→{current}")
            return decision

    def _confident(self, decision: Decision) -> Decision:
        agent = decision.agent.split("→")[-1]
        floor = self.settings[agent].min_confidence
        if decision.escalates or decision.confidence >= floor:
            return decision
        return replace(
            decision,
            action=ESCALATE,
            reason=f"not confident enough to {decision.action} ({decision.confidence:.2f} < "
            f"{floor:.2f}): {decision.reason}",
            params={},
        )


class Named:
    """One configured agent as a Diagnoser."""

    def __init__(self, *, name: str, agents: LLMDiagnosers) -> None:
        self.name = name
        self.agents = agents

    async def diagnose(self, request: DiagnosisRequest) -> Decision:
        return await self.agents.diagnose(self.name, request)
