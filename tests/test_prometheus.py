"""Prometheus probes against a real Prometheus (Debian's package) on loopback.

Deterministic tests backfill series with promtool and evaluate probes at fixed past times on
a fake clock; one live test scrapes the toy web service; one stops Prometheus mid-test."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.clock import FakeClock, SystemClock
from daemon.config import Settings
from daemon.engine import SOURCE_UNAVAILABLE, Engine
from daemon.errors import PermanentError, TemporaryError
from daemon.incidents import IncidentStore, Resolution, Status
from daemon.playbook import load_playbooks
from daemon.sandbox.web import ToyWebService
from probes.base import Outcome, ProbeContext
from probes.canary import CanaryProbe, CanaryProbeConfig
from probes.freshness_prometheus import FreshnessPrometheusConfig, FreshnessPrometheusProbe
from probes.prometheus import PrometheusProbe, PrometheusProbeConfig
from probes.prometheus_source import PrometheusClient, PrometheusSource
from tests.promserver import PrometheusServer, openmetrics

pytestmark = pytest.mark.timeout(120)

T0 = (int(time.time()) // 3600) * 3600 - 4 * 3600  # start of the backfilled hour
STEP = 15


def counter(rate: float, start_after: float = 0.0) -> list[tuple[float, float]]:
    """A counter growing at `rate`/s from T0 + start_after, over one hour."""
    return [(T0 + s, max(0.0, s - start_after) * rate) for s in range(0, 3600 + 1, STEP)]


def gauge(value: float) -> list[tuple[float, float]]:
    return [(T0 + s, value) for s in range(0, 3600 + 1, STEP)]


def requests(app: str, labels: dict[str, str], ok: float, err: float, err_after: float = 0.0):  # type: ignore[no-untyped-def]
    base = {"app": app, **labels}
    return [
        ("http_requests_total", base | {"code": "200"}, counter(ok)),
        ("http_requests_total", base | {"code": "500"}, counter(err, err_after)),
    ]


SERIES = [
    # checkout starts failing 30 minutes in (5 errors per 100 ok); cart stays healthy
    *requests("checkout", {"namespace": "shop", "deployment": "checkout"}, 100, 5, 1800),
    *requests("checkout", {"namespace": "shop", "deployment": "cart"}, 100, 0),
    # canary vs baseline: the canary's error share jumps 30 minutes in
    *requests("web", {"track": "baseline"}, 100, 1),
    *requests("web", {"track": "canary"}, 100, 1),
    *requests("web2", {"track": "canary"}, 0, 0),  # a canary that takes no traffic
    ("http_errors_extra_total", {"app": "web", "track": "canary"}, counter(20, 1800)),
    ("odd_value", {"kind": "nan"}, gauge(math.nan)),
    ("odd_value", {"kind": "inf"}, gauge(math.inf)),
    ("last_success_timestamp_seconds", {"pipeline": "orders"}, gauge(T0 + 3000)),
    ("last_success_timestamp_seconds", {"pipeline": "customers"}, gauge(T0 - 7200)),
]

RATIO = (
    'sum by (namespace, deployment) (rate(http_requests_total{app="checkout",code="500"}[2m]))'
    ' / sum by (namespace, deployment) (rate(http_requests_total{app="checkout"}[2m]))'
)
CANARY_ERRORS = (
    '(sum(rate(http_requests_total{{app="web",track="{t}",code="500"}}[1m])) + '
    'sum(rate(http_errors_extra_total{{app="web",track="{t}"}}[1m]) or vector(0)))'
    ' / sum(rate(http_requests_total{{app="web",track="{t}"}}[1m]))'
)


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prom"), backfill=openmetrics(SERIES))
    with server.start():
        yield server


def context(prom: PrometheusServer, at: float, **source: Any) -> ProbeContext:
    client = PrometheusClient("default", PrometheusSource(url=prom.url, **source))
    return ProbeContext(clock=FakeClock(start=at), prometheus={"default": client})


def prometheus_probe(prom: PrometheusServer, at: float, **config: Any) -> PrometheusProbe:
    cfg = PrometheusProbeConfig.model_validate({"kind": "prometheus"} | config)
    return PrometheusProbe(cfg, context(prom, at))


async def test_vector_yields_one_reading_per_series_with_labels(prom: PrometheusServer) -> None:
    readings = await prometheus_probe(prom, T0 + 2700, query=RATIO, above=0.01).check()
    by_deployment = {r.labels["deployment"]: r for r in readings}
    assert set(by_deployment) == {"checkout", "cart"}
    assert by_deployment["checkout"].outcome is Outcome.BREACH
    assert by_deployment["checkout"].value == pytest.approx(5 / 105, rel=1e-3)
    assert by_deployment["checkout"].labels == {"namespace": "shop", "deployment": "checkout"}
    assert by_deployment["cart"].outcome is Outcome.OK and by_deployment["cart"].value == 0


async def test_same_query_before_the_fault_is_ok(prom: PrometheusServer) -> None:
    readings = await prometheus_probe(prom, T0 + 1200, query=RATIO, above=0.01).check()
    assert [r.outcome for r in readings] == [Outcome.OK, Outcome.OK]


async def test_scalar_and_outside(prom: PrometheusServer) -> None:
    probe = prometheus_probe(prom, T0 + 600, query="scalar(vector(7))", outside=[0, 5])
    [reading] = await probe.check()
    assert reading.labels == {} and reading.value == 7 and reading.outcome is Outcome.BREACH


async def test_nan_is_no_data_and_inf_breaches(prom: PrometheusServer) -> None:
    readings = await prometheus_probe(prom, T0 + 600, query="odd_value", above=100).check()
    by_kind = {r.labels["kind"]: r for r in readings}
    assert by_kind["nan"].outcome is Outcome.NO_DATA
    assert by_kind["inf"].outcome is Outcome.BREACH and by_kind["inf"].value == math.inf


async def test_empty_result_yields_no_readings(prom: PrometheusServer) -> None:
    probe = prometheus_probe(prom, T0 + 600, query='odd_value{kind="none"}', above=1)
    assert await probe.check() == []


async def test_bad_promql_is_a_permanent_error_naming_the_problem(prom: PrometheusServer) -> None:
    probe = prometheus_probe(prom, T0 + 600, query="sum(rate(x[5m])", above=1)
    with pytest.raises(PermanentError, match="parse error"):
        await probe.check()


async def test_range_vector_query_is_refused(prom: PrometheusServer) -> None:
    probe = prometheus_probe(prom, T0 + 600, query="odd_value[5m]", above=1)
    with pytest.raises(PermanentError, match="range vector"):
        await probe.check()


async def test_unreachable_prometheus_is_temporary() -> None:
    client = PrometheusClient("default", PrometheusSource(url="http://127.0.0.1:9", timeout=2))
    with pytest.raises(TemporaryError, match="unreachable"):
        await client.instant("up", time.time())


async def test_bearer_token_is_sent_and_never_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROM_TOKEN", "s3cr3t-token")
    source = PrometheusSource(url="http://127.0.0.1:9", bearer_token_env="PROM_TOKEN", timeout=2)
    assert source.request_headers()["Authorization"] == "Bearer s3cr3t-token"
    with pytest.raises(TemporaryError) as info:
        await PrometheusClient("default", source).instant("up", time.time())
    assert "s3cr3t" not in str(info.value) and "s3cr3t" not in repr(source)


async def test_evidence_queries_are_rendered_per_series(prom: PrometheusServer) -> None:
    evidence = {
        "errors_per_second": 'sum(rate(http_requests_total{deployment="{{ labels.deployment }}",'
        'code="500"}[2m]))',
        "broken": "sum(",
    }
    probe = prometheus_probe(prom, T0 + 2700, query=RATIO, above=0.01, evidence=evidence)
    found = await probe.evidence({"namespace": "shop", "deployment": "checkout"})
    assert found["errors_per_second"] == pytest.approx(5.0)
    assert "error" in found["broken"]


async def test_freshness_from_a_timestamp_metric(prom: PrometheusServer) -> None:
    cfg = FreshnessPrometheusConfig.model_validate(
        {
            "kind": "freshness.prometheus",
            "query": "max by (pipeline) (last_success_timestamp_seconds)",
            "warn_after": "10m",
            "error_after": "1h",
            "expect": [{"pipeline": "orders"}, {"pipeline": "payments"}],
        }
    )
    readings = await FreshnessPrometheusProbe(cfg, context(prom, T0 + 3300)).check()
    by_pipeline = {r.labels["pipeline"]: r for r in readings}
    assert by_pipeline["orders"].outcome is Outcome.OK
    assert by_pipeline["orders"].value == pytest.approx(300)
    assert by_pipeline["customers"].outcome is Outcome.BREACH
    assert by_pipeline["payments"].value == math.inf  # expected but missing: infinitely stale
    assert by_pipeline["payments"].outcome is Outcome.BREACH


def canary_probe(prom: PrometheusServer, at: float, track: str = "canary", **extra: Any):  # type: ignore[no-untyped-def]
    cfg = CanaryProbeConfig.model_validate(
        {
            "kind": "canary",
            "window": "10m",
            "step": "1m",
            "min_samples": 5,
            "failure_limit": 2,
            "labels": {"deployment": "web"},
            "metrics": [
                {
                    "name": "error-ratio",
                    "canary": CANARY_ERRORS.format(t=track),
                    "baseline": CANARY_ERRORS.format(t="baseline"),
                    "compare": "difference",
                    "max": 0.05,
                    "mann_whitney": {"direction": "increase", "min_effect": 0.5},
                }
            ],
        }
        | extra
    )
    return CanaryProbe(cfg, context(prom, at))


async def test_canary_passes_while_it_matches_the_baseline(prom: PrometheusServer) -> None:
    [reading] = await canary_probe(prom, T0 + 1500).check()
    assert reading.outcome is Outcome.OK and reading.evidence["verdict"] == "pass"
    assert reading.evidence["samples"] >= 10


async def test_canary_fails_after_its_error_ratio_jumps(prom: PrometheusServer) -> None:
    [reading] = await canary_probe(prom, T0 + 2700).check()
    assert reading.outcome is Outcome.BREACH and reading.actionable
    assert reading.evidence["verdict"] == "fail" and reading.evidence["failed_checks"] > 2
    assert reading.labels == {"deployment": "web"}
    assert reading.evidence["metrics"][0]["significant"] is True


async def test_canary_without_traffic_is_inconclusive_and_not_actionable(
    prom: PrometheusServer,
) -> None:
    traffic = 'sum(rate(http_requests_total{app="web2",track="canary"}[1m]))'
    [reading] = await canary_probe(prom, T0 + 2700, traffic=traffic).check()
    assert reading.evidence["verdict"] == "inconclusive" and not reading.actionable
    assert reading.labels == {"deployment": "web", "verdict": "inconclusive"}


# --- the daemon: source-unavailable incidents, and a live scrape -------------------------------


def write_playbook(directory: Path, document: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{document['name']}.yaml").write_text(yaml.safe_dump(document))
    return directory


def counter_action(tmp_path: Path) -> dict[str, Any]:
    marker = tmp_path / "acted"
    return {
        "id": "fix",
        "uses": "command",
        "with": {"argv": ["sh", "-c", f"echo ran >> {marker}"]},
    }


async def test_prometheus_down_opens_source_incident_and_inhibits_dependents(
    tmp_path: Path,
) -> None:
    server = PrometheusServer(tmp_path / "prom", backfill=openmetrics(SERIES)).start()
    try:
        pb = write_playbook(
            tmp_path / "pb",
            {
                "name": "checkout-errors",
                "probe": {"kind": "prometheus", "query": RATIO, "above": 0.01, "for": "1m"},
                "actions": [counter_action(tmp_path)],
                "policy": {"verify_after": "1s"},
            },
        )
        clock = FakeClock(start=T0 + 2700)
        store = IncidentStore(tmp_path / "incidents.db")
        settings = Settings(
            probe_retries=0,
            prometheus={"default": PrometheusSource(url=server.url, consecutive_error_limit=3)},
        )
        engine = Engine(
            playbooks=load_playbooks([pb]),
            store=store,
            notifiers=[],
            clock=clock,
            settings=settings,
        )
        await engine.start(schedule=False)
        await engine.tick("checkout-errors")  # checkout breaching: pending
        assert store.incidents() == []
        server.stop()
        for _ in range(3):
            await clock.advance(30)
            await engine.tick("checkout-errors")  # errors hold the pending state
        [source] = store.incidents()
        assert source.playbook == SOURCE_UNAVAILABLE and source.status is Status.ESCALATED
        assert source.labels == {"source": "prometheus/default"}
        assert "checkout-errors" in store.events(source.id)[-1].message
        await clock.advance(120)  # long past `for`, but the source is down: nothing fires
        await engine.tick("checkout-errors")
        assert len(store.incidents()) == 1 and not (tmp_path / "acted").exists()

        server.start()  # back: the source incident resolves, the playbook is judged again
        await engine.tick("checkout-errors")
        for _ in range(500):  # the response's queries are real I/O; its verify wait is not
            if not engine.responding:
                break
            await clock.advance(1)
            await asyncio.sleep(0.01)
        assert store.get(source.id).resolution == Resolution.RECOVERED  # type: ignore[union-attr]
        checkout = store.incidents()[0]
        assert (
            checkout.playbook == "checkout-errors" and checkout.labels["deployment"] == "checkout"
        )
        assert (tmp_path / "acted").read_text() == "ran\n"  # acting is allowed again
    finally:
        server.stop()


@pytest.mark.slow
async def test_live_scrape_opens_and_resolves_an_incident(tmp_path: Path) -> None:
    web = ToyWebService().start()
    target = web.url.removeprefix("http://")
    server = PrometheusServer(tmp_path / "prom", scrape_targets=[target], scrape_interval="1s")
    try:
        server.start()
        server.wait_for_series('http_requests_total{app="toy"}')
        ratio = (
            'sum(rate(http_requests_total{app="toy",code="500"}[4s]))'
            ' / sum(rate(http_requests_total{app="toy"}[4s]))'
        )
        restart = {"id": "restart", "uses": "http", "with": {"url": f"{web.url}/admin/restart"}}
        pb = write_playbook(
            tmp_path / "pb",
            {
                "name": "toy-errors",
                "probe": {"kind": "prometheus", "query": ratio, "above": 0.1},
                "actions": [restart],
                "policy": {"verify_after": "6s"},
            },
        )
        store = IncidentStore(tmp_path / "incidents.db")
        settings = Settings(
            probe_retries=0, prometheus={"default": PrometheusSource(url=server.url)}
        )
        engine = Engine(
            playbooks=load_playbooks([pb]),
            store=store,
            notifiers=[],
            clock=SystemClock(),
            settings=settings,
        )
        await engine.start(schedule=False)
        web.spike_errors(0.5)
        deadline = time.monotonic() + 40
        while not store.incidents() and time.monotonic() < deadline:
            await engine.tick("toy-errors")  # real scrapes: poll the daemon's own cycle
            await asyncio.sleep(0.5)
        [incident] = store.incidents()
        await asyncio.wait_for(engine.idle(), timeout=40)
        final = store.get(incident.id)
        assert final is not None and final.status is Status.RESOLVED
        assert final.resolution == Resolution.AUTO_REMEDIATED and web.restarts == 1
    finally:
        server.stop()
        web.stop()
