"""A tiny HTTP client for probes and webhook actions (stdlib, run off the event loop)."""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from daemon.errors import PermanentError, TemporaryError


class Unreachable(TemporaryError):
    """No response at all; `reason` says why: tls, dns, refused, timeout, reset or other."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def why_unreachable(exc: BaseException) -> str:
    """Classify a failure to get a response (the URLError's reason, or the error itself)."""
    cause = getattr(exc, "reason", exc)
    if isinstance(cause, ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(cause, socket.gaierror):
        return "dns"
    if isinstance(cause, ConnectionRefusedError):
        return "refused"
    if isinstance(cause, TimeoutError):
        return "timeout"
    if isinstance(cause, ConnectionResetError | BrokenPipeError | http.client.RemoteDisconnected):
        return "reset"
    return "other"


@dataclass(frozen=True, kw_only=True)
class Response:
    status: int
    body: bytes
    elapsed: float
    content_type: str = ""

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


async def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
    max_bytes: int = 10 * 1024 * 1024,
) -> Response:
    """Send one request. HTTP error statuses are returned, not raised; a failure to get any
    response raises Unreachable, a TemporaryError (refused, reset, timed out, TLS, DNS), or
    PermanentError (bad URL)."""
    if not url.startswith(("http://", "https://")):
        raise PermanentError(f"unsupported URL {url!r}: only http:// and https:// are allowed")
    req = urllib.request.Request(url, data=body, method=method.upper(), headers=headers or {})  # noqa: S310

    def send() -> Response:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - scheme checked
                data = resp.read(max_bytes)
                status, ctype = resp.status, resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            data = exc.read(max_bytes) if exc.fp else b""
            status, ctype = exc.code, exc.headers.get("Content-Type", "") if exc.headers else ""
        except TimeoutError as exc:
            raise Unreachable(f"{method} {url}: timed out after {timeout:g}s", "timeout") from exc
        except urllib.error.URLError as exc:
            raise Unreachable(f"{method} {url}: {exc.reason}", why_unreachable(exc)) from exc
        except (OSError, http.client.HTTPException) as exc:  # reset, refused, garbage reply
            raise Unreachable(f"{method} {url}: {exc!r}", why_unreachable(exc)) from exc
        return Response(
            status=status, body=data, elapsed=time.monotonic() - started, content_type=ctype
        )

    return await asyncio.to_thread(send)
