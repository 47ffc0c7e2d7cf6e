"""Diagnosing agents: the rules diagnoser, and LLM agents (one module per provider)."""

from daemon.agents import anthropic, openai, rules  # noqa: F401  (register themselves)
from daemon.agents.base import (
    AGENTS,
    ESCALATE,
    Decision,
    Diagnoser,
    DiagnosisRequest,
    LLMCall,
    Note,
    Spend,
)

__all__ = [
    "AGENTS",
    "ESCALATE",
    "Decision",
    "Diagnoser",
    "DiagnosisRequest",
    "LLMCall",
    "Note",
    "Spend",
]
