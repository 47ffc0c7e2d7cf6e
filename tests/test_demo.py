"""`opsmedic demo` end to end: three faults, outcomes read back from the incident log."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from daemon.incidents import IncidentStore, Resolution, Status
from daemon.sandbox.demo import run_demo


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_demo_heals_two_faults_and_escalates_the_third(tmp_path: Path) -> None:
    out = io.StringIO()
    code = await run_demo(workdir=tmp_path, out=out)
    store = IncidentStore(tmp_path / "incidents.db", readonly=True)
    by_playbook = {i.playbook: i for i in store.incidents()}
    assert set(by_playbook) == {"demo-etl-freshness", "demo-web-error-rate", "demo-web-health"}
    etl, errors, health = (
        by_playbook[n] for n in ("demo-etl-freshness", "demo-web-error-rate", "demo-web-health")
    )
    assert (etl.status, etl.resolution) == (Status.RESOLVED, Resolution.AUTO_REMEDIATED)
    assert store.action_attempts(etl.id) == {"rerun-loader": 1}
    assert (errors.status, errors.resolution) == (Status.RESOLVED, Resolution.AUTO_REMEDIATED)
    assert store.action_attempts(errors.id) == {"restart": 1}
    assert health.status is Status.ESCALATED
    assert store.action_attempts(health.id) == {"wait-it-out": 1, "restart": 1}
    assert [e.kind for e in store.events(health.id)][-1] == "escalated"
    store.close()
    assert code == 0, out.getvalue()
