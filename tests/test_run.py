"""`opsmedic run` as systemd runs it: READY=1 over $NOTIFY_SOCKET, graceful SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.incidents import IncidentStore, Status
from daemon.sandbox.web import ToyWebService


def wait_for(condition, what: str, seconds: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_run_notifies_systemd_opens_incident_and_stops_on_sigterm(tmp_path: Path) -> None:
    web = ToyWebService().start()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(20)
    try:
        (tmp_path / "pb").mkdir()
        (tmp_path / "pb" / "web.yaml").write_text(
            f"name: web\nprobe: {{kind: http, url: '{web.url}/health', every: 1s}}\nactions: []\n"
        )
        (tmp_path / "opsmedic.yaml").write_text(
            "playbooks: [pb]\ndatabase: state/incidents.db\njitter: 0s\nnotify: {console: false}\n"
        )
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "PATH": "/usr/bin:/bin"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daemon",
                "--log-level",
                "info",
                "run",
                "-c",
                str(tmp_path / "opsmedic.yaml"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert notify.recv(4096).startswith(b"READY=1")
            web.break_dependency()
            db = tmp_path / "state" / "incidents.db"

            def escalated() -> bool:
                if not db.exists():
                    return False
                store = IncidentStore(db, readonly=True)
                try:
                    return any(i.status is Status.ESCALATED for i in store.incidents())
                finally:
                    store.close()

            wait_for(escalated, "the incident to open and escalate")
            proc.send_signal(signal.SIGTERM)
            assert notify.recv(4096) == b"STOPPING=1"
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert "stopped" in err
    finally:
        notify.close()
        web.stop()


def test_run_with_invalid_config_exits_one(tmp_path: Path) -> None:
    (tmp_path / "opsmedic.yaml").write_text("databse: x.db\n")
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "-c", str(tmp_path / "opsmedic.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "opsmedic.yaml:1: databse: unknown field 'databse' (did you mean 'database'?)" in (
        proc.stderr
    )
