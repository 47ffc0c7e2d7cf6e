"""What ships besides the code: the systemd unit and the example daemon config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from daemon.config import load_settings

ROOT = Path(__file__).parent.parent


def test_example_daemon_config_is_valid() -> None:
    settings = load_settings(ROOT / "systemd" / "opsmedic.yaml")
    assert settings.notify.slack.channel == "#ops-alerts"
    assert settings.shutdown_grace == 30


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = tmp_path / "opsmedic.service"
    # point ExecStart at a binary that exists here; everything else is verified as shipped
    text = (ROOT / "systemd" / "opsmedic.service").read_text()
    unit.write_text(text.replace("/opt/opsmedic/bin/opsmedic", shutil.which("true") or "/bin/true"))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert str(unit) not in result.stderr, result.stderr  # no unknown keys or bad values
