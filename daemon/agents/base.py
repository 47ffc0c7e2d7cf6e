"""The Diagnoser protocol: given an incident and its evidence, choose one of the playbook's
actions or `escalate`, with a reason a human can check."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from daemon.incidents import Incident
from daemon.registry import Registry

if TYPE_CHECKING:
    from daemon.playbook import PlaybookBase

ESCALATE = "escalate"


@dataclass(frozen=True, kw_only=True)
class DiagnosisRequest:
    incident: Incident
    playbook: PlaybookBase
    context: Mapping[str, Any]  # labels, value, evidence, incident: what templates see
    attempts: Mapping[str, int] = field(default_factory=dict)  # tries per action id so far


@dataclass(frozen=True, kw_only=True)
class Decision:
    action: str  # an action id of the playbook, or "escalate"
    reason: str
    confidence: float = 1.0
    agent: str = "rules"

    @property
    def escalates(self) -> bool:
        return self.action == ESCALATE


class Diagnoser(Protocol):
    name: str

    async def diagnose(self, request: DiagnosisRequest) -> Decision: ...


AGENTS: Registry[Callable[[], Diagnoser]] = Registry("agent")
