"""The Action protocol, its value objects, the registry of `uses:` kinds, and retries."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from daemon.clock import Clock
from daemon.diagnosis.causes import Remedy
from daemon.errors import PermanentError
from daemon.kube.cluster import KubeClient
from daemon.registry import Registry
from daemon.retry import with_retries


class ActionParams(BaseModel):
    """The `with:` block of an action; each kind subclasses it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_settable: ClassVar[frozenset[str]] = frozenset()
    """Parameters a playbook may let an LLM agent choose (`agent_may_set`): amounts the
    action's own validation bounds. Never what to act on, and never the bounds themselves."""


@dataclass(frozen=True, kw_only=True)
class ActionContext:
    incident_id: int
    attempt: int  # the incident's attempt number, over all its actions
    action_attempt: int  # how many times this action id has been tried, this one included
    clock: Clock
    kubernetes: Mapping[str, KubeClient] = field(default_factory=dict)
    """Kubernetes clusters by name (from the daemon config)."""
    records: Path | None = None
    """A directory where a kind may keep records of its runs that outlive the daemon (the
    command kind keeps each child's pid, output and exit status there)."""
    started_at: float | None = None
    """When this attempt started (set when an attempt cut short is reconciled)."""

    def kube(self, name: str) -> KubeClient:
        try:
            return self.kubernetes[name]
        except KeyError:
            known = ", ".join(sorted(self.kubernetes)) or "none configured"
            raise PermanentError(f"unknown Kubernetes cluster {name!r} (known: {known})") from None

    @property
    def idempotency_key(self) -> str:
        return f"opsmedic-incident-{self.incident_id}-attempt-{self.attempt}"


@dataclass(frozen=True, kw_only=True)
class ActionResult:
    ok: bool
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)
    escalate: bool = False
    """True when no other action can help (target gone, permission missing): escalate now."""


class Action(Protocol):
    async def run(self, params: Any, context: ActionContext) -> ActionResult:
        """Act once. Raise TemporaryError to be retried, PermanentError to fail for good."""
        ...


@runtime_checkable
class Reconcilable(Protocol):
    """An action kind that can tell, after a crash, what became of an attempt cut short."""

    async def reconcile(self, params: Any, context: ActionContext) -> ActionResult | None:
        """The attempt's result if its change landed (for a command: it ran; this may wait for
        it to finish), None if it never did. Raise an Error when it cannot be known now."""
        ...


@dataclass(frozen=True)
class ActionKind:
    params: type[ActionParams]
    create: Callable[[], Action]
    remedy: Remedy
    """Which causes this kind can and cannot help (daemon/diagnosis/causes.py)."""
    idempotent: bool = False
    """True when running the same attempt (same idempotency key) twice acts only once: an
    attempt cut short by a crash is then re-run to learn its outcome."""


ACTIONS: Registry[ActionKind] = Registry("action")

RECORDS_KEPT = 7 * 86400.0  # how long the records of a finished attempt are kept


def prune_records(root: Path, *, before: float) -> int:
    """Remove the attempt records (`root/<kind>/<attempt>/`) last changed before a time;
    returns how many. An attempt that old was reconciled long ago."""
    removed = 0
    for record in root.glob("*/*"):
        try:
            if record.is_dir() and record.stat().st_mtime < before:
                shutil.rmtree(record)
                removed += 1
        except OSError:
            continue
    return removed


async def run_with_retries(
    action: Action, params: ActionParams, context: ActionContext, *, retries: int
) -> ActionResult:
    """Run an action, retrying TemporaryError with exponential backoff on the injected clock."""
    return await with_retries(
        lambda: action.run(params, context),
        retries=retries,
        clock=context.clock,
        what=f"incident {context.incident_id}: action attempt {context.attempt}",
    )
