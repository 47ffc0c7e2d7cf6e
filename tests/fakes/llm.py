"""Loopback fakes of the OpenAI Chat Completions API and the Anthropic Messages API.

They speak the real wire formats, so code under test talks to them through the official SDKs::

    with FakeOpenAI([Reply(tool_calls=(ToolCall("decide", {"action": "restart"}),))]) as fake:
        client = openai.AsyncOpenAI(base_url=fake.url, api_key="sk-test", max_retries=0)

    with FakeAnthropic([Reply(text="all good")]) as fake:
        client = anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-ant-test", max_retries=0)

Each request takes the next scripted turn: a `Reply` (one model turn), a `Failure` (an HTTP error in
the provider's own error format) or a `Delay` (real seconds of silence, for client timeouts). A
script may also be a function of the parsed request body. With nothing left to serve the fake
answers 500 "fake has no scripted turn left", so a test that calls more than it scripted fails.

Like the real APIs, the fakes answer 400 (in the provider's format, without consuming a turn) to
requests that are missing required fields or whose conversation is mis-threaded: an OpenAI
``tool`` message whose ``tool_call_id`` is not among the ``tool_calls`` of the assistant message
before it, an assistant message with ``tool_calls`` not followed by a ``tool`` message for each
one, an Anthropic ``tool_result`` whose ``tool_use_id`` is not a ``tool_use`` of the previous
assistant turn, or a ``tool_use`` turn whose next message does not answer every id. A reply that
calls a tool the request did not declare is served (real models hallucinate tool names) and noted
in `Recorded.undeclared_tools`.

Observed with openai 3.52 / anthropic 2.11: OpenAI sends ``POST /v1/chat/completions`` with
``Authorization: Bearer <key>``; Anthropic sends ``POST /v1/messages`` with ``anthropic-version``
and ``Authorization: Bearer <key>`` for ``api_key=`` as well as ``auth_token=`` (older SDKs sent
``x-api-key``). Both headers are accepted; `Recorded.auth_header` says which one came.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

NO_TURN_LEFT = "fake has no scripted turn left"


# --- scripting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """One tool call in a reply.

    OpenAI: a dict is JSON-encoded into ``function.arguments``; a str is sent verbatim (so it may
    be malformed JSON on purpose). Anthropic: ``input`` must be JSON on the wire, so a dict is
    sent as ``input``, a str that parses as JSON is sent as the parsed value (which may be a
    non-object, e.g. ``"[1, 2]"``), and any other str is sent as a JSON string value.
    """

    name: str
    arguments: str | dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """One model turn: optional text, then tool calls."""

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    input_tokens: int = 100
    output_tokens: int = 20
    stop: str | None = None  # finish_reason / stop_reason override, e.g. "length" / "max_tokens"


@dataclass(frozen=True)
class Failure:
    """An HTTP error answered in the provider's own error body format."""

    status: int  # 429, 500, 529 (Anthropic overloaded), 400, 401, ...
    message: str = "scripted failure"
    retry_after: float | None = None  # sets the Retry-After header (seconds)
    type: str | None = None  # error.type override; the default follows the status


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` real seconds, then answer with `then`. Keep it tiny."""

    seconds: float
    then: Reply | Failure


Turn = Reply | Failure | Delay
Script = Sequence[Turn] | Callable[[dict[str, Any]], Turn]


@dataclass(frozen=True, kw_only=True)
class Recorded:
    """One request as the fake saw it, and what it answered. Header names are lower-cased."""

    method: str
    path: str
    headers: Mapping[str, str]
    raw: bytes  # the body as sent, for "no secret leaves" assertions
    body: Any  # parsed JSON (None if the body was not JSON)
    status: int
    response: Mapping[str, Any]
    undeclared_tools: tuple[str, ...] = ()  # tool names replied with but absent from `tools`
    delay: float = 0.0

    @property
    def auth_header(self) -> str | None:
        """Which credential header came: "x-api-key", "authorization", or None."""
        if "x-api-key" in self.headers:
            return "x-api-key"
        if "authorization" in self.headers:
            return "authorization"
        return None

    @property
    def api_key(self) -> str | None:
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None


class _Invalid(Exception):
    """A request the real API would reject with 400."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


# --- the server --------------------------------------------------------------------------------


class _FakeLLM:
    _name = "fake-llm"
    _path = "/"

    def __init__(
        self, script: Script = (), *, model: str | None = None, api_key: str | None = None
    ) -> None:
        """`model` (default: echo the request's) is the model the responses name; `api_key`, if
        given, is the only key accepted (others get 401)."""
        self.model = model
        self.api_key = api_key
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._queue: deque[Turn] = deque()
        self._responder: Callable[[dict[str, Any]], Turn] | None = None
        if callable(script):
            self._responder = script
        else:
            self._queue.extend(script)
        self._requests: list[Recorded] = []
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> _FakeLLM:
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        server = _Server(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=self._name,
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a Delay
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    stop = close

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._server.server_address[1])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # scripting and assertions

    def push(self, *turns: Turn) -> None:
        """Append turns to the queue (served before a callable script is consulted)."""
        with self._lock:
            self._queue.extend(turns)

    @property
    def remaining(self) -> int:
        """Queued turns not yet served."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    # serving (handler threads)

    def _answer(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[float, int, dict[str, str], dict[str, Any]]:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            delay, status, extra, response, undeclared = self._dispatch(method, path, headers, body)
            extra = {self._request_id_header: f"req_fake{next(self._ids):06d}", **extra}
            self._requests.append(
                Recorded(
                    method=method, path=path, headers=headers, raw=raw, body=body, status=status,
                    response=response, undeclared_tools=undeclared, delay=delay,
                )
            )  # fmt: skip
        return delay, status, extra, response

    def _dispatch(
        self, method: str, path: str, headers: Mapping[str, str], body: Any
    ) -> tuple[float, int, dict[str, str], dict[str, Any], tuple[str, ...]]:
        if urlsplit(path).path.rstrip("/") != self._path:
            return 0.0, *self._failure(Failure(404, f"Not found: {method} {path}")), ()
        if method != "POST":
            return 0.0, *self._failure(Failure(405, f"Method not allowed: {method}")), ()
        auth = self._check_auth(headers)
        if auth is not None:
            return 0.0, *self._failure(auth), ()
        try:
            if not isinstance(body, dict):
                raise _Invalid("The request body is not a valid JSON object.")
            self._validate(body, headers)
        except _Invalid as exc:
            return 0.0, 400, {}, self._invalid_body(exc), ()
        turn = self._next_turn(body)
        delay = 0.0
        while isinstance(turn, Delay):
            delay += turn.seconds
            turn = turn.then
        if isinstance(turn, Failure):
            return delay, *self._failure(turn), ()
        if not isinstance(turn, Reply):
            message = f"fake script returned {turn!r}, not a Reply, Failure or Delay"
            return delay, *self._failure(Failure(500, message)), ()
        declared = self._declared_tools(body)
        undeclared = tuple(c.name for c in turn.tool_calls if c.name not in declared)
        return delay, 200, {}, self._render(turn, body), undeclared

    def _next_turn(self, body: dict[str, Any]) -> Turn:
        if self._queue:
            return self._queue.popleft()
        if self._responder is not None:
            try:
                return self._responder(body)
            except Exception as exc:  # noqa: BLE001 - reported to the client as a 500
                return Failure(500, f"fake script raised {exc!r}")
        return Failure(500, NO_TURN_LEFT)

    def _check_auth(self, headers: Mapping[str, str]) -> Failure | None:
        key = headers.get("x-api-key")
        auth = headers.get("authorization", "")
        if key is None and auth.startswith("Bearer "):
            key = auth[len("Bearer ") :]
        if not key:
            return Failure(401, "missing API key", type=self._auth_error_type)
        if self.api_key is not None and key != self.api_key:
            return Failure(401, "invalid API key", type=self._auth_error_type)
        return None

    def _failure(self, failure: Failure) -> tuple[int, dict[str, str], dict[str, Any]]:
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = f"{failure.retry_after:g}"
        return failure.status, headers, self._error_body(failure)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    # provider specifics

    _request_id_header = "x-request-id"
    _auth_error_type = "invalid_request_error"

    def _validate(self, body: dict[str, Any], headers: Mapping[str, str]) -> None:
        raise NotImplementedError

    def _declared_tools(self, body: dict[str, Any]) -> set[str]:
        raise NotImplementedError

    def _render(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _error_body(self, failure: Failure) -> dict[str, Any]:
        raise NotImplementedError

    def _invalid_body(self, exc: _Invalid) -> dict[str, Any]:
        raise NotImplementedError


class FakeOpenAI(_FakeLLM):
    """OpenAI Chat Completions (``POST /v1/chat/completions``) on 127.0.0.1:<free port>."""

    _name = "fake-openai"
    _path = "/v1/chat/completions"
    _roles = ("system", "developer", "user", "assistant", "tool", "function")

    def start(self) -> FakeOpenAI:
        super().start()
        return self

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    @property
    def url(self) -> str:
        """base_url for ``openai.AsyncOpenAI``."""
        return f"{self.base}/v1"

    def _validate(self, body: dict[str, Any], headers: Mapping[str, str]) -> None:
        if not body.get("model"):
            raise _Invalid("you must provide a model parameter")
        if "messages" not in body:
            raise _Invalid(
                "Missing required parameter: 'messages'.",
                param="messages", code="missing_required_parameter",
            )  # fmt: skip
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise _Invalid(
                "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                param="messages", code="empty_array",
            )  # fmt: skip
        chain: set[str] | None = None  # tool_call ids of the assistant message being answered
        answered: set[str] = set()
        opened = 0
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in self._roles:
                raise _Invalid(
                    f"Invalid value: {role!r}. Supported values are: "
                    + ", ".join(repr(r) for r in self._roles) + ".",
                    param=f"messages[{i}].role", code="invalid_value",
                )  # fmt: skip
            if role == "tool":
                call_id = message.get("tool_call_id")
                if not call_id:
                    raise _Invalid(
                        "Missing parameter 'tool_call_id': messages with role 'tool' must have "
                        "a 'tool_call_id'.",
                        param=f"messages.[{i}].tool_call_id", code="missing_required_parameter",
                    )  # fmt: skip
                if chain is None:
                    raise _Invalid(
                        "Invalid parameter: messages with role 'tool' must be a response to a "
                        "preceeding message with 'tool_calls'.",
                        param=f"messages.[{i}].role",
                    )  # fmt: skip
                if call_id not in chain:
                    raise _Invalid(
                        f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in "
                        "'tool_calls' of previous message.",
                        param=f"messages.[{i}].tool_call_id",
                    )  # fmt: skip
                answered.add(call_id)
                continue
            self._check_answered(chain, answered, opened)
            chain, answered, opened = None, set(), i
            if role == "assistant" and message.get("tool_calls"):
                chain = {str(c.get("id")) for c in message["tool_calls"] if isinstance(c, dict)}
        # a conversation may end on unanswered tool_calls only in the request being answered now

    @staticmethod
    def _check_answered(chain: set[str] | None, answered: set[str], opened: int) -> None:
        if chain and chain - answered:
            raise _Invalid(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                "response messages: " + ", ".join(sorted(chain - answered)),
                param=f"messages.[{opened}].role",
            )  # fmt: skip

    def _declared_tools(self, body: dict[str, Any]) -> set[str]:
        names = set()
        for tool in body.get("tools") or ():
            if isinstance(tool, dict):
                spec = tool.get("function") or tool.get("custom") or {}
                if isinstance(spec, dict) and spec.get("name"):
                    names.add(spec["name"])
        return names

    def _render(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant", "content": reply.text, "refusal": None, "annotations": [],
        }  # fmt: skip
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": self._new_id("call_fake"),
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": call.arguments
                        if isinstance(call.arguments, str)
                        else json.dumps(call.arguments),
                    },
                }
                for call in reply.tool_calls
            ]
        finish = reply.stop or ("tool_calls" if reply.tool_calls else "stop")
        return {
            "id": self._new_id("chatcmpl-fake"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model or body["model"],
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
            },
            "service_tier": "default",
            "system_fingerprint": None,
        }

    _error_types = {
        400: ("invalid_request_error", None),
        401: ("invalid_request_error", "invalid_api_key"),
        403: ("invalid_request_error", "unsupported_country_region_territory"),
        404: ("invalid_request_error", "unknown_url"),
        405: ("invalid_request_error", None),
        429: ("requests", "rate_limit_exceeded"),
    }

    def _error_body(self, failure: Failure) -> dict[str, Any]:
        default_type, code = self._error_types.get(failure.status, ("server_error", None))
        return {
            "error": {
                "message": failure.message, "type": failure.type or default_type,
                "param": None, "code": code,
            }
        }  # fmt: skip

    def _invalid_body(self, exc: _Invalid) -> dict[str, Any]:
        return {
            "error": {
                "message": exc.message, "type": "invalid_request_error",
                "param": exc.param, "code": exc.code,
            }
        }  # fmt: skip


class FakeAnthropic(_FakeLLM):
    """Anthropic Messages (``POST /v1/messages``) on 127.0.0.1:<free port>."""

    _name = "fake-anthropic"
    _path = "/v1/messages"
    _request_id_header = "request-id"
    _auth_error_type = "authentication_error"

    def start(self) -> FakeAnthropic:
        super().start()
        return self

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    @property
    def url(self) -> str:
        """base_url for ``anthropic.AsyncAnthropic`` (the SDK adds /v1)."""
        return self.base

    def _validate(self, body: dict[str, Any], headers: Mapping[str, str]) -> None:
        if not headers.get("anthropic-version"):
            raise _Invalid("anthropic-version: header is required")
        for name in ("model", "messages", "max_tokens"):
            if name not in body:
                raise _Invalid(f"{name}: Field required")
        max_tokens = body["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise _Invalid("max_tokens: Input should be a valid integer greater than or equal to 1")
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise _Invalid("messages: at least one message is required")
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role == "system":
                raise _Invalid(
                    'messages: Unexpected role "system". The Messages API accepts a top-level '
                    '`system` parameter, not "system" as an input message role.'
                )
            if role not in ("user", "assistant"):
                raise _Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        uses = [self._blocks(m, "tool_use", "id") for m in messages]
        results = [self._blocks(m, "tool_result", "tool_use_id") for m in messages]
        for i, found in enumerate(results):
            previous = uses[i - 1] if i > 0 and messages[i - 1]["role"] == "assistant" else {}
            for j, tool_use_id in found.items():
                if not tool_use_id:
                    raise _Invalid(f"messages.{i}.content.{j}.tool_use_id: Field required")
                if tool_use_id not in previous.values():
                    raise _Invalid(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {tool_use_id}. Each `tool_result` block must have "
                        "a corresponding `tool_use` block in the previous message."
                    )
        for i, found in enumerate(uses[:-1]):  # the last message may be a prefill; not checked
            if messages[i]["role"] != "assistant" or not found:
                continue
            missing = set(found.values()) - set(results[i + 1].values())
            if messages[i + 1]["role"] != "user" or missing:
                raise _Invalid(
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(sorted(missing or found.values()))}. Each "
                    "`tool_use` block must have a corresponding `tool_result` block in the next "
                    "message."
                )

    @staticmethod
    def _blocks(message: dict[str, Any], kind: str, key: str) -> dict[int, str]:
        """{content index: id} of the `kind` blocks of a message."""
        content = message.get("content")
        if not isinstance(content, list):
            return {}
        return {
            j: str(block.get(key) or "")
            for j, block in enumerate(content)
            if isinstance(block, dict) and block.get("type") == kind
        }

    def _declared_tools(self, body: dict[str, Any]) -> set[str]:
        return {t["name"] for t in body.get("tools") or () if isinstance(t, dict) and t.get("name")}

    @staticmethod
    def _input(arguments: str | dict[str, Any]) -> Any:
        if not isinstance(arguments, str):
            return arguments
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments

    def _render(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if reply.text is not None:
            content.append({"type": "text", "text": reply.text})
        for call in reply.tool_calls:
            content.append(
                {
                    "type": "tool_use", "id": self._new_id("toolu_fake"), "name": call.name,
                    "input": self._input(call.arguments),
                }
            )  # fmt: skip
        stop = reply.stop or ("tool_use" if reply.tool_calls else "end_turn")
        return {
            "id": self._new_id("msg_fake"),
            "type": "message",
            "role": "assistant",
            "model": self.model or body["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": reply.input_tokens,
                "output_tokens": reply.output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }

    _error_types = {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "billing_error",
        403: "permission_error",
        404: "not_found_error",
        405: "invalid_request_error",
        413: "request_too_large",
        429: "rate_limit_error",
        504: "timeout_error",
        529: "overloaded_error",
    }

    def _error_body(self, failure: Failure) -> dict[str, Any]:
        default_type = self._error_types.get(failure.status, "api_error")
        return {
            "type": "error",
            "error": {"type": failure.type or default_type, "message": failure.message},
        }

    def _invalid_body(self, exc: _Invalid) -> dict[str, Any]:
        return {"type": "error", "error": {"type": "invalid_request_error", "message": exc.message}}


class _Server(ThreadingHTTPServer):
    fake: _FakeLLM

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is expected; everything else is recorded


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "FakeLLM/1.0"

    def _serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        delay, status, extra, body = fake._answer(self.command, self.path, headers, raw)
        if delay and fake._stopping.wait(delay):
            return  # the fake is closing: hang up without answering
        data = json.dumps(body).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout) before the answer

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep test output quiet; the fake records every request instead


__all__ = [
    "NO_TURN_LEFT", "Delay", "FakeAnthropic", "FakeOpenAI", "Failure", "Recorded", "Reply",
    "Script", "ToolCall", "Turn",
]  # fmt: skip
