"""A toy web service: Prometheus-format /metrics with a request counter whose error share can
be made to spike, a /health endpoint that fails while its "dependency" is down, and an admin
restart endpoint that clears the bad in-memory state (but not the dependency)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REQUESTS_PER_TICK = 20
TICK_SECONDS = 0.1


class ToyWebService:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.error_share = 0.0
        self.dependency_down = False
        self.restarts = 0
        self.counts = {"200": 0.0, "500": 0.0}
        self._stop = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._threads = [
            threading.Thread(
                target=self.server.serve_forever, args=(0.05,), name="toy-web", daemon=True
            ),
            threading.Thread(target=self._traffic, name="toy-web-traffic", daemon=True),
        ]

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ToyWebService:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def _traffic(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            with self.lock:
                errors = REQUESTS_PER_TICK * self.error_share
                self.counts["500"] += errors
                self.counts["200"] += REQUESTS_PER_TICK - errors

    # faults and fixes
    def spike_errors(self, share: float = 0.5) -> None:
        with self.lock:
            self.error_share = share

    def break_dependency(self, down: bool = True) -> None:
        with self.lock:
            self.dependency_down = down

    def restart(self) -> None:
        with self.lock:
            self.error_share = 0.0
            self.restarts += 1

    def metrics_text(self) -> str:
        with self.lock:
            lines = [
                "# HELP http_requests_total Requests served, by status code.",
                "# TYPE http_requests_total counter",
            ]
            lines += [
                f'http_requests_total{{app="toy",code="{code}"}} {count:.0f}'
                for code, count in sorted(self.counts.items())
            ]
            lines += ["# TYPE toy_restarts_total counter", f"toy_restarts_total {self.restarts}"]
        return "\n".join(lines) + "\n"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                return

            def _send(self, status: int, body: str, ctype: str = "application/json") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                if self.path == "/metrics":
                    self._send(200, service.metrics_text(), "text/plain; version=0.0.4")
                elif self.path == "/health":
                    down = service.dependency_down
                    body = {"status": "degraded" if down else "ok", "database": not down}
                    self._send(503 if down else 200, json.dumps(body))
                else:
                    self._send(404, '{"error": "not found"}')

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                if self.path == "/admin/restart":
                    service.restart()
                    self._send(200, json.dumps({"restarted": True, "restarts": service.restarts}))
                elif self.path == "/admin/fault":
                    if "errors" in payload:
                        service.spike_errors(float(payload["errors"]))
                    if "dependency_down" in payload:
                        service.break_dependency(bool(payload["dependency_down"]))
                    self._send(200, '{"ok": true}')
                else:
                    self._send(404, '{"error": "not found"}')

        return Handler
