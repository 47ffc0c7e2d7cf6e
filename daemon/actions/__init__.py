"""Remediation actions: one module per `uses:` kind, each registering itself in ACTIONS."""

from daemon.actions import backoff, command, http, kubernetes  # noqa: F401  (registers the built-in kinds)
from daemon.actions.base import (
    ACTIONS,
    Action,
    ActionContext,
    ActionKind,
    ActionParams,
    ActionResult,
    run_with_retries,
)

__all__ = [
    "ACTIONS",
    "Action",
    "ActionContext",
    "ActionKind",
    "ActionParams",
    "ActionResult",
    "run_with_retries",
]
