"""Exception types. The exception type decides the retry."""

from __future__ import annotations


class OpsmedicError(Exception):
    """Base class of opsmedic's own errors."""


class TemporaryError(OpsmedicError):
    """A failure worth retrying with backoff (connection refused, 5xx, 429, timeout).
    `retry_after` is the server's own wish (a Retry-After header), honoured as a minimum."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(OpsmedicError):
    """A failure that retrying will not fix (bad request, missing permission, bad input)."""


class EscalateError(PermanentError):
    """A failure no other action can fix (the target is gone, a permission is missing):
    the responder escalates at once instead of trying the playbook's next action."""


class ConfigError(OpsmedicError):
    """Configuration or playbook errors; each problem is one `file:line: field: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
