"""Diagnosing agents: one module per agent kind, registered in AGENTS."""

from daemon.agents import rules  # noqa: F401  (registers the rules diagnoser)
from daemon.agents.base import AGENTS, ESCALATE, Decision, Diagnoser, DiagnosisRequest

__all__ = ["AGENTS", "ESCALATE", "Decision", "Diagnoser", "DiagnosisRequest"]
