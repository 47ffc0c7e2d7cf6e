"""The command line as scripts use it: exit codes, stderr messages, --json."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


# --- no traceback for a user error; --debug; exit codes -----------------------------------


def opsmedic(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        **kwargs,
    )


def _unreadable_file(tmp_path: Path) -> Path:
    """A file this process may not read, even as root if the kernel has one."""
    if os.geteuid() != 0:
        path = tmp_path / "secret.yaml"
        path.write_text("playbooks: []\n")
        path.chmod(0)
        return path
    candidate = Path("/sys/bus/pci/rescan")  # write-only, even for root
    try:
        candidate.read_text()
    except PermissionError:
        return candidate
    except OSError:
        pass
    pytest.skip("no file is unreadable for root here")


def test_user_errors_exit_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("hello\n")
    cases = [
        (["validate", "-c", str(tmp_path / "missing.yaml")], 1, "cannot read: No such file"),
        (["validate", "-c", str(tmp_path)], 1, "cannot read: Is a directory"),
        (["validate", "-c", str(_unreadable_file(tmp_path))], 1, "Permission denied"),
        (["incidents", "list", "--db", str(tmp_path)], 3, "is a directory, not an incident log"),
        (["incidents", "list", "--db", str(not_a_db)], 3, "file is not a database"),
        (["demo", "--workdir", str(not_a_db / "sub")], 3, "Not a directory"),
    ]
    for argv, code, message in cases:
        proc = opsmedic(*argv)
        assert proc.returncode == code, (argv, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, argv
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_debug_before_or_after_the_command_shows_the_traceback(tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("hello\n")
    for argv in (
        ["--debug", "incidents", "list", "--db", str(not_a_db)],
        ["incidents", "list", "--db", str(not_a_db), "--debug"],
    ):
        proc = opsmedic(*argv)
        assert proc.returncode == 3
        assert "Traceback (most recent call last)" in proc.stderr
        assert proc.stderr.strip().endswith("file is not a database")


INJECT_FAULT = """
import json, runpy, sys
def broken(*args, **kwargs):
    raise RuntimeError("disk on fire")
json.dumps = broken  # a fault outside opsmedic, met where `schema` prints
sys.argv = ["opsmedic", *sys.argv[1:]]
runpy.run_module("daemon", run_name="__main__")
"""


def test_an_internal_error_exits_70_with_one_line() -> None:
    run = [sys.executable, "-c", INJECT_FAULT, "schema", "playbook"]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 70
    assert proc.stderr == (
        "opsmedic: internal error: RuntimeError: disk on fire "
        "(run with --debug for the traceback)\n"
    )
    proc = subprocess.run([*run, "--debug"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 70 and "Traceback (most recent call last)" in proc.stderr
    assert "in broken" in proc.stderr


def test_help_documents_every_exit_code() -> None:
    proc = opsmedic("--help")
    text = " ".join(proc.stdout.split())
    for code in ("0 ok", "1 problem found", "2 usage error", "3 could not run", "70 internal"):
        assert code in text
    assert "--debug" in proc.stdout and "--log-level" in proc.stdout


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    db = tmp_path / "incidents.db"
    store = IncidentStore(db)
    for n in range(600):  # --json: far more than a pipe buffer (64 KiB) holds
        store.open(
            fingerprint=f"f{n}",
            playbook="pb",
            labels={"job": f"etl{n}"},
            severity="warning",
            summary="stale " * 20,
            value=1.0,
            at=1.0 + n,
        )
    store.close()
    shell = f"{sys.executable} -m daemon incidents list --db {db} --limit 600 --json | head -1"
    proc = subprocess.run(
        ["bash", "-c", f"{shell}; echo exit=${{PIPESTATUS[0]}} >&2"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.stdout == "[\n"
    assert proc.stderr.strip() in ("exit=0", "exit=141")  # and nothing else: no message


def test_ctrl_c_exits_130_at_once_without_traceback(tmp_path: Path) -> None:
    hanging = socket.socket()  # accepts connections (the backlog) and never answers
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(4)
    hanging.settimeout(30)
    port = hanging.getsockname()[1]
    pb = tmp_path / "pb.yaml"
    url = f"http://127.0.0.1:{port}/"
    pb.write_text(f"name: slow\nprobe: {{kind: http, url: '{url}', timeout: 1m}}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "check", str(pb)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        connection, _ = hanging.accept()  # the probe's request is under way
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - started < 10  # not after the probe's 1m timeout
        connection.close()
    finally:
        hanging.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and "Traceback" not in err


def test_log_level_before_or_after_the_command_the_later_wins(tmp_path: Path) -> None:
    pb = tmp_path / "pb.yaml"
    pb.write_text("name: down\nprobe: {kind: http, url: 'http://127.0.0.1:1/'}\n")
    check = ["check", str(pb)]
    for argv, debug in (
        ([*check, "--log-level", "debug"], True),
        (["--log-level", "debug", *check], True),
        (["--log-level", "debug", *check, "--log-level", "error"], False),
        (check, False),
    ):
        proc = opsmedic(*argv)
        assert proc.returncode == 1, proc.stderr  # unreachable: a breach
        assert ("DEBUG asyncio" in proc.stderr) is debug, argv
    bad = opsmedic(*check, "--log-level", "loud")
    assert bad.returncode == 2 and "invalid choice: 'loud'" in bad.stderr


def test_check_takes_playbook_names_from_the_config(tmp_path: Path) -> None:
    (tmp_path / "pb").mkdir()
    for name in ("orders-api", "billing-api"):
        (tmp_path / "pb" / f"{name}.yaml").write_text(
            f"name: {name}\nprobe: {{kind: http, url: 'http://127.0.0.1:1/{name}'}}\n"
        )
    config = tmp_path / "opsmedic.yaml"
    config.write_text("playbooks: [pb]\n")
    proc = opsmedic("check", "-c", str(config), "--json", "billing-api")
    assert proc.returncode == 1, proc.stderr  # a breach: nothing listens there
    assert list(json.loads(proc.stdout)) == ["billing-api"]
    proc = opsmedic("check", "-c", str(config), "orders-apj")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "opsmedic check: no playbook file or name 'orders-apj' (did you mean 'orders-api'?); "
        f"the config's playbooks ({tmp_path}/pb): billing-api, orders-api"
    )
