"""The rules diagnoser: the first listed action whose `when` holds and whose attempts are not
exhausted; otherwise escalate. Deterministic, offline, and the fallback of every LLM agent."""

from __future__ import annotations

from daemon.agents.base import AGENTS, ESCALATE, Decision, DiagnosisRequest
from daemon.templating import TemplateProblem, evaluate


class RulesDiagnoser:
    name = "rules"

    async def diagnose(self, request: DiagnosisRequest) -> Decision:
        skipped = []
        for step in request.playbook.steps:
            tried = request.attempts.get(step.id, 0)
            if tried >= step.max_attempts:
                skipped.append(f"{step.id}: tried {tried} of {step.max_attempts}")
                continue
            if step.when is not None:
                try:
                    holds = evaluate(step.when, request.context)
                except TemplateProblem as exc:
                    skipped.append(f"{step.id}: condition not evaluable ({exc})")
                    continue
                if not holds:
                    skipped.append(f"{step.id}: `{step.when}` is false")
                    continue
            because = f" because `{step.when}`" if step.when else ""
            return Decision(
                action=step.id,
                reason=f"first listed action that applies{because}"
                + (f" (skipped {'; '.join(skipped)})" if skipped else ""),
            )
        if not request.playbook.steps:
            return Decision(action=ESCALATE, reason="the playbook lists no actions")
        return Decision(action=ESCALATE, reason="no action left to try: " + "; ".join(skipped))


AGENTS.register("rules", RulesDiagnoser)
