"""The Notifier protocol: every incident event goes to every notifier, which picks what to say."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from daemon.incidents import Event, Incident


@dataclass(frozen=True, kw_only=True)
class Route:
    """Where a playbook wants escalations to go."""

    slack_channel: str | None = None
    slack_mention: str | None = None


@dataclass(frozen=True, kw_only=True)
class Notification:
    incident: Incident
    event: Event
    route: Route = field(default_factory=Route)
    receipts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """What each notifier returned earlier for this incident (e.g. a Slack thread)."""


@dataclass(frozen=True, kw_only=True)
class Receipt:
    """A notifier's reference to what it posted, kept in the incident log for later events."""

    notifier: str
    data: Mapping[str, Any]


class Notifier(Protocol):
    name: str

    async def notify(self, notification: Notification) -> Receipt | None:
        """Deliver (or ignore) one event. Raise TemporaryError/PermanentError on failure."""
        ...
