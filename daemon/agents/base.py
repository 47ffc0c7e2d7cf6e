"""The Diagnoser protocol: given an incident and its evidence, choose one of the playbook's
actions or `escalate`, with a reason a human can check."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from daemon.diagnosis import Cause
from daemon.incidents import Incident
from daemon.registry import Registry

if TYPE_CHECKING:
    from daemon.agents.tools import ToolBox
    from daemon.playbook import PlaybookBase

ESCALATE = "escalate"


@dataclass(frozen=True, kw_only=True)
class Spend:
    """What LLM calls have cost so far, for budgets: on this incident and today (UTC)."""

    incident_usd: float = 0.0
    today_usd: float = 0.0


@dataclass(frozen=True, kw_only=True)
class DiagnosisRequest:
    incident: Incident
    playbook: PlaybookBase
    context: Mapping[str, Any]  # labels, value, evidence, incident: what templates see
    attempts: Mapping[str, int] = field(default_factory=dict)  # tries per action id so far
    tools: ToolBox | None = None  # read-only evidence tools an LLM agent may call
    spend: Spend = Spend()
    causes: tuple[Cause, ...] = ()  # what the evidence and history say (also evidence.causes)


@dataclass(frozen=True, kw_only=True)
class LLMCall:
    """One request to a model, for the `llm_calls` audit table."""

    at: float
    agent: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    prompt_digest: str
    tools: tuple[str, ...] = ()  # tools the model called in its answer
    decision: str = ""  # the action it chose, when it called `decide`
    valid: bool = True
    error: str = ""  # why the answer (or the call) was not valid


@dataclass(frozen=True, kw_only=True)
class Note:
    """Something the timeline should say about how a decision was reached (a handoff, a
    fallback, a budget stop, a cache hit). Diagnosers return notes; the responder records them."""

    kind: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Decision:
    action: str  # an action id of the playbook, or "escalate"
    reason: str
    confidence: float = 1.0
    agent: str = "rules"
    params: Mapping[str, Any] = field(default_factory=dict)  # overrides of `agent_may_set`
    calls: tuple[LLMCall, ...] = ()
    notes: tuple[Note, ...] = ()

    @property
    def escalates(self) -> bool:
        return self.action == ESCALATE

    @property
    def cost_usd(self) -> float:
        return sum(c.cost_usd for c in self.calls)

    @property
    def tokens(self) -> int:
        return sum(c.input_tokens + c.output_tokens for c in self.calls)


class Diagnoser(Protocol):
    name: str

    async def diagnose(self, request: DiagnosisRequest) -> Decision: ...


AGENTS: Registry[Callable[[], Diagnoser]] = Registry("agent")
