"""`backoff` action: wait, growing exponentially per attempt, then let the target be
re-verified. For transient faults that heal on their own (rate limits, brief outages)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from daemon.actions.base import ACTIONS, ActionContext, ActionKind, ActionParams, ActionResult
from daemon.diagnosis.causes import WAIT_AND_SEE
from daemon.durations import Duration


class BackoffParams(ActionParams):
    initial: Duration = Field(30.0, description="Wait before the first re-check")
    factor: float = Field(2.0, ge=1.0, description="Growth per attempt of this action")
    max: Duration = Field(600.0, description="Upper bound of one wait")

    agent_settable: ClassVar[frozenset[str]] = frozenset({"initial", "factor"})


class BackoffAction:
    async def run(self, params: BackoffParams, context: ActionContext) -> ActionResult:
        delay = min(params.max, params.initial * params.factor ** (context.action_attempt - 1))
        await context.clock.sleep(delay)
        return ActionResult(ok=True, message=f"waited {delay:g}s", data={"waited_seconds": delay})


ACTIONS.register("backoff", ActionKind(BackoffParams, BackoffAction, WAIT_AND_SEE))
