"""Console notifier: one readable line per incident event, on stdout."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

from daemon.errors import PermanentError
from daemon.notify.base import Notification, Receipt


def labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def event_line(notification: Notification) -> str:
    incident, event = notification.incident, notification.event
    stamp = datetime.fromtimestamp(event.at, UTC).strftime("%H:%M:%S")
    target = labels_text(incident.labels)
    where = f"{incident.playbook}{' {' + target + '}' if target else ''}"
    return f"{stamp}  #{incident.id:<4} {where:<48} {event.kind:<15} {event.message}"


class ConsoleNotifier:
    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    async def notify(self, notification: Notification) -> Receipt | None:
        if not notification.event.kind.bookkeeping:
            stream = self.stream or sys.stdout
            try:
                stream.write(event_line(notification) + "\n")
                stream.flush()
            except OSError as exc:
                raise PermanentError(f"cannot write to the console: {exc}") from exc
        return None
