"""The real-Prometheus harness: OpenMetrics rendering, backfilled data queried at past times,
live scraping, restart and shutdown."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.sandbox.web import ToyWebService
from tests.promserver import PrometheusServer, openmetrics, prometheus_available

pytestmark = pytest.mark.skipif(not prometheus_available(), reason="needs prometheus and promtool")

NOW = int(time.time())
START = NOW - 3 * 3600  # backfill spans now-3h .. now-1m, including the current head window
LAST = NOW - 60
OK_RATE, ERR_RATE = 2.0, 0.5


def _series() -> list[tuple[str, dict[str, str], list[tuple[float, float]]]]:
    minutes = range(START, LAST + 1, 60)
    every_15s = range(START, LAST + 1, 15)
    return [
        # listed newest-first: openmetrics() must sort
        ("pm_gauge", {"kind": "minutes"}, [(t, (t - START) / 60) for t in reversed(minutes)]),
        ("pm_requests_total", {"code": "200"}, [(t, (t - START) * OK_RATE) for t in every_15s]),
        ("pm_requests_total", {"code": "500"}, [(t, (t - START) * ERR_RATE) for t in every_15s]),
        ("pm_odd", {"kind": "nan"}, [(t, math.nan) for t in minutes]),
        ("pm_odd", {"kind": "inf"}, [(t, math.inf) for t in minutes]),
        ("pm_odd", {"kind": "neginf"}, [(t, -math.inf) for t in minutes]),
        ("pm_label", {"v": 'q"x\\y\nz'}, [(START, 1.0)]),
        ("pm_millis", {}, [(START + 0.25, 1.0), (START + 0.5, 2.0)]),
    ]


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prom"), backfill=openmetrics(_series()))
    with server.start():
        yield server


def scalar_values(data: dict[str, object]) -> dict[str, str]:
    """{first label value: sample value string} of an instant vector result."""
    assert data["resultType"] == "vector"
    out = {}
    for item in data["result"]:  # type: ignore[attr-defined]
        labels = {k: v for k, v in item["metric"].items() if k != "__name__"}
        out[next(iter(labels.values()), "")] = item["value"][1]
    return out


# ---------------------------------------------------------------- openmetrics() alone


def test_openmetrics_types_families_ordering_and_eof() -> None:
    text = openmetrics(
        [
            ("req_total", {"code": "200"}, [(20, 2.0), (10, 1.0)]),
            ("temp", {}, [(10, 1.5)]),
            ("req_total", {"code": "500"}, [(10, 0.0)]),
            ("hits", {"b": "2", "a": "1"}, [(10.25, 3)]),
        ],
        types={"hits": "counter"},
    )
    assert text.splitlines() == [
        "# TYPE req counter",
        'req_total{code="200"} 1.0 10',
        'req_total{code="200"} 2.0 20',
        'req_total{code="500"} 0.0 10',
        "# TYPE temp gauge",
        "temp 1.5 10",
        "# TYPE hits counter",  # a counter not named *_total keeps its name as family
        'hits{a="1",b="2"} 3.0 10.25',
        "# EOF",
    ]
    assert text.endswith("# EOF\n")


def test_openmetrics_special_values_and_label_escaping() -> None:
    text = openmetrics(
        [("x", {"v": 'a"b\\c\nd'}, [(1, math.nan), (2, math.inf), (3, -math.inf)])],
        types={"x": "gauge"},
    )
    assert text.splitlines()[1:4] == [
        'x{v="a\\"b\\\\c\\nd"} NaN 1',
        'x{v="a\\"b\\\\c\\nd"} +Inf 2',
        'x{v="a\\"b\\\\c\\nd"} -Inf 3',
    ]


@pytest.mark.parametrize(
    ("series", "types", "message"),
    [
        ([("x", {}, [(1, 1.0), (1, 2.0)])], None, "duplicate timestamp"),
        ([("x", {}, [(1, 1.0)])], {"x": "histogram"}, "must be one of"),
        ([("x-y", {}, [(1, 1.0)])], None, "invalid metric name"),
        ([("x", {"__name__": "y"}, [(1, 1.0)])], None, "invalid label name"),
        ([("x", {}, [(1, 1.0)]), ("x_total", {}, [(1, 1.0)])], None, "both"),
    ],
)
def test_openmetrics_rejects_what_promtool_would_mangle(
    series: list[tuple[str, dict[str, str], list[tuple[float, float]]]],
    types: dict[str, str] | None,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        openmetrics(series, types=types)


# ---------------------------------------------------------------- backfilled server


def test_backfilled_gauge_is_exact_at_past_times(prom: PrometheusServer) -> None:
    assert scalar_values(prom.query("pm_gauge", at=START)) == {"minutes": "0"}
    assert scalar_values(prom.query("pm_gauge", at=START + 30 * 60)) == {"minutes": "30"}
    # between samples: the latest one before `at`
    assert scalar_values(prom.query("pm_gauge", at=START + 90 * 60 + 59)) == {"minutes": "90"}
    # before the first sample: nothing
    assert prom.query("pm_gauge", at=START - 1)["result"] == []


def test_backfill_inside_the_head_window_is_queryable_at_once(prom: PrometheusServer) -> None:
    last = str((LAST - START) / 60).removesuffix(".0")
    assert scalar_values(prom.query("pm_gauge", at=LAST)) == {"minutes": last}
    assert scalar_values(prom.query("pm_gauge", at=NOW - 30 * 60)) == {"minutes": "150"}
    # 4 minutes after the last sample: still inside the 5m lookback (queried at a fixed time:
    # "now" moves on while a long test session runs, and NOW was taken at collection)
    assert scalar_values(prom.query("pm_gauge", at=LAST + 240)) == {"minutes": last}
    assert scalar_values(prom.query("pm_gauge", at=LAST + 360)) == {}


def test_backfilled_counter_values_and_rates(prom: PrometheusServer) -> None:
    at = START + 3600
    assert scalar_values(prom.query("pm_requests_total", at=at)) == {
        "200": str(int(3600 * OK_RATE)),
        "500": str(int(3600 * ERR_RATE)),
    }
    for t in (START + 600, START + 2 * 3600, LAST):
        rates = scalar_values(prom.query("rate(pm_requests_total[5m])", at=t))
        assert float(rates["200"]) == pytest.approx(OK_RATE, rel=1e-9)
        assert float(rates["500"]) == pytest.approx(ERR_RATE, rel=1e-9)
    ratio = prom.query(
        'sum(rate(pm_requests_total{code="500"}[2m])) / sum(rate(pm_requests_total[2m]))', at=at
    )
    assert float(ratio["result"][0]["value"][1]) == pytest.approx(0.2, rel=1e-9)


def test_nan_and_infinities_round_trip(prom: PrometheusServer) -> None:
    assert scalar_values(prom.query("pm_odd", at=START + 600)) == {
        "nan": "NaN",
        "inf": "+Inf",
        "neginf": "-Inf",
    }


def test_escaped_labels_and_millisecond_timestamps_round_trip(prom: PrometheusServer) -> None:
    [item] = prom.query("pm_label", at=START)["result"]
    assert item["metric"]["v"] == 'q"x\\y\nz'
    assert scalar_values(prom.query("pm_millis", at=START + 0.3)) == {"": "1"}
    assert scalar_values(prom.query("pm_millis", at=START + 0.5)) == {"": "2"}


def test_bad_promql_raises_with_prometheus_message(prom: PrometheusServer) -> None:
    with pytest.raises(RuntimeError, match="HTTP 400.*parse error"):
        prom.query("rate(pm_requests_total")


def test_wait_for_series_times_out_on_a_missing_series(prom: PrometheusServer) -> None:
    with pytest.raises(TimeoutError, match="no_such_metric"):
        prom.wait_for_series("no_such_metric", timeout=0.5)


# ---------------------------------------------------------------- other servers


def test_retention_counts_back_from_the_newest_block(tmp_path: Path) -> None:
    old, recent = NOW - 40 * 86400, NOW - 3600
    text = openmetrics([("pm_age", {}, [(old, 40.0), (recent, 1.0)])])
    with PrometheusServer(tmp_path, backfill=text, retention="30d") as prom:
        assert prom.query("pm_age", at=old)["result"] == []  # deleted at startup
        assert scalar_values(prom.query("pm_age", at=recent)) == {"": "1"}


def test_start_failures_raise_with_the_log_tail(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="promtool backfill failed"):
        PrometheusServer(tmp_path / "a", backfill="not openmetrics\n").start()
    bad = PrometheusServer(tmp_path / "b", retention="forever")
    with pytest.raises(RuntimeError, match=r"(?s)exited with code \d+.*not a valid duration"):
        bad.start(timeout=20)
    bad.stop()  # idempotent after a failed start


@pytest.mark.slow
def test_live_scrape_restart_and_stop(tmp_path: Path) -> None:
    web = ToyWebService().start()
    server = PrometheusServer(tmp_path, scrape_targets=[web.url], scrape_interval="1s")
    try:
        server.start()
        query = 'http_requests_total{app="toy",code="200"}'
        server.wait_for_series(query)
        [item] = server.query(query)["result"]
        assert item["metric"]["job"] == "targets"
        assert item["metric"]["instance"] == web.url.removeprefix("http://")
        assert float(item["value"][1]) >= 0
        first_scrape = float(item["value"][0])

        url, port = server.url, server.port
        server.stop()
        server.stop()  # idempotent
        assert port is not None
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()

        server.start()  # a restart keeps its URL and its data
        assert server.url == url
        assert server.query(query, at=first_scrape)["result"]
    finally:
        server.stop()
        web.stop()
