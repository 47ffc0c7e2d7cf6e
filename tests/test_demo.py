"""`opsmedic demo` end to end: four faults, outcomes read back from the incident log."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from daemon.incidents import IncidentStore, Resolution, Status
from daemon.sandbox.demo import run_demo

WORKLOADS = "demo-shop-workloads"


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_demo_heals_three_faults_and_escalates_the_fourth(tmp_path: Path) -> None:
    out = io.StringIO()
    code = await run_demo(workdir=tmp_path, out=out)
    store = IncidentStore(tmp_path / "incidents.db", readonly=True)
    found = {(i.playbook, i.labels.get("name")): i for i in store.incidents()}
    assert set(found) == {
        ("demo-etl-freshness", None),
        (WORKLOADS, "checkout"),
        (WORKLOADS, "cart"),
        (WORKLOADS, "payments"),
    }, out.getvalue()
    etl = found["demo-etl-freshness", None]
    assert (etl.status, etl.resolution) == (Status.RESOLVED, Resolution.AUTO_REMEDIATED)
    assert store.action_attempts(etl.id) == {"rerun-loader": 1}

    checkout = found[WORKLOADS, "checkout"]
    assert (checkout.status, checkout.resolution) == (Status.RESOLVED, Resolution.AUTO_REMEDIATED)
    assert store.action_attempts(checkout.id) == {"rollback": 1}
    [rolled] = [e for e in store.events(checkout.id) if e.kind == "action_finished"]
    assert (rolled.data["from_revision"], rolled.data["to_revision"]) == (2, 1)
    assert rolled.data["to_images"] == {"checkout": "shop/checkout:2.0"}
    evidence = next(e for e in store.events(checkout.id) if e.kind == "evidence").data
    assert "panic: nil pointer in PriceCache" in str(evidence["logs"])

    cart = found[WORKLOADS, "cart"]
    assert (cart.status, cart.resolution) == (Status.RESOLVED, Resolution.AUTO_REMEDIATED)
    assert store.action_attempts(cart.id) == {"restart": 1}

    payments = found[WORKLOADS, "payments"]
    assert payments.status is Status.ESCALATED
    assert store.action_attempts(payments.id) == {}  # a restart cannot fix a config error
    escalated = store.events(payments.id)[-1]
    assert escalated.kind == "escalated" and "config_error" in escalated.message
    assert "PAYMENTS_GATEWAY_URL is empty" in escalated.message
    store.close()
    assert code == 0, out.getvalue()
