"""A real Prometheus (Debian's `prometheus` package) for tests and benchmarks.

Data comes either from scraping loopback targets, or from backfilling: OpenMetrics text is
turned into TSDB blocks with `promtool tsdb create-blocks-from openmetrics` before the server
starts, and is queryable at its (past) timestamps as soon as /-/ready answers. Keep backfilled
samples older than the head block (a few hours back) and inside `retention`.
"""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

Series = tuple[str, Mapping[str, str], Iterable[tuple[float, float]]]


def _value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def openmetrics(series: Iterable[Series], *, types: Mapping[str, str] | None = None) -> str:
    """OpenMetrics text for promtool. Names ending in `_total` are counters (family name
    without the suffix, as OpenMetrics requires), others gauges unless `types` says so."""
    families: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    for name, labels, points in series:
        family = name.removesuffix("_total") if name.endswith("_total") else name
        kinds[family] = (types or {}).get(name) or (
            "counter" if name.endswith("_total") else "gauge"
        )
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        lines = families.setdefault(family, [])
        for t, v in sorted(points):
            lines.append(f"{name}{{{label_text}}} {_value(v)} {t:.3f}")
    out = []
    for family, lines in families.items():
        out.append(f"# TYPE {family} {kinds[family]}")
        out.extend(lines)
    out.append("# EOF")
    return "\n".join(out) + "\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusServer:
    def __init__(
        self,
        workdir: Path,
        *,
        backfill: str | None = None,
        scrape_targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        retention: str = "30d",
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data = workdir / "data"
        self.scrape_targets = list(scrape_targets)
        self.scrape_interval = scrape_interval
        self.retention = retention
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        if backfill is not None:
            source = workdir / "backfill.om"
            source.write_text(backfill)
            result = subprocess.run(
                [
                    "promtool",
                    "tsdb",
                    "create-blocks-from",
                    "openmetrics",
                    str(source),
                    str(self.data),
                ],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise RuntimeError(f"promtool backfill failed: {result.stderr[-2000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        config = self.workdir / "prometheus.yml"
        scrape = []
        if self.scrape_targets:
            scrape.append(
                {
                    "job_name": "targets",
                    "scrape_interval": self.scrape_interval,
                    "static_configs": [{"targets": self.scrape_targets}],
                }
            )
        config.write_text(
            json.dumps(
                {"global": {"scrape_interval": self.scrape_interval}, "scrape_configs": scrape}
            )
        )
        return config

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        if self.process is not None and self.process.poll() is None:
            return self
        log = (self.workdir / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self._config()}",
                f"--storage.tsdb.path={self.data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--storage.tsdb.retention.time={self.retention}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:  # noqa: S310
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus not ready after {timeout}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def query(self, promql: str, at: float | None = None) -> dict[str, Any]:
        params = {"query": promql} | ({"time": str(at)} if at is not None else {})
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310
            return dict(json.loads(resp.read())["data"])

    def wait_for_series(self, promql: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.query(promql)["result"]:
                return
            time.sleep(0.2)
        raise AssertionError(f"no series for {promql!r} after {timeout}s")

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
