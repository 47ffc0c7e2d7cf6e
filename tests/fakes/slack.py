"""A local fake of the Slack Web API that speaks the real wire format.

slack_sdk's WebClient POSTs to ``<base_url><method>`` (e.g. ``/api/chat.postMessage``) with
``Authorization: Bearer <token>`` and a JSON or form-encoded body; Slack answers HTTP 200 with
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``, and HTTP 429 with ``Retry-After``
when rate limited. This fake implements ``auth.test``, ``chat.postMessage`` and ``chat.update``,
keeps every request and every message for assertions, and can be scripted to fail::

    with FakeSlack(channels={"#ops": "C0OPS"}) as slack:
        client = WebClient(token=slack.token, base_url=slack.base_url)
        slack.fail_next("chat.postMessage", status=429, retry_after=1)
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

DEFAULT_TOKEN = "xoxb-fake-token"


@dataclass(frozen=True, kw_only=True)
class SlackRequest:
    """One request as the fake saw it. Header names are lower-cased."""

    method: str
    params: Mapping[str, Any]
    headers: Mapping[str, str]
    status: int


@dataclass(frozen=True, kw_only=True)
class _Failure:
    status: int
    error: str
    retry_after: float | None


@dataclass(kw_only=True)
class _Channel:
    id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by thread_ts


class ApiError(Exception):
    def __init__(self, error: str, status: int = 200) -> None:
        super().__init__(error)
        self.error, self.status = error, status


class FakeSlack:
    """Slack Web API on 127.0.0.1:<free port>, served from a background thread."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        channels: Mapping[str, str] | None = None,
        team_id: str = "T0FAKE",
        bot_user_id: str = "U0BOT",
    ) -> None:
        self.token = token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self._lock = threading.Lock()
        self._requests: list[SlackRequest] = []
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._names: dict[str, str] = {}  # channel name (no "#") -> id
        self._channels: dict[str, _Channel] = {}  # id -> channel
        self._seq = itertools.count(1)
        for name, channel_id in (channels if channels is not None else {"#ops": "C0OPS"}).items():
            self.add_channel(name, channel_id)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        if self._server is not None:
            raise RuntimeError("FakeSlack already started")
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-slack",
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeSlack is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    # --- scripting and assertions ----------------------------------------------------------

    def add_channel(self, name: str, channel_id: str) -> None:
        with self._lock:
            self._names[name.lstrip("#")] = channel_id
            self._channels.setdefault(channel_id, _Channel(id=channel_id))

    def fail_next(
        self,
        method: str,
        *,
        status: int = 500,
        error: str | None = None,
        retry_after: float | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` with a failure instead of serving them.

        status=429 sends ``Retry-After`` (default 1) and error "ratelimited"; a 5xx sends error
        "internal_error"; status=200 with an error gives a plain ``{"ok": false}`` answer.
        """
        if error is None:
            if status == 429:
                error = "ratelimited"
            elif status >= 500:
                error = "internal_error"
            else:
                raise ValueError("fail_next needs an error for a non-429, non-5xx status")
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            for _ in range(times):
                self._failures[method].append(
                    _Failure(status=status, error=error, retry_after=retry_after)
                )

    @property
    def requests(self) -> list[SlackRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, method: str) -> list[SlackRequest]:
        return [r for r in self.requests if r.method == method]

    def channel_id(self, channel: str) -> str | None:
        with self._lock:
            return self._resolve(channel)

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Top-level messages of a channel (name or id), oldest first."""
        with self._lock:
            channel_id = self._resolve(channel)
            if channel_id is None:
                raise KeyError(channel)
            return [dict(m) for m in self._channels[channel_id].messages]

    def replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Replies in the thread of `thread_ts`, oldest first."""
        with self._lock:
            channel_id = self._resolve(channel)
            if channel_id is None:
                raise KeyError(channel)
            return [dict(m) for m in self._channels[channel_id].replies.get(thread_ts, [])]

    # --- the API (called from handler threads) ---------------------------------------------

    def _resolve(self, channel: str) -> str | None:
        if channel in self._channels:
            return channel
        return self._names.get(channel.lstrip("#"))

    def _handle(
        self, method: str, params: dict[str, Any], headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            status, extra_headers, body = self._dispatch(method, params, headers)
            self._requests.append(
                SlackRequest(method=method, params=params, headers=dict(headers), status=status)
            )
            return status, extra_headers, body

    def _dispatch(
        self, method: str, params: dict[str, Any], headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        failures = self._failures.get(method)
        if failures:
            failure = failures.popleft()
            extra = {}
            if failure.retry_after is not None:
                extra["Retry-After"] = str(int(failure.retry_after))
            return failure.status, extra, {"ok": False, "error": failure.error}
        try:
            if params.pop("__invalid_json__", False):
                raise ApiError("invalid_json")
            self._authenticate(params, headers)
            handler = {
                "auth.test": self._auth_test,
                "chat.postMessage": self._chat_post_message,
                "chat.update": self._chat_update,
            }.get(method)
            if handler is None:
                raise ApiError("unknown_method", status=404)
            return 200, {}, {"ok": True, **handler(params)}
        except ApiError as exc:
            return exc.status, {}, {"ok": False, "error": exc.error}

    def _authenticate(self, params: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        auth = headers.get("authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else params.get("token")
        if not token:
            raise ApiError("not_authed")
        if token != self.token:
            raise ApiError("invalid_auth")

    def _auth_test(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake.slack.com/", "team": "Fake", "user": "opsmedic",
            "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": "B0BOT",
        }  # fmt: skip

    def _channel(self, params: Mapping[str, Any]) -> _Channel:
        channel_id = self._resolve(str(params.get("channel") or ""))
        if channel_id is None:
            raise ApiError("channel_not_found")
        return self._channels[channel_id]

    def _next_ts(self) -> str:
        n = next(self._seq)
        return f"{1_700_000_000 + n}.{n * 100 % 1_000_000:06d}"

    def _find(self, channel: _Channel, ts: str) -> dict[str, Any] | None:
        for message in channel.messages:
            if message["ts"] == ts:
                return message
        for replies in channel.replies.values():
            for message in replies:
                if message["ts"] == ts:
                    return message
        return None

    def _chat_post_message(self, params: Mapping[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        if not (params.get("text") or params.get("blocks") or params.get("attachments")):
            raise ApiError("no_text")
        message: dict[str, Any] = {
            "type": "message", "user": self.bot_user_id, "bot_id": "B0BOT",
            "text": str(params.get("text") or ""), "ts": self._next_ts(),
        }  # fmt: skip
        for key in ("blocks", "attachments"):
            if params.get(key):
                message[key] = _maybe_json(params[key])
        thread_ts = params.get("thread_ts")
        if thread_ts:
            parent = self._find(channel, str(thread_ts))
            if parent is None:
                raise ApiError("thread_not_found")
            thread_ts = parent.get("thread_ts", parent["ts"])  # a reply's ts means its thread
            message["thread_ts"] = thread_ts
            channel.replies.setdefault(thread_ts, []).append(message)
        else:
            channel.messages.append(message)
        return {"channel": channel.id, "ts": message["ts"], "message": dict(message)}

    def _chat_update(self, params: Mapping[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        message = self._find(channel, str(params.get("ts") or ""))
        if message is None:
            raise ApiError("message_not_found")
        if "text" in params:
            message["text"] = str(params["text"])
        if "blocks" in params:
            message["blocks"] = _maybe_json(params["blocks"])
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {
            "channel": channel.id, "ts": message["ts"], "text": message["text"],
            "message": dict(message),
        }  # fmt: skip


def _maybe_json(value: Any) -> Any:
    """Form-encoded bodies carry blocks/attachments as JSON strings."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeSlack/1.0"

    def do_POST(self) -> None:
        fake: FakeSlack = self.server.fake  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        if not url.path.startswith("/api/"):
            self._send(404, {}, {"ok": False, "error": "not_found"})
            return
        method = url.path[len("/api/") :]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        params: dict[str, Any] = dict(parse_qsl(url.query))
        content_type = self.headers.get_content_type()
        if content_type == "application/json" and raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if isinstance(body, dict):
                params.update(body)
            else:
                params["__invalid_json__"] = True
        elif content_type == "application/x-www-form-urlencoded" and raw:
            params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra_headers, body = fake._handle(method, params, headers)
        self._send(status, extra_headers, body)

    do_GET = do_POST  # Slack accepts GET with a query string for most methods

    def _send(self, status: int, headers: Mapping[str, str], body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet; the fake records every request instead
