from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.clock import FakeClock
from daemon.incidents import IncidentStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IncidentStore]:
    s = IncidentStore(tmp_path / "incidents.db")
    yield s
    s.close()
