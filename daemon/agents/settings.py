"""Config of LLM agents (`agents:`) and of what bounds them all (`llm:`): default agent,
handoff depth, decision cache, circuit breaker, budgets and the price table."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from daemon.durations import Duration
from daemon.errors import PermanentError

NAME = r"^[a-z0-9][a-z0-9_.-]*$"  # as playbook names: `diagnose.agent` must be able to name it
TOOL_NAMES = ("promql", "rollout_history", "pods", "events", "logs", "incident_history")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentSettings(Section):
    provider: Literal["openai", "anthropic"] = Field(
        description="openai: Chat Completions (also any OpenAI-compatible server via base_url, "
        "e.g. Ollama or vLLM); anthropic: the Messages API"
    )
    model: str = Field(min_length=1, description="Model name as the provider spells it")
    base_url: str | None = Field(None, description="API base URL (default: the provider's)")
    api_key_env: str | None = Field(
        None,
        description="Env variable holding the API key (default OPENAI_API_KEY / ANTHROPIC_API_KEY)",
    )
    api_key_file: Path | None = Field(None, description="File holding the API key (wins)")
    instructions: str = Field("", description="What this agent is for; added to its prompt")
    tools: list[Literal[TOOL_NAMES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(TOOL_NAMES),
        description="Read-only evidence tools it may call: " + ", ".join(TOOL_NAMES),
    )
    handoffs: list[str] = Field(
        default_factory=list, description="Agents it may hand the incident to"
    )
    fallback: list[str] = Field(
        default_factory=list,
        description="Agents to try, in order, when this one fails; `rules` always comes last",
    )
    timeout: Duration = Field(60.0, description="Per request to the provider")
    retries: int = Field(2, ge=0, le=10, description="Retries of a 429, 5xx or lost connection")
    max_steps: int = Field(8, ge=1, le=50, description="Model turns per investigation")
    max_tokens: int = Field(1024, ge=16, description="Output tokens per model turn")
    min_confidence: float = Field(
        0.0, ge=0.0, le=1.0, description="Escalate instead of acting on less confident decisions"
    )

    def api_key(self) -> str | None:
        if self.api_key_file is not None:
            try:
                return self.api_key_file.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise PermanentError(
                    f"cannot read api_key_file {self.api_key_file}: {exc.strerror}"
                ) from None
        env = self.api_key_env or f"{self.provider.upper()}_API_KEY"
        return os.environ.get(env) or None


class Price(Section):
    input: float = Field(ge=0, description="USD per million input tokens")
    output: float = Field(ge=0, description="USD per million output tokens")


class Budget(Section):
    per_incident_usd: float | None = Field(None, ge=0, description="LLM spend per incident")
    per_day_usd: float | None = Field(None, ge=0, description="LLM spend per UTC day")

    @property
    def limited(self) -> bool:
        return self.per_incident_usd is not None or self.per_day_usd is not None


class Breaker(Section):
    failures: int = Field(3, ge=1, description="Failed calls in a row that open the circuit")
    cooldown: Duration = Field(300.0, description="How long an open circuit skips the provider")


class LLMSettings(Section):
    default_agent: str | None = Field(
        None, description="The agent of playbooks with `diagnose.agent: auto` (else rules)"
    )
    max_handoffs: int = Field(2, ge=0, le=5, description="How deep agents may hand off")
    cache_ttl: Duration = Field(
        600.0, description="Reuse a decision for the same fingerprint and evidence this long"
    )
    tool_output_bytes: int = Field(8000, ge=256, description="Cap of one tool result")
    breaker: Breaker = Field(default_factory=Breaker)
    budget: Budget = Field(default_factory=Budget)
    prices: dict[str, Price] = Field(
        default_factory=dict, description="USD per million tokens, by model name"
    )

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        price = self.prices.get(model)
        if price is None:
            return 0.0
        return (input_tokens * price.input + output_tokens * price.output) / 1_000_000


def reference_problems(
    agents: dict[str, AgentSettings], llm: LLMSettings
) -> list[tuple[tuple[str | int, ...], str]]:
    """(field path, message) for names that point nowhere and budgets without prices."""
    names = set(agents)
    found: list[tuple[tuple[str | int, ...], str]] = []
    if llm.default_agent is not None and llm.default_agent not in names:
        found.append(
            (("llm", "default_agent"), f"no agent named {llm.default_agent!r} under agents:")
        )
    for name, agent in agents.items():
        if not re.match(NAME, name):
            found.append(
                (("agents", name), "agent names are lowercase: letters, digits, '_', '.', '-'")
            )
        if name in ("rules", "auto"):
            found.append((("agents", name), f"the agent name {name!r} is reserved"))
        for key in ("handoffs", "fallback"):
            for i, target in enumerate(getattr(agent, key)):
                ok = target in names or (key == "fallback" and target == "rules")
                if not ok or target == name:
                    found.append(
                        (("agents", name, key, i), f"{target!r} is not another agent's name")
                    )
        if llm.budget.limited and agent.model not in llm.prices:
            found.append(
                (
                    ("agents", name, "model"),
                    f"a budget is set but llm.prices has no price for {agent.model!r}",
                )
            )
    return found
