"""SlackNotifier through the real slack_sdk WebClient against the local FakeSlack."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from daemon.clock import FakeClock
from daemon.errors import PermanentError, TemporaryError
from daemon.incidents import Event, Incident, Status
from daemon.notify.base import Notification, Receipt, Route
from daemon.notify.slack import SlackNotifier
from tests.fakes.slack import FakeSlack

CHANNELS = {"#ops": "C0OPS", "#payments-oncall": "C0PAY"}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(channels=CHANNELS) as fake:
        yield fake


@pytest.fixture
def notifier(slack: FakeSlack, clock: FakeClock) -> SlackNotifier:
    return make_notifier(slack, clock)


def make_notifier(slack: FakeSlack, clock: FakeClock, **kwargs: Any) -> SlackNotifier:
    options: dict[str, Any] = {"token": slack.token, "channel": "#ops", "retries": 2} | kwargs
    return SlackNotifier(clock=clock, base_url=slack.base_url, **options)


def incident(status: Status = Status.ESCALATED, resolution: str | None = None) -> Incident:
    return Incident(
        id=7, fingerprint="f00d", playbook="checkout-error-rate",
        labels={"namespace": "shop", "deployment": "checkout"}, severity="critical",
        status=status, summary="5xx ratio 4.2% > 1%", value=0.042,
        opened_at=1_700_000_000.0, updated_at=1_700_000_100.0, resolution=resolution,
    )  # fmt: skip


def note(
    kind: str,
    message: str,
    *,
    receipt: Receipt | None = None,
    route: Route | None = None,
    status: Status = Status.ESCALATED,
    resolution: str | None = None,
) -> Notification:
    return Notification(
        incident=incident(status, resolution),
        event=Event(id=1, incident_id=7, at=1_700_000_100.0, kind=kind, message=message),
        route=route or Route(slack_mention="<!subteam^S123>"),
        receipts={"slack": receipt.data} if receipt else {},
    )


def escalated(**kwargs: Any) -> Notification:
    return note("escalated", "actions exhausted: rollback, restart", **kwargs)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a worker thread's HTTP call to land (real I/O, not time logic)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_escalation_posts_one_message_with_mention_and_reason(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    receipt = await notifier.notify(escalated())

    [message] = slack.messages("#ops")
    assert "<!subteam^S123>" in message["text"]
    assert "actions exhausted: rollback, restart" in message["text"]
    assert "checkout-error-rate" in message["text"]
    assert receipt == Receipt(notifier="slack", data={"channel": "C0OPS", "ts": message["ts"]})
    [request] = slack.requests
    assert request.method == "chat.postMessage"
    assert request.headers["authorization"] == f"Bearer {slack.token}"
    assert request.params["channel"] == "#ops"


@pytest.mark.parametrize("kind", ["opened", "action_started"])
async def test_events_before_escalation_post_nothing(
    slack: FakeSlack, notifier: SlackNotifier, kind: str
) -> None:
    assert await notifier.notify(note(kind, "something", status=Status.OPEN)) is None
    assert slack.requests == []


async def test_later_event_is_a_thread_reply(slack: FakeSlack, notifier: SlackNotifier) -> None:
    receipt = await notifier.notify(escalated())
    assert receipt is not None

    assert (
        await notifier.notify(note("verify_failed", "on-call is looking", receipt=receipt)) is None
    )

    assert len(slack.messages("C0OPS")) == 1
    [reply] = slack.replies("C0OPS", receipt.data["ts"])
    assert reply["thread_ts"] == receipt.data["ts"]
    assert "on-call is looking" in reply["text"]


async def test_resolved_after_escalation_updates_message_and_replies(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    receipt = await notifier.notify(escalated())
    assert receipt is not None
    resolved = note(
        "resolved", "probe healthy again", receipt=receipt, status=Status.RESOLVED,
        resolution="recovered-after-escalation",
    )  # fmt: skip

    await notifier.notify(resolved)

    [message] = slack.messages("C0OPS")
    assert "Resolved" in message["text"]
    assert "recovered-after-escalation" in message["text"]
    assert "edited" in message
    [reply] = slack.replies("C0OPS", receipt.data["ts"])
    assert "probe healthy again" in reply["text"]
    [update] = slack.requests_for("chat.update")
    assert update.params["ts"] == receipt.data["ts"]


async def test_route_channel_overrides_default_channel(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    receipt = await notifier.notify(escalated(route=Route(slack_channel="#payments-oncall")))

    assert receipt is not None and receipt.data["channel"] == "C0PAY"
    assert len(slack.messages("#payments-oncall")) == 1
    assert slack.messages("#ops") == []


async def test_rate_limited_post_is_retried_on_the_clock(
    slack: FakeSlack, notifier: SlackNotifier, clock: FakeClock
) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=1)

    task = asyncio.create_task(notifier.notify(escalated()))
    await until(lambda: clock.sleepers == 1)  # first attempt got 429; waiting for backoff
    assert [r.status for r in slack.requests] == [429]
    await clock.advance(1)
    receipt = await asyncio.wait_for(task, timeout=5)

    assert [r.status for r in slack.requests] == [429, 200]
    assert receipt is not None and receipt.data["ts"] == slack.messages("#ops")[0]["ts"]


async def test_rate_limited_retry_waits_for_retry_after(
    slack: FakeSlack, notifier: SlackNotifier, clock: FakeClock
) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=5)

    task = asyncio.create_task(notifier.notify(escalated()))
    await until(lambda: clock.sleepers == 1)
    await clock.advance(4)
    try:
        assert clock.sleepers == 1  # still backing off: no retry before Retry-After
        assert len(slack.requests) == 1
    finally:
        await clock.advance(60)
        await asyncio.wait_for(task, timeout=5)


async def test_server_errors_exhaust_retries_as_temporary(
    slack: FakeSlack, notifier: SlackNotifier, clock: FakeClock
) -> None:
    slack.fail_next("chat.postMessage", status=500, times=3)

    task = asyncio.create_task(notifier.notify(escalated()))
    for attempt in (1, 2):
        await until(lambda: clock.sleepers == 1)
        assert len(slack.requests) == attempt
        await clock.advance(30)

    with pytest.raises(TemporaryError, match="internal_error"):
        await asyncio.wait_for(task, timeout=5)
    assert [r.status for r in slack.requests] == [500, 500, 500]
    assert slack.messages("#ops") == []


async def test_unknown_channel_is_permanent_and_not_retried(
    slack: FakeSlack, clock: FakeClock
) -> None:
    notifier = make_notifier(slack, clock, channel="#nowhere")

    with pytest.raises(PermanentError, match="channel_not_found"):
        await notifier.notify(escalated())

    assert len(slack.requests) == 1
    assert clock.sleepers == 0


async def test_invalid_token_is_permanent(slack: FakeSlack, clock: FakeClock) -> None:
    notifier = make_notifier(slack, clock, token="xoxb-wrong")

    with pytest.raises(PermanentError, match="invalid_auth"):
        await notifier.notify(escalated())

    assert len(slack.requests) == 1


# --- the fake itself, through the real client ---------------------------------------------


def test_fake_accepts_form_encoded_requests(slack: FakeSlack) -> None:
    client = WebClient(token=slack.token, base_url=slack.base_url)

    assert client.auth_test()["user_id"] == "U0BOT"
    posted = client.api_call("chat.postMessage", params={"channel": "ops", "text": "hi"})

    assert posted["channel"] == "C0OPS"
    assert slack.requests[-1].headers["content-type"] == "application/x-www-form-urlencoded"
    assert slack.messages("#ops")[0]["text"] == "hi"


def test_fake_rejects_reply_to_unknown_thread(slack: FakeSlack) -> None:
    client = WebClient(token=slack.token, base_url=slack.base_url)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="#ops", text="x", thread_ts="1700000000.000100")

    assert raised.value.response["error"] == "thread_not_found"
    assert slack.messages("#ops") == []


async def test_text_from_incidents_cannot_ping_the_channel(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    await notifier.notify(note("escalated", "log said <!channel> & <http://evil|click>"))
    [message] = slack.messages("#ops")
    assert "<!channel>" not in message["text"] and "<http://evil" not in message["text"]
    assert "&lt;!channel&gt; &amp; &lt;http://evil|click&gt;" in message["text"]
    assert "<!subteam^S123>" in message["text"]  # the configured mention still pings
