"""Probe kinds against real loopback servers and real SQLite files, on a fake clock."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from daemon.clock import FakeClock
from daemon.errors import PermanentError, TemporaryError
from daemon.sandbox.etl import database, load_batch
from daemon.sandbox.web import ToyWebService
from probes.base import Outcome, ProbeContext, Reading, check_once
from probes.freshness_sql import FreshnessSqlConfig, FreshnessSqlProbe, to_epoch
from probes.http import HttpProbe, HttpProbeConfig
from probes.metrics import MetricsProbe, MetricsProbeConfig, Selector, parse_exposition
from tests.fakes.http import ScriptedServer

# --- fixtures: a loopback server whose answer each test sets -------------------------------


@pytest.fixture
def wire() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    server.content_type = "text/plain"
    yield server
    server.close()


@pytest.fixture(scope="module")
def toy_web() -> Iterator[ToyWebService]:
    service = ToyWebService().start()  # shared: stopping one takes half a second
    yield service
    service.stop()


@pytest.fixture
def web(toy_web: ToyWebService) -> ToyWebService:
    toy_web.spike_errors(0.0)
    toy_web.break_dependency(False)
    return toy_web


@pytest.fixture
def unused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/health"


def http_probe(clock: FakeClock, url: str, **extra: Any) -> HttpProbe:
    config = HttpProbeConfig.model_validate({"kind": "http", "url": url, **extra})
    return HttpProbe(config, ProbeContext(clock=clock))


def metrics_probe(clock: FakeClock, url: str, **extra: Any) -> MetricsProbe:
    config = MetricsProbeConfig.model_validate({"kind": "metrics", "url": url, **extra})
    return MetricsProbe(config, ProbeContext(clock=clock))


def freshness_probe(clock: FakeClock, db: Path | str, **extra: Any) -> FreshnessSqlProbe:
    document = {"kind": "freshness.sql", "database": str(db), "error_after": "30m", **extra}
    return FreshnessSqlProbe(FreshnessSqlConfig.model_validate(document), ProbeContext(clock=clock))


async def when_sleeping(clock: FakeClock, task: asyncio.Task[Any], timeout: float = 5) -> None:
    """Wait (on real I/O) until `task` blocks on the fake clock."""
    deadline = time.monotonic() + timeout
    while clock.sleepers == 0:
        assert not task.done(), "finished without sleeping"
        assert time.monotonic() < deadline, "never slept on the clock"
        await asyncio.sleep(0.01)


# --- http ------------------------------------------------------------------------------------


async def test_http_200_is_ok_with_latency_value(clock: FakeClock, web: ToyWebService) -> None:
    [reading] = await http_probe(clock, f"{web.url}/health").check()
    assert reading.outcome is Outcome.OK
    assert reading.labels == {"url": f"{web.url}/health"}
    assert reading.value is not None and 0 <= reading.value < 5
    assert reading.evidence["status"] == 200


async def test_http_503_is_breach_naming_status(clock: FakeClock, web: ToyWebService) -> None:
    web.break_dependency()
    [reading] = await http_probe(clock, f"{web.url}/health").check()
    assert reading.outcome is Outcome.BREACH
    assert "503" in reading.message
    assert reading.evidence["status"] == 503


async def test_http_json_value_mismatch_is_breach(clock: FakeClock, wire: ScriptedServer) -> None:
    wire.body = json.dumps({"items": [{"state": "degraded"}]})
    probe = http_probe(clock, wire.url, json_path="items.0.state", json_equals="ready")
    [reading] = await probe.check()
    assert reading.outcome is Outcome.BREACH
    assert "'degraded', expected 'ready'" in reading.message
    assert reading.evidence["json_value"] == "degraded"


async def test_http_json_value_match_is_ok(clock: FakeClock, web: ToyWebService) -> None:
    probe = http_probe(clock, f"{web.url}/health", json_path="database", json_equals=True)
    [reading] = await probe.check()
    assert reading.outcome is Outcome.OK


async def test_http_missing_json_path_is_breach(clock: FakeClock, wire: ScriptedServer) -> None:
    wire.body = "not json"
    [reading] = await http_probe(clock, wire.url, json_path="status").check()
    assert reading.outcome is Outcome.BREACH
    assert "no JSON value at status" in reading.message


async def test_http_slower_than_max_latency_is_breach(
    clock: FakeClock, wire: ScriptedServer
) -> None:
    [reading] = await http_probe(clock, wire.url, max_latency=0).check()
    assert reading.outcome is Outcome.BREACH
    assert "latency" in reading.message


async def test_http_unreachable_is_breach_by_default(clock: FakeClock, unused_url: str) -> None:
    [reading] = await http_probe(clock, unused_url).check()
    assert reading.outcome is Outcome.BREACH
    assert reading.message.startswith("unreachable")
    assert reading.labels == {"url": unused_url}


async def test_http_unreachable_keeps_why_in_the_evidence(
    clock: FakeClock, unused_url: str, web: ToyWebService
) -> None:
    [refused] = await http_probe(clock, unused_url).check()
    assert refused.evidence["unreachable"]["reason"] == "refused"
    assert refused.message.startswith("unreachable (refused)")
    tls = web.url.replace("http://", "https://")  # TLS to a plain-HTTP server fails its handshake
    [handshake] = await http_probe(clock, tls).check()
    assert handshake.evidence["unreachable"]["reason"] == "tls"
    assert "SSL" in handshake.evidence["unreachable"]["detail"]


async def test_http_unreachable_as_error_raises_temporary(
    clock: FakeClock, unused_url: str
) -> None:
    with pytest.raises(TemporaryError):
        await http_probe(clock, unused_url, unreachable="error").check()


async def test_http_garbage_response_is_breach(clock: FakeClock) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"garbage\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        try:
            [reading] = await http_probe(clock, url).check()
        finally:
            thread.join(timeout=5)
    assert reading.outcome is Outcome.BREACH


async def test_check_once_turns_failure_into_one_unlabeled_error(
    clock: FakeClock, unused_url: str
) -> None:
    probe = http_probe(clock, unused_url, unreachable="error")
    readings = await check_once(probe, probe.config, clock=clock, retries=0)
    assert readings == [Reading(outcome=Outcome.ERROR, message=readings[0].message)]
    assert unused_url in readings[0].message
    assert clock.sleepers == 0


async def test_check_once_retries_on_the_fake_clock(clock: FakeClock, unused_url: str) -> None:
    probe = http_probe(clock, unused_url, unreachable="error")
    task = asyncio.create_task(check_once(probe, probe.config, clock=clock, retries=1))
    await when_sleeping(clock, task)
    await asyncio.sleep(0.05)
    assert not task.done()  # waits for fake time, not real time
    await clock.advance(0.5)
    [reading] = await asyncio.wait_for(task, timeout=5)
    assert reading.outcome is Outcome.ERROR and reading.labels == {}
    assert clock.sleepers == 0


# --- metrics: parsing and selectors -----------------------------------------------------------

EXPOSITION = r"""
# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code="500",path="/a\"b",note="one\ntwo"} 3 1700000000000
http_requests_total{ code = "200" , path="/" } 1e3
temperature NaN
latency_bucket{le="+Inf"} +Inf
"""


def test_parse_exposition_reads_labels_escapes_and_special_values() -> None:
    samples = list(parse_exposition(EXPOSITION))
    assert samples[0] == (
        "http_requests_total",
        {"code": "500", "path": '/a"b', "note": "one\ntwo"},
        3.0,
    )
    assert samples[1] == ("http_requests_total", {"code": "200", "path": "/"}, 1000.0)
    assert samples[2][0] == "temperature" and math.isnan(samples[2][2])
    assert samples[3] == ("latency_bucket", {"le": "+Inf"}, math.inf)


def test_parse_exposition_unescapes_backslash_before_n() -> None:
    [(_, labels, _)] = parse_exposition('m{path="C:\\\\new"} 1\n')
    assert labels == {"path": "C:\\new"}


def test_parse_exposition_rejects_garbage() -> None:
    with pytest.raises(PermanentError, match="line 2"):
        list(parse_exposition("ok 1\nthis is not a sample\n"))


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ('x{code="500"}', {"code": "500"}, True),
        ('x{code="500"}', {"code": "502"}, False),
        ('x{code!="500"}', {"code": "200"}, True),
        ('x{code!="500"}', {"code": "500"}, False),
        ('x{code=~"5.."}', {"code": "503"}, True),
        ('x{code=~"5.."}', {"code": "5000"}, False),  # anchored, as in PromQL
        ('x{code!~"5.."}', {"code": "200"}, True),
        ('x{code!~"5.."}', {"code": "500"}, False),
        ('x{app="toy", code=~"5.."}', {"app": "toy", "code": "500"}, True),
        ('x{app=""}', {"code": "500"}, True),  # a missing label is the empty string
        ("x", {"anything": "goes"}, True),
    ],
)
def test_selector_matching(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert Selector.parse(selector).matches("x", labels) is expected


def test_selector_requires_the_metric_name() -> None:
    assert not Selector.parse('x{code="500"}').matches("y", {"code": "500"})


@pytest.mark.parametrize("text", ["9lives", "x{code=500}", 'x{code=~"("}', 'x{code~"5"}'])
def test_bad_selector_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        Selector.parse(text)


def test_bad_selector_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="numerator"):
        MetricsProbeConfig.model_validate({"url": "http://x/", "numerator": "x{", "above": 1})


# --- metrics: scraping -----------------------------------------------------------------------

RATIO = {
    "numerator": 'http_requests_total{code=~"5.."}',
    "denominator": "http_requests_total",
    "above": 0.1,
}


def counters(**by_code: float) -> str:
    return "".join(f'http_requests_total{{code="{c[1:]}"}} {v}\n' for c, v in by_code.items())


async def test_metrics_first_scrape_is_no_data(clock: FakeClock, web: ToyWebService) -> None:
    [reading] = await metrics_probe(clock, f"{web.url}/metrics", **RATIO).check()
    assert reading.outcome is Outcome.NO_DATA
    assert "first scrape" in reading.message


def wait_for_ticks(web: ToyWebService, ticks: int = 2) -> None:
    def total() -> float:
        with web.lock:
            return sum(web.counts.values())

    start, deadline = total(), time.monotonic() + 5
    while total() < start + ticks * 20:
        assert time.monotonic() < deadline, "no traffic"
        time.sleep(0.02)


async def test_metrics_error_spike_is_breach(clock: FakeClock, web: ToyWebService) -> None:
    probe = metrics_probe(clock, f"{web.url}/metrics", **RATIO)
    web.spike_errors(0.5)
    await probe.check()
    await asyncio.to_thread(wait_for_ticks, web)
    [reading] = await probe.check()
    assert reading.outcome is Outcome.BREACH
    assert reading.value == pytest.approx(0.5)
    assert reading.labels == {}


async def test_metrics_by_label_yields_one_reading_each(
    clock: FakeClock, web: ToyWebService
) -> None:
    probe = metrics_probe(clock, f"{web.url}/metrics", by=["code"], **RATIO)
    web.spike_errors(0.5)
    await probe.check()
    await asyncio.to_thread(wait_for_ticks, web)
    readings = {r.labels["code"]: r for r in await probe.check()}
    assert readings.keys() == {"200", "500"}
    assert readings["200"].outcome is Outcome.OK and readings["200"].value == 0
    assert readings["500"].outcome is Outcome.BREACH and readings["500"].value == 1


async def test_metrics_ratio_of_increases(clock: FakeClock, wire: ScriptedServer) -> None:
    probe = metrics_probe(clock, wire.url, **RATIO)
    wire.body = counters(c200=90, c500=10)
    await probe.check()
    wire.body = counters(c200=180, c500=20)  # +90 ok, +10 errors since the last scrape
    [reading] = await probe.check()
    assert reading.outcome is Outcome.OK
    assert reading.value == pytest.approx(0.1)
    assert reading.evidence == {"numerator": 10, "denominator": 100}


async def test_metrics_counter_reset_counts_from_zero(
    clock: FakeClock, wire: ScriptedServer
) -> None:
    probe = metrics_probe(clock, wire.url, **RATIO)
    wire.body = counters(c200=900, c500=100)
    await probe.check()
    wire.body = counters(c200=10, c500=10)  # the process restarted
    [reading] = await probe.check()
    assert reading.evidence == {"numerator": 10, "denominator": 20}
    assert reading.outcome is Outcome.BREACH and reading.value == 0.5


async def test_metrics_counter_reset_of_one_series_among_many(
    clock: FakeClock, wire: ScriptedServer
) -> None:
    probe = metrics_probe(clock, wire.url, numerator="http_requests_total", above=1)
    wire.body = counters(c200=100, c500=100)
    await probe.check()
    await clock.advance(10)
    wire.body = counters(c200=150, c500=0)  # 500-series restarted; true increase is 50
    [reading] = await probe.check()
    assert reading.evidence["numerator"] == 50


async def test_metrics_without_denominator_traffic_is_no_data(
    clock: FakeClock, wire: ScriptedServer
) -> None:
    probe = metrics_probe(clock, wire.url, **RATIO)
    wire.body = counters(c200=90, c500=10)
    await probe.check()
    [reading] = await probe.check()
    assert reading.outcome is Outcome.NO_DATA
    assert "no traffic" in reading.message


async def test_metrics_rate_without_denominator_is_per_second(
    clock: FakeClock, wire: ScriptedServer
) -> None:
    probe = metrics_probe(clock, wire.url, numerator='http_requests_total{code="500"}', above=1)
    wire.body = counters(c500=100)
    await probe.check()
    await clock.advance(10)
    wire.body = counters(c500=150)
    [reading] = await probe.check()
    assert reading.value == pytest.approx(5.0)
    assert reading.outcome is Outcome.BREACH


async def test_metrics_gauge_without_rate_is_judged_as_is(
    clock: FakeClock, wire: ScriptedServer
) -> None:
    wire.body = "queue_depth 7\n"
    probe = metrics_probe(clock, wire.url, numerator="queue_depth", rate=False, above=5)
    [reading] = await probe.check()
    assert reading.outcome is Outcome.BREACH and reading.value == 7


async def test_metrics_no_matching_series_yields_nothing(
    clock: FakeClock, wire: ScriptedServer
) -> None:
    wire.body = "something_else 1\n"
    assert await metrics_probe(clock, wire.url, **RATIO).check() == []


@pytest.mark.parametrize(("status", "error"), [(503, TemporaryError), (404, PermanentError)])
async def test_metrics_failed_scrape_raises(
    clock: FakeClock, wire: ScriptedServer, status: int, error: type[Exception]
) -> None:
    wire.status = status
    with pytest.raises(error, match=str(status)):
        await metrics_probe(clock, wire.url, **RATIO).check()


# --- freshness.sql ---------------------------------------------------------------------------


def sql(db: Path, statement: str, rows: list[tuple[Any, ...]] | None = None) -> None:
    with closing(sqlite3.connect(db)) as conn, conn:
        if rows:
            conn.executemany(statement, rows)
        else:
            conn.execute(statement)


async def test_freshness_recent_rows_are_ok_with_age(clock: FakeClock, tmp_path: Path) -> None:
    load_batch(tmp_path, now=clock.now() - 60)
    probe = freshness_probe(clock, database(tmp_path), table="events", column="loaded_at")
    [reading] = await probe.check()
    assert reading.outcome is Outcome.OK
    assert reading.value == pytest.approx(60)
    assert reading.labels == {"table": "events"}
    assert reading.evidence["freshness"] == "pass"


async def test_freshness_old_rows_are_breach(clock: FakeClock, tmp_path: Path) -> None:
    load_batch(tmp_path, now=clock.now() - 3600)
    probe = freshness_probe(clock, database(tmp_path), table="events", column="loaded_at")
    [reading] = await probe.check()
    assert reading.outcome is Outcome.BREACH
    assert reading.value == pytest.approx(3600)
    assert reading.evidence["freshness"] == "error"


async def test_freshness_between_warn_and_error_is_ok_with_warn(
    clock: FakeClock, tmp_path: Path
) -> None:
    load_batch(tmp_path, now=clock.now() - 600)
    url = f"sqlite:///{database(tmp_path)}"
    probe = freshness_probe(clock, url, table="events", column="loaded_at", warn_after="5m")
    [reading] = await probe.check()
    assert reading.outcome is Outcome.OK
    assert reading.evidence["freshness"] == "warn"


async def test_freshness_ages_with_the_clock(clock: FakeClock, tmp_path: Path) -> None:
    load_batch(tmp_path, now=clock.now())
    probe = freshness_probe(clock, database(tmp_path), table="events", column="loaded_at")
    assert (await probe.check())[0].outcome is Outcome.OK
    await clock.advance(31 * 60)
    assert (await probe.check())[0].outcome is Outcome.BREACH


async def test_freshness_empty_table_is_infinitely_stale(clock: FakeClock, tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    sql(db, "CREATE TABLE events (loaded_at REAL)")
    [reading] = await freshness_probe(clock, db, table="events", column="loaded_at").check()
    assert reading.outcome is Outcome.BREACH
    assert reading.value == math.inf
    assert "infinitely stale" in reading.message


async def test_freshness_query_labels_rows_by_column(clock: FakeClock, tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    now = clock.now()
    sql(db, "CREATE TABLE t (source TEXT, loaded_at REAL)")
    rows = [("orders", now - 10), ("orders", now - 7200), ("users", now - 7200)]
    sql(db, "INSERT INTO t VALUES (?, ?)", rows)
    query = "SELECT source, max(loaded_at) FROM t GROUP BY source"
    readings = await freshness_probe(clock, db, query=query).check()
    assert [(r.labels, r.outcome) for r in readings] == [
        ({"source": "orders"}, Outcome.OK),
        ({"source": "users"}, Outcome.BREACH),
    ]


async def test_freshness_reads_iso_timestamps(clock: FakeClock, tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    sql(db, "CREATE TABLE t (loaded_at TEXT)")
    sql(db, "INSERT INTO t VALUES (?)", [("2023-11-14T22:12:20Z",)])
    [reading] = await freshness_probe(clock, db, table="t", column="loaded_at").check()
    assert reading.value == pytest.approx(clock.now() - 1_699_999_940)


async def test_freshness_evidence_reads_the_upstream_and_named_queries(
    clock: FakeClock, tmp_path: Path
) -> None:
    load_batch(tmp_path, now=clock.now() - 3600)
    db = database(tmp_path)
    sql(db, "CREATE TABLE exports (done_at REAL, rows INTEGER)")
    sql(db, "INSERT INTO exports VALUES (?, ?)", [(clock.now() - 7200, 10)])
    probe = freshness_probe(
        clock,
        db,
        table="events",
        column="loaded_at",
        upstream="SELECT max(done_at) FROM exports",
        evidence={"export_rows": "SELECT sum(rows) FROM exports", "broken": "SELECT nope"},
    )
    found = await probe.evidence({"table": "events"})
    assert found["upstream_loaded_at"] == clock.now() - 7200
    assert found["upstream_age_seconds"] == pytest.approx(7200)
    assert found["export_rows"] == 10
    assert "broken" in found["evidence_error"] and "broken" not in found  # reported, not raised


async def test_freshness_missing_database_is_permanent(clock: FakeClock, tmp_path: Path) -> None:
    db = tmp_path / "missing.db"
    with pytest.raises(PermanentError, match="cannot open"):
        await freshness_probe(clock, db, table="events", column="loaded_at").check()
    assert not db.exists()  # read-only: never creates the file


async def test_freshness_missing_table_is_permanent(clock: FakeClock, tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    sql(db, "CREATE TABLE other (x)")
    with pytest.raises(PermanentError, match="no such table"):
        await freshness_probe(clock, db, table="events", column="loaded_at").check()


async def test_freshness_non_sqlite_file_is_permanent(clock: FakeClock, tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    db.write_text("not a database " * 100)
    with pytest.raises(PermanentError):
        await freshness_probe(clock, db, table="events", column="loaded_at").check()


async def test_freshness_path_with_hash_is_opened_read_only(
    clock: FakeClock, tmp_path: Path
) -> None:
    folder = tmp_path / "a#b"
    folder.mkdir()
    with pytest.raises(PermanentError, match="cannot open"):
        await freshness_probe(clock, folder / "w.db", table="events", column="loaded_at").check()
    assert list(tmp_path.iterdir()) == [folder]


def test_freshness_needs_query_or_table_and_column() -> None:
    with pytest.raises(ValidationError, match="either `query`"):
        FreshnessSqlConfig.model_validate({"database": "x.db", "table": "t", "error_after": 1})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-11-14T22:13:20+00:00", 1_700_000_000.0),
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000.0),
        ("2023-11-14 22:13:20", 1_700_000_000.0),  # naive is UTC
        (1_700_000_000, 1_700_000_000.0),
        (1_700_000_000.5, 1_700_000_000.5),
        (1_700_000_000_000, 1_700_000_000.0),  # millis
        ("1700000000", 1_700_000_000.0),
        ("1700000000000", 1_700_000_000.0),
        (None, None),
        ("", None),
    ],
)
def test_to_epoch(value: Any, expected: float | None) -> None:
    assert to_epoch(value) == expected


@pytest.mark.parametrize("value", [True, "yesterday", b"x"])
def test_to_epoch_rejects_non_timestamps(value: Any) -> None:
    with pytest.raises(ValueError):
        to_epoch(value)
