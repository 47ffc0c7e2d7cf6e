"""Retries: a TemporaryError is retried with exponential backoff on the injected clock; any
other exception (PermanentError included) is not."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from daemon.clock import Clock
from daemon.errors import TemporaryError

T = TypeVar("T")
log = logging.getLogger(__name__)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    retries: int,
    clock: Clock,
    what: str,
    max_wait: float = 30.0,
) -> T:
    def before_sleep(state: Any) -> None:
        log.warning(
            "%s failed temporarily (%s); retry %d of %d in %.1fs",
            what,
            state.outcome.exception() if state.outcome else "?",
            state.attempt_number,
            retries,
            state.next_action.sleep if state.next_action else 0.0,
        )

    backoff = wait_exponential(multiplier=0.5, min=0.5, max=max_wait)

    def wait(state: Any) -> float:
        error = state.outcome.exception() if state.outcome else None
        asked = getattr(error, "retry_after", None) or 0.0
        return max(backoff(state), min(asked, 3600.0))

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TemporaryError),
        stop=stop_after_attempt(retries + 1),
        wait=wait,
        sleep=clock.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable")  # pragma: no cover
