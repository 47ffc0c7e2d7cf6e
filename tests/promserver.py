"""Run a real Prometheus server (the distro's ``prometheus`` / ``promtool`` 2.42) for tests and
benchmarks.

Typical use::

    text = openmetrics([("queue_depth", {"q": "etl"}, [(t0, 3.0), (t0 + 60, 5.0)])])
    with PrometheusServer(tmp_path, backfill=text) as prom:
        prom.query("queue_depth", at=t0 + 60)["result"]

Facts about Prometheus 2.42 that this harness relies on (all checked by experiment):

* **Backfill is visible immediately.** ``promtool tsdb create-blocks-from openmetrics`` writes
  ordinary TSDB blocks (cut at 2h boundaries) straight into the data directory; the server loads
  them while opening the TSDB, before ``/-/ready`` answers 200. No compaction wait is needed, and
  that includes data inside the current 2h head window: samples anywhere from ``now - 3h`` up to
  ``now - 1m`` can be queried (``time=`` in the past, or ``now`` within the 5m lookback) as soon
  as :meth:`PrometheusServer.start` returns.
* **Overlapping blocks need no flag.** ``--storage.tsdb.allow-overlapping-blocks`` is a hidden
  no-op since 2.39; overlapping backfilled blocks are queried correctly (the log only warns), so
  the harness does not pass it.
* **Retention is relative to the newest block, not the wall clock.** At startup, blocks whose max
  time is more than ``retention`` older than the newest block's max time are deleted. A lone
  40-day-old backfill survives ``retention="30d"``; together with a 1h-old block it is dropped.
  Keep all backfilled samples within ``retention`` of each other (the default 30d is generous).
* **Never backfill the future when also scraping.** The head refuses samples older than the
  newest block's max time, so a backfilled timestamp after "now" makes every scrape fail with
  "out of bounds" until the wall clock passes it. Timestamps <= now are fine.
* **Scrapes start late.** The scrape manager syncs targets at most every 5s, so the first scrape
  of a target lands roughly 1-6s after the server is ready; use
  :meth:`PrometheusServer.wait_for_series` rather than querying straight away.
* **Counter naming.** promtool 2.42 is lenient: it accepts ``# TYPE foo counter`` with samples
  named ``foo_total`` (the OpenMetrics form that :func:`openmetrics` emits) but also ``# TYPE
  foo_total counter`` or unsuffixed ``foo`` samples. It stores each sample under the exact name
  written on the sample line, so query what you passed in (``rate(foo_total[5m])``). Duplicate
  timestamps within a series are silently dropped (first wins); :func:`openmetrics` rejects them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = [
    "PrometheusServer",
    "find_binary",
    "openmetrics",
    "prometheus_available",
]

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TYPES = ("gauge", "counter")

_SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # (metric name, sorted label items)

# a no-proxy opener: http_proxy in the environment must not capture loopback requests
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------- OpenMetrics text


def _format_value(value: float) -> str:
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def _format_timestamp(ts: float) -> str:
    t = float(ts)
    if not math.isfinite(t):
        raise ValueError(f"timestamp must be finite, got {ts!r}")
    if t.is_integer():
        return str(int(t))
    # promtool keeps millisecond precision; more digits would only be noise
    return f"{t:.3f}".rstrip("0").rstrip(".")


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, mtype: str) -> str:
    if mtype == "counter" and name.endswith("_total") and len(name) > len("_total"):
        return name.removesuffix("_total")
    return name


def openmetrics(
    series: Iterable[tuple[str, Mapping[str, str], Iterable[tuple[float, float]]]],
    *,
    types: Mapping[str, str] | None = None,
) -> str:
    """Render samples as OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``.

    Each item of ``series`` is ``(metric name, labels, [(epoch_seconds, value), ...])``.
    ``types`` maps a metric name (``"x_total"``) or its family name (``"x"``) to ``"gauge"`` or
    ``"counter"``; unlisted names ending in ``_total`` are counters, all others gauges.

    * One ``# TYPE`` line per family, families in first-seen order, all their samples contiguous.
      For a counter the family is the name minus ``_total`` (``# TYPE x counter`` then
      ``x_total{...}`` lines), as OpenMetrics requires; sample lines keep the name you passed, which
      is the name promtool stores and you query. Name counters ``..._total``.
    * Items repeating the same name and labels are merged; samples are sorted by timestamp and a
      repeated timestamp within one series raises ``ValueError`` (promtool would silently drop it).
    * Values may be NaN / +Inf / -Inf; timestamps are seconds (millisecond precision survives).
    * The text ends with ``# EOF`` (promtool refuses input without it).
    """
    type_map = dict(types or {})
    for key, mtype in type_map.items():
        if mtype not in _TYPES:
            raise ValueError(f"type of {key!r} must be one of {_TYPES}, got {mtype!r}")

    families: dict[str, tuple[str, dict[_SeriesKey, dict[float, float]]]] = {}  # by family
    for name, labels, samples in series:
        if not _METRIC_NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labels:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} on {name!r}")
        mtype = (
            type_map.get(name)
            or type_map.get(name.removesuffix("_total"))
            or ("counter" if name.endswith("_total") else "gauge")
        )
        family = _family(name, mtype)
        known_type, by_series = families.setdefault(family, (mtype, {}))
        if known_type != mtype:
            raise ValueError(
                f"metric family {family!r} is both {known_type} and {mtype} (from {name!r})"
            )
        series_key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
        points = by_series.setdefault(series_key, {})
        for ts, value in samples:
            t = float(ts)
            if t in points:
                raise ValueError(f"duplicate timestamp {ts!r} in series {name}{dict(labels)}")
            points[t] = float(value)

    lines: list[str] = []
    for family, (mtype, by_series) in families.items():
        lines.append(f"# TYPE {family} {mtype}")
        for (name, label_items), points in by_series.items():
            if label_items:
                rendered = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in label_items)
                head = f"{name}{{{rendered}}}"
            else:
                head = name
            lines += [
                f"{head} {_format_value(points[t])} {_format_timestamp(t)}" for t in sorted(points)
            ]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the server


def find_binary(name: str) -> str | None:
    """Path of ``prometheus`` / ``promtool``: ``$PROMETHEUS_BIN`` / ``$PROMTOOL_BIN``, then PATH."""
    override = os.environ.get(f"{name.upper()}_BIN")
    if override:
        return override
    return shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)


def prometheus_available() -> bool:
    """Whether both binaries are installed (for ``pytest.mark.skipif``)."""
    return find_binary("prometheus") is not None and find_binary("promtool") is not None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _target_address(target: str) -> str:
    """Accept "127.0.0.1:PORT" or "http://127.0.0.1:PORT[/]" and return host:port."""
    if "://" in target:
        parsed = urllib.parse.urlsplit(target)
        if parsed.scheme != "http" or parsed.path not in ("", "/"):
            raise ValueError(f"scrape target must be host:port or http://host:port, got {target!r}")
        return parsed.netloc
    return target


class PrometheusServer:
    """A throwaway Prometheus 2.42 process on a free loopback port, with its data in ``workdir``.

    ``backfill`` (OpenMetrics text, see :func:`openmetrics`) is imported into the data directory
    with promtool before the first start; it is queryable as soon as :meth:`start` returns.
    ``scrape_targets`` ("127.0.0.1:PORT", an ``http://`` URL is also accepted) are scraped at
    ``/metrics`` every ``scrape_interval`` under job ``"targets"``. See the module docstring for
    the time windows that work (past or present timestamps only, all within ``retention`` of
    each other). Files in ``workdir``: ``prometheus.yml``, ``backfill.om``, ``data/`` and
    ``prometheus.log`` (server stdout+stderr, appended across restarts).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        backfill: str | None = None,
        scrape_targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        retention: str = "30d",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.backfill = backfill
        self.scrape_targets = [_target_address(t) for t in scrape_targets]
        self.scrape_interval = scrape_interval
        self.retention = retention
        self.extra_args = list(extra_args)
        self.config_path = self.workdir / "prometheus.yml"
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "prometheus.log"
        self.backfill_path = self.workdir / "backfill.om"
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._backfilled = False

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("PrometheusServer is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        """Backfill (once), launch, and wait for ``GET /-/ready`` to answer 200.

        The first start picks a free loopback port; after :meth:`stop`, ``start()`` again
        restarts on the same port and data (so :attr:`url` stays valid). Raises
        ``RuntimeError`` with the tail of the log if promtool fails, if prometheus exits, or if
        it is not ready within ``timeout`` seconds. On a first start, a port lost to another
        process between choosing and binding it is retried with a fresh port.
        """
        if self.running:
            return self
        prometheus = find_binary("prometheus")
        if prometheus is None:
            raise RuntimeError("prometheus binary not found (set PROMETHEUS_BIN)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if self.backfill is not None and not self._backfilled:
            self._run_backfill(timeout)
            self._backfilled = True

        deadline = time.monotonic() + timeout
        # a restart keeps its port (clients hold the URL); only a first start may pick another
        fixed_port = self.port is not None
        attempts = 1 if fixed_port else 3
        for attempt in range(1, attempts + 1):
            if not fixed_port:
                self.port = _free_port()
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._launch(prometheus)
            try:
                self._wait_ready(deadline)
                return self
            except _Exited as exc:
                self._reap()
                tail = self._log_tail(log_offset)
                if "address already in use" in tail and attempt < attempts:
                    continue
                raise RuntimeError(
                    f"prometheus exited with code {exc.code} during startup; log tail:\n{tail}"
                ) from None
            except TimeoutError:
                self.stop()
                raise RuntimeError(
                    f"prometheus not ready at {self.url} within {timeout}s; log tail:\n"
                    f"{self._log_tail(log_offset)}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """SIGTERM, wait up to 15s, then SIGKILL. Safe to call repeatedly."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=15)
        self._reap()

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- HTTP API

    def query(self, promql: str, at: float | None = None) -> dict[str, Any]:
        """Instant query (``GET /api/v1/query``); returns the response's ``data`` dict, e.g.
        ``{"resultType": "vector", "result": [{"metric": {...}, "value": [ts, "1.5"]}]}``.
        ``at`` is epoch seconds (default: the server's now). Raises ``RuntimeError`` with
        Prometheus's error message for a bad query."""
        params = {"query": promql}
        if at is not None:
            params["time"] = _format_timestamp(at)
        body = self._get("/api/v1/query", params)
        data: dict[str, Any] = body["data"]
        return data

    def wait_for_series(self, promql: str, timeout: float = 30.0) -> None:
        """Poll the instant query ``promql`` until its result is non-empty (e.g. until the first
        scrape of a target landed). Raises ``TimeoutError`` listing the targets' scrape state."""
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            if not self.running:
                raise RuntimeError(f"prometheus is not running; log tail:\n{self._log_tail()}")
            if self.query(promql)["result"]:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{promql!r} still empty after {timeout}s; targets: {self._targets_summary()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with _OPENER.open(url, timeout=15) as resp:
                body: dict[str, Any] = json.load(resp)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            exc.close()
            raise RuntimeError(
                f"GET {path} {dict(params or {})}: HTTP {exc.code}: {detail}"
            ) from None
        if body.get("status") != "success":
            raise RuntimeError(f"GET {path} {dict(params or {})}: {body}")
        return body

    def _targets_summary(self) -> str:
        try:
            active = self._get("/api/v1/targets")["data"]["activeTargets"]
        except (OSError, RuntimeError, KeyError) as exc:
            return f"<unavailable: {exc}>"
        return (
            ", ".join(
                f"{t.get('scrapeUrl')} health={t.get('health')} lastError={t.get('lastError')!r}"
                for t in active
            )
            or "none yet (the scrape manager syncs targets every 5s)"
        )

    # ---------------------------------------------------------------- internals

    def _write_config(self) -> None:
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [],
        }
        if self.scrape_targets:
            config["scrape_configs"].append(
                {
                    "job_name": "targets",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": self.scrape_targets}],
                }
            )
        # JSON is valid YAML
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")

    def _run_backfill(self, timeout: float) -> None:
        promtool = find_binary("promtool")
        if promtool is None:
            raise RuntimeError("promtool binary not found (set PROMTOOL_BIN)")
        assert self.backfill is not None
        self.backfill_path.write_text(self.backfill)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(self.backfill_path),
            str(self.data_dir),
        ]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=max(timeout, 60.0), check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"promtool backfill timed out: {' '.join(cmd)}") from exc
        if done.returncode != 0:
            raise RuntimeError(
                f"promtool backfill failed (exit {done.returncode}): {' '.join(cmd)}\n"
                f"{done.stdout[-2000:]}{done.stderr[-4000:]}"
            )

    def _launch(self, prometheus: str) -> None:
        cmd = [
            prometheus,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--storage.tsdb.retention.time={self.retention}",
            *self.extra_args,
        ]
        self._log = self.log_path.open("ab")
        self._log.write(f"\n=== {' '.join(cmd)}\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,  # keep the terminal's Ctrl-C for pytest; we stop it ourselves
        )
        atexit.register(self.stop)

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        ready_url = f"{self.url}/-/ready"
        delay = 0.05
        while True:
            code = self._proc.poll()
            if code is not None:
                raise _Exited(code)
            try:
                with _OPENER.open(ready_url, timeout=5) as resp:
                    ready = resp.status == 200
                if ready:
                    if self._is_ours():
                        return
                    # another server holds the port: ours will fail to bind and exit
                    try:
                        self._proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
                    except subprocess.TimeoutExpired:
                        raise TimeoutError from None
                    continue
            except urllib.error.HTTPError as exc:
                exc.close()  # 503 "not ready yet" while the TSDB opens
            except OSError:
                pass  # not listening yet / connection reset
            if time.monotonic() >= deadline:
                raise TimeoutError
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _is_ours(self) -> bool:
        """Whether the server answering on our port is the process we launched."""
        try:
            flags = self._get("/api/v1/status/flags")["data"]
        except (OSError, RuntimeError, KeyError, ValueError):
            return False
        return bool(flags.get("storage.tsdb.path") == str(self.data_dir))

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=15)
            self._proc = None
            atexit.unregister(self.stop)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self, offset: int = 0, limit: int = 4000) -> str:
        """The log since ``offset``: its error lines first (a flag error is followed by pages of
        usage text), then its last ``limit`` characters."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"
        errors = [
            line
            for line in text.splitlines()
            if "level=error" in line or line.lower().startswith(("error", "prometheus: error"))
        ]
        head = "errors:\n" + "\n".join(errors[-20:]) + "\n--- tail:\n" if errors else ""
        return head + text[-limit:]


class _Exited(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code
