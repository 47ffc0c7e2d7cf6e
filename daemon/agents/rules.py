"""The rules diagnoser: the first listed action that applies and whose attempts are not
exhausted; otherwise escalate. Deterministic, offline, and the fallback of every LLM agent.

An action applies when its `when` holds (the author said so), or, without `when`, when no cause
found says its kind cannot help (daemon/diagnosis/causes.py). Causes that need a human (a bad
credential, a schema change, `flapping`, ...) hold back every action whose kind cannot help
them, `when` or not. `ignore_causes` opts an action out."""

from __future__ import annotations

from collections.abc import Sequence

from daemon.actions import ACTIONS
from daemon.agents.base import AGENTS, ESCALATE, Decision, DiagnosisRequest
from daemon.diagnosis import Cause
from daemon.diagnosis.causes import NEEDS_A_HUMAN, SYMPTOMS
from daemon.templating import TemplateProblem, evaluate


def heeded(causes: Sequence[Cause], ignore: bool | Sequence[str]) -> list[Cause]:
    """The causes an action listens to, after its `ignore_causes`."""
    if ignore is True:
        return []
    return [c for c in causes if c.cause not in (ignore or ())]


def explain(causes: Sequence[Cause]) -> str:
    """Each cause once, root causes before symptoms, quoting its evidence."""
    first = {c.cause: c for c in reversed(causes)}  # the first of each name
    ordered = sorted(dict.fromkeys(c.cause for c in causes), key=lambda n: n in SYMPTOMS)
    return "; ".join(f"{n} ({first[n].source}: {first[n].detail!r})" for n in ordered)


class RulesDiagnoser:
    name = "rules"

    async def diagnose(self, request: DiagnosisRequest) -> Decision:
        skipped: list[str] = []
        held_back: list[Cause] = []
        for step in request.playbook.steps:
            tried = request.attempts.get(step.id, 0)
            if tried >= step.max_attempts:
                skipped.append(f"{step.id}: tried {tried} of {step.max_attempts}")
                continue
            remedy = ACTIONS.get(step.uses).remedy
            causes = heeded(request.causes, step.ignore_causes)
            vetoes = remedy.vetoes(causes, step.uses)
            brakes = [c for c in vetoes if c.cause in NEEDS_A_HUMAN]
            if brakes:
                held_back += brakes
                skipped.append(f"{step.id}: {step.uses} cannot help {brakes[0].cause}")
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
                return self._choose(step.id, f"`{step.when}` holds", skipped)
            if vetoes:
                held_back += vetoes
                names = ", ".join(dict.fromkeys(c.cause for c in vetoes))
                skipped.append(f"{step.id}: {step.uses} cannot help {names}")
                continue
            missing = remedy.missing(causes)
            if missing is not None:
                skipped.append(f"{step.id}: {step.uses} helps only with {missing}, not found")
                continue
            return self._choose(step.id, "no cause found says it cannot help", skipped)
        if not request.playbook.steps:
            return Decision(action=ESCALATE, reason="the playbook lists no actions")
        if held_back:
            return Decision(
                action=ESCALATE,
                reason=f"{explain(held_back)}: no listed action can help "
                f"(skipped {'; '.join(skipped)})",
            )
        return Decision(action=ESCALATE, reason="no action left to try: " + "; ".join(skipped))

    @staticmethod
    def _choose(action: str, because: str, skipped: list[str]) -> Decision:
        return Decision(
            action=action,
            reason=f"first listed action that applies: {because}"
            + (f" (skipped {'; '.join(skipped)})" if skipped else ""),
        )


AGENTS.register("rules", RulesDiagnoser)
