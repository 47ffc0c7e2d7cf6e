"""The timeline: the daemon's only writer of the incident log. It opens incidents, appends
events, sets statuses and keeps the detector's state and the model-call audit, and tells every
notifier about each event.

The write comes first, so a notifier that is down never loses an event; its failure is itself
recorded. What a notifier returns (a Slack thread) is recorded too, for its later events.
Messages and data are redacted before they are written, and the incident's labels before
notifiers show them (its summary is redacted when it is opened), so no secret reaches the log
or Slack, whichever step (an agent's reason, an action's output, a probe's URL) let it in.
(Receipts of notifiers — a Slack channel and message ts — are stored as they are.)"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from daemon.clock import Clock
from daemon.incidents import Event, EventKind, Incident, IncidentStore, Resolution, Status
from daemon.notify.base import Notification, Notifier, Route
from daemon.redact import DEFAULT as REDACTOR
from daemon.redact import Redactor

log = logging.getLogger(__name__)


class Timeline:
    def __init__(
        self,
        store: IncidentStore,
        notifiers: Sequence[Notifier],
        clock: Clock,
        redactor: Redactor = REDACTOR,
    ) -> None:
        self.store = store
        self.notifiers = list(notifiers)
        self.clock = clock
        self.redactor = redactor

    def _receipts(self, incident_id: int) -> dict[str, Mapping[str, Any]]:
        return {
            e.data["notifier"]: e.data["receipt"]
            for e in self.store.events(incident_id)
            if e.kind is EventKind.NOTIFIED
        }

    async def open(
        self,
        *,
        fingerprint: str,
        playbook: str,
        labels: Mapping[str, str],
        severity: str,
        summary: str,
        value: float | None,
        at: float,
        data: Mapping[str, Any] | None = None,
    ) -> tuple[Incident, bool]:
        """Open an incident (its summary redacted) and record `opened`, or return the open one
        with this fingerprint (deduplication); True when it is new."""
        incident, created = self.store.open(
            fingerprint=fingerprint,
            playbook=playbook,
            labels=labels,
            severity=severity,
            summary=self.redactor.text(summary),
            value=value,
            at=at,
        )
        if created:
            await self.record(incident, EventKind.OPENED, incident.summary, data=data)
        return incident, created

    def llm_calls(self, incident: Incident, calls: Sequence[Any]) -> None:
        """The model calls of a diagnosis, for the audit (their errors and tools redacted)."""
        self.store.record_llm_calls(
            incident.id,
            [
                replace(c, error=self.redactor.text(c.error), tools=self.redactor.value(c.tools))
                for c in calls
            ],
        )

    def alert_state(self, playbook: str, states: Sequence[Any]) -> None:
        """The detector's pending and firing series of a playbook, restored after a restart."""
        self.store.save_alert_state(playbook, states, at=self.clock.now())

    async def escalate(
        self,
        incident: Incident,
        reason: str,
        *,
        route: Route | None = None,
        causes: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Hand the incident to humans: a state plus a notification (with the causes found);
        it stays open."""
        escalated = self.store.set_status(incident.id, Status.ESCALATED, at=self.clock.now())
        data = {"causes": list(causes)} if causes else None
        await self.record(escalated, EventKind.ESCALATED, reason, route=route, data=data)

    async def resolve(
        self,
        incident: Incident,
        resolution: Resolution,
        message: str,
        *,
        route: Route | None = None,
    ) -> None:
        resolved = self.store.set_status(
            incident.id, Status.RESOLVED, at=self.clock.now(), resolution=resolution
        )
        await self.record(resolved, EventKind.RESOLVED, message, route=route)

    async def record(
        self,
        incident: Incident,
        kind: EventKind,
        message: str,
        *,
        route: Route | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        event = self.store.append(
            incident.id,
            kind,
            self.redactor.text(message),
            at=self.clock.now(),
            data=self.redactor.value(dict(data or {})),
        )
        current = self.store.get(incident.id) or incident
        # notifiers also show the target, whose labels are stored as they are (they identify
        # it); the summary was redacted when the incident was opened
        current = replace(current, labels=self.redactor.value(dict(current.labels)))
        receipts = self._receipts(incident.id)
        for notifier in self.notifiers:
            note = Notification(
                incident=current, event=event, route=route or Route(), receipts=receipts
            )
            try:
                receipt = await notifier.notify(note)
            except Exception as exc:  # noqa: BLE001 - a notifier must never break a response
                log.error(
                    "incident %s: %s notifier failed on %s: %s; the event stays in the log",
                    incident.id,
                    notifier.name,
                    kind,
                    exc,
                )
                self.store.append(
                    incident.id,
                    EventKind.NOTIFY_FAILED,
                    self.redactor.text(f"{notifier.name}: {exc}"),
                    at=self.clock.now(),
                    data={"notifier": notifier.name, "event": event.id},
                )
                continue
            if receipt is not None:
                self.store.append(
                    incident.id,
                    EventKind.NOTIFIED,
                    f"{receipt.notifier} posted",
                    at=self.clock.now(),
                    data={"notifier": receipt.notifier, "receipt": dict(receipt.data)},
                )
        return event
