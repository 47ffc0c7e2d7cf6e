"""Slack notifier (slack-sdk Web API): a message when an incident escalates, thread replies for
every later event, and the message updated when the incident resolves."""

from __future__ import annotations

import asyncio
from typing import Any

from daemon.clock import Clock
from daemon.errors import PermanentError, TemporaryError
from daemon.incidents import EventKind
from daemon.notify.base import Notification, Receipt
from daemon.notify.console import labels_text
from daemon.retry import with_retries

TEMPORARY_ERRORS = {
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
}


def causes_lines(causes: list[Any], limit: int = 5) -> list[str]:
    """The causes found, each with the evidence it quotes."""
    lines = [
        f"• `{c.get('cause')}` ({escape(str(c.get('source')))}): {escape(str(c.get('detail')))}"
        for c in causes[:limit]
        if isinstance(c, dict)
    ]
    return ["*Causes found:*", *lines] if lines else []


def escape(text: str) -> str:
    """Slack's mrkdwn control characters, so data can never ping `<!channel>` or fake a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackNotifier:
    name = "slack"

    def __init__(
        self,
        *,
        token: str,
        channel: str | None,
        clock: Clock,
        base_url: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
    ) -> None:
        from slack_sdk import WebClient

        # retry_handlers=[]: the SDK's own retries sleep for real; ours use the injected clock
        kwargs: dict[str, Any] = {
            "token": token,
            "timeout": int(max(1, timeout)),
            "retry_handlers": [],
        }
        if base_url:
            kwargs["base_url"] = base_url if base_url.endswith("/") else base_url + "/"
        self.client = WebClient(**kwargs)
        self.channel = channel
        self.clock = clock
        self.retries = retries

    async def notify(self, notification: Notification) -> Receipt | None:
        event, incident = notification.event, notification.incident
        thread = notification.receipts.get(self.name)
        if event.kind.bookkeeping:
            return None
        if thread is None:
            if event.kind is not EventKind.ESCALATED:
                return None  # Slack hears about an incident once it needs a human
            channel = notification.route.slack_channel or self.channel
            if not channel:
                raise PermanentError("no Slack channel: set notify.slack.channel or escalate.slack")
            resp = await self._call(
                "chat_postMessage",
                channel=channel,
                text=self._escalation_text(notification),
                unfurl_links=False,
            )
            return Receipt(notifier=self.name, data={"channel": resp["channel"], "ts": resp["ts"]})
        channel, ts = thread["channel"], thread["ts"]
        if event.kind is EventKind.RESOLVED:  # update first: a retry re-posts nothing twice
            await self._call(
                "chat_update",
                channel=channel,
                ts=ts,
                text=f":white_check_mark: *Resolved* ({incident.resolution or 'resolved'}) "
                f"~{self._headline(notification)}~",
            )
        await self._call(
            "chat_postMessage",
            channel=channel,
            thread_ts=ts,
            text=f"*{event.kind}*: {escape(event.message)}",
        )
        return None

    @staticmethod
    def _headline(notification: Notification) -> str:
        incident = notification.incident
        target = labels_text(incident.labels)
        return escape(
            f"opsmedic #{incident.id} {incident.playbook} ({incident.severity})"
            + (f" {target}" if target else "")
        )

    def _escalation_text(self, notification: Notification) -> str:
        mention = notification.route.slack_mention
        return "\n".join(
            [
                f":rotating_light: {mention + ' ' if mention else ''}*Escalated:* "
                f"{self._headline(notification)}",
                f"*Why:* {escape(notification.event.message)}",
                f"*Symptom:* {escape(notification.incident.summary)}",
                *causes_lines(notification.event.data.get("causes") or []),
            ]
        )

    async def _call(self, method: str, **kwargs: Any) -> Any:
        from slack_sdk.errors import SlackApiError, SlackClientError

        def call() -> Any:
            try:
                return getattr(self.client, method)(**kwargs)
            except SlackApiError as exc:
                error = exc.response.get("error", "") if exc.response is not None else ""
                status = exc.response.status_code if exc.response is not None else 0
                if status == 429 or status >= 500 or error in TEMPORARY_ERRORS:
                    headers = {k.lower(): v for k, v in (exc.response.headers or {}).items()}
                    retry_after = headers.get("retry-after")
                    raise TemporaryError(
                        f"Slack {method}: {error or status}",
                        retry_after=float(retry_after) if retry_after else None,
                    ) from exc
                raise PermanentError(f"Slack {method}: {error or status}") from exc
            except SlackClientError as exc:  # bad request or configuration: retrying won't help
                raise PermanentError(f"Slack {method}: {exc}") from exc
            except OSError as exc:  # refused, reset, timed out
                raise TemporaryError(f"Slack {method}: {exc}") from exc

        return await with_retries(
            lambda: asyncio.to_thread(call),
            retries=self.retries,
            clock=self.clock,
            what=f"Slack {method}",
        )
