"""The HTTP layer: a ThreadingHTTPServer on 127.0.0.1 that speaks the Kubernetes REST API for a
``FakeCluster``, with bearer-token authentication, chunked watch streams and a kubeconfig writer.
"""

from __future__ import annotations

import hmac
import json
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import yaml

from . import errors
from .cluster import WATCH_POLL_SECONDS, FakeCluster, Response

_STOP_POLL = 0.05


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, api: KubeApiServer) -> None:
        self.api = api
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300  # idle keep-alive connections are closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without NODELAY, Nagle + delayed ACK
        # costs ~40 ms per request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def version_string(self) -> str:
        return "opsmedic-kubeapi"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        api = self.server.api
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        auth = self.headers.get("Authorization", "")
        expected = f"Bearer {api.token}"
        if not hmac.compare_digest(auth.encode(), expected.encode()):
            self._send(Response(401, json.dumps(errors.unauthorized().status()).encode()))
            return
        url = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            response = api.cluster.handle(method, url.path, url.query, headers, body)
        except Exception as exc:  # noqa: BLE001 - a server answers 500 instead of dropping
            err = errors.internal(f"{type(exc).__name__}: {exc}")
            response = Response(500, json.dumps(err.status()).encode())
        if response.gate is not None:
            response.gate.reached.set()
            response.gate.release.wait(timeout=30)
        if response.watch is not None:
            self._stream(response)
        else:
            self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Cache-Control", "no-cache, private")
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def _stream(self, response: Response) -> None:
        cursor = response.watch
        if cursor is None:
            return
        api = self.server.api
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            while not api.stopping.is_set():
                lines = api.cluster.watch_poll(cursor)
                for line in lines:
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                if lines:
                    self.wfile.flush()
                if cursor.done:
                    break
                api.stopping.wait(WATCH_POLL_SECONDS)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True


class KubeApiServer:
    """Serves a ``FakeCluster`` over HTTP on 127.0.0.1 (port chosen by the OS)."""

    def __init__(self, cluster: FakeCluster, *, token: str | None = None) -> None:
        self.cluster = cluster
        self.token = token or secrets.token_urlsafe(24)
        self.stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> KubeApiServer:
        if self._httpd is not None:
            return self
        self.stopping.clear()
        self._httpd = _Server(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            args=(_STOP_POLL,),
            name="fake-kube-apiserver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()
        if thread is not None:
            thread.join()
        deadline = time.monotonic() + 5
        while True:
            with httpd.connections_lock:
                conns = list(httpd.connections)
            if not conns or time.monotonic() > deadline:
                break
            for conn in conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            time.sleep(0.01)
        httpd.server_close()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def kubeconfig(
        self, *, context: str = "opsmedic-test", namespace: str = "default"
    ) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": context, "user": context, "namespace": namespace},
                }
            ],
            "current-context": context,
        }

    def write_kubeconfig(
        self, path: str | Path, *, context: str = "opsmedic-test", namespace: str = "default"
    ) -> Path:
        """Write (or merge into) a kubeconfig whose ``context`` points at this server; that
        context becomes the current one, like ``kind`` and ``minikube`` do."""
        target = Path(path)
        fresh = self.kubeconfig(context=context, namespace=namespace)
        config: dict[str, Any] = {}
        if target.exists():
            loaded = yaml.safe_load(target.read_text()) or {}
            if isinstance(loaded, dict):
                config = loaded
        if not config:
            config = fresh
        else:
            for section in ("clusters", "users", "contexts"):
                entries = [e for e in config.get(section) or [] if e.get("name") != context]
                config[section] = entries + fresh[section]
            config["current-context"] = context
            config.setdefault("apiVersion", "v1")
            config.setdefault("kind", "Config")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        target.chmod(0o600)
        return target
