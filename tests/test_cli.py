"""The command line as scripts use it: exit codes, stderr messages, --json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.incidents import IncidentStore
from daemon.sandbox.web import ToyWebService

ROOT = Path(__file__).parent.parent


def test_validate_shipped_playbooks_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "playbooks")]) == 0
    shipped = len(list((ROOT / "playbooks").glob("*.yaml")))
    assert f"{shipped} playbook(s) valid" in capsys.readouterr().out


def test_validate_bad_playbook_exits_one_with_file_line_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprobe: {kind: http, url: 'http://h', evry: 5s}\n")
    assert main(["validate", str(bad)]) == 1
    assert f"{bad}:2: probe.evry: unknown field 'evry' (did you mean 'every'?)" in (
        capsys.readouterr().err
    )


def test_validate_names_an_unknown_kubernetes_cluster_and_bad_bounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    playbook = tmp_path / "pb.yaml"
    playbook.write_text(
        "name: shop\n"
        "probe: {kind: kubernetes, namespace: shop, cluster: prodution}\n"
        "actions:\n"
        "  - id: scale\n"
        "    uses: kubernetes.scale\n"
        "    with: {namespace: shop, deployment: web, replicas: 9, max: 3, cluster: prd}\n"
    )
    config = tmp_path / "opsmedic.yaml"
    config.write_text(f"playbooks: [{playbook}]\nkubernetes: {{production: {{}}}}\n")
    assert main(["validate", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{playbook}:6: actions[0].with: replicas 9 is outside the playbook's bounds" in err
    playbook.write_text(playbook.read_text().replace("replicas: 9", "replicas: 2"))
    assert main(["validate", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{playbook}:2: probe.cluster: unknown Kubernetes cluster 'prodution'" in err
    assert "(did you mean 'production'?)" in err
    assert f"{playbook}:6: actions[0].with.cluster: unknown Kubernetes cluster 'prd'" in err


def test_validate_checks_cause_patterns_and_ignored_causes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    playbook = tmp_path / "pb.yaml"
    playbook.write_text(
        "name: api\n"
        "probe: {kind: http, url: 'http://127.0.0.1:1/'}\n"
        "causes: {vendor_outage: ['acme(']}\n"
        "actions:\n"
        "  - id: kick\n"
        "    uses: command\n"
        "    ignore_causes: [crashlop, vendor_outage, partner_down]\n"
        "    with: {argv: ['true']}\n"
    )
    config = tmp_path / "opsmedic.yaml"
    config.write_text(f"playbooks: [{playbook}]\ndiagnosis: {{causes: {{partner_down: ['x']}}}}\n")
    assert main(["validate", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{playbook}:3: causes: vendor_outage: pattern 'acme(' is not a valid regex" in err
    playbook.write_text(playbook.read_text().replace("acme(", "acme"))
    assert main(["validate", "-c", str(config)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"{playbook}:7: actions[0].ignore_causes[0]: unknown cause 'crashlop' "
        "(did you mean 'crashloop'?)"
    ]  # a playbook's own cause and one from the config are known


def test_validate_uses_config_playbooks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "opsmedic.yaml"
    config.write_text(f"playbooks: [{ROOT / 'playbooks'}]\n")
    assert main(["validate", "-c", str(config)]) == 0


def test_check_prints_readings_without_opening_incidents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    web = ToyWebService().start()
    try:
        pb = tmp_path / "pb.yaml"
        pb.write_text(f"name: web\nprobe: {{kind: http, url: '{web.url}/health'}}\n")
        config = tmp_path / "opsmedic.yaml"
        config.write_text("database: incidents.db\n")
        assert main(["check", "-c", str(config), "--json", str(pb)]) == 0
        [reading] = json.loads(capsys.readouterr().out)["web"]
        assert reading["outcome"] == "ok" and reading["labels"] == {"url": f"{web.url}/health"}
        web.break_dependency()
        assert main(["check", "-c", str(config), str(pb)]) == 1
        assert "breach" in capsys.readouterr().out
    finally:
        web.stop()
    assert main(["check", "-c", str(config), str(pb)]) == 1  # unreachable counts as a breach
    assert not (tmp_path / "incidents.db").exists()


def test_check_probe_error_exits_three(tmp_path: Path) -> None:
    pb = tmp_path / "pb.yaml"
    pb.write_text(
        f"name: fresh\nprobe: {{kind: freshness.sql, database: '{tmp_path}/missing.db', "
        "table: t, column: c, error_after: 1h}\n"
    )
    assert main(["check", str(pb)]) == 3


def test_incidents_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "incidents.db"
    store = IncidentStore(db)
    incident, _ = store.open(
        fingerprint="f",
        playbook="pb",
        labels={"job": "etl"},
        severity="warning",
        summary="stale",
        value=9.0,
        at=1.0,
    )
    store.append(incident.id, "evidence", "gathered logs", data={"logs": ["old"]}, at=1.5)
    store.append(incident.id, "evidence", "gathered logs", data={"logs": ["panic: x"]}, at=1.8)
    store.append(incident.id, "diagnosed", "rerun: first listed action", at=2.0)
    store.close()
    assert main(["incidents", "list", "--db", str(db), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["playbook"] == "pb" and row["status"] == "open" and row["labels"] == {"job": "etl"}
    assert main(["incidents", "show", str(incident.id), "--db", str(db)]) == 0
    shown = capsys.readouterr().out
    assert "job=etl" in shown and "rerun: first listed action" in shown
    assert "evidence of the last diagnosis" in shown and "panic: x" in shown
    assert "old" not in shown.split("evidence of the last diagnosis")[1]
    assert main(["incidents", "show", "99", "--db", str(db)]) == 1
    assert main(["incidents", "list", "--db", str(tmp_path / "none.db")]) == 3


def test_schema_playbook_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "playbook"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "opsmedic playbook" and "probe" in schema["required"]


def test_console_script_help_and_usage_error() -> None:
    ok = subprocess.run([sys.executable, "-m", "daemon", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "Exit codes" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "daemon", "frobnicate"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
